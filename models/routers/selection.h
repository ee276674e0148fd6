// Pieces the routers share: token-choice top-k selection with the loss-free bias, row
// normalization, and filling a Routing's assignments. Used by models/routers/*.cpp only.
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

// Top-k experts per token by scores + b. b decides who is selected, never the gate value:
// subtracting b at the chosen positions leaves exactly the scores' gradient.
Selection select_topk(const engine::Tensor& scores, int64_t k, const std::vector<float>* bias);

engine::Tensor normalize_rows(const engine::Tensor& g);  // g / sum of its row

// Token-choice assignments: N*k slots, token-major, with the given gates [N, k].
void assign_token_choice(Routing& r, const Selection& sel, const engine::Tensor& gates);

}  // namespace moe::routers
