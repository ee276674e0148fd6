// Schedules of the balancing strength (moe.losses.*, moe.bias_update_rate): every form read from
// a file and from an override, the values at the boundaries of each kind, every bad form refused
// with its key and location, the router rules judged on a schedule's peak, and the values of a step.
#include <catch2/catch.hpp>
#include <string>

#include "tools/lib/config/run_config.h"

using namespace runconfig;
using Catch::Contains;

namespace {

RunConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_run_config(yaml, "run.yaml", overrides);
}

// A loss schedule as a one-key file, "moe:\n  losses:\n    switch_aux: VALUE\n": the value is on
// line 3, from column 17.
std::string loss_file(const std::string& value) { return "moe:\n  losses:\n    switch_aux: " + value + "\n"; }

}  // namespace

TEST_CASE("schedule: every form is read from a file and from an override", "[config][schedule]") {
  const RunConfig c = parse(
      "moe:\n"
      "  losses:\n"
      "    switch_aux: {schedule: linear, from: 0.1, to: 0.001, steps: 500, start: 20}\n"
      "    z_loss:\n"
      "      schedule: warmup\n"
      "      value: 0.01\n"
      "      steps: 100\n"
      "    importance: {schedule: constant, value: 0.5}\n"
      "    sequence_aux: 0.25\n"
      "  bias_update_rate: {schedule: linear, from: 0.001, to: 0, steps: 10}\n");
  CHECK(c.moe.losses.switch_aux == Schedule::linear(0.1, 0.001, 500, 20));
  CHECK(c.moe.losses.z_loss == Schedule::warmup(0.01, 100));
  CHECK(c.moe.losses.importance == Schedule(0.5));  // the map form of a constant is the number
  CHECK(c.moe.losses.sequence_aux == Schedule(0.25));
  CHECK(c.moe.bias_update_rate == Schedule::linear(0.001, 0.0, 10, 0));  // start defaults to 0
  CHECK(c.moe.losses.switch_aux.kind() == Schedule::Kind::linear);

  const RunConfig o = parse("", {"moe.losses.switch_aux={schedule: warmup, value: 0.01, steps: 100}",
                                 "moe.bias_update_rate={schedule: linear, from: 0.002, to: 0.0, steps: 5, start: 3}",
                                 "moe.losses.z_loss=0.001"});
  CHECK(o.moe.losses.switch_aux == Schedule::warmup(0.01, 100));
  CHECK(o.moe.bias_update_rate == Schedule::linear(0.002, 0.0, 5, 3));
  CHECK(o.moe.losses.z_loss == 0.001);
}

TEST_CASE("schedule: values at the boundaries of each kind", "[config][schedule]") {
  // linear: from up to step start, then (step - start) / steps of the way, then to.
  const Schedule l = Schedule::linear(0.1, 0.001, 500, 20);
  CHECK(l.at(1) == 0.1);
  CHECK(l.at(20) == 0.1);
  CHECK(l.at(21) == 0.1 + (0.001 - 0.1) * 1 / 500);  // a formula one step off gives 0.1 or 2 / 500
  CHECK(l.at(270) == Approx(0.0505));
  CHECK(l.at(519) == 0.1 + (0.001 - 0.1) * 499 / 500);
  CHECK(l.at(520) == 0.001);
  CHECK(l.at(100000) == 0.001);
  // Increasing works the same way.
  const Schedule up = Schedule::linear(0.0, 1.0, 4);
  CHECK(up.at(0) == 0.0);
  CHECK(up.at(1) == 0.25);
  CHECK(up.at(3) == 0.75);
  CHECK(up.at(4) == 1.0);
  // warmup: value * step / steps, so step 1 already gives a weight and step `steps` the value.
  const Schedule w = Schedule::warmup(0.01, 100);
  CHECK(w.at(0) == 0.0);
  CHECK(w.at(1) == 0.01 * 1 / 100);
  CHECK(w.at(50) == 0.01 * 50 / 100);
  CHECK(w.at(99) < 0.01);
  CHECK(w.at(100) == 0.01);
  CHECK(w.at(101) == 0.01);
  const Schedule c = 0.3;
  CHECK((c.at(0) == 0.3 && c.at(1) == 0.3 && c.at(1000000) == 0.3));

  CHECK(l.peak() == 0.1);
  CHECK(up.peak() == 1.0);
  CHECK(w.peak() == 0.01);
  CHECK(c.peak() == 0.3);
  CHECK(Schedule::linear(0.0, 0.0, 10).peak() == 0.0);
  CHECK(c.is_constant());
  CHECK(Schedule::linear(0.2, 0.2, 10).is_constant());
  CHECK_FALSE(l.is_constant());
  CHECK_FALSE(w.is_constant());
  CHECK(Schedule::linear(0.1, 0.001, 500, 20) != Schedule::linear(0.1, 0.001, 500, 21));
  CHECK(Schedule::warmup(0.01, 100) != Schedule::linear(0.0, 0.01, 100));  // the same values, spelled differently
}

