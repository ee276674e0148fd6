// LrSchedule::lr_at and its argument checks.
#include "engine/optim/schedule.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace engine {

namespace {
[[noreturn]] void bad(const std::string& field, const std::string& message) {
  throw std::invalid_argument("LrSchedule: " + field + " " + message);
}
}  // namespace

void LrSchedule::validate() const {
  // Comparisons written so that NaN fails them.
  if (!(std::isfinite(base_lr) && base_lr > 0.0))
    bad("base_lr", "must be finite and > 0, got " + std::to_string(base_lr));
  if (warmup_steps < 0) bad("warmup_steps", "must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1) bad("total_steps", "must be >= 1, got " + std::to_string(total_steps));
  if (warmup_steps > total_steps)
    bad("warmup_steps",
        "(" + std::to_string(warmup_steps) + ") must not exceed total_steps (" + std::to_string(total_steps) + ")");
  if (decay != cosine && decay != constant) bad("decay", "must be cosine or constant");
  if (!(min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0))
    bad("min_lr_ratio", "must be in [0, 1], got " + std::to_string(min_lr_ratio));
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  if (step < 1) bad("step", "counts from 1, got " + std::to_string(step));
  if (step <= warmup_steps) return base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
  if (decay == constant) return base_lr;
  const double min_lr = base_lr * min_lr_ratio;
  if (step >= total_steps) return min_lr;
  // Here warmup_steps < step < total_steps, so the span is positive.
  const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace engine
