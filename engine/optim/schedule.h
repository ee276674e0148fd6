// Learning-rate schedule: linear warm-up, then cosine decay to a floor, or constant.
//
// Contract (steps count from 1, the first optimizer step):
// - step <= warmup_steps: base_lr * step / warmup_steps (base_lr / warmup_steps at step 1,
//   base_lr at warmup_steps). warmup_steps = 0 means no warm-up.
// - cosine: from base_lr after warm-up down to base_lr * min_lr_ratio at total_steps,
//   lr = min + (base - min) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2,
//   and base_lr * min_lr_ratio from then on.
// - constant: base_lr after warm-up.
// - lr_at validates the fields and the step and throws std::invalid_argument naming the
//   offending one; validate() runs the same checks up front (at configuration time).
#pragma once
#include <cstdint>

namespace engine {

struct LrSchedule {
  double base_lr;
  int64_t warmup_steps;
  int64_t total_steps;
  enum Decay { cosine, constant } decay;
  double min_lr_ratio;

  double lr_at(int64_t step) const;
  void validate() const;
};

}  // namespace engine
