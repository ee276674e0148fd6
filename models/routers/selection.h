// Pieces the routers share: token-choice top-k selection (with the loss-free bias, group-limited
// routing and forced balance), gathering scores at chosen experts, row normalization, and filling
// a Routing's assignments. Used by models/routers/*.cpp only.
#pragma once
#include <vector>

#include "engine/engine.h"
#include "models/router.h"

namespace moe::routers {

// A constant (no-gradient) tensor on like's device and element type.
engine::Tensor constant_like(const std::vector<double>& values, const engine::Shape& shape, const engine::Tensor& like);

struct Selection {
  engine::Tensor gates;          // [N, k]: the selected scores, without the bias
  std::vector<int32_t> experts;  // [N * k]
};

// How a token-choice router picks: scores + bias, within each token's best groups, or forced.
struct SelectRules {
  const std::vector<float>* bias = nullptr;  // the loss-free bias b [E], or null
  int64_t expert_groups = 1, topk_groups = 0;
  bool force_balance = false;
};
SelectRules select_rules(const RouterConfig& config, const RouteInputs& in);

// Top-k experts per token by scores + b. b decides who is selected, never the gate value:
// subtracting b at the chosen positions leaves exactly the scores' gradient. With expert groups
// (DeepSeek-V3) each token first keeps its topk_groups best groups, ranked by the sum of each
// group's two largest scores + b, and selects inside them. With force_balance token t's slot j
// is expert (t k + j) mod E whatever the scores.
Selection select_topk(const engine::Tensor& scores, int64_t k, const SelectRules& rules);

// scores [N, E] at experts [N * k] (token-major): [N, k], differentiable in scores.
engine::Tensor gather_scores(const engine::Tensor& scores, const std::vector<int32_t>& experts, int64_t k);

// Draws a reference file supplies (RouterReplay), checked to be `shape`, as like's type and device.
engine::Tensor replayed(const engine::Tensor& given, const engine::Shape& shape, const char* what,
                        const engine::Tensor& like);

engine::Tensor normalize_rows(const engine::Tensor& g);  // g / sum of its row

// Token-choice assignments: N*k slots, token-major, with the given gates [N, k].
void assign_token_choice(Routing& r, const Selection& sel, const engine::Tensor& gates);

}  // namespace moe::routers
