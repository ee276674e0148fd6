// moe-diagnose --report: one self-contained HTML file (inline SVG and CSS, no script, no
// network) with the verdicts, per-layer load bars against the uniform 1/E line, the device view
// (slots per expert-parallel rank against the even share, predicted slowdowns), the load share
// of every expert over training as a heatmap per layer, the expert similarity matrices, the
// domain x expert tables, the spread of each metric across layers, and the comparison with a
// second checkpoint when there is one. Charts scale their cells so E = 64 and 12 layers stay
// readable. Every chart is <svg class="chart" data-kind=".." data-layer="..">, so tests (and
// scripts) can find them in the DOM.
#pragma once
#include <ostream>

#include "tools/lib/diagnose/diagnose.h"

namespace diagnose {

void write_html(const diagnose::Result& result, std::ostream& out);

}  // namespace diagnose
