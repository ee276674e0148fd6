// The cost of imbalance across devices: device loads, imbalance and the predicted slowdown on
// hand-computed routings, the live warning, the per-rank history in the metrics files and in
// checkpoints (across a change of the number of ranks).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/collapse/devices.h"
#include "tools/lib/collapse/metrics.h"
#include "tools/lib/diagnose/device_report.h"
#include "tools/lib/train/metrics_log.h"
#include "tools/lib/train/routing_stats.h"

namespace fs = std::filesystem;
using Catch::Contains;

TEST_CASE("device loads: contiguous blocks of experts, max over mean", "[devices]") {
  const std::vector<int64_t> slots = {5, 1, 0, 2, 3, 3, 1, 1};  // 16 slots over 8 experts
  CHECK(collapse::device_loads(slots, 2) == std::vector<int64_t>{8, 8});
  CHECK(collapse::device_imbalance(collapse::device_loads(slots, 2)) == 1.0);
  CHECK(collapse::device_loads(slots, 4) == std::vector<int64_t>{6, 2, 6, 2});
  CHECK(collapse::device_imbalance(collapse::device_loads(slots, 4)) == 1.5);  // 6 / 4
  CHECK(collapse::device_loads(slots, 8) == slots);
  CHECK(collapse::device_imbalance(collapse::device_loads(slots, 8)) == 2.5);  // 5 / 2
  CHECK(collapse::device_loads(slots, 1) == std::vector<int64_t>{16});
  // All on one device: the imbalance is the number of devices.
  CHECK(collapse::device_imbalance(collapse::device_loads({4, 4, 0, 0, 0, 0, 0, 0}, 4)) == 4.0);
  CHECK(std::isnan(collapse::device_imbalance(std::vector<int64_t>{0, 0})));
  CHECK(std::isnan(collapse::device_imbalance(std::vector<int64_t>{})));
  CHECK_THROWS_WITH(collapse::device_loads(slots, 3),
                    Contains("3 devices cannot hold 8 experts") && Contains("must divide the number of experts"));
  CHECK_THROWS(collapse::device_loads(slots, 0));
}

TEST_CASE("layers in sequence: the sum of the busiest over the sum of the means", "[devices]") {
  CHECK(collapse::combined_imbalance({{6, 2, 6, 2}, {16, 0, 0, 0}}) == Approx(22.0 / 8.0));
  CHECK(collapse::combined_imbalance({{1, 1}}) == 1.0);
  CHECK(std::isnan(collapse::combined_imbalance({{0, 0}})));
  CHECK(std::isnan(collapse::combined_imbalance({})));
}

TEST_CASE("device counts a report predicts for: 2, 4, 8 where they divide E", "[devices]") {
  CHECK(collapse::report_device_counts(64) == std::vector<int64_t>{2, 4, 8});
  CHECK(collapse::report_device_counts(8) == std::vector<int64_t>{2, 4, 8});
  CHECK(collapse::report_device_counts(12) == std::vector<int64_t>{2, 4});
  CHECK(collapse::report_device_counts(6) == std::vector<int64_t>{2});
  CHECK(collapse::report_device_counts(3).empty());
}

