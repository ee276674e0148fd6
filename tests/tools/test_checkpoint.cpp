// Checkpoints: bit-exact resume for every router and balance loss, keep-last-K, a save killed
// at several points, every kind of bad file with its message, config-mismatch refusal, and the
// NaN stop with its diagnostic checkpoint.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
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

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("ckpt_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

// A small, fast run (tests/tools/small_run.h) with evaluations; `extra` are overrides (router,
// losses, ...).
runconfig::RunConfig small_run(const fs::path& out, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"training.eval_every=2", "training.eval_batches=1"});
  return runtest::small_run(out, extra);
}

std::vector<std::vector<float>> parameters(train::Trainer& t) {
  std::vector<std::vector<float>> out;
  for (const moe::NamedParam& p : t.model().params().all()) out.push_back(p.tensor.to_float_vector());
  return out;
}

std::string save_a_checkpoint(const std::string& name, int steps = 2) {
  const fs::path dir = fresh_dir(name);
  std::ostringstream quiet;
  train::Trainer t(small_run(dir), quiet);
  for (int s = 0; s < steps; ++s) t.step();
  return t.save_checkpoint();
}

}  // namespace

TEST_CASE("resume: N steps, save, resume, N more is bit-identical to 2N straight", "[checkpoint][resume]") {
  const std::vector<std::vector<std::string>> runs = {
      {"moe.router=topk_softmax", "moe.losses={switch_aux: 0.01, importance: 0.01, z_loss: 0.001, sequence_aux: 0.01}"},
      {"moe.router=topk_softmax", "moe.bias_update_rate=0.01", "moe.capacity_factor=1.0", "moe.drop_policy=score"},
      {"moe.router=switch", "moe.top_k=1", "moe.capacity_factor=1.25", "moe.losses={switch_aux: 0.01}"},
      {"moe.router=noisy_topk", "moe.losses={load: 0.01, importance: 0.01}"},
      {"moe.router=sigmoid_topk", "moe.bias_update_rate=0.01", "moe.losses={sequence_aux: 0.01}"},
      {"moe.router=expert_choice", "moe.capacity_factor=1.0", "moe.losses={z_loss: 0.001}"},
      {"moe.router=hash", "moe.top_k=1", "moe.losses={importance: 0.01}"},
      {"model.dropout=0.1", "training.grad_accum=2", "model.norm=rmsnorm", "model.position=rope"},
      // Routing options: the jitter draws from the checkpointed router_noise generator.
      {"moe.input_jitter=0.1", "moe.softmax_order=after_topk", "moe.routed_scaling=2.0", "moe.capacity_factor=1.0",
       "moe.eval_capacity_factor=2.0"},
      {"moe.router=sinkhorn", "moe.input_jitter=0.05", "moe.losses={z_loss: 0.001}"},
      {"moe.router=noisy_topk", "moe.expert_groups=2", "moe.topk_groups=1", "moe.input_jitter=0.1"},
      {"moe.router=sigmoid_topk", "moe.force_balance=true", "moe.bias_update_rate=0.01"},
      // Revival checks at steps 2, 4 and 6, the save after step 3: revivals on both sides of it,
      // and a window half counted when it is saved. Every expert below the uniform share is dead.
      {"moe.revival={check_every: 2, mode: copy_busiest, noise: 0.01}", "moe.bias_update_rate=0.01",
       "diagnostics={dead_fraction: 1.0, starved_fraction: 1.0}"},
      {"moe.revival={check_every: 2, mode: fresh}", "moe.router=noisy_topk",
       "diagnostics={dead_fraction: 1.0, starved_fraction: 1.0}"},
  };
  for (const auto& extra : runs) {
    std::string label;
    for (const auto& e : extra) label += e + " ";
    INFO(label);
    const fs::path straight_dir = fresh_dir("straight"), split_dir = fresh_dir("split");
    std::ostringstream quiet;
    train::Trainer straight(small_run(straight_dir, extra), quiet);
    std::vector<double> losses;
    for (int s = 0; s < 6; ++s) losses.push_back(straight.step().loss);
    const double straight_eval = straight.evaluate();

    std::string path;
    {
      train::Trainer first(small_run(split_dir, extra), quiet);
      for (int s = 0; s < 3; ++s) CHECK(first.step().loss == losses[s]);
      path = first.save_checkpoint();
    }
    train::Trainer second(small_run(split_dir, extra), quiet);
    second.resume(path);
    CHECK(second.steps_done() == 3);
    for (int s = 3; s < 6; ++s) CHECK(second.step().loss == losses[s]);  // bit for bit
    CHECK(parameters(second) == parameters(straight));
    CHECK(second.evaluate() == straight_eval);
    const ckpt::MetricsHistory &resumed = second.metrics().history(), &whole = straight.metrics().history();
    CHECK(resumed.revival_step == whole.revival_step);
    CHECK(resumed.revival_expert == whole.revival_expert);
    CHECK(resumed.revival_source == whole.revival_source);
    if (label.find("revival") != std::string::npos) {  // revivals happened before and after the save
      REQUIRE_FALSE(whole.revival_step.empty());
      CHECK(whole.revival_step.front() <= 3);
      CHECK(whole.revival_step.back() > 3);
    }
  }
}

