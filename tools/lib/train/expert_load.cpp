#include "tools/lib/train/expert_load.h"

#include <stdexcept>

namespace train {

std::vector<moe::ExpertLoad> expert_loads(const std::vector<moe::MoeLayer*>& layers) {
  std::vector<moe::ExpertLoad> out;
  for (const moe::MoeLayer* layer : layers) out.push_back(layer->expert_load());
  return out;
}

void gather_expert_load(std::vector<collapse::LayerStats>& stats, const std::vector<moe::ExpertLoad>& loads,
                        engine::dist::Communicator& world, double seconds) {
  if (stats.size() != loads.size()) throw std::invalid_argument("gather_expert_load: one stats entry per layer");
  const size_t per_rank = 1 + 3 * loads.size();
  std::vector<double> mine = {seconds};
  for (const moe::ExpertLoad& load : loads)
    mine.insert(mine.end(), {static_cast<double>(load.slots), load.compute_seconds, load.wait_seconds});
  const std::vector<double> all = world.all_gather(mine);
  const int ranks = world.size();
  for (size_t l = 0; l < loads.size(); ++l) {
    collapse::LayerStats& s = stats[l];
    s.rank_slots.assign(ranks, 0);
    s.rank_compute_seconds.assign(ranks, 0);
    s.rank_wait_seconds.assign(ranks, 0);
    double waited = 0, computed = 0;
    for (int r = 0; r < ranks; ++r) {
      const double* at = all.data() + r * per_rank;
      s.rank_slots[r] = at[1 + 3 * l];
      s.rank_compute_seconds[r] = at[2 + 3 * l];
      s.rank_wait_seconds[r] = at[3 + 3 * l];
      if (at[0] > 0) {
        waited += s.rank_wait_seconds[r] / at[0];
        computed += s.rank_compute_seconds[r] / at[0];
      }
    }
    s.wait_share = ranks > 1 ? waited / ranks : collapse::kNaN;  // one process waits for nobody
    s.compute_share = computed / ranks;
  }
}

}  // namespace train