TEST_CASE("device imbalance from a routing's kept slots, and its live warning", "[devices]") {
  // Four tokens, four experts, k = 1, capacity 1: expert 0 is picked three times and keeps one.
  moe::Routing r;
  r.num_tokens = 4;
  r.num_experts = 4;
  r.top_k = 1;
  r.counts = {3, 0, 1, 0};
  r.dropped = 2;
  r.expert_offsets = {0, 1, 1, 2, 2};
  train::RoutingObserver observer(4, 1, 0);
  observer.add(r, {}, 4);
  observer.add(r, {}, 4);
  collapse::Thresholds t;
  const collapse::LayerStats s = observer.stats(0, t, 2);
  CHECK(s.kept == std::vector<int64_t>{2, 0, 2, 0});
  CHECK(s.device_slots == std::vector<int64_t>{2, 2});  // kept, not counted: 6 vs 2 before drops
  CHECK(s.device_imbalance == 1.0);
  const collapse::LayerStats one_device = observer.stats(0, t, 1);
  CHECK(one_device.device_imbalance == 1.0);
  CHECK((collapse::crossed_thresholds(one_device, t) & 8) == 0);  // one device is never imbalanced
  CHECK_THROWS(observer.stats(0, t, 3));

  collapse::LayerStats skewed;
  skewed.experts = 4;
  skewed.top_k = 1;
  collapse::set_devices(skewed, {6, 0, 1, 1}, 2);  // devices {6, 2}: 1.5
  CHECK(skewed.device_imbalance == 1.5);
  t.device_imbalance = 1.5;
  CHECK((collapse::crossed_thresholds(skewed, t) & 8) == 0);  // at the threshold, not above
  t.device_imbalance = 1.4;
  CHECK((collapse::crossed_thresholds(skewed, t) & 8) == 8);
  skewed.wait_share = 0.25;
  CHECK_THAT(collapse::live_warning(skewed, t), Contains("device imbalance 1.50 > 1.40 over 2 devices") &&
                                                    Contains("device 0 computes 75% of the slots") &&
                                                    Contains("ranks wait 25% of the step"));
}

