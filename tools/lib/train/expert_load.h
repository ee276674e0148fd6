// The cost of imbalance, measured in training: at a log step every rank's ExpertLoad of every MoE
// layer (models/moe_layer.h: slots received, expert compute seconds, seconds waited in the
// all-to-alls) is gathered over the ranks into each layer's collapse::LayerStats, with the share
// of the step the ranks spent waiting. Ranks are world ranks: rank r holds the experts of expert
// group member r % parallel.expert.
#pragma once
#include <vector>

#include "engine/dist/communicator.h"
#include "models/moe_layer.h"
#include "tools/lib/collapse/metrics.h"

namespace train {

// Each layer's load since its last reset.
std::vector<moe::ExpertLoad> expert_loads(const std::vector<moe::MoeLayer*>& layers);

// A collective: every rank calls it with its own layers' loads and the seconds they were measured
// over (one step, or the sums of several and their total time). stats[l] belongs to loads[l];
// rank_slots, rank_compute_seconds, rank_wait_seconds, wait_share (NaN for one rank) and
// compute_share are filled.
void gather_expert_load(std::vector<collapse::LayerStats>& stats, const std::vector<moe::ExpertLoad>& loads,
                        engine::dist::Communicator& world, double seconds);

}  // namespace train
