// moe-bench --dense-baseline's dense twin (tools/lib/bench/dense_baseline.h): only moe.enabled
// and model.d_ff change, the width carries the routed and shared experts' active FLOPs, configs
// without a dense twin are refused, and a short timed run reports both steps.
#include <catch2/catch.hpp>
#include <cmath>

#include "tools/lib/bench/bench.h"
#include "tools/lib/bench/dense_baseline.h"

using Catch::Matchers::Contains;

namespace {
runconfig::RunConfig bench_config(const std::vector<std::string>& overrides = {}) {
  return runconfig::load_run_config(std::string(ENGINE_SOURCE_DIR) + "/configs/bench/tiny.yaml", overrides);
}

// What the MoE step computes beyond its dense twin in the FLOP formula: the routers' d x E
// products (forward and backward, over every token and MoE layer).
double router_flops(const runconfig::RunConfig& c) {
  const double tokens = static_cast<double>(c.training.batch_size) * c.training.seq_len * c.training.grad_accum;
  return 3.0 * tokens * c.model.n_layers * 2.0 * c.model.d_model * c.moe.num_experts;
}
}  // namespace

TEST_CASE("dense baseline: the twin of a bench config differs in moe.enabled and model.d_ff only", "[bench]") {
  // tiny's own d_ff is already 2 x 256; another value shows that the twin replaces it.
  const runconfig::RunConfig moe = bench_config({"model.d_ff=100"});
  const runconfig::RunConfig dense = bench::dense_equivalent(moe);
  CHECK_FALSE(dense.moe.enabled);
  CHECK(dense.model.d_ff == moe.moe.top_k * moe.moe.d_expert);  // 2 x 256
  CHECK(dense.model.d_ff == 512);
  CHECK(runconfig::keys_differing(moe, dense) == std::vector<std::string>{"model.d_ff", "moe.enabled"});
  // Same active FLOPs: the formula's counts differ by the routers alone.
  CHECK(bench::training_flops(moe) - bench::training_flops(dense) == Approx(router_flops(moe)).epsilon(1e-12));
}

TEST_CASE("dense baseline: shared experts widen the dense FFN by their width", "[bench]") {
  // d_shared 0 means d_expert: two shared experts of 256 on top of k = 2 routed ones.
  const runconfig::RunConfig own_width = bench_config({"moe.num_shared_experts=2"});
  CHECK(bench::dense_equivalent(own_width).model.d_ff == 2 * 256 + 2 * 256);
  const runconfig::RunConfig narrow = bench_config({"moe.num_shared_experts=2", "moe.d_shared=64", "moe.top_k=3"});
  CHECK(bench::dense_equivalent_d_ff(narrow.moe) == 3 * 256 + 2 * 64);
  const runconfig::RunConfig dense = bench::dense_equivalent(narrow);
  CHECK(dense.model.d_ff == 896);
  CHECK(bench::training_flops(narrow) - bench::training_flops(dense) == Approx(router_flops(narrow)).epsilon(1e-12));
  // With swiglu both sides have the third matrix.
  const runconfig::RunConfig swiglu = bench_config({"model.activation=swiglu", "moe.num_shared_experts=1"});
  CHECK(bench::training_flops(swiglu) - bench::training_flops(bench::dense_equivalent(swiglu)) ==
        Approx(router_flops(swiglu)).epsilon(1e-12));
}

TEST_CASE("dense baseline: configs without a dense twin are refused with the way out", "[bench]") {
  // Layers that stay dense at another width: one d_ff cannot serve both.
  const runconfig::RunConfig mixed = bench_config({"moe.layers=every_n", "moe.every_n=2", "model.d_ff=100"});
  CHECK_THROWS_WITH(bench::dense_equivalent(mixed), Contains("2 layers stay dense with model.d_ff 100") &&
                                                        Contains("set model.d_ff=512 or moe.layers=all"));
  // At the equivalent width they are fine: every layer of the twin is then that width.
  const runconfig::RunConfig same_width = bench_config({"moe.layers=every_n", "moe.every_n=2", "model.d_ff=512"});
  CHECK(bench::dense_equivalent(same_width).model.d_ff == 512);
  const runconfig::RunConfig no_moe = bench_config({"moe.enabled=false"});
  CHECK_THROWS_AS(bench::dense_equivalent(no_moe), runconfig::ConfigError);
  CHECK_THROWS_WITH(bench::dense_equivalent(no_moe), Contains("no MoE layer"));
}

TEST_CASE("dense baseline: a short run times both steps in alternation", "[bench]") {
  runconfig::RunConfig c =
      bench_config({"model.n_layers=1", "training.batch_size=2", "training.seq_len=32", "model.max_seq_len=32"});
  bench::Options o;
  o.warmup = 1;
  o.steps = 3;
  o.profile = false;
  o.dense_baseline = true;
  const bench::Result r = bench::run(c, "tiny", o);
  REQUIRE(r.has_dense_baseline);
  CHECK(r.dense.d_ff == 512);
  CHECK(r.dense.steps == 3);
  CHECK(r.dense.moe_step_s > 0);
  CHECK(r.dense.dense_step_s > 0);
  CHECK(r.dense.ratio == Approx(r.dense.moe_step_s / r.dense.dense_step_s));
  CHECK(r.step_seconds.size() == 3);  // the main timing is unchanged by the baseline
}
