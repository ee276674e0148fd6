#include "tools/lib/bench/dense_baseline.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <vector>

#include "engine/engine.h"
#include "models/transformer.h"
#include "tools/lib/assemble/assemble.h"
#include "tools/lib/bench/bench.h"
#include "tools/lib/train/trainer.h"

namespace bench {

namespace rc = runconfig;

int dense_equivalent_d_ff(const rc::MoeConfig& moe) {
  const int shared_width = moe.d_shared > 0 ? moe.d_shared : moe.d_expert;
  return moe.top_k * moe.d_expert + moe.num_shared_experts * shared_width;
}

rc::RunConfig dense_equivalent(const rc::RunConfig& config) {
  const moe::ModelConfig mc = assemble::model_config(config);
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < mc.n_layers; ++l) moe_layers += moe::is_moe_layer(mc, l) ? 1 : 0;
  if (moe_layers == 0)
    throw rc::ConfigError("--dense-baseline: the config has no MoE layer (moe.enabled false or moe.layers none)");
  const int d_ff = dense_equivalent_d_ff(config.moe);
  if (moe_layers < mc.n_layers && config.model.d_ff != d_ff)
    throw rc::ConfigError("--dense-baseline: " + std::to_string(mc.n_layers - moe_layers) +
                          " layers stay dense with model.d_ff " + std::to_string(config.model.d_ff) +
                          ", the MoE layers' active width is " + std::to_string(d_ff) +
                          "; one d_ff serves every dense layer, so no dense model has this one's FLOPs "
                          "(set model.d_ff=" +
                          std::to_string(d_ff) + " or moe.layers=all)");
  rc::RunConfig dense = config;
  dense.moe.enabled = false;
  dense.model.d_ff = d_ff;
  // Through the reader, so the twin is refused for the same reasons any config would be. A
  // benchmark writes no files (moe-bench clears logging.out_dir), which the reader would refuse.
  rc::RunConfig checked = dense;
  if (checked.logging.out_dir.empty()) checked.logging.out_dir = "unused";
  rc::parse_run_config(rc::to_yaml(checked), "the dense equivalent (--dense-baseline)");
  return dense;
}

DenseBaseline time_dense_baseline(train::Trainer& moe_trainer, const rc::RunConfig& config, int warmup, int steps) {
  using Clock = std::chrono::steady_clock;
  DenseBaseline b;
  // The same training.steps as the MoE run, so both follow the same learning-rate schedule.
  const rc::RunConfig dense = dense_equivalent(config);
  b.d_ff = dense.model.d_ff;
  b.steps = steps;
  b.dense_flops_per_step = training_flops(dense);
  std::ostringstream quiet;
  train::Trainer trainer(dense, quiet);
  const bool profiling = engine::profiling();
  engine::set_profiling(false);  // the timers' own cost would fall on the MoE step's many stages
  std::vector<double> moe_s, dense_s;
  const engine::Device device = assemble::model_config(config).device;
  for (int s = 0; s < warmup; ++s) trainer.step();
  engine::synchronize(device);
  auto timed = [&device](train::Trainer& t) {
    const auto start = Clock::now();
    t.step();
    engine::synchronize(device);  // on a GPU: the step's work, not only its launches
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  for (int s = 0; s < steps; ++s) {
    moe_s.push_back(timed(moe_trainer));
    dense_s.push_back(timed(trainer));
  }
  engine::set_profiling(profiling);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  b.moe_step_s = median(moe_s);
  b.dense_step_s = median(dense_s);
  b.ratio = b.moe_step_s / b.dense_step_s;
  return b;
}

}  // namespace bench
