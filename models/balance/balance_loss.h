// Balance losses. Each is one function of a layer's Routing, in a file of its own
// (models/balance/NAME.cpp), so a loss is changed by editing one file; formulas and
// conventions: ../shared/reference/moe-balancing.md. A function returns an undefined tensor
// when its router has nothing to measure (z_loss without logits, load without noise).
// The model evaluates each per MoE layer and averages over layers (never on logits pooled
// across layers, where imbalances of different layers cancel).
#pragma once
#include <vector>

#include "engine/engine.h"
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

// Every loss, in the order they are logged.
const std::vector<BalanceLoss>& balance_losses();

engine::Tensor switch_aux_loss(const Routing& r, const SequenceLayout& layout);
engine::Tensor importance_loss(const Routing& r, const SequenceLayout& layout);
engine::Tensor load_loss(const Routing& r, const SequenceLayout& layout);
engine::Tensor z_loss(const Routing& r, const SequenceLayout& layout);
engine::Tensor sequence_aux_loss(const Routing& r, const SequenceLayout& layout);

// CV(v)^2 = var(v) / mean(v)^2 with the population variance; 1e-10 keeps an all-zero v finite.
engine::Tensor cv_squared(const engine::Tensor& v);

}  // namespace moe
