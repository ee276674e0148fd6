// The smaller libraries behind the programs, each on inputs whose answer is known by hand:
// bench::training_flops (the README's share of peak), train::RoutingObserver,
// train::MetricsLog's files, inspect::describe's grouping, and the one version number.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/lib/assemble/assemble.h"
#include "tools/lib/bench/bench.h"
#include "tools/lib/inspect/inspect.h"
#include "tools/lib/train/metrics_log.h"
#include "tools/lib/train/routing_stats.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

TEST_CASE("training_flops: 3 x tokens x the forward FLOPs per token, counted by hand", "[bench][flops]") {
  runconfig::RunConfig c;
  c.model.d_model = 16;
  c.model.n_layers = 2;
  c.model.vocab_size = 32;
  c.model.d_ff = 24;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.d_expert = 8;
  c.training.seq_len = 8;
  c.training.batch_size = 2;
  // Per token: attention 2 (8 d^2 + 2 T d) = 4608; MoE 2 (2 d E + 2*2 d k d_expert) = 2304; head 2 d V = 1024.
  std::string formula;
  CHECK(bench::training_flops(c, &formula) == Approx(3.0 * (4608 + 2304 + 1024) * 16));
  CHECK_THAT(formula, Contains("L_moe(2dE + 2*2*d(k d_expert + shared))"));
  c.training.grad_accum = 3;
  CHECK(bench::training_flops(c) == Approx(3.0 * 3 * (4608 + 2304 + 1024) * 16));
  c.training.grad_accum = 1;
  c.moe.enabled = false;  // dense: 2 layers x 2*2 d d_ff = 3072
  CHECK(bench::training_flops(c) == Approx(3.0 * (4608 + 3072 + 1024) * 16));
  c.model.activation = runconfig::Activation::swiglu;  // three matrices: 2 x 2*3 d d_ff = 4608
  CHECK(bench::training_flops(c) == Approx(3.0 * (4608 + 4608 + 1024) * 16));
}

TEST_CASE("RoutingObserver: counts, drops and domains summed over batches", "[train][routing_stats]") {
  moe::Routing r;
  r.num_tokens = 4;
  r.num_experts = 3;
  r.top_k = 1;
  r.assigned_expert = {0, 0, 1, 0};
  r.assigned_token = {0, 1, 2, 3};
  r.counts = {3, 1, 0};
  r.dropped = 1;
  r.probs = engine::Tensor::from_vector(std::vector<double>{0.8, 0.1, 0.1, 0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.9, 0.05, 0.05},
                                        {4, 3});
  train::RoutingObserver observer(3, 1, 2, true);
  observer.add(r, {0, 1}, 2);  // two sequences of two tokens: domains 0 and 1
  observer.add(r, {1, 1}, 2);
  const collapse::LayerStats s = observer.stats(5, collapse::Thresholds{});
  CHECK(s.block == 5);
  CHECK(s.counts == std::vector<int64_t>{6, 2, 0});
  CHECK(s.dead == std::vector<int>{2});
  CHECK(s.dropped_fraction == Approx(2.0 / 8.0));
  // domain x expert: batch 1 gives domain 0 {0, 0} and domain 1 {1, 0}; batch 2 gives domain 1 all four.
  CHECK(s.domain_counts == std::vector<int64_t>{2, 0, 0, 4, 2, 0});
  CHECK(observer.top1() == std::vector<int32_t>{0, 0, 1, 0, 0, 0, 1, 0});
  CHECK(s.confidence == Approx((0.8 + 0.6 + 0.7 + 0.9) / 4).epsilon(1e-6));
}

