// The memory estimate against the model it describes: the parameter count exactly, for every
// option that changes it; the whole estimate against the allocator's measured peak of a real
// training step; and the refusal of configs that cannot fit, naming the keys.
#include <catch2/catch.hpp>
#include <sstream>

#include "engine/engine.h"
#include "tools/lib/assemble/assemble.h"
#include "tools/lib/assemble/memory_estimate.h"
#include "tools/lib/train/trainer.h"

using Catch::Matchers::Contains;

namespace {
runconfig::RunConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  runconfig::RunConfig c = runconfig::parse_run_config(yaml, "memory.yaml", overrides);
  c.logging.out_dir = "";  // no files
  return c;
}
const char* kSmall =
    "model: {d_model: 32, n_layers: 3, n_heads: 2, max_seq_len: 32, d_ff: 48, vocab_size: 64}\n"
    "moe: {num_experts: 4, top_k: 2, d_expert: 24}\n"
    "training: {batch_size: 4, seq_len: 32}\n";
}  // namespace

TEST_CASE("memory estimate: the parameter count is the model's, whatever the options", "[assemble][memory]") {
  const std::vector<std::vector<std::string>> variants = {
      {},
      {"model.activation=swiglu", "model.norm=rmsnorm", "model.position=rope"},
      {"model.tie_embeddings=false", "moe.num_shared_experts=2", "moe.d_shared=8"},
      {"moe.layers=every_n", "moe.every_n=2", "moe.first_dense=1"},
      {"moe.router=noisy_topk"},
      {"moe.router=hash", "moe.top_k=1"},
      {"moe.enabled=false"},
  };
  for (const auto& overrides : variants) {
    std::string what;
    for (const auto& o : overrides) what += o + " ";
    INFO("overrides: " << what);
    const runconfig::RunConfig c = parse(kSmall, overrides);
    moe::TransformerLM model(assemble::model_config(c));
    CHECK(assemble::estimate_memory(c).parameters == model.params().count_elements());
  }
}

TEST_CASE("memory estimate: with expert parallelism a rank holds its share of the routed experts",
          "[assemble][memory]") {
  const runconfig::RunConfig one = parse(kSmall);
  moe::TransformerLM model(assemble::model_config(one));
  int64_t routed = 0;
  for (const moe::NamedParam& p : model.params().all())
    if (train::is_expert_tensor(p.name)) routed += p.tensor.numel();
  REQUIRE(routed > 0);
  for (int ep : {2, 4}) {
    const runconfig::RunConfig spread = parse(kSmall, {"parallel.expert=" + std::to_string(ep)});
    INFO("parallel.expert " << ep);
    CHECK(assemble::estimate_memory(spread).parameters == model.params().count_elements() - routed + routed / ep);
  }
}

TEST_CASE("memory estimate: within a factor of two of the measured peak of a training step", "[assemble][memory]") {
  for (const std::vector<std::string>& overrides :
       {std::vector<std::string>{}, std::vector<std::string>{"training.batch_size=16", "model.activation=swiglu"},
        std::vector<std::string>{"moe.num_experts=16", "moe.top_k=4", "model.vocab_size=512"}}) {
    const runconfig::RunConfig c = parse(kSmall, overrides);
    engine::allocator_for(engine::Device::cpu()).reset_peak();
    const double before = static_cast<double>(engine::memory_stats(engine::Device::cpu()).bytes_in_use);
    std::ostringstream quiet;
    {
      train::Trainer trainer(c, quiet);
      trainer.step();
      trainer.step();  // AdamW's moments exist from the first step on
    }
    const double peak = static_cast<double>(engine::memory_stats(engine::Device::cpu()).peak_bytes) - before;
    const double estimate = assemble::estimate_memory(c).total_bytes();
    INFO("estimate " << estimate << " bytes, measured peak " << peak << " bytes");
    CHECK(estimate > 0.5 * peak);
    CHECK(estimate < 2.0 * peak);
  }
}

TEST_CASE("memory estimate: a config that cannot fit is refused with the estimate and its keys", "[assemble][memory]") {
  const runconfig::RunConfig huge = parse(kSmall, {"moe.num_experts=1000000"});
  const assemble::MemoryEstimate e = assemble::estimate_memory(huge);
  CHECK_THROWS_WITH(assemble::check_memory(huge, e, 8.0 * (1 << 30)),
                    Contains("more than the memory available (8.0 GiB)") &&
                        Contains("the largest parts: expert weights") && Contains("moe.num_experts"));
  const runconfig::RunConfig limited = parse(kSmall, {"training.batch_size=100000", "memory_limit=1"});
  CHECK_THROWS_WITH(assemble::check_memory(limited, assemble::estimate_memory(limited), 1e15),
                    Contains("more than memory_limit (1.0 GiB)") && Contains("activations of one micro-batch") &&
                        Contains("training.batch_size"));
  const runconfig::RunConfig small = parse(kSmall);
  CHECK_NOTHROW(assemble::check_memory(small, assemble::estimate_memory(small), 8.0 * (1 << 30)));
  // The trainer checks before it builds anything.
  std::ostringstream quiet;
  CHECK_THROWS_WITH(train::Trainer(parse(kSmall, {"model.d_model=1000000", "model.n_heads=1"}), quiet),
                    Contains("this config needs about") && Contains("model.d_model"));
  CHECK(assemble::available_memory_bytes() > 0);
}
