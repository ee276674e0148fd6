// Dead-expert revival (moe.revival, tools/lib/train/revival.h): which experts are revived and
// when, the weights, moments and biases fresh and copy_busiest leave, that a balanced run revives
// nothing, and the events in metrics.jsonl and the checkpoint. Bit-exact resume across revivals
// is in test_checkpoint.cpp.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/tools/small_run.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/trainer.h"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

constexpr int kExperts = 4;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("revival_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

// Two MoE layers of 4 experts that route unevenly from step 1 (large embeddings). With
// dead_fraction 1, every expert below the uniform share is "dead", so each check revives some.
runconfig::RunConfig run_config(const fs::path& out, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"training.eval_every=0", "moe.bias_update_rate=0.01",
                               "diagnostics={dead_fraction: 1.0, starved_fraction: 1.0, warnings: false}"});
  return runtest::small_run(out, extra);
}

// The dead experts of counts summed over steps, by the diagnostics' definition at dead_fraction 1:
// share < 1/E, i.e. c * E < total.
std::vector<int64_t> below_uniform(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  std::vector<int64_t> dead;
  for (size_t e = 0; e < counts.size(); ++e)
    if (counts[e] * static_cast<int64_t>(counts.size()) < total) dead.push_back(static_cast<int64_t>(e));
  return dead;
}

const ckpt::NamedArray& find(const std::vector<ckpt::NamedArray>& arrays, const std::string& name) {
  for (const ckpt::NamedArray& a : arrays)
    if (a.name == name) return a;
  FAIL("no tensor " << name);
  throw std::logic_error("unreachable");
}

std::vector<float> row(const ckpt::NamedArray& a, int64_t r) {
  const int64_t width = a.shape.at(1);
  return std::vector<float>(a.values.begin() + r * width, a.values.begin() + (r + 1) * width);
}

double std_of(const std::vector<float>& v) {
  double sum = 0, sq = 0;
  for (float x : v) sum += x;
  const double mean = sum / static_cast<double>(v.size());
  for (float x : v) sq += (x - mean) * (x - mean);
  return std::sqrt(sq / static_cast<double>(v.size()));
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

bool all_zero(const std::vector<float>& v) {
  for (float x : v)
    if (x != 0.0f) return false;
  return true;
}

std::string expert(int64_t layer, int64_t e, const std::string& tensor) {
  return "layers." + std::to_string(layer) + ".moe.experts." + std::to_string(e) + "." + tensor;
}

std::vector<train::RevivalEvent> events_of(const ckpt::MetricsHistory& h) {
  std::vector<train::RevivalEvent> out;
  for (size_t i = 0; i < h.revival_step.size(); ++i)
    out.push_back({h.revival_step[i], h.revival_layer[i], h.revival_expert[i], h.revival_source[i]});
  return out;
}

runconfig::RunConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return runconfig::parse_run_config(yaml, "test.yaml", overrides);
}

}  // namespace

TEST_CASE("config: moe.revival is read and its errors are named with their location", "[config][revival]") {
  const runconfig::RunConfig off = parse("");
  CHECK(off.moe.revival.check_every == 0);  // off unless asked for
  CHECK(off.moe.revival.mode == runconfig::RevivalMode::fresh);
  const runconfig::RunConfig on = parse("moe:\n  revival: {check_every: 25, mode: copy_busiest, noise: 0.01}\n");
  CHECK(on.moe.revival.check_every == 25);
  CHECK(on.moe.revival.mode == runconfig::RevivalMode::copy_busiest);
  CHECK(on.moe.revival.noise == 0.01);
  CHECK(runconfig::parse_run_config(runconfig::to_yaml(on), "again") == on);
  CHECK_THROWS_WITH(parse("moe:\n  revival:\n    check_every: -1\n"),
                    Contains("test.yaml:3:18: moe.revival.check_every: must be >= 0, got -1"));
  CHECK_THROWS_WITH(
      parse("moe:\n  revival:\n    mode: busiest\n"),
      Contains("test.yaml:3:11: moe.revival.mode: unknown value") && Contains("(allowed: fresh, copy_busiest)"));
  CHECK_THROWS_WITH(parse("moe:\n  revival:\n    noise: -0.1\n"),
                    Contains("test.yaml:3:12: moe.revival.noise: must be >= 0"));
  CHECK_THROWS_WITH(parse("", {"moe.revival.check_every=x"}),
                    Contains("override 'moe.revival.check_every=x'") && Contains("moe.revival.check_every"));
  // The hash router has no router row to re-draw: refused, naming both keys' rule.
  CHECK_THROWS_WITH(parse("moe:\n  router: hash\n  top_k: 1\n  revival:\n    check_every: 10\n"),
                    Contains("test.yaml:5:18: moe.revival.check_every: router hash has no weights") &&
                        Contains("(allowed: 0 with router hash)"));
  CHECK_NOTHROW(parse("moe:\n  router: hash\n  top_k: 1\n"));
  // Expert parallelism is refused: the dead expert may live on another rank.
  CHECK_THROWS_WITH(parse("moe:\n  revival: {check_every: 10}\nparallel:\n  expert: 2\n"),
                    Contains("test.yaml:2:26: moe.revival.check_every: dead-expert revival runs in one process or "
                             "with data parallelism only") &&
                        Contains("(allowed: 0 with parallel.expert > 1)"));
  CHECK_NOTHROW(parse("moe:\n  revival: {check_every: 10, mode: copy_busiest}\nparallel:\n  expert: 1\n"));
}

