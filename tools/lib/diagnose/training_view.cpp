#include "tools/lib/diagnose/training_view.h"

#include "tools/lib/collapse/churn.h"

namespace diagnose {

double last_of(const std::vector<double>& table, size_t layers, size_t l) {
  return table.size() >= layers && layers > 0 ? table[table.size() - layers + l] : collapse::kNaN;
}

void add_training_view(Result& r, const ckpt::Checkpoint& c) {
  const ckpt::MetricsHistory& h = c.metrics;
  r.upcycled_from = c.upcycled_from;
  const auto sim = h.layer_metrics.find("mean_similarity");
  if (sim != h.layer_metrics.end()) r.similarity_history = sim->second;
  if (h.trace_step.size() < 2) return;
  r.churn = collapse::routing_churn(h.trace_experts, static_cast<int64_t>(h.trace_step.size()), h.layers,
                                    h.trace_tokens, h.trace_k);
  r.churn_steps.assign(h.trace_step.begin() + 1, h.trace_step.end());
}

}  // namespace diagnose
