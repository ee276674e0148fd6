// Multi-process runs and the device view (run by test_parallel.cpp's main under mpirun -np 4):
// device_aux over expert-parallel ranks against one process with the same device grouping, and
// the expert load each rank measures against the step's kept slots.
#include <algorithm>
#include <catch2/catch.hpp>
#include <sstream>

#include "tests/tools/parallel_support.h"
#include "tools/lib/collapse/metrics.h"

using namespace parallel_test;  // with its rc = runconfig, ProcessGroups and Trainer

TEST_CASE("parallel: device_aux at parallel.expert 2 and 4 equals one process with moe.device_groups 2 and 4",
          "[parallel][device_aux]") {
  rc::RunConfig c = small_config(rc::RouterKind::topk_softmax);
  c.moe.losses.device_aux = 0.1;
  const int batch = c.training.batch_size;
  for (const Layout& l : {Layout{2, 2}, Layout{4, 2}, Layout{4, 4}}) {
    const Trace many = train_parallel(c, l.ranks, l.expert);  // moe.device_groups 0: one device per rank
    rc::RunConfig alone = c;
    alone.moe.device_groups = l.expert;
    const Trace one = train_alone(alone, l.ranks * batch, 1);
    std::string diff;
    if (g_world->rank() == 0) {
      diff = differences(many, one, 1e-5);
      if (!one.terms.count("device_aux")) diff += "no device_aux term\n";
      if (l.ranks == 2) {  // the comparison must see the grouping: one process with 4 devices differs
        alone.moe.device_groups = 4;
        if (differences(many, train_alone(alone, l.ranks * batch, 1), 1e-5).empty())
          diff += "one process with 4 devices equals the run on 2: the case tests nothing\n";
      }
    }
    diff = verdict(diff);
    INFO(l.ranks << " ranks, parallel.expert " << l.expert << ":\n" << diff);
    CHECK(diff.empty());
  }
  // Two devices over 4 expert-parallel ranks (ranks grouped by node, say): the same as one
  // process with two devices.
  c.moe.device_groups = 2;
  const Trace many = train_parallel(c, 4, 4);
  const Trace one = train_alone(c, 4 * batch, 1);
  const std::string diff = verdict(g_world->rank() == 0 ? differences(many, one, 1e-5) : "");
  INFO("4 ranks, parallel.expert 4, moe.device_groups 2:\n" << diff);
  CHECK(diff.empty());
}

TEST_CASE("parallel: a MoE layer without device_groups has one device per rank of its expert group",
          "[parallel][device_aux]") {
  // The config path spells the count out (0 becomes parallel.expert); the layer's own default
  // serves the C++ API. Forward only: nothing goes on the tape.
  engine::NoGradScope no_grad;
  moe::MoeLayerConfig mc;
  mc.router.num_experts = 8;
  mc.d_model = 4;
  mc.d_expert = 4;
  mc.expert_group = g_world->split(g_world->rank() / 2);  // two groups of two ranks
  engine::Generator gen(3);
  const engine::Tensor x = engine::randn({1, 3, 4}, gen);
  std::vector<int64_t> devices;
  for (int64_t groups : {0, 4}) {
    mc.device_groups = groups;
    moe::ParamStore params;
    moe::MoeLayer layer(mc, params, "moe", 0.02, 0.02, gen);
    devices.push_back(layer.forward(x, nullptr, false, nullptr).routing.devices);
  }
  const std::vector<int64_t> all = g_world->all_gather(devices);
  INFO("devices per rank (device_groups 0, then 4):" << [&] {
    std::ostringstream s;
    for (int64_t d : all) s << " " << d;
    return s.str();
  }());
  CHECK(all == std::vector<int64_t>{2, 4, 2, 4, 2, 4, 2, 4});
}

TEST_CASE("parallel: the slots each rank measures add up to the kept slots and group as the devices", "[parallel]") {
  // switch with capacity 1: some slots are dropped, so kept slots differ from the counts.
  rc::RunConfig c = small_config(rc::RouterKind::switch_k1);
  c.moe.top_k = 1;
  c.moe.num_experts = 8;
  c.moe.capacity_factor = 1.0;
  for (int expert : {4, 2}) {  // 4: one rank per device; 2: two copies of two devices
    c.parallel.expert = expert;
    std::ostringstream quiet;
    Trainer trainer(c, quiet, nullptr, ProcessGroups::make(g_world, expert));
    const train::StepMetrics m = trainer.step();  // step 1 is a log step
    std::ostringstream out;
    int64_t dropped = 0;
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const collapse::LayerStats& s = m.layers[l];
      int64_t counted = 0, kept = 0;
      for (int64_t v : s.counts) counted += v;
      for (int64_t v : s.kept) kept += v;
      dropped += counted - kept;
      double received = 0;
      for (double v : s.rank_slots) received += v;
      if (static_cast<int>(s.rank_slots.size()) != g_world->size())
        out << "layer " << l << ": not one entry per rank\n";
      if (received != static_cast<double>(kept))
        out << "layer " << l << ": ranks received " << received << ", kept " << kept << "\n";
      if (s.devices != expert) out << "layer " << l << ": " << s.devices << " devices\n";
      // Rank r holds the experts of device r % expert; the copies of one device add up to it.
      std::vector<int64_t> by_device(static_cast<size_t>(expert), 0);
      for (size_t r = 0; r < s.rank_slots.size(); ++r) by_device[r % expert] += static_cast<int64_t>(s.rank_slots[r]);
      if (by_device != s.device_slots) out << "layer " << l << ": measured slots are not the devices' kept slots\n";
      const int64_t most = *std::max_element(s.device_slots.begin(), s.device_slots.end());
      if (std::abs(s.device_imbalance - static_cast<double>(most) * expert / static_cast<double>(kept)) > 1e-12)
        out << "layer " << l << ": device imbalance " << s.device_imbalance << "\n";
      for (size_t r = 0; r < s.rank_slots.size(); ++r)
        if (!(s.rank_compute_seconds[r] > 0) || !(s.rank_wait_seconds[r] >= 0))
          out << "layer " << l << " rank " << r << ": compute " << s.rank_compute_seconds[r] << " s, wait "
              << s.rank_wait_seconds[r] << " s\n";
      if (!(s.wait_share >= 0 && s.wait_share < 1)) out << "layer " << l << ": wait share " << s.wait_share << "\n";
    }
    if (m.layers.size() != 2) out << m.layers.size() << " layers of stats\n";
    if (dropped != m.dropped || dropped == 0) out << "dropped " << dropped << " vs the step's " << m.dropped << "\n";
    const std::string diff = verdict(g_world->rank() == 0 ? out.str() : "");
    INFO("parallel.expert " << expert << ":\n" << diff);
    CHECK(diff.empty());
  }
}