TEST_CASE("revival: the dead experts of each window are revived at the check step and only then", "[revival]") {
  std::ostringstream quiet;
  train::Trainer t(run_config(fresh_dir("when"), {"moe.revival={check_every: 3, mode: copy_busiest}"}), quiet);
  std::vector<std::vector<int64_t>> window(2, std::vector<int64_t>(kExperts, 0));
  size_t seen = 0;
  for (int step = 1; step <= 6; ++step) {
    const train::StepMetrics m = t.step();
    for (size_t l = 0; l < 2; ++l)
      for (int e = 0; e < kExperts; ++e) window[l][e] += m.counts[l][e];
    const std::vector<train::RevivalEvent> events = events_of(t.metrics().history());
    if (step % 3 != 0) {
      CHECK(events.size() == seen);  // nothing between checks
      continue;
    }
    std::vector<train::RevivalEvent> expected;
    for (int64_t l = 0; l < 2; ++l) {
      const int64_t busiest = std::max_element(window[l].begin(), window[l].end()) - window[l].begin();
      for (int64_t e : below_uniform(window[l])) expected.push_back({step, l, e, busiest});
    }
    REQUIRE_FALSE(expected.empty());  // the run is uneven enough to test something
    REQUIRE(events.size() == seen + expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      INFO("step " << step << ", revival " << i);
      CHECK(events[seen + i].step == expected[i].step);
      CHECK(events[seen + i].layer == expected[i].layer);
      CHECK(events[seen + i].expert == expected[i].expert);
      CHECK(events[seen + i].source == expected[i].source);
    }
    seen = events.size();
    for (auto& layer : window) std::fill(layer.begin(), layer.end(), 0);  // the window starts again
  }
}

