// Stage timers: off by default, nested stages charge their own time, and stages add up.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "engine/core/profile.h"
#include "engine/engine.h"

using namespace engine;

namespace {
void busy(int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
  }
}
double seconds_of(const std::string& stage) {
  for (const auto& [name, s] : stage_times())
    if (name == stage) return s;
  return -1;
}
}  // namespace

TEST_CASE("stage timers record nothing unless profiling is on", "[profile]") {
  reset_stage_times();
  { StageTimer t("outer"); }
  CHECK(stage_times().empty());
}

TEST_CASE("nested stages report self time, in first-seen order", "[profile]") {
  reset_stage_times();
  set_profiling(true);
  {
    StageTimer outer("outer");
    busy(20);
    {
      StageTimer inner("inner");
      busy(30);
    }
    { StageTimer inner_again("inner"); }
  }
  set_profiling(false);
  REQUIRE(stage_times().size() == 2);
  CHECK(stage_times()[0].first == "outer");
  CHECK(seconds_of("outer") == Approx(0.020).margin(0.008));  // the inner 30 ms are not counted twice
  CHECK(seconds_of("inner") == Approx(0.030).margin(0.008));
  reset_stage_times();
  CHECK(stage_times().empty());
}

TEST_CASE("backward stages are named after the op that recorded the closure", "[profile][tape]") {
  Tensor x = Tensor::full({2, 3}, 1.0).set_requires_grad(true);
  Tensor w = Tensor::full({4, 3}, 0.5).set_requires_grad(true);
  Tensor loss = sum_all(slice(linear(x, w), 1, 0, 2));
  reset_stage_times();
  set_profiling(true);
  backward(loss);
  set_profiling(false);
  std::vector<std::string> names;
  for (const auto& [name, s] : stage_times()) names.push_back(name);
  // Newest first: slice's closure runs before linear's (whose backward times its own parts).
  const auto slice_at = std::find(names.begin(), names.end(), "bw:slice");
  const auto linear_at = std::find(names.begin(), names.end(), "bw:linear");
  CHECK(slice_at < linear_at);
  CHECK(linear_at != names.end());
  reset_stage_times();
}
