#include "tools/lib/collapse/devices.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace collapse {

std::vector<int64_t> device_loads(const std::vector<int64_t>& expert_slots, int64_t devices) {
  const int64_t experts = static_cast<int64_t>(expert_slots.size());
  if (devices < 1 || experts % devices != 0)
    throw std::invalid_argument(std::to_string(devices) + " devices cannot hold " + std::to_string(experts) +
                                " experts in equal blocks: the number of devices must divide the number of experts");
  const int64_t per_device = experts / devices;
  std::vector<int64_t> loads(static_cast<size_t>(devices), 0);
  for (int64_t e = 0; e < experts; ++e) loads[static_cast<size_t>(e / per_device)] += expert_slots[e];
  return loads;
}

double device_imbalance(const std::vector<double>& loads) {
  if (loads.empty()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0, most = 0;
  for (double v : loads) {
    sum += v;
    most = std::max(most, v);
  }
  if (sum <= 0) return std::numeric_limits<double>::quiet_NaN();
  return most / (sum / static_cast<double>(loads.size()));
}

double device_imbalance(const std::vector<int64_t>& loads) {
  return device_imbalance(std::vector<double>(loads.begin(), loads.end()));
}

double combined_imbalance(const std::vector<std::vector<double>>& layer_loads) {
  double busiest = 0, mean = 0;
  for (const std::vector<double>& loads : layer_loads) {
    if (loads.empty()) continue;
    double total = 0;
    for (double v : loads) total += v;
    busiest += *std::max_element(loads.begin(), loads.end());
    mean += total / static_cast<double>(loads.size());
  }
  return mean > 0 ? busiest / mean : std::numeric_limits<double>::quiet_NaN();
}

std::vector<int64_t> report_device_counts(int64_t experts) {
  std::vector<int64_t> out;
  for (int64_t d : {2, 4, 8})
    if (d <= experts && experts % d == 0) out.push_back(d);
  return out;
}

}  // namespace collapse