TEST_CASE("resume with scheduled balancing is bit-identical, and the history carries the values in force",
          "[checkpoint][resume][schedule]") {
  // The schedules change on both sides of the checkpoint (after step 3 of 6).
  const std::vector<std::string> extra = {
      "moe.losses.switch_aux={schedule: linear, from: 0.2, to: 0.01, steps: 4, start: 1}",
      "moe.bias_update_rate={schedule: warmup, value: 0.02, steps: 5}"};
  const fs::path straight_dir = fresh_dir("sched_straight"), split_dir = fresh_dir("sched_split");
  std::ostringstream quiet;
  train::Trainer straight(small_run(straight_dir, extra), quiet);
  std::vector<double> losses;
  for (int s = 0; s < 6; ++s) losses.push_back(straight.step().loss);
  std::string path;
  {
    train::Trainer first(small_run(split_dir, extra), quiet);
    for (int s = 0; s < 3; ++s) CHECK(first.step().loss == losses[s]);
    path = first.save_checkpoint();
  }
  train::Trainer second(small_run(split_dir, extra), quiet);
  second.resume(path);
  for (int s = 3; s < 6; ++s) CHECK(second.step().loss == losses[s]);  // bit for bit
  CHECK(parameters(second) == parameters(straight));
  for (size_t l = 0; l < straight.model().moe_layers().size(); ++l)
    CHECK(second.model().moe_layers()[l]->bias() == straight.model().moe_layers()[l]->bias());

  // A run logged through run() keeps the values in its history and checkpoint; a checkpoint
  // from before they were logged (no such arrays) still loads, and resuming it fills its history
  // with the values that were in force.
  const fs::path logged_dir = fresh_dir("sched_logged");
  train::Trainer logged(small_run(logged_dir, extra), quiet);
  logged.run();
  ckpt::Checkpoint c = ckpt::read_checkpoint((logged_dir / "checkpoints" / "step_00000006.h5").string());
  const runconfig::RunConfig cfg = small_run(logged_dir, extra);
  REQUIRE(c.metrics.bias_update_rate.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(c.metrics.coefficients.at("switch_aux")[i] == cfg.moe.losses.switch_aux.at(c.metrics.step[i]));
    CHECK(c.metrics.coefficients.at("importance")[i] == 0.0);
    CHECK(c.metrics.bias_update_rate[i] == cfg.moe.bias_update_rate.at(c.metrics.step[i]));
  }
  const ckpt::MetricsHistory recorded = c.metrics;
  c.metrics.coefficients.clear();
  c.metrics.bias_update_rate.clear();
  const std::string old = (fresh_dir("sched_old") / "step_00000006.h5").string();
  fs::create_directories(fs::path(old).parent_path());
  ckpt::write_checkpoint(old, c);
  const ckpt::Checkpoint back = ckpt::read_checkpoint(old);
  CHECK(back.metrics.coefficients.empty());
  CHECK(back.metrics.bias_update_rate.empty());
  const fs::path resumed_dir = fresh_dir("sched_resumed");
  train::Trainer resumed(small_run(resumed_dir, extra), quiet);
  resumed.resume(old);
  const ckpt::MetricsHistory& h = resumed.metrics().history();
  REQUIRE(h.bias_update_rate.size() == 6);
  CHECK(h.coefficients == recorded.coefficients);
  CHECK(h.bias_update_rate == recorded.bias_update_rate);
}

