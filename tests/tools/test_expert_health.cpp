// The symptoms of imbalance per expert: gradient norms, update-to-weight ratios and the idle
// share, against hand computation and against the parameters a training step actually changed.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/lib/train/expert_health.h"
#include "tools/lib/train/parallel.h"
#include "tools/lib/train/trainer.h"

namespace fs = std::filesystem;
using Catch::Contains;
using engine::Tensor;

namespace {

runconfig::RunConfig collapse_run(const std::string& name, std::vector<std::string> overrides) {
  const fs::path out = fs::temp_directory_path() / ("moe_health_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(out);
  overrides.push_back("logging.out_dir=" + out.string());
  return runconfig::load_run_config(std::string(ENGINE_SOURCE_DIR) + "/configs/collapse.yaml", overrides);
}

moe::NamedParam param(const std::string& name, std::vector<float> values, std::vector<float> grad = {}) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  t.set_requires_grad(true);
  if (!grad.empty()) t.set_grad(Tensor::from_vector(grad, {static_cast<int64_t>(grad.size())}));
  return {name, t, true};
}

// Per expert of each MoE layer (collapse.yaml: 8 experts): the sum of squares of its tensors' values.
std::vector<std::vector<double>> expert_sums(train::Trainer& t,
                                             const std::vector<std::vector<double>>* minus = nullptr) {
  std::vector<std::vector<double>> out(t.model().moe_layers().size(), std::vector<double>(8, 0.0));
  size_t i = 0;
  for (const moe::NamedParam& p : t.model().params().all()) {
    const int64_t e = train::expert_index(p.name);
    if (e < 0) continue;
    const size_t block = std::stoul(p.name.substr(7));  // "layers.<block>.": every block is MoE here
    const std::vector<double> v = p.tensor.to_vector();
    for (size_t k = 0; k < v.size(); ++k) {
      const double d = minus ? v[k] - (*minus)[i][k] : v[k];
      out[block][e] += d * d;
    }
    ++i;
  }
  return out;
}

std::vector<std::vector<double>> expert_values(train::Trainer& t) {
  std::vector<std::vector<double>> out;
  for (const moe::NamedParam& p : t.model().params().all())
    if (train::expert_index(p.name) >= 0) out.push_back(p.tensor.to_vector());
  return out;
}

}  // namespace

TEST_CASE("expert health: gradient norm, update ratio and idle share by hand", "[health]") {
  // Expert 0 of the one MoE layer (block 1) has two tensors with gradients; expert 1 got no token.
  std::vector<moe::NamedParam> params = {
      param("layers.0.attn.qkv.weight", {5, 5}, {9, 9}), param("layers.1.moe.experts.0.fc1.weight", {3, 4}, {1, 2}),
      param("layers.1.moe.experts.0.fc1.bias", {12}, {2}), param("layers.1.moe.experts.1.fc1.weight", {1, 1})};
  train::ExpertHealth health(params, {1}, 2, 3);
  const train::ProcessGroups one = train::ProcessGroups::single();
  health.measure_gradients(*one.expert_group);
  // The "optimizer" moves expert 0 by (0.3, 0.4, 0) and leaves expert 1 alone.
  params[1].tensor.data<float>()[0] += 0.3f;
  params[1].tensor.data<float>()[1] += 0.4f;
  health.measure_update(*one.expert_group);
  health.record_activity(1, {{5, 0}});
  std::vector<collapse::LayerStats> stats(1);
  health.fill(stats, 1);
  REQUIRE(stats[0].expert_grad_norm.size() == 2);
  CHECK(stats[0].expert_grad_norm[0] == Approx(3.0));  // sqrt(1 + 4 + 4); the attention gradient is not an expert's
  CHECK(stats[0].expert_grad_norm[1] == 0.0);          // no gradient at all: norm 0
  CHECK(stats[0].expert_update_ratio[0] == Approx(0.5 / 13.0).epsilon(1e-5));  // ||(0.3, 0.4, 0)|| / ||(3, 4, 12)||
  CHECK(stats[0].expert_update_ratio[1] == 0.0);
  CHECK(stats[0].idle_share == 0.5);  // expert 1: no slot in the window so far
  // Window 3: at step 4 the window is steps 2..4, and expert 0's last slot was at step 1.
  health.record_activity(2, {{0, 0}});
  health.fill(stats, 3);
  CHECK(stats[0].idle_share == 0.5);
  health.fill(stats, 4);
  CHECK(stats[0].idle_share == 1.0);
  // The state a checkpoint carries; an older checkpoint without it counts every expert active.
  CHECK(health.last_active() == std::vector<int64_t>{1, 0});
  health.set_last_active({}, 4);
  health.fill(stats, 4);
  CHECK(stats[0].idle_share == 0.0);
  CHECK_THROWS_WITH(health.set_last_active({1, 2, 3}, 4), Contains("3 values") && Contains("2 experts"));
}