namespace {

collapse::LayerStats measured(std::vector<double> slots, double compute, double wait) {
  collapse::LayerStats s;
  s.rank_slots = slots;
  s.rank_compute_seconds.assign(slots.size(), compute);
  s.rank_wait_seconds.assign(slots.size(), wait);
  s.device_imbalance = 1.25;
  s.wait_share = 0.5;
  return s;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("per-rank expert load in metrics.jsonl, metrics.csv and the history", "[devices][metrics_log]") {
  const fs::path dir = fs::temp_directory_path() / ("device_log_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  train::MetricsLog log({"switch_aux"}, 1, 2, 2);
  log.open(dir.string());
  train::StepMetrics m;
  m.step = 1;
  m.counts = {{3, 5}};
  m.layers = {measured({3, 5}, 0.5, 0.25)};
  log.record_step(m);
  const std::string jsonl = read_file(dir / "metrics.jsonl"), csv = read_file(dir / "metrics.csv");
  CHECK_THAT(jsonl, Contains("\"rank_slots\": [3, 5]") && Contains("\"rank_compute_s\": [0.5, 0.5]") &&
                        Contains("\"rank_wait_s\": [0.25, 0.25]") && Contains("\"device_imbalance\": 1.25") &&
                        Contains("\"wait_share\": 0.5"));
  const std::string header = csv.substr(0, csv.find('\n'));
  CHECK_THAT(header, Contains(",moe0_device_imbalance,moe0_wait_share,moe0_rank0_slots,moe0_rank1_slots,"
                              "moe0_rank0_compute_s,moe0_rank1_compute_s,moe0_rank0_wait_s,moe0_rank1_wait_s"));
  // The per-layer health columns follow (effective experts 0 for these hand-made stats, the rest unmeasured).
  CHECK_THAT(csv, Contains(",3,5,1.25,0.5,3,5,0.5,0.5,0.25,0.25,0,,,,,\n"));
  CHECK(log.history().ranks == 2);
  CHECK(log.history().rank_slots == std::vector<double>{3, 5});

  // A history of one rank, continued on three (a run resumed on more processes): the old steps
  // get NaN for the ranks they did not have, the new step all three.
  train::MetricsLog wider({"switch_aux"}, 1, 2, 3);
  train::MetricsLog single({"switch_aux"}, 1, 2, 1);
  m.layers = {measured({8}, 1.0, 0.0)};
  single.record_step(m);
  wider.set_history(single.history());
  m.step = 2;
  m.layers = {measured({2, 3, 3}, 1.0, 0.0)};
  wider.record_step(m);
  const ckpt::MetricsHistory& h = wider.history();
  REQUIRE(h.ranks == 3);
  REQUIRE(h.rank_slots.size() == 6);
  CHECK(h.rank_slots[0] == 8);
  CHECK((std::isnan(h.rank_slots[1]) && std::isnan(h.rank_slots[2])));
  CHECK(std::vector<double>(h.rank_slots.begin() + 3, h.rank_slots.end()) == std::vector<double>{2, 3, 3});
  // A step without per-layer stats (not a log step) records NaN for every rank.
  train::StepMetrics bare;
  bare.step = 3;
  bare.counts = {{1, 1}};
  wider.record_step(bare);
  CHECK(std::isnan(wider.history().rank_wait_seconds.back()));
  fs::remove_all(dir);
}

TEST_CASE("moe-diagnose's prediction: per layer the busiest rank over the mean, overall their sums",
          "[devices][diagnose]") {
  std::vector<diagnose::LayerResult> layers(2);
  layers[0].stats.kept = {5, 1, 0, 2, 3, 3, 1, 1};  // at 4 ranks {6, 2, 6, 2}: 6 / 4
  layers[1].stats.kept = {8, 8, 0, 0, 0, 0, 0, 0};  // at 4 ranks {16, 0, 0, 0}: 16 / 4
  const diagnose::DevicePrediction p = diagnose::predict_devices(layers, 4);
  CHECK(p.ranks == 4);
  CHECK(p.loads == std::vector<std::vector<int64_t>>{{6, 2, 6, 2}, {16, 0, 0, 0}});
  CHECK(p.slowdown == std::vector<double>{1.5, 4.0});
  CHECK(p.overall == Approx((6.0 + 16.0) / (4.0 + 4.0)));  // the layers run one after the other
  const diagnose::DevicePrediction two = diagnose::predict_devices(layers, 2);
  CHECK(two.slowdown == std::vector<double>{1.0, 2.0});
  CHECK_THROWS_WITH(diagnose::predict_devices(layers, 3), Contains("--ep 3: 3 devices cannot hold 8 experts"));

  // The view: --ep first, then the report's counts; the last logged step's measurement.
  diagnose::Result r;
  r.experts = 8;
  r.layers = layers;
  ckpt::MetricsHistory h;
  h.step = {10, 20};
  h.layers = 2;
  h.ranks = 2;
  h.layer_metrics["device_imbalance"] = {1.1, 1.2, 1.3, 1.4};
  h.layer_metrics["wait_share"] = {0.1, 0.2, 0.3, 0.4};
  diagnose::Options o;
  o.ep = 4;
  diagnose::add_device_view(r, o, h, 2);
  REQUIRE(r.devices.size() == 3);
  CHECK(r.devices[0].ranks == 4);
  CHECK(r.devices[1].ranks == 2);
  CHECK(r.devices[2].ranks == 8);
  REQUIRE(r.measured);
  CHECK(r.measured->step == 20);
  CHECK(r.measured->imbalance == std::vector<double>{1.3, 1.4});
  CHECK(r.measured->wait_share == std::vector<double>{0.3, 0.4});
  std::ostringstream text, json;
  diagnose::print_devices(r, text);
  CHECK_THAT(text.str(), Contains("kept slots per rank at N = 4") &&
                             Contains("measured in training at step 20 over 2 devices on 2 ranks"));
  diagnose::Result one_device = r;  // a run whose experts were not grouped has nothing measured to show
  one_device.devices.clear();
  one_device.measured.reset();
  diagnose::add_device_view(one_device, o, h, 1);
  CHECK_FALSE(one_device.measured);
  diagnose::write_devices_json(r, json);
  CHECK_THAT(json.str(), Contains("{\"ranks\": 4, \"slowdown\": [1.5, 4], \"overall\": 2.75"));
}