TEST_CASE("moe-train keeps the last K checkpoints, and the history across a resume", "[checkpoint]") {
  const fs::path dir = fresh_dir("keep");
  std::ostringstream progress;
  train::Trainer t(small_run(dir, {"training.steps=10", "checkpointing.every=2", "checkpointing.keep_last=3"}),
                   progress);
  CHECK(t.run() == train::RunEnd::finished);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"step_00000006.h5", "step_00000008.h5", "step_00000010.h5"});
  CHECK(train::latest_checkpoint(dir.string()) == (dir / "checkpoints" / "step_00000010.h5").string());
  const ckpt::Checkpoint c = ckpt::read_checkpoint((dir / "checkpoints" / "step_00000010.h5").string());
  CHECK(c.metrics.size() == 10);  // logging.every = 1
  CHECK(c.metrics.eval_step == std::vector<int64_t>{2, 4, 6, 8, 10});
  CHECK(c.metrics.expert_counts.size() == 10 * 2 * 4);
  CHECK(c.step == 10);
  CHECK(c.tokens_seen == 10 * 2 * 16);
}

TEST_CASE("checkpoints keep each rank's expert load per layer and logged step", "[checkpoint][devices]") {
  const fs::path dir = fresh_dir("ranks");
  std::ostringstream quiet;
  train::Trainer t(small_run(dir, {"training.steps=2", "checkpointing.every=2"}), quiet);
  t.run();
  const std::string path = train::latest_checkpoint(dir.string());
  const ckpt::Checkpoint c = ckpt::read_checkpoint(path);
  const ckpt::MetricsHistory& m = c.metrics;
  REQUIRE(m.ranks == 1);
  REQUIRE(m.rank_slots.size() == 2 * 2);  // 2 logged steps x 2 MoE layers x 1 rank
  for (size_t i = 0; i < m.rank_slots.size(); ++i) {
    CHECK(m.rank_slots[i] == 2 * 16 * 2);  // every slot of batch 2 x 16 tokens x top-2, no capacity
    CHECK(m.rank_compute_seconds[i] > 0);
    CHECK(m.rank_wait_seconds[i] == 0);  // one process waits for nobody
  }
  CHECK(m.layer_metrics.at("device_imbalance").size() == 4);
  // A file written before the per-rank history existed (by version 0.4.0) still reads: its
  // checksum leaves out what it does not have.
  const ckpt::Checkpoint old_file =
      ckpt::read_checkpoint(std::string(ENGINE_SOURCE_DIR) + "/tests/fuzz/seeds/checkpoint/small.h5");
  CHECK(old_file.engine_version == "0.4.0");
  CHECK(old_file.metrics.ranks == 0);
  CHECK(old_file.metrics.rank_slots.empty());
  CHECK(old_file.metrics.expert_grad_norm.empty());  // nor the per-expert health, nor the idle state
  CHECK(old_file.expert_last_active.empty());
  // And a history without it is written without /metrics/ranks.
  ckpt::Checkpoint older = c;
  older.metrics.ranks = 0;
  older.metrics.rank_slots.clear();
  older.metrics.rank_compute_seconds.clear();
  older.metrics.rank_wait_seconds.clear();
  const std::string p = path + ".older.h5";
  ckpt::write_checkpoint(p, older);
  {
    h5::File f(p, h5::File::Mode::read);
    CHECK_FALSE(f.exists("/metrics/ranks"));
  }
  CHECK(ckpt::read_checkpoint(p).metrics.ranks == 0);
  // Arrays that disagree with the history's shape are named.
  ckpt::Checkpoint bad = c;
  bad.metrics.ranks = 2;
  bad.metrics.rank_wait_seconds.resize(2 * 2 * 2);
  bad.metrics.rank_slots.resize(2 * 2 * 2);
  bad.metrics.rank_compute_seconds.resize(2 * 2 * 2 - 1);
  CHECK_THROWS(ckpt::write_checkpoint(p, bad));  // the writer refuses a dataset of the wrong size
}