TEST_CASE("expert health: training measures each expert at log steps and only there", "[health][trainer]") {
  // collapse.yaml starves most experts within ~50 steps: some get no slot in a step.
  std::ostringstream quiet;
  train::Trainer t(collapse_run("live", {"diagnostics.idle_window=1", "logging.every=10", "training.steps=60"}), quiet);
  for (int s = 0; s < 59; ++s) {
    const train::StepMetrics m = t.step();
    if (m.step % 10 != 0 && m.step != 1) CHECK(m.layers.empty());  // no extra work off log steps
  }
  const std::vector<std::vector<double>> before = expert_values(t);
  const std::vector<std::vector<double>> weight_sq = expert_sums(t);
  const train::StepMetrics m = t.step();  // step 60: a log step
  const std::vector<std::vector<double>> change_sq = expert_sums(t, &before);
  REQUIRE(m.layers.size() == 2);
  int idle_seen = 0;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    const collapse::LayerStats& s = m.layers[l];
    REQUIRE(s.expert_grad_norm.size() == 8);
    REQUIRE(s.expert_update_ratio.size() == 8);
    int idle = 0;
    for (size_t e = 0; e < 8; ++e) {
      INFO("layer " << l << " expert " << e << ": kept " << m.kept[l][e]);
      // The ratio is the parameter change the step made, measured here independently.
      CHECK(s.expert_update_ratio[e] == Approx(std::sqrt(change_sq[l][e] / weight_sq[l][e])).epsilon(1e-4));
      if (m.kept[l][e] == 0) {
        ++idle;
        CHECK(s.expert_grad_norm[e] == 0.0);     // no token: no gradient
        CHECK(s.expert_update_ratio[e] == 0.0);  // and AdamW leaves it alone
      } else {
        CHECK(s.expert_grad_norm[e] > 0.0);
        CHECK(s.expert_update_ratio[e] > 0.0);
      }
    }
    CHECK(s.idle_share == Approx(idle / 8.0));  // window 1: this step's idle experts
    idle_seen += idle;
  }
  CHECK(idle_seen > 0);  // the collapse run did starve experts: the zero case was exercised
  // The expert gradients are part of the global norm (before clipping).
  double expert_sq = 0;
  for (const collapse::LayerStats& s : m.layers)
    for (double g : s.expert_grad_norm) expert_sq += g * g;
  CHECK(std::sqrt(expert_sq) <= m.grad_norm);
}

TEST_CASE("expert health: metrics.csv and metrics.jsonl carry the new columns", "[health][trainer]") {
  std::ostringstream quiet;
  runconfig::RunConfig cfg = collapse_run("files", {"training.steps=4", "logging.every=2"});
  train::Trainer t(cfg, quiet);
  t.run();
  std::ifstream csv(fs::path(cfg.logging.out_dir) / "metrics.csv");
  std::string header, row;
  std::getline(csv, header);
  std::getline(csv, row);
  for (const char* column :
       {",moe0_effective_experts,", ",moe1_idle_share,", ",moe0_expert0_grad_norm,", ",moe1_expert7_update_ratio"})
    CHECK_THAT(header, Contains(column));
  CHECK(std::count(header.begin(), header.end(), ',') == std::count(row.begin(), row.end(), ','));
  std::ifstream jsonl(fs::path(cfg.logging.out_dir) / "metrics.jsonl");
  std::string first;
  std::getline(jsonl, first);
  CHECK_THAT(first, Contains("\"effective_experts\": ") && Contains("\"idle_share\": ") &&
                        Contains("\"expert_grad_norm\": [") && Contains("\"expert_update_ratio\": ["));
}