TEST_CASE("schedule: the balancing strength of a step", "[config][schedule]") {
  const RunConfig c = parse(
      "moe: {losses: {switch_aux: {schedule: warmup, value: 0.02, steps: 4}, z_loss: 0.001},"
      " bias_update_rate: {schedule: linear, from: 0.01, to: 0.0, steps: 2, start: 1}}");
  const BalanceStrength s1 = balance_strength(c.moe, 1), s3 = balance_strength(c.moe, 3);
  REQUIRE(s1.coefficients.size() == moe::balance_loss_infos().size());
  CHECK(s1.coefficients.front() == std::make_pair(std::string("switch_aux"), 0.005));  // losses.def order
  CHECK(s3.coefficients.front().second == 0.015);
  for (const BalanceStrength* s : {&s1, &s3})
    for (const auto& [key, coef] : s->coefficients) CHECK(coef == c.moe.losses.of(key).at(s == &s1 ? 1 : 3));
  CHECK(s1.bias_update_rate == 0.01);
  CHECK(balance_strength(c.moe, 2).bias_update_rate == 0.005);
  CHECK(s3.bias_update_rate == 0.0);
}

TEST_CASE("schedule: bad forms are refused with the key and where it is", "[config][schedule]") {
  const auto refused = [](const std::string& value) {
    try {
      parse(loss_file(value));
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  CHECK_THAT(refused("{schedule: cosine, value: 0.1}"),
             Contains("run.yaml:3:28: moe.losses.switch_aux.schedule: unknown schedule 'cosine'") &&
                 Contains("(allowed: constant, linear, warmup)"));
  CHECK_THAT(refused("{schedule: linear, form: 0.1, to: 0.0, steps: 5}"),
             Contains("run.yaml:3:36: moe.losses.switch_aux.form: unknown key of a linear schedule, did you mean "
                      "'from'?") &&
                 Contains("(allowed: schedule, from, to, steps, start)"));
  CHECK_THAT(refused("{schedule: warmup, value: 0.1, start: 3, steps: 5}"),
             Contains("moe.losses.switch_aux.start: unknown key of a warmup schedule") &&
                 Contains("(allowed: schedule, value, steps)"));
  CHECK_THAT(refused("{schedule: linear, from: 0.1, to: 0.0}"),
             Contains("run.yaml:3:17: moe.losses.switch_aux: a linear schedule needs 'steps'"));
  CHECK_THAT(refused("{value: 0.1, steps: 5}"),
             Contains("run.yaml:3:17: moe.losses.switch_aux: a schedule map needs 'schedule', its kind"));
  CHECK_THAT(refused("{schedule: warmup, value: 0.1, steps: 5, steps: 6}"),
             Contains("moe.losses.switch_aux.steps: key given twice"));
  CHECK_THAT(
      refused("{schedule: linear, from: -0.1, to: 0.0, steps: 5}"),
      Contains("run.yaml:3:42: moe.losses.switch_aux.from: must be >= 0, got -0.1") && Contains("(allowed: >= 0)"));
  CHECK_THAT(
      refused("{schedule: warmup, value: 0.1, steps: 0}"),
      Contains("run.yaml:3:55: moe.losses.switch_aux.steps: must be >= 1, got 0") && Contains("(allowed: >= 1)"));
  CHECK_THAT(refused("{schedule: linear, from: 0.1, to: 0.0, steps: 5, start: -1}"),
             Contains("moe.losses.switch_aux.start: must be >= 0, got -1"));
  CHECK_THAT(refused("{schedule: linear, from: 0.1, to: lots, steps: 5}"),
             Contains("run.yaml:3:51: moe.losses.switch_aux.to: expected a number, got 'lots'"));
  CHECK_THAT(refused("{schedule: warmup, value: 0.1, steps: 2.5}"),
             Contains("moe.losses.switch_aux.steps: expected an integer, got '2.5'"));
  CHECK_THAT(refused("{schedule: constant, value: }"),
             Contains("run.yaml:3:17: moe.losses.switch_aux.value: expected a number, got nothing"));
  CHECK_THAT(refused("[0.1, 0.01]"),
             Contains("run.yaml:3:17: moe.losses.switch_aux: expected a number or a schedule map, got a list") &&
                 Contains("(allowed: a number >= 0, or a map {schedule: constant, linear, warmup, ...})"));
  CHECK_THAT(refused("high"), Contains("moe.losses.switch_aux: expected a number or a schedule map, got 'high'"));
  CHECK_THAT(refused("-0.5"), Contains("run.yaml:3:17: moe.losses.switch_aux: must be >= 0, got -0.5"));
  CHECK(refused("{schedule: warmup, value: 0.1, steps: 5}") == "(accepted)");

  // An override is named as the location, and replaces the whole schedule.
  CHECK_THROWS_WITH(parse("", {"moe.bias_update_rate={schedule: linear, from: 0.1, steps: 5}"}),
                    Contains("override 'moe.bias_update_rate={schedule: linear, from: 0.1, steps: 5}': "
                             "moe.bias_update_rate: a linear schedule needs 'to'"));
  CHECK_THROWS_WITH(parse("", {"moe.bias_update_rate=-1"}), Contains("moe.bias_update_rate: must be >= 0, got -1.0"));
}

TEST_CASE("schedule: a loss the router cannot provide is refused when its schedule is ever positive",
          "[config][schedule]") {
  CHECK_THROWS_WITH(parse("moe:\n  losses: {load: {schedule: warmup, value: 0.01, steps: 10}}\n"),
                    Contains("run.yaml:2:") &&
                        Contains("moe.losses.load: the load loss needs the router's noise (router noisy_topk), "
                                 "router is topk_softmax"));
  // Annealed to 0, it is still on at first.
  CHECK_THROWS_WITH(parse("moe:\n  losses: {load: {schedule: linear, from: 0.1, to: 0, steps: 10}}\n"),
                    Contains("moe.losses.load: the load loss needs the router's noise"));
  CHECK_NOTHROW(parse("moe:\n  losses: {load: {schedule: linear, from: 0, to: 0, steps: 10}}\n"));
  CHECK_NOTHROW(parse("moe:\n  router: noisy_topk\n  losses: {load: {schedule: warmup, value: 0.01, steps: 10}}\n"));
  CHECK_THROWS_WITH(parse("moe:\n  balance_scope: global_batch\n"
                          "  losses: {importance: {schedule: linear, from: 0, to: 0.1, steps: 10, start: 100}}\n"),
                    Contains("moe.losses.importance: importance is CV^2 of a sum over the batch"));
  // A resume keeps the device grouping whenever device_aux ever trains with it.
  RunConfig saved = parse("moe: {losses: {device_aux: {schedule: linear, from: 0, to: 0.01, steps: 5, start: 50}}}");
  RunConfig resumed = saved;
  resumed.moe.device_groups = 2;
  CHECK(resume_changes(saved, resumed).fixed == std::vector<std::string>{"moe.device_groups"});
}

TEST_CASE("schedule: to_yaml writes a constant as a number and a schedule as a flow map", "[config][schedule]") {
  const RunConfig c = parse(
      "moe: {losses: {switch_aux: {schedule: linear, from: 0.1, to: 0.001, steps: 500},"
      " importance: {schedule: constant, value: 0.5}, z_loss: {schedule: warmup, value: 0.01, steps: 100}},"
      " bias_update_rate: {schedule: linear, from: 0.001, to: 0, steps: 10, start: 90}}");
  const std::string text = to_yaml(c);
  CHECK_THAT(text, Contains("switch_aux: {schedule: linear, from: 0.1, to: 0.001, steps: 500, start: 0}") &&
                       Contains("importance: 0.5") && Contains("z_loss: {schedule: warmup, value: 0.01, steps: 100}") &&
                       Contains("bias_update_rate: {schedule: linear, from: 0.001, to: 0.0, steps: 10, start: 90}"));
  CHECK(parse(text) == c);
  CHECK(to_string(c.moe.losses.z_loss) == "{schedule: warmup, value: 0.01, steps: 100}");
  CHECK(to_string(c.moe.losses.importance) == "0.5");
  // keys_differing sees a changed schedule, as any other value.
  RunConfig other = c;
  other.moe.losses.switch_aux = Schedule::linear(0.1, 0.001, 400);
  CHECK(keys_differing(c, other) == std::vector<std::string>{"moe.losses.switch_aux"});
}
