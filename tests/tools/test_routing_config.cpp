// Run configuration: the routing options of models/routers/options.def (moe.input_jitter ...
// moe.force_balance) parsed, described, and refused with their location where a router does not
// take them or a value is out of its range.
#include <catch2/catch.hpp>
#include <string>

#include "tools/lib/config/run_config.h"

using namespace runconfig;
using Catch::Contains;

namespace {
RunConfig parse(const std::string& yaml) { return parse_run_config(yaml, "test.yaml"); }
}  // namespace

TEST_CASE("config: routing options parse and each is refused where it does not apply", "[config][routing]") {
  const RunConfig c = parse(
      "moe:\n  router: topk_softmax\n  softmax_order: after_topk\n  num_experts: 8\n  expert_groups: 4\n"
      "  topk_groups: 1\n");
  CHECK(c.moe.softmax_order == SoftmaxOrder::after_topk);
  CHECK(routing_options(c.moe).expert_groups == 4);
  CHECK(routing_options(c.moe).softmax_order == SoftmaxOrder::after_topk);
  CHECK(parse("moe:\n  router: sinkhorn\n  sinkhorn_iterations: 5\n").moe.sinkhorn_iterations == 5);
  // The one-line description moe-diagnose prints names the options that differ from the defaults.
  CHECK(describe_routing(RunConfig{}.moe) == "topk_softmax");
  CHECK(describe_routing(c.moe) == "topk_softmax (softmax_order after_topk, expert_groups 4, topk_groups 1)");
  CHECK(describe_routing(parse("moe:\n  router: sinkhorn\n  input_jitter: 0.05\n  force_balance: true\n").moe) ==
        "sinkhorn (input_jitter 0.05, force_balance true)");
  // An option the router does not take names the routers that do, at the option's line.
  CHECK_THROWS_WITH(parse("moe:\n  router: sigmoid_topk\n  softmax_order: after_topk\n"),
                    Contains("test.yaml:3:18: moe.softmax_order: router sigmoid_topk does not take softmax_order "
                             "(routers that do: topk_softmax)"));
  CHECK_THROWS_WITH(parse("moe:\n  router: expert_choice\n  capacity_factor: 1\n  expert_groups: 2\n"),
                    Contains("moe.expert_groups: router expert_choice does not take expert_groups"));
  CHECK_THROWS_WITH(parse("moe:\n  router: hash\n  top_k: 1\n  input_jitter: 0.1\n"),
                    Contains("moe.input_jitter: router hash does not take input_jitter"));
  CHECK_THROWS_WITH(parse("moe:\n  sinkhorn_iterations: 3\n"),
                    Contains("moe.sinkhorn_iterations: router topk_softmax does not take") &&
                        Contains("(routers that do: sinkhorn)"));
  // Ranges.
  CHECK_THROWS_WITH(parse("moe:\n  input_jitter: 1.0\n"),
                    Contains("test.yaml:2:17: moe.input_jitter: must be in [0, 1), got 1") &&
                        Contains("(allowed: [0, 1))"));
  CHECK_THROWS_WITH(parse("moe:\n  routed_scaling: 0\n"), Contains("moe.routed_scaling: must be > 0, got 0"));
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 8\n  expert_groups: 3\n"),
                    Contains("test.yaml:3:18: moe.expert_groups: must divide moe.num_experts (8), got 3"));
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 8\n  expert_groups: 4\n  topk_groups: 5\n"),
                    Contains("moe.topk_groups: must be in [0, expert_groups = 4], got 5"));
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 8\n  top_k: 3\n  expert_groups: 4\n  topk_groups: 1\n"),
                    Contains("moe.topk_groups: leaves 2 experts to choose from (1 groups of 2), fewer than top_k 3"));
  CHECK_THROWS_WITH(parse("moe:\n  router: sinkhorn\n  sinkhorn_iterations: 0\n"),
                    Contains("moe.sinkhorn_iterations: must be >= 1, got 0"));
  CHECK_THROWS_WITH(parse("moe:\n  router: expert_choice\n  capacity_factor: 1\n  eval_capacity_factor: 0\n"),
                    Contains("moe.eval_capacity_factor: router expert_choice needs a capacity in evaluation too"));
  CHECK_THROWS_WITH(parse("moe:\n  softmax_order: first\n"),
                    Contains("moe.softmax_order: unknown value 'first'") && Contains("before_topk, after_topk"));
  CHECK_NOTHROW(parse("moe:\n  router: expert_choice\n  capacity_factor: 1\n  eval_capacity_factor: 2\n"));
}
