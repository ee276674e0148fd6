// Stage timers: off by default, nested stages charge their own time, and stages add up. The
// accounting is checked on a clock the test advances by hand, so nothing depends on how busy
// the machine is; the real clock is only held to lower bounds.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "engine/core/profile.h"
#include "engine/engine.h"

using namespace engine;

namespace {

// A clock that moves only when busy() says so, installed for the scope.
double fake_now = 0.0;
double fake_clock() { return fake_now; }
struct FakeClockScope {
  FakeClockScope() {
    fake_now = 1000.0;
    set_profile_clock(fake_clock);
  }
  ~FakeClockScope() { set_profile_clock(nullptr); }
};
void busy(int ms) { fake_now += ms / 1000.0; }

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
  FakeClockScope clock;
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
  CHECK(seconds_of("outer") == Approx(0.020));  // the inner 30 ms are not counted twice
  CHECK(seconds_of("inner") == Approx(0.030));
  reset_stage_times();
  CHECK(stage_times().empty());
}

TEST_CASE("the stages of a step add up to the step, however deep they nest", "[profile]") {
  FakeClockScope clock;
  reset_stage_times();
  set_profiling(true);
  {
    StageTimer step("step");
    busy(1);
    for (int layer = 0; layer < 3; ++layer) {
      StageTimer block("block");
      busy(2);
      {
        StageTimer attention("attention");
        busy(5);
        StageTimer softmax("softmax");
        busy(3);
      }
      StageTimer ffn("ffn");
      busy(7);
    }
  }
  set_profiling(false);
  double total = 0.0;
  for (const auto& [name, s] : stage_times()) total += s;
  CHECK(total == Approx(0.001 + 3 * 0.017));
  CHECK(seconds_of("step") == Approx(0.001));
  CHECK(seconds_of("block") == Approx(3 * 0.002));
  CHECK(seconds_of("attention") == Approx(3 * 0.005));
  CHECK(seconds_of("softmax") == Approx(3 * 0.003));
  CHECK(seconds_of("ffn") == Approx(3 * 0.007));
  reset_stage_times();
}

TEST_CASE("on the real clock a stage takes at least the sleep it contains", "[profile]") {
  reset_stage_times();
  set_profiling(true);
  {
    StageTimer outer("outer");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    StageTimer inner("inner");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  set_profiling(false);
  // No upper bound: the machine may be busy. (1e-9: the clock's seconds are doubles.)
  CHECK(seconds_of("outer") >= 0.005 - 1e-9);
  CHECK(seconds_of("inner") >= 0.005 - 1e-9);
  reset_stage_times();
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