TEST_CASE("MetricsLog: one JSON line and one CSV row per logged step, rewritten from a history", "[train][metrics_log]") {
  const fs::path dir = fs::temp_directory_path() / ("metrics_log_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  train::MetricsLog log({"switch_aux", "z_loss"}, 1, 2);
  train::StepMetrics m;
  m.step = 10;
  m.loss = 2.5;
  m.ce = 2.25;
  m.terms = {{"switch_aux", 1.5}, {"z_loss", std::nan("")}};
  m.counts = {{7, 1}};
  log.record_step(m);
  log.open(dir.string());  // renders what the history already holds
  m.step = 20;
  log.record_step(m);
  log.record_eval(20, 2.0);
  auto read = [&](const char* name) {
    std::ifstream in(dir / name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  };
  const std::string jsonl = read("metrics.jsonl"), csv = read("metrics.csv");
  CHECK(std::count(jsonl.begin(), jsonl.end(), '\n') == 3);  // two steps, one evaluation
  CHECK_THAT(jsonl, Contains("\"step\": 10") && Contains("\"switch_aux\": 1.5") && Contains("\"z_loss\": null"));
  CHECK_THAT(csv.substr(0, csv.find('\n')), Contains("switch_aux") && Contains("moe0_expert1"));
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 3);  // header and two steps
  CHECK(log.history().size() == 2);
  CHECK(log.history().expert_counts == std::vector<int64_t>{7, 1, 7, 1});
  train::MetricsLog other({"switch_aux", "z_loss"}, 2, 2);
  CHECK_THROWS(other.set_history(log.history()));  // two layers cannot take a one-layer history
  fs::remove_all(dir);
}

TEST_CASE("inspect: tensors grouped by name with layer and expert numbers as *", "[inspect]") {
  ckpt::Checkpoint c;
  c.engine_version = ckpt::kEngineVersion;
  for (int l = 0; l < 2; ++l)
    for (int e = 0; e < 3; ++e)
      c.params.push_back({"layers." + std::to_string(l) + ".moe.experts." + std::to_string(e) + ".fc1.weight", {4, 2},
                          std::vector<float>(8, 0.5f)});
  c.params.push_back({"tok_embedding.weight", {5, 2}, std::vector<float>(10, 0.f)});
  std::ostringstream grouped, every;
  inspect::describe(c, "x.h5", grouped, {false, inspect::TensorListing::grouped});
  CHECK_THAT(grouped.str(), Contains("layers.*.moe.experts.*.fc1.weight [4, 2]         x 6               48"));
  CHECK_THAT(grouped.str(), Contains("tok_embedding.weight"));
  CHECK(grouped.str().find("layers.1.moe") == std::string::npos);
  inspect::describe(c, "x.h5", every, {false, inspect::TensorListing::every});
  CHECK_THAT(every.str(), Contains("layers.1.moe.experts.2.fc1.weight"));
}

TEST_CASE("one version number: checkpoints carry the project version of CMakeLists.txt", "[checkpoint][version]") {
  std::ifstream in(fs::path(ENGINE_SOURCE_DIR) / "CMakeLists.txt");
  std::stringstream s;
  s << in.rdbuf();
  CHECK_THAT(s.str(), Contains(std::string("project(moe_engine VERSION ") + ckpt::kEngineVersion + " "));
}

TEST_CASE("saved_config: a checkpoint's invalid config is a checkpoint error naming the file and key",
          "[assemble][checkpoint][errors]") {
  ckpt::Checkpoint c;
  c.config_yaml = "model:\n  d_model: -4\n";
  CHECK_THROWS_MATCHES(assemble::saved_config(c, "dense.h5", "dense checkpoint"), ckpt::CheckpointError,
                       Catch::Message("the dense checkpoint's config is invalid: dense.h5:/config:2:12: model.d_model: "
                                      "must be > 0, got -4 (allowed: > 0)"));
  c.config_yaml = "model:\n  d_model: 64\n";
  CHECK(assemble::saved_config(c, "run.h5", "checkpoint").model.d_model == 64);
}

TEST_CASE("assemble: precision bf16 runs where the CPU has bf16 products and is refused with the reason elsewhere",
          "[assemble][bf16]") {
  const runconfig::RunConfig config = runconfig::parse_run_config("precision: bf16\n", "inline");
  if (engine::cpu::bf16_matmul_supported()) {
    CHECK(assemble::model_config(config).precision == engine::MatmulPrecision::bf16);
  } else {
    CHECK_THROWS_WITH(assemble::model_config(config), Catch::Contains("cannot run on this machine"));
  }
}