TEST_CASE("resume refuses a config that changes the model and names the keys", "[checkpoint][errors]") {
  const std::string path = save_a_checkpoint("mismatch");
  std::ostringstream quiet;
  const fs::path dir2 = fresh_dir("mismatch2");
  fs::create_directories(dir2);
  std::ofstream(dir2 / "metrics.csv") << "precious\n";
  train::Trainer other(small_run(dir2, {"model.d_model=32", "moe.top_k=1", "data.seed=5"}), quiet);
  CHECK_THROWS_WITH(other.resume(path), Contains("refusing to resume") && Contains("model.d_model") &&
                                            Contains("moe.top_k") && Contains("data.seed") && Contains(path));
  std::ifstream kept(dir2 / "metrics.csv");  // a refused resume leaves the run folder alone
  std::string line;
  std::getline(kept, line);
  CHECK(line == "precious");
  std::ostringstream said;
  train::Trainer longer(small_run(fresh_dir("mismatch3"), {"training.steps=20", "optimizer.lr=0.001"}), said);
  longer.resume(path);
  CHECK_THAT(said.str(), Contains("resumed from " + path + " at step 2") && Contains("changed training keys:") &&
                             Contains("optimizer.lr") && Contains("training.steps"));
}

TEST_CASE("resume keeps the device grouping device_aux trains with, and only that", "[checkpoint][errors]") {
  const fs::path dir = fresh_dir("devices");
  std::ostringstream quiet;
  const std::vector<std::string> grouped = {"moe.losses.device_aux=0.01", "moe.device_groups=2"};
  std::string path;
  {
    train::Trainer t(small_run(dir, grouped), quiet);
    t.step();
    path = t.save_checkpoint();
  }
  std::vector<std::string> regrouped = grouped;
  regrouped.back() = "moe.device_groups=4";
  train::Trainer other(small_run(fresh_dir("devices2"), regrouped), quiet);
  CHECK_THROWS_WITH(other.resume(path), Contains("refusing to resume") && Contains("moe.device_groups") &&
                                            Contains("into 2 devices in the checkpoint and 4 here: set "
                                                     "moe.device_groups: 2 to resume"));
  train::Trainer same(small_run(fresh_dir("devices3"), grouped), quiet);
  CHECK_NOTHROW(same.resume(path));
  // Without the loss the grouping only changes a logged measurement.
  const std::string plain = save_a_checkpoint("devices4");
  std::ostringstream said;
  train::Trainer measured(small_run(fresh_dir("devices5"), {"moe.device_groups=2"}), said);
  measured.resume(plain);
  CHECK_THAT(said.str(), Contains("changed training keys: moe.device_groups"));
}

