#include "tools/lib/collapse/churn.h"

#include <stdexcept>
#include <string>

namespace collapse {

std::vector<double> routing_churn(const std::vector<int32_t>& experts, int64_t traces, int64_t layers, int64_t tokens,
                                  int64_t k) {
  if (traces < 0 || layers < 0 || tokens < 1 || k < 1 ||
      static_cast<int64_t>(experts.size()) != traces * layers * tokens * k)
    throw std::invalid_argument("routing_churn: " + std::to_string(experts.size()) + " experts for " +
                                std::to_string(traces) + " traces x " + std::to_string(layers) + " layers x " +
                                std::to_string(tokens) + " tokens x k " + std::to_string(k));
  std::vector<double> churn;
  const int64_t per_trace = layers * tokens * k;
  for (int64_t i = 1; i < traces; ++i)
    for (int64_t l = 0; l < layers; ++l) {
      int64_t changed = 0;
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t at = l * tokens * k + t * k;
        changed +=
            experts[static_cast<size_t>(i * per_trace + at)] != experts[static_cast<size_t>((i - 1) * per_trace + at)];
      }
      churn.push_back(static_cast<double>(changed) / static_cast<double>(tokens));
    }
  return churn;
}

}  // namespace collapse
