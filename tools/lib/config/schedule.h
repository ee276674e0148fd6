// A value of the run config that may change with the optimizer step: a plain number (constant)
// or a schedule map. Used for the balancing strength, moe.losses.* and moe.bias_update_rate
// (configs/README.md, "Schedules").
// Contract: read_schedule gives only schedules whose values are >= 0, with steps >= 1 and
// start >= 0, and refuses anything else with the config's `LOCATION: KEY: what (allowed: ...)`;
// at() is defined for any step and any schedule. at(step) depends on the step only, so a
// resumed run sees the values of a run that never stopped. step is the 1-based number of the
// optimizer step being taken, the lr schedule's convention. Engine-free, like the rest of the
// config library.
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace YAML {
class Node;
class Emitter;
struct Mark;
}  // namespace YAML

namespace runconfig {

class Schedule {
 public:
  enum class Kind { constant, linear, warmup };

  // Implicit: a plain number is a constant, so `c.moe.losses.z_loss = 0.001` keeps working.
  Schedule(double value = 0.0) : from_(value), to_(value) {}  // NOLINT(google-explicit-constructor)
  // from up to step start, then linearly to `to` over the next steps steps, then to.
  static Schedule linear(double from, double to, std::int64_t steps, std::int64_t start = 0);
  // From 0 up to value over the first steps steps (value * step / steps), then value.
  static Schedule warmup(double value, std::int64_t steps);

  double at(std::int64_t step) const;
  // The largest value it ever takes: whether the loss (or bias update) is on at all, for the
  // rules that refuse a loss a router cannot provide.
  double peak() const;
  bool is_constant() const { return from_ == to_; }  // the same value at every step

  Kind kind() const { return kind_; }
  double from() const { return from_; }  // linear: from; warmup: 0; constant: the value
  double to() const { return to_; }      // linear: to; warmup and constant: the value
  std::int64_t steps() const { return steps_; }
  std::int64_t start() const { return start_; }

  friend bool operator==(const Schedule& a, const Schedule& b) {
    return a.kind_ == b.kind_ && a.from_ == b.from_ && a.to_ == b.to_ && a.steps_ == b.steps_ && a.start_ == b.start_;
  }
  friend bool operator!=(const Schedule& a, const Schedule& b) { return !(a == b); }

 private:
  Kind kind_ = Kind::constant;
  double from_ = 0, to_ = 0;
  std::int64_t steps_ = 0, start_ = 0;
};

const char* to_string(Schedule::Kind kind);  // "constant", "linear", "warmup"
// As to_yaml writes it: "0.01", or "{schedule: linear, from: 0.1, to: 0.001, steps: 500, start: 0}".
std::string to_string(const Schedule& s);
std::ostream& operator<<(std::ostream& out, const Schedule& s);  // to_string (test failures show it)

// Where a node of the source being read is: "FILE:LINE:COL", or the override's text.
using Locate = std::function<std::string(const YAML::Mark&)>;

// Reads a number or a schedule map at dotted `key`; `at` is where the value is. Throws
// ConfigError naming the key (or the map's key: KEY.from) and its location.
Schedule read_schedule(const YAML::Node& node, const std::string& at, const std::string& key, const Locate& locate);

// Writes a constant as a plain number, any other schedule as a flow map with every key.
void emit_schedule(YAML::Emitter& out, const Schedule& s);

}  // namespace runconfig
