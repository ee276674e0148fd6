// Stage timers: off by default, nested stages charge their own time, and stages add up.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "engine/core/profile.h"

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
