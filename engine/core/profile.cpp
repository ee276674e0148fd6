#include "engine/core/profile.h"

#include <cxxabi.h>

#include <chrono>
#include <cstdlib>
#include <map>

namespace engine {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

namespace {

struct Frame {
  size_t stage;
  double start;         // seconds, on the clock
  double children = 0;  // seconds spent in nested stages
};

struct State {
  bool on = false;
  ProfileClock clock = steady_seconds;
  std::vector<std::pair<std::string, double>> totals;
  std::vector<Frame> stack;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

void set_profiling(bool on) { state().on = on; }
bool profiling() { return state().on; }
void reset_stage_times() { state().totals.clear(); }
std::vector<std::pair<std::string, double>> stage_times() { return state().totals; }
void set_profile_clock(ProfileClock clock) { state().clock = clock ? clock : steady_seconds; }

const char* backward_stage_name(const std::type_info& type) {
  thread_local std::map<const std::type_info*, std::string> names;  // each thread has its own tape
  auto it = names.find(&type);
  if (it != names.end()) return it->second.c_str();
  int status = 0;
  char* demangled = abi::__cxa_demangle(type.name(), nullptr, nullptr, &status);
  std::string s = demangled && status == 0 ? demangled : type.name();
  std::free(demangled);
  for (size_t at; (at = s.find("(anonymous namespace)::")) != std::string::npos;) s.erase(at, 23);
  s = s.substr(0, s.find_first_of("(<"));
  const size_t colon = s.rfind("::");
  if (colon != std::string::npos) s = s.substr(colon + 2);
  return names.emplace(&type, "bw:" + s).first->second.c_str();
}

void StageTimer::begin(const char* stage) {
  State& s = state();
  size_t index = 0;
  while (index < s.totals.size() && s.totals[index].first != stage) ++index;
  if (index == s.totals.size()) s.totals.emplace_back(stage, 0.0);
  s.stack.push_back({index, s.clock()});
}

void StageTimer::end() {
  State& s = state();
  const Frame f = s.stack.back();
  s.stack.pop_back();
  const double elapsed = s.clock() - f.start;
  s.totals[f.stage].second += elapsed - f.children;
  if (!s.stack.empty()) s.stack.back().children += elapsed;
}

}  // namespace engine