TEST_CASE("revival: copy_busiest and fresh leave the documented weights with zero moments and bias", "[revival]") {
  const double noise = 0.05;
  for (const char* mode : {"copy_busiest", "fresh"}) {
    INFO(mode);
    std::ostringstream quiet;
    // `plain` trains the same 3 steps without revival: its state is the revived run's just
    // before the revival of step 3.
    train::Trainer revived(run_config(fresh_dir("weights"), {std::string("moe.revival={check_every: 3, mode: ") + mode +
                                                             ", noise: " + std::to_string(noise) + "}"}),
                           quiet);
    train::Trainer plain(run_config(fresh_dir("weights_plain")), quiet);
    for (int s = 0; s < 3; ++s) {
      revived.step();
      plain.step();
    }
    const ckpt::Checkpoint a = revived.snapshot(), b = plain.snapshot();
    const std::vector<train::RevivalEvent> events = events_of(revived.metrics().history());
    REQUIRE_FALSE(events.empty());
    const bool copy = std::string(mode) == "copy_busiest";
    int moments_reset = 0, biases_reset = 0;  // where the reset changed something
    for (int64_t layer = 0; layer < 2; ++layer) {
      std::vector<bool> is_dead(kExperts, false);
      int64_t source = -1;
      for (const train::RevivalEvent& e : events)
        if (e.layer == layer) {
          is_dead[e.expert] = true;
          source = e.source;
        }
      const std::string router = "layers." + std::to_string(layer) + ".moe.router.weight";
      for (int64_t e = 0; e < kExperts; ++e) {
        INFO("layer " << layer << ", expert " << e);
        for (const char* tensor : {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
          INFO(tensor);
          const std::string name = expert(layer, e, tensor);
          const std::vector<float>& after = find(a.params, name).values;
          if (!is_dead[e]) {  // the others are untouched, moments included
            CHECK(after == find(b.params, name).values);
            CHECK(find(a.adam_m, name).values == find(b.adam_m, name).values);
            continue;
          }
          CHECK(all_zero(find(a.adam_m, name).values));
          CHECK(all_zero(find(a.adam_v, name).values));
          if (!all_zero(find(b.adam_m, name).values)) ++moments_reset;
          const bool is_bias = std::string(tensor).find("bias") != std::string::npos;
          if (copy) {
            REQUIRE(source >= 0);
            CHECK_FALSE(is_dead[source]);
            const std::vector<float> diff = minus(after, find(b.params, expert(layer, source, tensor)).values);
            CHECK(std_of(diff) == Approx(noise).epsilon(is_bias ? 0.6 : 0.25));
          } else if (is_bias) {
            CHECK(all_zero(after));
          } else {
            // fc1 ~ N(0, init_std = 0.02); fc2 writes into the residual: 0.02 / sqrt(2 * 2 layers).
            const double init = std::string(tensor) == "fc1.weight" ? 0.02 : 0.01;
            CHECK(std_of(after) == Approx(init).epsilon(0.25));
            CHECK(after != find(b.params, name).values);
          }
        }
        const std::vector<float> router_row = row(find(a.params, router), e);
        if (!is_dead[e]) {
          CHECK(router_row == row(find(b.params, router), e));
          CHECK(a.router_bias.at(layer)[e] == b.router_bias.at(layer)[e]);
          continue;
        }
        CHECK(all_zero(row(find(a.adam_m, router), e)));
        CHECK(all_zero(row(find(a.adam_v, router), e)));
        CHECK(a.router_bias.at(layer)[e] == 0.0f);
        if (b.router_bias.at(layer)[e] != 0.0f) ++biases_reset;
        if (copy) {
          const std::vector<float> diff = minus(router_row, row(find(b.params, router), source));
          for (float d : diff) CHECK(std::abs(d) < 5 * noise);
          CHECK_FALSE(all_zero(diff));
        } else {
          CHECK(router_row != row(find(b.params, router), e));
          for (float v : router_row) CHECK(std::abs(v) < 5 * 0.02);
        }
      }
    }
    CHECK(moments_reset > 0);
    CHECK(biases_reset > 0);
  }
}

TEST_CASE("revival: a balanced run revives nothing", "[revival]") {
  // force_balance spreads every step's slots exactly evenly: nobody is below the uniform share.
  std::ostringstream quiet;
  train::Trainer t(run_config(fresh_dir("healthy"), {"moe.revival={check_every: 2}", "moe.force_balance=true"}), quiet);
  for (int s = 0; s < 6; ++s) t.step();
  CHECK(t.metrics().history().revival_step.empty());
}

TEST_CASE("revival: events in metrics.jsonl and in the checkpoint and files without them still load",
          "[revival][checkpoint]") {
  const fs::path dir = fresh_dir("events");
  std::ostringstream quiet;
  train::Trainer t(run_config(dir, {"moe.revival={check_every: 3}"}), quiet);
  t.run();
  const std::vector<train::RevivalEvent> events = events_of(t.metrics().history());
  REQUIRE_FALSE(events.empty());
  std::vector<std::string> lines;
  std::ifstream jsonl(dir / "metrics.jsonl");
  for (std::string line; std::getline(jsonl, line);)
    if (line.find("\"event\"") != std::string::npos) lines.push_back(line);
  REQUIRE(lines.size() == events.size());
  for (size_t i = 0; i < events.size(); ++i)
    CHECK(lines[i] == "{\"event\": \"revival\", \"step\": " + std::to_string(events[i].step) + ", \"layer\": " +
                          std::to_string(events[i].layer) + ", \"expert\": " + std::to_string(events[i].expert) +
                          ", \"mode\": \"fresh\", \"source\": null}");

  const std::string path = train::latest_checkpoint(dir.string());
  const ckpt::Checkpoint c = ckpt::read_checkpoint(path);
  const std::vector<train::RevivalEvent> saved = events_of(c.metrics);
  REQUIRE(saved.size() == events.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    CHECK(saved[i].step == events[i].step);
    CHECK(saved[i].expert == events[i].expert);
  }
  CHECK(c.revival_window.size() == 2 * kExperts);
  CHECK(c.rng.count("revival") == 1);

  // Without revival nothing new is written, so such files keep the layout (and checksum) of
  // older ones: the file of version 0.4.0 still reads.
  ckpt::Checkpoint older = c;
  for (auto* column : {&older.metrics.revival_step, &older.metrics.revival_layer, &older.metrics.revival_expert,
                       &older.metrics.revival_source})
    column->clear();
  older.revival_window.clear();
  older.rng.erase("revival");
  const std::string p = path + ".older.h5";
  ckpt::write_checkpoint(p, older);
  {
    h5::File f(p, h5::File::Mode::read);
    CHECK_FALSE(f.exists("/metrics/revivals"));
    CHECK_FALSE(f.exists("/state/revival"));
  }
  CHECK(ckpt::read_checkpoint(p).metrics.revival_step.empty());
  CHECK(ckpt::checksum(older) != ckpt::checksum(c));  // the new arrays are hashed when present
  const ckpt::Checkpoint old_file =
      ckpt::read_checkpoint(std::string(ENGINE_SOURCE_DIR) + "/tests/fuzz/seeds/checkpoint/small.h5");
  CHECK(old_file.metrics.revival_step.empty());
  CHECK(old_file.revival_window.empty());
  // A resume of a revival run from a file that lost its revival state is refused by name.
  train::Trainer again(run_config(fresh_dir("events_again"), {"moe.revival={check_every: 3}"}), quiet);
  CHECK_THROWS_WITH(again.restore(older, p), Catch::Contains("/state/rng/revival: missing"));
}