TEST_CASE("bad checkpoint files give one clear error naming the file and what is wrong", "[checkpoint][errors]") {
  const std::string good = save_a_checkpoint("bad");
  const fs::path dir = fs::path(good).parent_path();
  auto copy = [&](const std::string& name) {
    const fs::path p = dir / name;
    fs::copy_file(good, p, fs::copy_options::overwrite_existing);
    return p.string();
  };
  SECTION("missing") { CHECK_THROWS_WITH(ckpt::read_checkpoint("nope.h5"), Contains("nope.h5: no such file")); }
  SECTION("not HDF5") {
    const std::string p = (dir / "text.h5").string();
    std::ofstream(p) << "hello";
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p), Contains(p + ": not a moe-engine checkpoint (no checkpoint header"));
  }
  SECTION("truncated") {
    const std::string p = copy("truncated.h5");
    fs::resize_file(p, fs::file_size(p) / 2);
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p), Contains(p + ": truncated checkpoint: "));
  }
  SECTION("corrupted: a value edited through HDF5, or bytes flipped on disk") {
    const std::string p = copy("corrupted.h5");
    {
      h5::File f(p, h5::File::Mode::read_write);
      std::vector<float> w = f.read_floats("/model/layers.1.attn.qkv.weight");
      w[5] += 1.0f;
      f.write_floats("/model/layers.1.attn.qkv.weight", w, f.dims("/model/layers.1.attn.qkv.weight"));
    }
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p), Contains(p + ": corrupted checkpoint"));
    const std::string q = copy("flipped.h5");
    {
      std::fstream f(q, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(fs::file_size(q) / 2));
      f.put('\x5a');
    }
    CHECK_THROWS_WITH(ckpt::read_checkpoint(q), Contains(q + ": corrupted checkpoint"));
  }
  SECTION("foreign HDF5 file") {
    const std::string ref = std::string(ENGINE_SOURCE_DIR) + "/tests/data/reference/hash__ce_only.h5";
    CHECK_THROWS_WITH(ckpt::read_checkpoint(ref), Contains("not a moe-engine checkpoint"));
  }
  SECTION("wrong version") {
    const std::string p = copy("version.h5");
    {
      std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
      std::string head(64, '\0');
      f.read(head.data(), 64);
      const size_t at = head.find("format_version 1");
      REQUIRE(at != std::string::npos);
      f.seekp(static_cast<std::streamoff>(at + 15));
      f.put('7');
    }
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p), Contains("format version 7, this build reads version 1"));
  }
  SECTION("incomplete: the save stopped before its header") {
    const std::string q = (dir / "nomark.h5").string();
    {
      h5::File f(q, h5::File::Mode::create, 512);
      f.write_string_attribute("/", "format", "moe-engine checkpoint");
    }
    CHECK_THROWS_WITH(ckpt::read_checkpoint(q), Contains(q + ": incomplete checkpoint: its save did not finish"));
  }
  SECTION("a directory, or an empty file, is called that") {
    const std::string folder = dir.string();
    const std::string empty = (dir / "step_00000009.h5").string();
    std::ofstream{empty};
    CHECK_THROWS_WITH(ckpt::read_checkpoint(folder), Contains(folder + ": is a directory, not a checkpoint file"));
    CHECK_THROWS_WITH(ckpt::read_checkpoint(empty), Contains(empty + ": is empty (0 bytes)"));
    CHECK_THROWS_WITH(h5::File(folder, h5::File::Mode::read), Contains(folder + ": is a directory"));
    CHECK_THROWS_WITH(h5::File(empty, h5::File::Mode::read), Contains(empty + ": is empty (0 bytes)"));
    std::ostringstream quiet;
    train::Trainer t(small_run(fresh_dir("dir_resume")), quiet);
    CHECK_THROWS_WITH(t.resume(folder), Contains("is a directory") && !Contains("HDF5"));
    std::vector<std::string> skipped;  // --resume latest passes over the empty file, saying why
    CHECK(train::latest_checkpoint(dir.parent_path().string(), &skipped) == good);
    CHECK_THAT(skipped.at(0), Contains(empty + ": is empty (0 bytes)"));
  }
  SECTION("per-layer metrics that disagree with the routers (moe-inspect indexes one by the other)") {
    const ckpt::Checkpoint c = ckpt::read_checkpoint(good);
    REQUIRE(c.metrics.layers == 2);
    REQUIRE(c.metrics.experts == 4);
    const std::string p = (dir / "counts.h5").string();
    ckpt::Checkpoint no_experts = c;  // a complete file, checksum and all, with [steps, 2, 0] counts
    no_experts.metrics.experts = 0;
    no_experts.metrics.expert_counts.clear();
    ckpt::write_checkpoint(p, no_experts);
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p),
                      Contains(p + ": /metrics/expert_counts: counts 2 MoE layers of 0 experts"));
    ckpt::Checkpoint more_layers = c;
    more_layers.metrics.layers = 3;
    more_layers.metrics.expert_counts.resize(c.metrics.size() * 3 * 4);
    ckpt::write_checkpoint(p, more_layers);
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p),
                      Contains(p + ": /metrics/expert_counts: counts 3 MoE layers, /router holds 2"));
    ckpt::Checkpoint short_bias = c;
    short_bias.router_bias.begin()->second.resize(3);
    const std::string layer = std::to_string(short_bias.router_bias.begin()->first);
    ckpt::write_checkpoint(p, short_bias);
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p),
                      Contains(p + ": /router/" + layer + "/bias: holds 3 experts, /metrics/expert_counts 4"));
    ckpt::Checkpoint short_idle = c;  // the idle window's state is per (layer, expert) too
    short_idle.expert_last_active.resize(3);
    ckpt::write_checkpoint(p, short_idle);
    CHECK_THROWS_WITH(ckpt::read_checkpoint(p),
                      Contains(p + ": /state/expert_last_active: must hold MoE layers x experts = 8 values"));
  }
  SECTION("tensor shapes that do not match the file's own config") {
    ckpt::Checkpoint c = ckpt::read_checkpoint(good);
    for (ckpt::NamedArray* a : {&c.params[3], &c.adam_m[3], &c.adam_v[3]}) {
      a->shape = {static_cast<int64_t>(a->values.size())};  // flattened
    }
    const std::string name = c.params[3].name;
    const std::string p = (dir / "shapes.h5").string();
    ckpt::write_checkpoint(p, c);  // a complete file, checksum and all
    std::ostringstream quiet;
    train::Trainer t(small_run(fresh_dir("shapes2")), quiet);
    CHECK_THROWS_WITH(t.resume(p), Contains(p + ": /model/" + name + ": has shape"));
  }
}

