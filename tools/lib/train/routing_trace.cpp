#include "tools/lib/train/routing_trace.h"

#include <algorithm>
#include <numeric>

#include "tools/lib/assemble/assemble.h"
#include "tools/lib/train/trainer.h"

namespace train {

data::Batch probe_batch(const runconfig::RunConfig& config) {
  const int64_t sequences = std::min<int64_t>(config.training.batch_size, kProbeSequences);
  return assemble::data_source(config, true)->next_batch(sequences, config.training.seq_len);
}

namespace {

// Top-k of each token's router scores, for routers that assign no k experts per token.
void top_scores(const moe::Routing& r, std::vector<int32_t>& out) {
  const std::vector<float> probs = r.probs.to_float_vector();
  const int64_t E = r.num_experts, k = r.top_k;
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < r.num_tokens; ++t) {
    const float* p = probs.data() + t * E;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    out.insert(out.end(), order.begin(), order.begin() + k);
  }
}

}  // namespace

std::vector<int32_t> trace_routing(moe::TransformerLM& model, const data::Batch& probe) {
  engine::NoGradScope no_grad;
  const moe::ForwardResult out = model.forward(probe.inputs, engine::Tensor(), false, false);
  std::vector<int32_t> experts;
  for (const moe::Routing& r : out.routings) {
    bool token_major = static_cast<int64_t>(r.assigned_expert.size()) == r.num_tokens * r.top_k;
    for (size_t m = 0; token_major && m < r.assigned_token.size(); ++m)
      token_major = r.assigned_token[m] == static_cast<int32_t>(m / static_cast<size_t>(r.top_k));
    if (token_major)
      experts.insert(experts.end(), r.assigned_expert.begin(), r.assigned_expert.end());
    else
      top_scores(r, experts);
  }
  return experts;
}

void Trainer::record_routing_trace() {
  const int every = config_.logging.routing_trace_every;
  if (every <= 0 || step_ % every != 0 || model_->moe_layers().empty()) return;
  const ckpt::MetricsHistory& h = metrics_.history();
  if (!h.trace_step.empty() && h.trace_step.back() == step_) return;  // resumed at a traced step
  if (!probe_) probe_ = std::make_unique<data::Batch>(probe_batch(config_));
  const std::vector<int32_t> experts = trace_routing(*model_, *probe_);
  const int64_t tokens = probe_->inputs.numel();
  if (metrics_.record_trace(step_, tokens, config_.moe.top_k, experts))
    progress_ << "moe-train: the probe batch changed shape (training.batch_size or seq_len); routing traces "
                 "restart at step "
              << step_ << std::endl;
}

}  // namespace train
