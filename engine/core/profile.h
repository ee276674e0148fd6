// Wall-clock time per named stage of a training step (embedding, attention, router, ...), for
// moe-bench's profile. Off by default: a StageTimer then costs one branch. Stages nest, and
// each reports its self time (its children's time is charged to them), so the stages of a
// step add up to the step. CPU ops are synchronous, so wall time is the op's time there; a
// CUDA profile would need a device sync per stage and is not taken.
#pragma once
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

namespace engine {

void set_profiling(bool on);
bool profiling();
void reset_stage_times();
std::vector<std::pair<std::string, double>> stage_times();  // seconds, in first-seen order

// Where stage times are read: seconds from std::chrono::steady_clock, unless a test installs a
// clock it advances by hand (the accounting is then checked exactly, not against wall time).
// nullptr restores the steady clock.
using ProfileClock = double (*)();
double steady_seconds();  // std::chrono::steady_clock, in seconds
void set_profile_clock(ProfileClock clock);

// The stage name for a backward closure: "bw:" and the op function that recorded it, read from
// the closure's type ("engine::linear(...)::{lambda...}" -> "bw:linear"), so every op is
// profiled without naming itself. The pointer stays valid for the calling thread's lifetime.
const char* backward_stage_name(const std::type_info& closure);

class StageTimer {
 public:
  explicit StageTimer(const char* stage) : active_(profiling()) {
    if (active_) begin(stage);
  }
  ~StageTimer() {
    if (active_) end();
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;

 private:
  static void begin(const char* stage);
  static void end();
  bool active_;
};

}  // namespace engine
