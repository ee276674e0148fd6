// A full disk: a checkpoint save that runs out of room part-way, a disk already full when
// training starts, the metrics files, and the HDF5 layer on its own. Each case runs on a small
// tmpfs where one can be mounted (root), and always with the fault injected into the
// file-writing layer (MOE_ENGINE_FAIL_WRITES), so machines without mount rights test the same
// paths. Every failure must name the file and the system's reason, stop at once with a
// non-zero exit, leave no .tmp, and keep the last good checkpoint loadable and resumable.
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "tests/tools/small_disk.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/trainer.h"

namespace fs = std::filesystem;
using Catch::Contains;
using testing_disk::ScopedEnv;
using testing_disk::SmallDisk;

namespace {

fs::path scratch(const std::string& name) {
  return fs::temp_directory_path() / ("diskfull_" + name + "_" + std::to_string(::getpid()));
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Logs stay off the small disk, where they would take its room.
fs::path log_for(const fs::path& out, const std::string& what) {
  return fs::temp_directory_path() /
         ("diskfull_" + out.parent_path().filename().string() + "_" + out.filename().string() + "_" + what + ".log");
}

// Files and objects HDF5 still holds open: a file whose close failed stays registered there.
ssize_t hdf5_open_objects() { return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL); }

// Says once per test case why the tmpfs variant did not run.
void note_skipped(const SmallDisk& disk) {
  WARN("tmpfs variant skipped (" << disk.why_not() << "); the injected fault stands in for the full disk");
}

#ifdef MOE_TRAIN_BINARY
// moe-train on a small model; returns its exit status (128 + signal when it crashed).
int run_train(const std::string& env, const std::string& args, const fs::path& log) {
  const std::string command = env + " " + MOE_TRAIN_BINARY + " --config " + ENGINE_SOURCE_DIR +
                              "/configs/collapse.yaml --set model.d_model=16 --set model.n_heads=2 --set "
                              "training.seq_len=16 --set training.batch_size=2 " +
                              args + " > " + log.string() + " 2>&1";
  const int status = std::system(command.c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// Six steps, a checkpoint each, two kept; the third save fails. Then, with room made, the run
// resumes from the second and finishes.
void save_fails_then_resume(const fs::path& out, const std::string& env, const std::function<void()>& make_room) {
  const std::string ckpts = (out / "checkpoints").string();
  const std::string run =
      "--set training.steps=6 --set checkpointing.every=1 --set checkpointing.keep_last=2 --out " + out.string();
  const fs::path log = log_for(out, "save");
  CHECK(run_train(env, run, log) == 1);
  const std::string said = read_text(log);
  INFO(said);
  CHECK_THAT(said, Contains(ckpts + "/step_00000003.h5.tmp: ") && Contains(": No space left on device") &&
                       Contains("the partial file was deleted") &&
                       Contains("the last good checkpoint is " + ckpts + "/step_00000002.h5 (step 2)") &&
                       Contains("--resume latest"));
  CHECK_THAT(said, Contains("training stopped after step 3") && !Contains("step 4/6"));
  for (const auto& e : fs::directory_iterator(ckpts)) CHECK(e.path().extension() != ".tmp");
  CHECK(ckpt::read_checkpoint(ckpts + "/step_00000002.h5").step == 2);
  CHECK(train::latest_checkpoint(out.string()) == ckpts + "/step_00000002.h5");

  make_room();
  const fs::path resumed = log_for(out, "resume");
  CHECK(run_train("", run + " --resume latest", resumed) == 0);
  CHECK_THAT(read_text(resumed), Contains("resumed from " + ckpts + "/step_00000002.h5 at step 2"));
  CHECK(ckpt::read_checkpoint(ckpts + "/step_00000006.h5").step == 6);
}

TEST_CASE("a save that runs out of disk deletes its .tmp, keeps the last checkpoint and says how to resume",
          "[diskfull]") {
  // The size of one checkpoint of this run, to size the filesystem.
  const fs::path probe = scratch("probe");
  fs::remove_all(probe);
  REQUIRE(run_train("", "--set training.steps=1 --out " + probe.string(), probe.string() + ".log") == 0);
  const uint64_t one = fs::file_size(probe / "checkpoints" / "step_00000001.h5");
  fs::remove_all(probe);

  SECTION("a small tmpfs") {
    // Room for two checkpoints and a half, with two kept: the third save fails part-way.
    SmallDisk disk(scratch("save_tmpfs"), one * 5 / 2 + 64 * 1024);
    if (!disk.mounted()) {
      note_skipped(disk);
      return;
    }
    save_fails_then_resume(disk.dir() / "run", "", [&] { disk.grow(8 * one); });
  }
  SECTION("the fault injected into the file-writing layer") {
    const fs::path out = scratch("save_injected");
    fs::remove_all(out);
    save_fails_then_resume(out, "MOE_ENGINE_FAIL_WRITES=step_00000003", [] {});
    fs::remove_all(out);
  }
}

// The run's first write fails (the folder's lock file on a full disk, config.yaml where the fault
// is injected): it names the file and the system's reason, and trains nothing.
void full_before_start(const fs::path& out, const std::string& env, const std::string& expected) {
  const fs::path log = log_for(out, "start");
  CHECK(run_train(env, "--set training.steps=3 --out " + out.string(), log) == 1);
  const std::string said = read_text(log);
  INFO(said);
  CHECK_THAT(said, Contains(expected) && !Contains("step 1/3"));
  CHECK(!fs::exists(out / "checkpoints"));
}

TEST_CASE("with the disk already full, moe-train stops at its first write, before training", "[diskfull]") {
  SECTION("a full tmpfs") {
    SmallDisk disk(scratch("start_tmpfs"), 1 << 20);
    if (!disk.mounted()) {
      note_skipped(disk);
      return;
    }
    disk.fill();
    REQUIRE(disk.free_bytes() == 0);
    full_before_start(disk.dir() / "run", "",
                      "cannot write the lock file " + (disk.dir() / "run" / ".lock").string() +
                          ": No space left on device");
  }
  SECTION("the fault injected into the file-writing layer") {
    const fs::path out = scratch("start_injected");
    fs::remove_all(out);
    full_before_start(out, "MOE_ENGINE_FAIL_WRITES=config.yaml",
                      (out / "config.yaml").string() + ": cannot write: No space left on device; training did not start");
    fs::remove_all(out);
  }
}
#endif

runconfig::RunConfig small_run(const fs::path& out) {
  return runconfig::parse_run_config(
      "{}", "test",
      {"model.vocab_size=64", "model.d_model=16", "model.n_layers=2", "model.n_heads=2", "model.max_seq_len=16",
       "model.d_ff=24", "moe.num_experts=4", "moe.d_expert=12", "training.batch_size=2", "training.seq_len=16",
       "training.steps=4", "schedule.warmup_steps=1", "training.eval_every=2", "training.eval_batches=1",
       "logging.every=1", "logging.out_dir=" + out.string()});
}

// metrics.csv gets its header when the outputs open, metrics.jsonl its first line at step 1.
void metrics_write_fails(const fs::path& out, const std::string& file) {
  std::ostringstream progress;
  train::Trainer t(small_run(out), progress);
  std::string said;
  try {
    t.run();
  } catch (const train::OutputError& e) {
    said = e.what();
  }
  CHECK_THAT(said, Contains((out / file).string() + ": cannot write: No space left on device"));
  if (file == "metrics.csv") {
    CHECK_THAT(said, Contains("training did not start"));
    CHECK(t.steps_done() == 0);
  } else {
    CHECK_THAT(said, Contains("training stopped after step 1") && Contains("no checkpoint was saved"));
    CHECK(t.steps_done() == 1);
  }
  CHECK(!fs::exists(out / "checkpoints"));
}

}  // namespace

TEST_CASE("a failed write to metrics.jsonl or metrics.csv stops training when it happens", "[diskfull]") {
  for (const std::string file : {"metrics.csv", "metrics.jsonl"}) {
    INFO(file);
    {
      const fs::path out = scratch("metrics_injected");
      fs::remove_all(out);
      ScopedEnv fault("MOE_ENGINE_FAIL_WRITES", file);
      metrics_write_fails(out, file);
      fs::remove_all(out);
    }
    SmallDisk disk(scratch("metrics_tmpfs"), 1 << 20);
    if (!disk.mounted()) {
      note_skipped(disk);
      continue;
    }
    // Room for config.yaml, and for metrics.csv's header when metrics.jsonl is the one to fail.
    const fs::path out = disk.dir() / "run";
    const uint64_t yaml = runconfig::to_yaml(small_run(out)).size();
    const uint64_t leave =
        ((yaml + SmallDisk::kPage - 1) / SmallDisk::kPage + (file == "metrics.jsonl")) * SmallDisk::kPage;
    disk.fill(leave);
    REQUIRE(disk.free_bytes() == leave);
    metrics_write_fails(out, file);
  }
}

TEST_CASE("a NaN stop whose diagnostic checkpoint cannot be saved says both", "[diskfull]") {
  const fs::path out = scratch("nan_injected");
  fs::remove_all(out);
  std::ostringstream progress;
  train::Trainer t(small_run(out), progress);
  t.step();
  const moe::NamedParam& p = t.model().params().all()[5];
  p.tensor.data<float>()[2] = std::nanf("");
  ScopedEnv fault("MOE_ENGINE_FAIL_WRITES", "diagnostic_step");
  CHECK_THROWS_WITH(t.run(), Contains("training stopped at step 2") && Contains("parameter " + p.name) &&
                                 Contains("the diagnostic checkpoint could not be saved: ") &&
                                 Contains("diagnostic_step_00000001.h5.tmp: /: write failed: No space left on device"));
  for (const auto& e : fs::directory_iterator(out / "checkpoints")) CHECK(e.path().extension() != ".tmp");
  fs::remove_all(out);
}

TEST_CASE("h5::File on a full disk reports the system's reason, and the failed file still closes", "[diskfull]") {
  SECTION("writes until the disk is full, from metadata-heavy to raw-data-heavy files") {
    for (const int64_t n : {0, 1, 100, 1000, 5000, 200000}) {
      INFO(n << " values per dataset");
      SmallDisk disk(scratch("h5_tmpfs"), 2 << 20);
      if (!disk.mounted()) {
        note_skipped(disk);
        return;
      }
      const uint64_t free = disk.free_bytes();
      const std::string path = (disk.dir() / "full.h5").string();
      std::string error;
      {
        h5::File f(path, h5::File::Mode::create, 512);
        const std::vector<float> values(static_cast<size_t>(n), 1.5f);
        try {
          for (int i = 0; i < 100000; ++i)
            f.write_floats("/g" + std::to_string(i % 7) + "/d" + std::to_string(i), values, {n});
          f.close();
        } catch (const h5::Error& e) {
          error = e.what();
        }
        CHECK(f.broken());
      }  // the destructor discards the broken file
      CHECK(hdf5_open_objects() == 0);
      CHECK_THAT(error, Contains(path + ": ") && Contains(": No space left on device"));
      fs::remove(path);
      CHECK(disk.free_bytes() == free);
    }
  }
  SECTION("the disk fills up between the writes and the close") {
    SmallDisk disk(scratch("h5_close"), 1 << 20);
    if (!disk.mounted()) {
      note_skipped(disk);
      return;
    }
    const uint64_t free = disk.free_bytes();
    const std::string path = (disk.dir() / "late.h5").string();
    h5::File f(path, h5::File::Mode::create, 512);
    f.write_floats("/a", std::vector<float>(1000, 1.0f), {1000});
    f.write_string_attribute("/", "config", std::string(32 * 1024, 'x'));  // metadata: written at the close
    disk.fill();
    CHECK_THROWS_WITH(f.close(),
                      Contains(path + ": no room to finish the file") && Contains("No space left on device"));
    CHECK(hdf5_open_objects() == 0);  // closed all the same, though its metadata had no room
    disk.unfill();
    fs::remove(path);
    CHECK(disk.free_bytes() == free);
  }
  SECTION("the fault injected into the file-writing layer") {
    const fs::path dir = scratch("h5_injected");
    fs::create_directories(dir);
    const std::string path = (dir / "injected.h5").string();
    ScopedEnv fault("MOE_ENGINE_FAIL_WRITES", "injected.h5");
    h5::File f(path, h5::File::Mode::create, 512);
    CHECK_THROWS_WITH(f.write_floats("/model/w", {1, 2}, {2}),
                      Contains(path + ": /model/w: write failed: No space left on device"));
    CHECK(f.broken());
    CHECK_THROWS_WITH(f.close(), Contains("an earlier write failed"));
    CHECK(hdf5_open_objects() == 0);
    fs::remove_all(dir);
  }
}
