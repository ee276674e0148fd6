// moe-diagnose's HTML view of the symptoms of imbalance that training measured per expert (the
// checkpoint's history; tools/lib/train/expert_health.h): per MoE layer a scatter of each
// expert's load share against its gradient norm at the last logged step, and each expert's
// update-to-weight ratio over the logged steps. Older checkpoints, without those arrays, get a
// line saying so instead of the charts.
#pragma once
#include <ostream>

#include "tools/lib/diagnose/diagnose.h"

namespace diagnose {

void write_health_html(const Result& r, std::ostream& out);  // <section id="health">

}  // namespace diagnose
