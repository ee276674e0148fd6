#include "tools/lib/train/routing_stats.h"

#include <algorithm>
#include <cmath>

namespace train {

using engine::Tensor;

collapse::Thresholds thresholds_from(const runconfig::DiagnosticsConfig& c) {
  collapse::Thresholds t;
  t.max_vio = c.max_vio;
  t.max_dead = c.max_dead;
  t.topk_share = c.topk_share;
  t.dead_fraction = c.dead_fraction;
  t.starved_fraction = c.starved_fraction;
  t.device_imbalance = c.device_imbalance;
  t.vanishing_grad_norm = c.vanishing_grad_norm;
  return t;
}

RoutingObserver::RoutingObserver(int64_t experts, int64_t top_k, int64_t domains, bool keep_top1)
    : experts_(experts),
      top_k_(top_k),
      domains_(domains),
      keep_top1_(keep_top1),
      counts_(static_cast<size_t>(experts), 0),
      kept_(static_cast<size_t>(experts), 0),
      domain_table_(static_cast<size_t>(std::max<int64_t>(domains, 0) * experts), 0) {}

void RoutingObserver::add(const moe::Routing& r, const std::vector<int32_t>& sequence_domains, int64_t seq_len) {
  for (size_t e = 0; e < r.counts.size() && e < counts_.size(); ++e) counts_[e] += r.counts[e];
  dropped_ += r.dropped;
  for (size_t e = 0; e + 1 < r.expert_offsets.size() && e < kept_.size(); ++e)
    kept_[e] += r.expert_offsets[e + 1] - r.expert_offsets[e];
  if (domains_ > 0)
    for (size_t m = 0; m < r.assigned_expert.size(); ++m) {
      const size_t sequence = static_cast<size_t>(r.assigned_token[m] / seq_len);
      const int32_t d = sequence < sequence_domains.size() ? sequence_domains[sequence] : -1;
      if (d >= 0 && d < domains_) ++domain_table_[static_cast<size_t>(d * experts_ + r.assigned_expert[m])];
    }
  if (!r.probs.defined()) return;
  const std::vector<float> probs = r.probs.to_float_vector();
  router_.add(probs, r.logits.defined() ? r.logits.to_float_vector() : std::vector<float>{}, experts_);
  if (keep_top1_)
    for (size_t t = 0; t < probs.size() / static_cast<size_t>(experts_); ++t) {
      const float* p = probs.data() + t * experts_;
      top1_.push_back(static_cast<int32_t>(std::max_element(p, p + experts_) - p));
    }
}

void RoutingObserver::sum_over(engine::dist::Communicator& ranks) {
  if (ranks.size() == 1) return;
  std::vector<int64_t> ints = counts_;
  ints.insert(ints.end(), kept_.begin(), kept_.end());
  ints.insert(ints.end(), domain_table_.begin(), domain_table_.end());
  ints.push_back(dropped_);
  ints.push_back(router_.has_logits ? 1 : 0);
  ranks.all_reduce_sum(ints);
  auto next = ints.begin();
  for (std::vector<int64_t>* part : {&counts_, &kept_, &domain_table_}) {
    std::copy(next, next + static_cast<std::ptrdiff_t>(part->size()), part->begin());
    next += static_cast<std::ptrdiff_t>(part->size());
  }
  dropped_ = ints[ints.size() - 2];
  router_.has_logits = ints.back() > 0;
  std::vector<double> sums = {router_.tokens, router_.max_prob, router_.entropy, router_.logsumexp};
  ranks.all_reduce_sum(sums);
  router_.tokens = sums[0];
  router_.max_prob = sums[1];
  router_.entropy = sums[2];
  router_.logsumexp = sums[3];
}

collapse::LayerStats RoutingObserver::stats(int64_t block, const collapse::Thresholds& t, int64_t devices) const {
  collapse::LayerStats s;
  s.block = block;
  collapse::compute_load(s, counts_, top_k_, dropped_, t);
  collapse::set_devices(s, kept_, devices);
  collapse::set_router(s, router_);
  if (domains_ > 0) collapse::set_domains(s, domain_table_, domains_);
  return s;
}

void set_expert_similarity(collapse::LayerStats& s, const moe::MoeLayer& layer) {
  engine::NoGradScope no_grad;
  std::vector<Tensor> rows;
  for (const moe::ExpertMlp& e : layer.experts()) {
    std::vector<Tensor> parts;
    for (const Tensor* t : {&e.w1, &e.b1, &e.w2, &e.b2, &e.w_up})
      if (t->defined()) parts.push_back(engine::reshape(*t, {1, t->numel()}));
    rows.push_back(engine::concat(parts, 1));
  }
  const Tensor w = engine::concat(rows, 0);  // [E, P]
  collapse::set_similarity(s, engine::matmul(w, w, false, true).to_vector(), rows.size());
}

}  // namespace train
