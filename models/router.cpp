#include "models/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace moe {

using namespace engine;

namespace {

const char* kRouterNames[] = {"topk_softmax", "switch", "noisy_topk", "sigmoid_topk", "expert_choice", "hash"};

// Constant (no-gradient) tensor on x's device and element type.
Tensor constant_like(const std::vector<double>& values, const Shape& shape, const Tensor& like) {
  return Tensor::from_vector(values, shape).to(like.dtype()).to(like.device());
}

struct Selection {
  Tensor gates;                  // [N, k]: the selected scores, without the bias
  std::vector<int32_t> experts;  // [N * k]
};

// Top-k experts per token by scores + b. b decides who is selected, never the gate value:
// subtracting b at the chosen positions leaves exactly the scores' gradient.
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

// Fills the dispatch plan from the assignments: counts, capacity drops, expert-major order.
void build_plan(const RouterConfig& config, Routing& r) {
  const int64_t E = r.num_experts, M = static_cast<int64_t>(r.assigned_expert.size());
  r.counts.assign(E, 0);
  for (int32_t e : r.assigned_expert) ++r.counts[e];
  const int64_t capacity = config.kind == RouterKind::expert_choice ? 0 : expert_capacity(config, r.num_tokens);

  std::vector<std::vector<int64_t>> per_expert(E);  // assignment indices, token order
  for (int64_t m = 0; m < M; ++m) per_expert[r.assigned_expert[m]].push_back(m);
  if (capacity > 0 && config.drop_policy == DropPolicy::score) {
    const std::vector<double> gate = r.assigned_gate.to_vector();
    for (auto& list : per_expert) {
      std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) { return gate[a] > gate[b]; });
      if (static_cast<int64_t>(list.size()) > capacity) list.resize(capacity);
      std::sort(list.begin(), list.end());  // back to token order inside the expert
    }
  } else if (capacity > 0) {
    for (auto& list : per_expert)
      if (static_cast<int64_t>(list.size()) > capacity) list.resize(capacity);  // first come, first kept
  }

  std::vector<int32_t> slot_token, slot_assignment;
  r.expert_offsets.assign(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t m : per_expert[e]) {
      slot_token.push_back(r.assigned_token[m]);
      slot_assignment.push_back(static_cast<int32_t>(m));
    }
    r.expert_offsets[e + 1] = static_cast<int64_t>(slot_token.size());
  }
  const int64_t S = static_cast<int64_t>(slot_token.size());
  r.dropped = M - S;
  const Device device = r.assigned_gate.device();
  r.slot_token = Tensor::from_vector(slot_token, {S}, device);
  Tensor by_assignment = reshape(r.assigned_gate, {M, 1});
  r.slot_gate = reshape(gather_rows(by_assignment, Tensor::from_vector(slot_assignment, {S}, device)), {S});
}

void assign_token_choice(Routing& r, const Selection& sel, const Tensor& gates) {
  const int64_t k = r.top_k;
  r.assigned_expert = sel.experts;
  r.assigned_token.resize(sel.experts.size());
  for (size_t m = 0; m < sel.experts.size(); ++m) r.assigned_token[m] = static_cast<int32_t>(m / k);
  r.assigned_gate = reshape(gates, {r.num_tokens * k});
}

// A fixed integer hash (Knuth's multiplicative constant); the hash baseline's routing never learns.
int32_t hash_expert(int32_t token, int64_t num_experts) {
  return static_cast<int32_t>((static_cast<uint64_t>(static_cast<uint32_t>(token)) * 2654435761u >> 7) % num_experts);
}

}  // namespace

RouterKind parse_router_kind(const std::string& name) {
  for (int i = 0; i < 6; ++i)
    if (name == kRouterNames[i]) return static_cast<RouterKind>(i);
  throw std::invalid_argument("unknown router '" + name +
                              "' (allowed: topk_softmax, switch, noisy_topk, sigmoid_topk, expert_choice, hash)");
}

const char* router_kind_name(RouterKind kind) { return kRouterNames[static_cast<int>(kind)]; }

double load_cv(const std::vector<int64_t>& counts) {
  if (counts.empty()) return 0.0;
  double mean = 0, var = 0;
  for (int64_t c : counts) mean += static_cast<double>(c) / static_cast<double>(counts.size());
  if (mean == 0) return 0.0;
  for (int64_t c : counts) var += (c - mean) * (c - mean) / static_cast<double>(counts.size());
  return std::sqrt(var) / mean;
}

int64_t expert_capacity(const RouterConfig& config, int64_t num_tokens) {
  if (config.capacity_factor <= 0) return 0;
  return static_cast<int64_t>(
      std::ceil(config.capacity_factor * static_cast<double>(num_tokens * config.top_k) / config.num_experts));
}

