// Schedules of the run config: their values, reading one from YAML with the config's messages,
// writing one back, and the balancing strength of a step. Contract in schedule.h.
#include "tools/lib/config/schedule.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <ostream>
#include <set>
#include <vector>

#include "tools/lib/config/run_config.h"
#include "tools/lib/config/text.h"
#include "tools/lib/config/yaml_read.h"

namespace runconfig {

Schedule Schedule::linear(double from, double to, std::int64_t steps, std::int64_t start) {
  Schedule s;
  s.kind_ = Kind::linear;
  s.from_ = from;
  s.to_ = to;
  s.steps_ = steps;
  s.start_ = start;
  return s;
}

// A warm-up is the linear ramp from 0 that starts at step 0: one formula, so the PyTorch
// reference (tools/torch_reference.py, schedule_at) reproduces it to the last bit.
Schedule Schedule::warmup(double value, std::int64_t steps) {
  Schedule s = linear(0.0, value, steps, 0);
  s.kind_ = Kind::warmup;
  return s;
}

double Schedule::at(std::int64_t step) const {
  if (kind_ == Kind::constant || step <= start_) return from_;
  if (step >= start_ + steps_) return to_;
  return from_ + (to_ - from_) * static_cast<double>(step - start_) / static_cast<double>(steps_);
}

double Schedule::peak() const { return std::max(from_, to_); }

const char* to_string(Schedule::Kind kind) {
  switch (kind) {
    case Schedule::Kind::constant:
      return "constant";
    case Schedule::Kind::linear:
      return "linear";
    case Schedule::Kind::warmup:
      return "warmup";
  }
  return "?";
}

namespace {

using Kind = Schedule::Kind;

// The keys of each kind's map, in the order they are written; "schedule" names the kind.
const std::vector<std::string>& map_keys(Kind kind) {
  static const std::vector<std::string> constant{"schedule", "value"},
      linear{"schedule", "from", "to", "steps", "start"}, warmup{"schedule", "value", "steps"};
  return kind == Kind::constant ? constant : kind == Kind::linear ? linear : warmup;
}

const std::vector<Kind>& kinds() {
  static const std::vector<Kind> all{Kind::constant, Kind::linear, Kind::warmup};
  return all;
}

std::string kind_names() {
  std::vector<std::string> names;
  for (Kind k : kinds()) names.emplace_back(to_string(k));
  return text::join(names);
}

const std::string& forms() {
  static const std::string text = "a number >= 0, or a map {schedule: " + kind_names() + ", ...}";
  return text;
}

using detail::fail;

double non_negative(double v, const std::string& at, const std::string& key) {
  if (!(v >= 0)) fail(at, key, "must be >= 0, got " + text::format_double(v), ">= 0");
  return v;
}

// One map of a schedule: its keys checked against the kind's, and its values read by key.
class ScheduleMap {
 public:
  ScheduleMap(const YAML::Node& node, const std::string& at, const std::string& key, const Locate& locate)
      : node_(node), at_(at), key_(key), locate_(locate) {}

  Schedule read() {
    const YAML::Node kind_node = find("schedule");
    if (!kind_node)
      fail(at_, key_, "a schedule map needs 'schedule', its kind", "schedule: " + kind_names() + ", with their keys");
    const std::string kind_text = kind_node.IsScalar() ? kind_node.Scalar() : "";
    const auto known = std::find_if(kinds().begin(), kinds().end(), [&](Kind k) { return kind_text == to_string(k); });
    if (known == kinds().end())
      fail(located(kind_node), key_ + ".schedule", "unknown schedule " + detail::describe(kind_node), kind_names());
    const Kind kind = *known;
    check_keys(kind);
    switch (kind) {
      case Kind::constant:
        return Schedule(number("value"));
      case Kind::linear: {
        const double from = number("from"), to = number("to");
        const std::int64_t steps = integer("steps", 1);
        return Schedule::linear(from, to, steps, find("start") ? integer("start", 0) : 0);
      }
      case Kind::warmup: {
        const double value = number("value");
        return Schedule::warmup(value, integer("steps", 1));
      }
    }
    return Schedule();
  }

