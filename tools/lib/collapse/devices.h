// The cost of imbalance across devices. Expert parallelism over D ranks puts experts
// [d E/D, (d+1) E/D) on rank d (contiguous blocks), every rank computes its experts' slots, and
// the exchange after the experts waits for the busiest rank. So the expert part of a step takes
// as long as the most loaded device's slots, and against a perfectly balanced step (every device
// the mean) it is slower by
//     device imbalance = max_d slots_d / mean_d slots_d   (1 = balanced, D = all on one device).
// That ratio is the predicted slowdown of the layer's expert work. It predicts the expert part
// only: attention, the router and the exchanges themselves do not scale with the imbalance, so a
// whole step slows by less (README.md, "The cost of imbalance across devices").
// Pure functions of slot counts, shared by training (live), moe-diagnose and the tests.
#pragma once
#include <cstdint>
#include <vector>

namespace collapse {

// Slots per device: expert_slots [E] summed in contiguous blocks of E / devices. Throws
// std::invalid_argument when devices is not a divisor of E (naming both).
std::vector<int64_t> device_loads(const std::vector<int64_t>& expert_slots, int64_t devices);

// max / mean of the loads; NaN when there are none or all are zero.
double device_imbalance(const std::vector<int64_t>& loads);
double device_imbalance(const std::vector<double>& loads);

// Layers that run one after another, each waiting for its busiest device: the sum over layers of
// the busiest device's load over the sum of the means (layer_loads [layer][device]).
double combined_imbalance(const std::vector<std::vector<double>>& layer_loads);

// The device counts a report predicts for: those of 2, 4 and 8 that divide E.
std::vector<int64_t> report_device_counts(int64_t experts);

}  // namespace collapse
