#include "models/routers/selection.h"

namespace moe::routers {

using namespace engine;

Tensor constant_like(const std::vector<double>& values, const Shape& shape, const Tensor& like) {
  return Tensor::from_vector(values, shape).to(like.dtype()).to(like.device());
}

Selection select_topk(const Tensor& scores, int64_t k, const std::vector<float>* bias) {
  const int64_t n = scores.size(0), e = scores.size(1);
  if (!bias) {
    TopK top = topk(scores, k);
    return {top.values, top.indices.to_int_vector()};
  }
  std::vector<double> b(bias->begin(), bias->end());
  TopK top = topk(add(scores, constant_like(b, {e}, scores)), k);
  std::vector<int32_t> experts = top.indices.to_int_vector();
  std::vector<double> b_at(experts.size());
  for (size_t i = 0; i < experts.size(); ++i) b_at[i] = b[experts[i]];
  return {sub(top.values, constant_like(b_at, {n, k}, scores)), experts};
}

Tensor normalize_rows(const Tensor& g) { return div(g, sum(g, -1, true)); }

void assign_token_choice(Routing& r, const Selection& sel, const Tensor& gates) {
  const int64_t k = r.top_k;
  r.assigned_expert = sel.experts;
  r.assigned_token.resize(sel.experts.size());
  for (size_t m = 0; m < sel.experts.size(); ++m) r.assigned_token[m] = static_cast<int32_t>(m / k);
  r.assigned_gate = reshape(gates, {r.num_tokens * k});
}

}  // namespace moe::routers