 private:
  YAML::Node find(const std::string& name) const {
    for (auto it = node_.begin(); it != node_.end(); ++it)
      if (it->first.IsScalar() && it->first.Scalar() == name) return it->second;
    return YAML::Node(YAML::NodeType::Undefined);
  }
  // A value's location, or the map's where the value has none (null: `from:` with nothing).
  std::string located(const YAML::Node& value) const {
    return value.IsNull() || value.Mark().line < 0 ? at_ : locate_(value.Mark());
  }

  // Every key known to the kind and given once; every key the kind needs present.
  void check_keys(Kind kind) const {
    const std::vector<std::string>& allowed = map_keys(kind);
    std::set<std::string> seen;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      const std::string name = it->first.IsScalar() ? it->first.Scalar() : detail::describe(it->first);
      const std::string at = locate_(it->first.Mark());
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        const std::string near = text::closest_key(name, allowed);
        fail(at, key_ + "." + name,
             std::string("unknown key of a ") + to_string(kind) + " schedule" +
                 (near.empty() ? "" : ", did you mean '" + near + "'?"),
             text::join(allowed));
      }
      if (!seen.insert(name).second) fail(at, key_ + "." + name, "key given twice", text::join(allowed));
    }
    for (const std::string& name : allowed)
      if (!seen.count(name) && name != "start")  // start alone has a default
        fail(at_, key_, std::string("a ") + to_string(kind) + " schedule needs '" + name + "'", text::join(allowed));
  }

  double number(const std::string& name) const {
    const YAML::Node v = find(name);
    const std::string at = located(v);
    return non_negative(detail::read_number(v, at, key_ + "." + name), at, key_ + "." + name);
  }
  std::int64_t integer(const std::string& name, std::int64_t lowest) const {
    const YAML::Node v = find(name);
    const std::string at = located(v), key = key_ + "." + name;
    const std::int64_t n = detail::read_integer(v, at, key);
    if (n < lowest)
      fail(at, key, "must be >= " + std::to_string(lowest) + ", got " + std::to_string(n),
           ">= " + std::to_string(lowest));
    // Bounded so that start + steps cannot overflow in at(); no run comes near it.
    constexpr std::int64_t highest = std::int64_t{1} << 53;
    if (n > highest)
      fail(at, key, "must be <= 2^53, got " + std::to_string(n), ">= " + std::to_string(lowest) + ", <= 2^53");
    return n;
  }

  const YAML::Node& node_;
  std::string at_, key_;
  const Locate& locate_;
};

}  // namespace

Schedule read_schedule(const YAML::Node& node, const std::string& at, const std::string& key, const Locate& locate) {
  if (node && node.IsMap()) return ScheduleMap(node, at, key, locate).read();
  return Schedule(non_negative(detail::read_number(node, at, key, "a number or a schedule map", forms()), at, key));
}

void emit_schedule(YAML::Emitter& out, const Schedule& s) {
  if (s.kind() == Kind::constant) {
    out << text::format_double(s.from());
    return;
  }
  out << YAML::Flow << YAML::BeginMap << YAML::Key << "schedule" << YAML::Value << to_string(s.kind());
  const auto number = [&out](const char* key, double v) {
    out << YAML::Key << key << YAML::Value << text::format_double(v);
  };
  if (s.kind() == Kind::linear) {
    number("from", s.from());
    number("to", s.to());
  } else {
    number("value", s.to());
  }
  out << YAML::Key << "steps" << YAML::Value << s.steps();
  if (s.kind() == Kind::linear) out << YAML::Key << "start" << YAML::Value << s.start();
  out << YAML::EndMap;
}

std::string to_string(const Schedule& s) {
  YAML::Emitter out;
  emit_schedule(out, s);
  return out.c_str();
}

std::ostream& operator<<(std::ostream& out, const Schedule& s) { return out << to_string(s); }

BalanceStrength balance_strength(const MoeConfig& moe, std::int64_t step) {
  BalanceStrength s;
  for (const moe::LossInfo& loss : moe::balance_loss_infos())
    s.coefficients.emplace_back(loss.key, moe.losses.of(loss.key).at(step));
  s.bias_update_rate = moe.bias_update_rate.at(step);
  return s;
}

}  // namespace runconfig
