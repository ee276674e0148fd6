// Balance losses. Each is one function of a layer's Routing, loss_KEY() in a file of its own
// (models/balance/KEY.cpp), declared once in models/balance/losses.def, so a loss is changed by
// editing one file; formulas and conventions: models/README.md. A function returns an
// undefined tensor when its router has nothing to measure (z_loss without logits, load without
// noise).
// The model evaluates each per MoE layer and averages over layers (never on logits pooled
// across layers, where imbalances of different layers cancel).
#pragma once
#include <vector>

#include "engine/engine.h"
#include "models/catalog.h"
#include "models/router.h"

namespace moe {

struct SequenceLayout {
  int64_t batch = 1, seq_len = 1;  // tokens are batch-major: token n = b * seq_len + t
};

using BalanceLossFn = engine::Tensor (*)(const Routing&, const SequenceLayout&);

struct BalanceLoss {
  const char* name;  // the config key under moe.losses
  BalanceLossFn fn;
};

// Every loss of losses.def, in the order they are logged.
const std::vector<BalanceLoss>& balance_losses();

#define MOE_BALANCE_LOSS(key, needs, summary) engine::Tensor loss_##key(const Routing& r, const SequenceLayout& layout);
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS

// The count-based losses' two halves: f_i = c_i / (N k) from the balance scope's counts
// (balance_counts over balance_tokens; no gradient), and sum_i w_i P_i with P_i = mean_t p_ti
// (the gradient, through p).
std::vector<double> slot_fractions(const Routing& r);
engine::Tensor weighted_mean_prob(const Routing& r, const std::vector<double>& weight);

// CV(v)^2 = var(v) / mean(v)^2 with the population variance; 1e-10 keeps an all-zero v finite.
engine::Tensor cv_squared(const engine::Tensor& v);

}  // namespace moe
