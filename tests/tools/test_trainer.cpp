// The training loop library: metrics files, gradient accumulation, scheduled balancing, and the
// shipped collapse configs doing what their comments say.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/lib/collapse/metrics.h"
#include "tools/lib/train/trainer.h"

namespace fs = std::filesystem;

namespace {
// Each call gets its own run folder: ctest runs test cases side by side, in separate processes.
runconfig::RunConfig shipped(const std::string& name, std::vector<std::string> overrides) {
  static int calls = 0;
  const fs::path out = fs::temp_directory_path() /
                       ("moe_trainer_test_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(++calls));
  fs::remove_all(out);
  overrides.push_back("logging.out_dir=" + out.string());
  return runconfig::load_run_config(std::string(ENGINE_SOURCE_DIR) + "/configs/" + name + ".yaml", overrides);
}

// Mean load CV over the MoE layers at the last of `steps` steps.
double final_cv(const std::string& name, int steps) {
  std::ostringstream progress;
  train::Trainer trainer(shipped(name, {"training.steps=" + std::to_string(steps)}), progress);
  train::StepMetrics m;
  for (int s = 0; s < steps; ++s) m = trainer.step();
  double cv = 0;
  for (const auto& layer : m.counts) {
    collapse::LayerStats stats;
    collapse::compute_load(stats, layer, 2, 0, collapse::Thresholds{});
    cv += stats.cv / m.counts.size();
  }
  return cv;
}
}  // namespace

TEST_CASE("moe-train's loop writes progress, metrics.jsonl and metrics.csv with expert counts", "[trainer]") {
  std::ostringstream progress;
  runconfig::RunConfig cfg = shipped("collapse", {"training.steps=4", "logging.every=2", "training.grad_accum=2"});
  train::Trainer trainer(cfg, progress);
  trainer.run();
  CHECK(trainer.steps_done() == 4);
  CHECK_THAT(progress.str(), Catch::Contains("step 4/4 | loss"));
  CHECK_THAT(progress.str(), Catch::Contains("eval at step 4"));
  std::ifstream csv(fs::path(cfg.logging.out_dir) / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  CHECK_THAT(header, Catch::Contains("moe1_expert7"));
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  CHECK(rows == 3);  // steps 1, 2 and 4
  std::ifstream jsonl(fs::path(cfg.logging.out_dir) / "metrics.jsonl");
  std::string first;
  std::getline(jsonl, first);
  CHECK_THAT(first, Catch::Contains("\"expert_counts\": [["));
  // The collapse metrics of every MoE layer and their spread across layers, at each log step.
  CHECK_THAT(first, Catch::Contains("\"layers\": [{\"confidence\": ") && Catch::Contains("\"max_vio\": ") &&
                        Catch::Contains("\"across_layers\": {\"confidence\": {\"min\": "));
  CHECK(fs::exists(fs::path(cfg.logging.out_dir) / "config.yaml"));
}

TEST_CASE("counts cover every slot of the accumulated micro-batches", "[trainer]") {
  std::ostringstream progress;
  train::Trainer trainer(shipped("collapse", {"training.grad_accum=3"}), progress);
  const train::StepMetrics m = trainer.step();
  int64_t total = 0;
  for (int64_t c : m.counts[0]) total += c;
  CHECK(total == 3 * 8 * 32 * 2);  // micro-batches x batch x seq_len x top_k
  CHECK(std::isfinite(m.grad_norm));
}

TEST_CASE("collapse.yaml collapses, its balanced variants do not", "[trainer][collapse]") {
  const double plain = final_cv("collapse", 120);
  const double aux = final_cv("collapse_switch_aux", 120);
  const double bias = final_cv("collapse_bias", 120);
  const double sinkhorn = final_cv("collapse_sinkhorn", 120);
  INFO("load CV at step 120: none " << plain << ", switch_aux " << aux << ", bias " << bias << ", sinkhorn "
                                    << sinkhorn);
  CHECK(plain > 1.4);
  CHECK(aux < 0.8);
  CHECK(bias < 1.0);
  CHECK(sinkhorn < 0.5);  // the training routing, balanced by construction
}

TEST_CASE("precision: bf16 trains to within 2% of f32's loss", "[trainer][bf16]") {
  std::string why;
  if (!engine::cpu::bf16_matmul_supported(&why)) {
    WARN("skipped: " << why);
    return;
  }
  // Mean loss over the last 10 of 60 steps: the two runs share data and initial weights.
  auto late_loss = [](const std::string& precision) {
    std::ostringstream progress;
    train::Trainer trainer(shipped("collapse", {"training.steps=60", "precision=" + precision}), progress);
    double sum = 0;
    for (int s = 0; s < 60; ++s) {
      const train::StepMetrics m = trainer.step();
      if (s >= 50) sum += m.loss / 10;
    }
    return sum;
  };
  const double f32 = late_loss("f32"), bf16 = late_loss("bf16");
  INFO("f32 " << f32 << " bf16 " << bf16);
  CHECK(std::fabs(bf16 - f32) < 0.02 * f32);
  CHECK(bf16 != f32);  // the products really ran in bf16
}

TEST_CASE("global_batch balance scope: grad_accum 2 equals one micro-batch of the whole batch", "[trainer][balance]") {
  // f_i over the step's counts, P_i per micro-batch: the mean of the micro-batches' terms is the
  // whole batch's term, so two micro-batches of 2 train as one batch of 4; the micro-batch scope
  // measures each half on its own and differs.
  const std::vector<std::string> common = {"model.n_layers=2", "training.seq_len=32", "schedule.warmup_steps=1",
                                           "training.eval_every=0", "moe.losses.switch_aux=0.1",
                                           "moe.balance_scope=global_batch"};
  auto run = [&](int batch, int accum, const std::string& scope) {
    std::vector<std::string> o = common;
    o.push_back("training.batch_size=" + std::to_string(batch));
    o.push_back("training.grad_accum=" + std::to_string(accum));
    o.push_back("moe.balance_scope=" + scope);
    std::ostringstream progress;
    train::Trainer trainer(shipped("tiny", o), progress);
    std::vector<double> out;
    for (int s = 0; s < 3; ++s) {
      const train::StepMetrics m = trainer.step();
      out.insert(out.end(), {m.loss, m.terms.at("switch_aux"), m.grad_norm});
    }
    return out;
  };
  const std::vector<double> whole = run(4, 1, "global_batch"), halves = run(2, 2, "global_batch");
  const std::vector<double> separate = run(2, 2, "micro_batch");
  REQUIRE(whole.size() == halves.size());
  for (size_t i = 0; i < whole.size(); ++i) CHECK(halves[i] == Approx(whole[i]).epsilon(1e-5));
  CHECK(separate[1] != Approx(whole[1]).epsilon(1e-5));  // step 1's switch_aux: per half, not whole
}

TEST_CASE("one process measures its expert load and the device imbalance of moe.device_groups", "[trainer][devices]") {
  std::ostringstream progress;
  train::Trainer trainer(shipped("tiny", {"training.steps=1", "schedule.warmup_steps=1", "moe.device_groups=4",
                                          "moe.capacity_factor=1.0"}),
                         progress);
  const train::StepMetrics m = trainer.step();  // step 1 is a log step
  REQUIRE(m.layers.size() == m.counts.size());
  for (const collapse::LayerStats& s : m.layers) {
    CHECK(s.devices == 4);
    int64_t kept = 0, grouped = 0;
    for (int64_t v : s.kept) kept += v;
    for (int64_t v : s.device_slots) grouped += v;
    CHECK(grouped == kept);
    REQUIRE(s.rank_slots.size() == 1);
    CHECK(s.rank_slots[0] == static_cast<double>(kept));  // the one process computes every kept slot
    CHECK(s.rank_compute_seconds[0] > 0);
    CHECK(s.rank_wait_seconds[0] == 0);
    CHECK(std::isnan(s.wait_share));  // one process: nothing to wait for
    const int64_t most = *std::max_element(s.device_slots.begin(), s.device_slots.end());
    CHECK(s.device_imbalance == Approx(4.0 * static_cast<double>(most) / static_cast<double>(kept)));
  }
}

TEST_CASE("scheduled balancing: each step trains with its values and the metrics files log them",
          "[trainer][schedule]") {
  const std::vector<std::string> scheduled = {"training.steps=4", "logging.every=1", "moe.losses.z_loss=0.001",
                                              "moe.losses.switch_aux={schedule: linear, from: 0.4, to: 0.1, steps: 3}",
                                              "moe.bias_update_rate={schedule: warmup, value: 0.01, steps: 4}"};
  const std::vector<double> coef = {0.3, 0.2, 0.1, 0.1}, rate = {0.0025, 0.005, 0.0075, 0.01};
  std::ostringstream progress;
  train::Trainer stepped(shipped("collapse", scheduled), progress);
  // The model built from the config starts with step 1's values.
  CHECK(stepped.model().config().loss_coefs.at("switch_aux") == Approx(0.3));
  CHECK(stepped.model().moe_layers().front()->config().bias_update_rate == 0.0025);
  std::vector<float> before = stepped.model().moe_layers().front()->bias();
  for (size_t s = 0; s < coef.size(); ++s) {
    const train::StepMetrics m = stepped.step();
    CHECK(m.coefficients.at("switch_aux") == Approx(coef[s]).epsilon(1e-12));
    CHECK(m.coefficients.at("z_loss") == 0.001);
    CHECK(m.coefficients.at("load") == 0.0);
    CHECK(m.bias_update_rate == Approx(rate[s]).epsilon(1e-12));
    // The loss is CE plus each coefficient in force times its term (one micro-batch).
    CHECK(m.loss == Approx(m.ce + coef[s] * m.terms.at("switch_aux") + 0.001 * m.terms.at("z_loss")).epsilon(1e-6));
    // Each bias moved by the step's rate, or stayed (an expert at the mean).
    const std::vector<float> after = stepped.model().moe_layers().front()->bias();
    for (size_t e = 0; e < after.size(); ++e) {
      const double moved = std::fabs(static_cast<double>(after[e]) - static_cast<double>(before[e]));
      CHECK((moved == 0 || moved == Approx(rate[s]).epsilon(1e-4)));
    }
    before = after;
  }

  const runconfig::RunConfig cfg = shipped("collapse", scheduled);
  train::Trainer trainer(cfg, progress);
  trainer.run();
  CHECK_THAT(progress.str(), Catch::Contains("| scheduled switch_aux 3.00e-01 bias_update_rate 2.50e-03 | lr") &&
                                 Catch::Contains("| scheduled switch_aux 1.00e-01 bias_update_rate 1.00e-02 | lr"));
  std::ifstream csv(fs::path(cfg.logging.out_dir) / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  CHECK_THAT(header, Catch::Contains(",coef_switch_aux,coef_importance,coef_load,coef_z_loss,coef_sequence_aux,"
                                     "coef_device_aux,bias_update_rate,moe0_expert0"));
  // Fields by column name: the coefficient and the rate of each logged step.
  auto fields = [](const std::string& row) {
    std::vector<std::string> out;
    std::stringstream s(row);
    for (std::string f; std::getline(s, f, ',');) out.push_back(f);
    return out;
  };
  const std::vector<std::string> names = fields(header);
  const auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin());
  };
  for (size_t s = 0; std::getline(csv, line); ++s) {
    REQUIRE(s < coef.size());
    const std::vector<std::string> row = fields(line);
    CHECK(std::stod(row.at(column("coef_switch_aux"))) == Approx(coef[s]));
    CHECK(std::stod(row.at(column("coef_z_loss"))) == 0.001);
    CHECK(std::stod(row.at(column("bias_update_rate"))) == Approx(rate[s]));
  }
  std::ifstream jsonl(fs::path(cfg.logging.out_dir) / "metrics.jsonl");
  std::string first;
  std::getline(jsonl, first);
  CHECK_THAT(first, Catch::Contains("\"coefficients\": {\"switch_aux\": 0.3, \"importance\": 0, \"load\": 0, "
                                    "\"z_loss\": 0.001, \"sequence_aux\": 0, \"device_aux\": 0}, "
                                    "\"bias_update_rate\": 0.0025, \"expert_counts\""));
}