TEST_CASE("a fresh run refuses a folder with checkpoints, and resuming an older one sets later ones aside",
          "[checkpoint]") {
  const fs::path dir = fresh_dir("folder");
  std::ostringstream quiet;
  {
    train::Trainer t(small_run(dir, {"checkpointing.every=2"}), quiet);
    t.run();
  }
  train::Trainer fresh(small_run(dir, {"checkpointing.every=2"}), quiet);
  CHECK_THROWS_WITH(fresh.run(),
                    Contains("holds checkpoints of an earlier run (newest: step 6)") && Contains("--resume latest"));
  std::ostringstream said;
  train::Trainer again(small_run(dir, {"checkpointing.every=2"}), said);
  again.resume((dir / "checkpoints" / "step_00000002.h5").string());
  CHECK_THAT(said.str(), Contains("moved step_00000004.h5") && Contains("moved step_00000006.h5"));
  CHECK(fs::exists(dir / "checkpoints" / "superseded" / "step_00000006.h5"));
  CHECK(train::checkpoint_steps((dir / "checkpoints").string()) == std::vector<int64_t>{2});
  CHECK(again.run() == train::RunEnd::finished);
  CHECK(train::checkpoint_steps((dir / "checkpoints").string()) == std::vector<int64_t>{2, 4, 6});
}