Routing route(const RouterConfig& config, const RouterWeights& w, const RouteInputs& in) {
  const int64_t N = in.x.size(0), E = config.num_experts, k = config.top_k;
  ENGINE_CHECK(k >= 1 && k <= E, "route", "top_k must be in [1, " + std::to_string(E) + "], got " + std::to_string(k));
  ENGINE_CHECK(!in.bias || static_cast<int64_t>(in.bias->size()) == E, "route", "bias must hold one value per expert");
  // Routing decisions are discrete: bf16's 8-bit mantissa would flip near-tied top-k choices
  // and perturb the balance losses' gradients, so the router computes in f32 whatever the
  // model's matmul precision (Switch Transformer's "selective precision").
  MatmulPrecisionScope router_precision(MatmulPrecision::f32);
  Routing r;
  r.num_tokens = N;
  r.num_experts = E;
  r.top_k = k;

  switch (config.kind) {
    case RouterKind::topk_softmax:
    case RouterKind::switch_k1: {
      r.logits = linear(in.x, w.gate);
      r.probs = softmax(r.logits);
      Selection sel = select_topk(r.probs, k, in.bias);
      assign_token_choice(r, sel, config.normalize_topk ? normalize_rows(sel.gates) : sel.gates);
      break;
    }
    case RouterKind::sigmoid_topk: {
      r.logits = linear(in.x, w.gate);
      Tensor scores = sigmoid(r.logits);
      r.probs = normalize_rows(scores);
      Selection sel = select_topk(scores, k, in.bias);
      assign_token_choice(r, sel, normalize_rows(sel.gates));
      break;
    }
    case RouterKind::noisy_topk: {
      r.logits = linear(in.x, w.gate);
      r.probs = softmax(r.logits);
      Tensor noisy = r.logits, noise_std;
      if (in.training) {
        ENGINE_CHECK((in.noise != nullptr || in.replay_noise.defined()) && w.noise.defined(), "route",
                     "noisy_topk needs a noise generator (or replayed noise) and W_noise");
        Tensor eps;
        if (in.replay_noise.defined()) {
          ENGINE_CHECK(in.replay_noise.shape() == Shape({N, E}), "route",
                       "replayed noise must be [" + std::to_string(N) + ", " + std::to_string(E) + "], got " +
                           in.replay_noise.str());
          eps = in.replay_noise.to(r.logits.dtype()).to(r.logits.device());
        } else {
          eps = randn({N, E}, *in.noise, 0.0, 1.0, r.logits.dtype(), r.logits.device());
        }
        noise_std = softplus(linear(in.x, w.noise));
        noisy = add(r.logits, mul(eps, noise_std));
      }
      Selection sel = select_topk(noisy, k, in.bias);
      assign_token_choice(r, sel, softmax(sel.gates));  // softmax over the top-k of H
      if (in.training && k < E) {
        // Shazeer's P(x, i): the chance that expert i stays selected under fresh noise, with the
        // k-th largest noisy logit excluding i as the threshold.
        Tensor top = topk(noisy, k + 1).values;
        Tensor kth = slice(top, 1, k - 1, k), next = slice(top, 1, k, k + 1);  // [N, 1] each
        std::vector<double> in_topk(N * E, 0.0);
        for (int64_t m = 0; m < N * k; ++m) in_topk[(m / k) * E + sel.experts[m]] = 1.0;
        Tensor mask = constant_like(in_topk, {N, E}, noisy);
        Tensor threshold = add(mul(mask, next), mul(affine(mask, -1.0, 1.0), kth));
        r.load_probs = normal_cdf(div(sub(r.logits, threshold), noise_std));
      }
      break;
    }
    case RouterKind::expert_choice: {
      ENGINE_CHECK(config.capacity_factor > 0, "route", "expert_choice needs capacity_factor > 0");
      r.logits = linear(in.x, w.gate);
      r.probs = softmax(r.logits);
      const int64_t C = std::min<int64_t>(N, expert_capacity(config, N));
      TopK picks = topk(transpose(r.probs, 0, 1), C);  // each expert's C best tokens
      const std::vector<int32_t> tokens = picks.indices.to_int_vector();
      r.assigned_token = tokens;
      r.assigned_expert.resize(tokens.size());
      for (size_t m = 0; m < tokens.size(); ++m) r.assigned_expert[m] = static_cast<int32_t>(m / C);
      r.assigned_gate = reshape(picks.values, {E * C});
      break;
    }
    case RouterKind::hash: {
      ENGINE_CHECK(in.token_ids && static_cast<int64_t>(in.token_ids->size()) == N, "route",
                   "the hash router needs the token id of every token");
      Selection sel;
      std::vector<double> one_hot(N * E, 0.0);
      for (int64_t t = 0; t < N; ++t) {
        const int32_t e = hash_expert((*in.token_ids)[t], E);
        sel.experts.push_back(e);
        one_hot[t * E + e] = 1.0;
      }
      r.probs = constant_like(one_hot, {N, E}, in.x);
      assign_token_choice(r, sel, Tensor::full({N, 1}, 1.0, in.x.dtype(), in.x.device()));
      break;
    }
  }
  build_plan(config, r);
  return r;
}

}  // namespace moe
