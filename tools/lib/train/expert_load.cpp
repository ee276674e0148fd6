#include "tools/lib/train/expert_load.h"

#include <stdexcept>

namespace train {

void gather_expert_load(std::vector<collapse::LayerStats>& stats, const std::vector<moe::MoeLayer*>& layers,
                        engine::dist::Communicator& world, double step_seconds) {
  if (stats.size() != layers.size()) throw std::invalid_argument("gather_expert_load: one stats entry per layer");
  const size_t per_rank = 1 + 3 * layers.size();
  std::vector<double> mine = {step_seconds};
  for (const moe::MoeLayer* layer : layers) {
    const moe::ExpertLoad load = layer->expert_load();
    mine.insert(mine.end(), {static_cast<double>(load.slots), load.compute_seconds, load.wait_seconds});
  }
  const std::vector<double> all = world.all_gather(mine);
  const int ranks = world.size();
  for (size_t l = 0; l < layers.size(); ++l) {
    collapse::LayerStats& s = stats[l];
    s.rank_slots.assign(ranks, 0);
    s.rank_compute_seconds.assign(ranks, 0);
    s.rank_wait_seconds.assign(ranks, 0);
    double share = 0;
    for (int r = 0; r < ranks; ++r) {
      const double* at = all.data() + r * per_rank;
      s.rank_slots[r] = at[1 + 3 * l];
      s.rank_compute_seconds[r] = at[2 + 3 * l];
      s.rank_wait_seconds[r] = at[3 + 3 * l];
      share += at[0] > 0 ? s.rank_wait_seconds[r] / at[0] : 0.0;
    }
    s.wait_share = ranks > 1 ? share / ranks : collapse::kNaN;  // one process waits for nobody
  }
}

}  // namespace train