TEST_CASE("a NaN stops training, names the tensor and leaves a diagnostic checkpoint", "[checkpoint][nan]") {
  const fs::path dir = fresh_dir("nan");
  std::ostringstream progress;
  train::Trainer t(small_run(dir, {"training.steps=5"}), progress);
  t.step();
  const moe::NamedParam& p = t.model().params().all()[5];
  p.tensor.data<float>()[2] = std::nanf("");
  CHECK_THROWS_WITH(t.run(), Contains("training stopped at step 2") && Contains("parameter " + p.name) &&
                                 Contains("diagnostic checkpoint") && Contains("diagnostic_step_00000001.h5"));
  const std::string diag = (dir / "checkpoints" / "diagnostic_step_00000001.h5").string();
  const ckpt::Checkpoint c = ckpt::read_checkpoint(diag);
  CHECK_THAT(c.diagnostic, Contains(p.name));
  CHECK(c.loaders.at("train")[2] == 1);  // the data cursor before the failing step: it can be replayed
  std::ostringstream quiet;
  train::Trainer again(small_run(fresh_dir("nan2"), {"training.steps=5"}), quiet);
  CHECK_THROWS_WITH(again.resume(diag), Contains("a diagnostic checkpoint"));
  CHECK_THROWS_WITH(train::latest_checkpoint(dir.string()), Contains("no complete checkpoint"));
}

#ifdef MOE_TRAIN_BINARY
// The real program, killed (SIGKILL) at several points of a save: the previous checkpoint must
// stay loadable, `--resume latest` must find a good one, and the run must complete from it.
TEST_CASE("a save killed at any point leaves the previous checkpoint loadable", "[checkpoint][crash]") {
  for (const char* point : {"open", "params", "optimizer", "flush", "rename", "cleanup"}) {
    INFO("killed at " << point);
    const fs::path dir = fresh_dir(std::string("crash_") + point);
    const std::string base = std::string(MOE_TRAIN_BINARY) + " --config " + ENGINE_SOURCE_DIR +
                             "/configs/collapse.yaml --set training.steps=2 --set model.d_model=16 --set "
                             "model.n_heads=2 --set training.seq_len=16 --set training.batch_size=2 --out " +
                             dir.string() + " > " + (dir.string() + ".log") + " 2>&1";
    REQUIRE(std::system(base.c_str()) == 0);
    const std::string crash = "MOE_ENGINE_CRASH_IN_SAVE=" + std::string(point) + " " + std::string(MOE_TRAIN_BINARY) +
                              " --config " + ENGINE_SOURCE_DIR +
                              "/configs/collapse.yaml --set training.steps=4 --set model.d_model=16 --set "
                              "model.n_heads=2 --set training.seq_len=16 --set training.batch_size=2 --out " +
                              dir.string() + " --resume latest >> " + (dir.string() + ".log") + " 2>&1";
    CHECK(std::system(crash.c_str()) != 0);  // killed
    const std::string latest = train::latest_checkpoint(dir.string());
    const bool renamed = std::string(point) == "cleanup";
    CHECK(fs::path(latest).filename() == (renamed ? "step_00000004.h5" : "step_00000002.h5"));
    CHECK_NOTHROW(ckpt::read_checkpoint((dir / "checkpoints" / "step_00000002.h5").string()));
    const std::string finish =
        base.substr(0, base.find(" > ")) + " --set training.steps=4 --resume latest >> " + dir.string() + ".log 2>&1";
    CHECK(std::system(finish.c_str()) == 0);
    CHECK(ckpt::read_checkpoint((dir / "checkpoints" / "step_00000004.h5").string()).step == 4);
    for (const auto& e : fs::directory_iterator(dir / "checkpoints")) CHECK(e.path().extension() != ".tmp");
  }
}
#endif

