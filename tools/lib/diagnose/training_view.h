// moe-diagnose's view of the run over training, from the checkpoint's history (no evaluation):
// the mean expert similarity of each MoE layer at each logged step (how fast the copies of an
// upcycled run differentiate), and the routing churn between consecutive routing traces of the
// probe batch (logging.routing_trace_every; tools/lib/collapse/churn.h). The text and JSON are
// written by diagnose.cpp, the charts by report_html.cpp.
#pragma once
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/diagnose/diagnose.h"

namespace diagnose {

// Fills r.upcycled_from, r.similarity_history and the churn fields.
void add_training_view(Result& r, const ckpt::Checkpoint& c);

// The last row's value for layer l of a [step][layer] table (NaN when the table is empty).
double last_of(const std::vector<double>& table, size_t layers, size_t l);

}  // namespace diagnose