TEST_CASE("checkpoints keep the per-expert health and the idle state, resume continues them exactly",
          "[checkpoint][health]") {
  const fs::path dir = fresh_dir("health");
  std::ostringstream quiet;
  const std::vector<std::string> extra = {"training.steps=4", "checkpointing.every=2", "diagnostics.idle_window=3"};
  train::Trainer straight(small_run(dir, extra), quiet);
  straight.run();
  const ckpt::Checkpoint half = ckpt::read_checkpoint((dir / "checkpoints" / "step_00000002.h5").string());
  const ckpt::Checkpoint end = ckpt::read_checkpoint((dir / "checkpoints" / "step_00000004.h5").string());
  const ckpt::MetricsHistory& m = end.metrics;
  REQUIRE(m.expert_grad_norm.size() == 4 * 2 * 4);  // logged steps x MoE layers x experts
  REQUIRE(m.expert_update_ratio.size() == 4 * 2 * 4);
  CHECK(m.expert_grad_norm == straight.metrics().history().expert_grad_norm);
  CHECK(m.layer_metrics.at("effective_experts").size() == 4 * 2);
  CHECK(m.layer_metrics.at("idle_share").size() == 4 * 2);
  REQUIRE(end.expert_last_active.size() == 2 * 4);

  // Resumed from step 2 in another folder: the same per-expert history and idle state.
  const fs::path split_dir = fresh_dir("health_split");
  train::Trainer split(small_run(split_dir, extra), quiet);
  split.resume((dir / "checkpoints" / "step_00000002.h5").string());
  split.run();
  const ckpt::Checkpoint split_end = ckpt::read_checkpoint((split_dir / "checkpoints" / "step_00000004.h5").string());
  CHECK(split_end.metrics.expert_grad_norm == m.expert_grad_norm);
  CHECK(split_end.metrics.expert_update_ratio == m.expert_update_ratio);
  CHECK(split_end.metrics.layer_metrics.at("idle_share") == m.layer_metrics.at("idle_share"));
  CHECK(split_end.metrics.layer_metrics.at("effective_experts") == m.layer_metrics.at("effective_experts"));
  CHECK(split_end.expert_last_active == end.expert_last_active);

  // A file from before they existed: no such datasets, it loads, and its checksum leaves them out.
  ckpt::Checkpoint older = half;
  older.metrics.expert_grad_norm.clear();
  older.metrics.expert_update_ratio.clear();
  older.metrics.layer_metrics.erase("effective_experts");
  older.metrics.layer_metrics.erase("idle_share");
  older.expert_last_active.clear();
  CHECK(ckpt::checksum(older) != ckpt::checksum(half));
  const fs::path older_dir = fresh_dir("health_older");
  fs::create_directories(older_dir);
  const std::string p = (older_dir / "step_00000002.h5").string();
  ckpt::write_checkpoint(p, older);
  {
    h5::File f(p, h5::File::Mode::read);
    CHECK_FALSE(f.exists("/metrics/experts"));
    CHECK_FALSE(f.exists("/state/expert_last_active"));
  }
  const ckpt::Checkpoint back = ckpt::read_checkpoint(p);
  CHECK(back.metrics.expert_grad_norm.empty());
  CHECK(back.expert_last_active.empty());
  CHECK(ckpt::checksum(back) == ckpt::checksum(older));
  // Resuming it: its steps have no per-expert values (NaN), the new steps do.
  train::Trainer resumed(small_run(fresh_dir("health_resumed"), extra), quiet);
  resumed.resume(p);
  resumed.run();
  const ckpt::MetricsHistory& h = resumed.metrics().history();
  REQUIRE(h.expert_grad_norm.size() == 4 * 2 * 4);
  for (size_t i = 0; i < h.expert_grad_norm.size(); ++i) CHECK(std::isnan(h.expert_grad_norm[i]) == (i < 2 * 2 * 4));
}
