// One run per output folder: the lock (refusal naming the holder, released by SIGKILL), resuming
// into a folder that holds another model's checkpoints, and a signal while a checkpoint loads.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <csignal>

#include "tests/tools/run_program.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/train/run_lock.h"
#include "tools/lib/train/trainer.h"

using Catch::Contains;
using runtest::fresh_dir;
namespace fs = std::filesystem;

TEST_CASE("RunLock: a second lock on a folder is refused naming the holder, and releasing frees it", "[lock]") {
  const fs::path dir = fresh_dir("lock") / "run";  // created by the lock
  const std::string me = "pid " + std::to_string(::getpid()) + " on host ";
  {
    const train::RunLock held(dir.string());
    CHECK(held.path() == (dir / ".lock").string());
    CHECK_THAT(runtest::read_text(dir / ".lock"), Contains(me));
    // flock belongs to the open file: a second open, even in this process, is refused.
    CHECK_THROWS_WITH(train::RunLock(dir.string()),
                      Contains(dir.string() + " is in use by another run (" + me) && Contains("use another --out"));
  }
  CHECK_NOTHROW(train::RunLock(dir.string()));
  CHECK(fs::exists(dir / ".lock"));  // left in place on purpose
}

#ifdef MOE_TRAIN_BINARY
TEST_CASE("moe-train refuses a folder another moe-train holds, naming its PID, and a run starts after SIGKILL",
          "[lock][program]") {
  const fs::path dir = fresh_dir("two_runs");
  const fs::path log1 = dir.string() + ".first.log";
  const pid_t first = runtest::spawn(
      runtest::train_args(dir, {"--set", "training.steps=1000000", "--set", "checkpointing.every=0"}), log1);
  REQUIRE(first > 0);
  REQUIRE(runtest::wait_until([&] { return runtest::read_text(log1).find("step 1/") != std::string::npos; }));

  const runtest::Result second =
      runtest::run(runtest::train_args(dir, {"--set", "training.steps=2"}), dir.string() + ".second.log");
  CHECK(second.status == 1);
  CHECK_THAT(second.output, Contains("moe-train: " + dir.string() + " is in use by another run (pid " +
                                     std::to_string(first) + " on host "));
  CHECK(second.output.find("step 1/") == std::string::npos);
  CHECK(::waitpid(first, nullptr, WNOHANG) == 0);  // the first run goes on

  ::kill(first, SIGKILL);
  CHECK(runtest::wait_for(first) == 128 + SIGKILL);
  const runtest::Result third =
      runtest::run(runtest::train_args(dir, {"--set", "training.steps=2"}), dir.string() + ".third.log");
  CHECK(third.status == 0);
  CHECK_THAT(third.output, Contains("step 2/2"));
  CHECK(runtest::read_text(dir / ".lock").find("pid " + std::to_string(first) + " ") == std::string::npos);
}
#endif

namespace {
runconfig::RunConfig small_run(const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {"model.vocab_size=64",     "model.d_model=16",      "model.n_layers=2",
                                "model.n_heads=2",         "model.max_seq_len=16",  "model.d_ff=24",
                                "moe.num_experts=4",       "moe.d_expert=12",       "training.batch_size=2",
                                "training.seq_len=16",     "training.steps=4",      "schedule.warmup_steps=1",
                                "training.eval_batches=1", "checkpointing.every=2", "logging.out_dir=" + out.string()};
  o.insert(o.end(), extra.begin(), extra.end());
  return runconfig::parse_run_config("{}", "test", o);
}
}  // namespace

TEST_CASE("resume refuses a folder holding another model's checkpoints, naming the folder and keys",
          "[resume][errors]") {
  const fs::path mine = fresh_dir("resume_mine"), theirs = fresh_dir("resume_theirs");
  std::ostringstream quiet;
  {
    train::Trainer t(small_run(mine), quiet);
    REQUIRE(t.run() == train::RunEnd::finished);
  }
  {
    train::Trainer t(small_run(theirs, {"moe.num_experts=8", "model.d_ff=32"}), quiet);
    REQUIRE(t.run() == train::RunEnd::finished);
  }
  const std::string resumed = (mine / "checkpoints" / "step_00000002.h5").string();
  const std::vector<int64_t> before = train::checkpoint_steps((theirs / "checkpoints").string());
  REQUIRE(before == std::vector<int64_t>{2, 4});

  train::Trainer into(small_run(theirs), quiet);
  CHECK_THROWS_WITH(into.resume(resumed),
                    Contains((theirs / "checkpoints").string() + " holds checkpoints of another model or data") &&
                        Contains("model.d_ff") && Contains("moe.num_experts") && Contains(resumed) &&
                        Contains("use another --out"));
  // Nothing was moved aside or overwritten; the other run still resumes from its own.
  CHECK(train::checkpoint_steps((theirs / "checkpoints").string()) == before);
  CHECK_FALSE(fs::exists(theirs / "checkpoints" / "superseded"));
  CHECK(ckpt::read_checkpoint(train::latest_checkpoint(theirs.string())).step == 4);

  // The same model's checkpoints in the folder are no reason to refuse (a run continuing itself).
  train::Trainer again(small_run(mine), quiet);
  CHECK_NOTHROW(again.resume(resumed));

#ifdef MOE_TRAIN_BINARY
  // The program: exit 1 and the same message, and the folder's checkpoints untouched.
  const fs::path other = fresh_dir("resume_program");
  REQUIRE(runtest::run(runtest::train_args(other, {"--set", "training.steps=2"}), other.string() + ".1.log").status ==
          0);
  const std::string foreign = (other / "checkpoints" / "step_00000002.h5").string();
  const runtest::Result r = runtest::run(
      runtest::train_args(theirs, {"--set", "training.steps=3", "--resume", foreign}), other.string() + ".2.log");
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Contains("moe-train: " + (theirs / "checkpoints").string() +
                                " holds checkpoints of another model or data") &&
                           Contains("moe.d_expert") && Contains(foreign));
  CHECK(train::checkpoint_steps((theirs / "checkpoints").string()) == before);
#endif
}

#ifdef MOE_TRAIN_BINARY
// The checkpoint is a FIFO that the test holds open without writing: moe-train blocks inside
// the read, so the signal is sure to arrive while the checkpoint loads.
TEST_CASE("SIGTERM while a checkpoint loads: exit 143, saying nothing was trained or saved", "[signal][program]") {
  const fs::path dir = fresh_dir("signal_loading");
  fs::create_directories(dir);
  const fs::path fifo = dir.string() + ".fifo";
  fs::remove(fifo);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int hold = ::open(fifo.c_str(), O_RDWR | O_CLOEXEC);  // a writer that never writes
  REQUIRE(hold >= 0);
  const fs::path log = dir.string() + ".log";
  const pid_t pid = runtest::spawn(runtest::train_args(dir, {"--resume", fifo.string()}), log);
  REQUIRE(pid > 0);
  const bool reading = runtest::wait_until([&] {
    std::error_code ec;
    for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec))
      if (fs::read_symlink(fd.path(), ec) == fifo) return true;
    return false;
  });
  CHECK(reading);
  ::kill(pid, SIGTERM);
  CHECK(runtest::wait_for(pid) == 143);
  ::close(hold);
  CHECK_THAT(runtest::read_text(log),
             Contains("moe-train: stopped by SIGTERM while loading the checkpoint; nothing was trained or saved"));
  CHECK_FALSE(fs::exists(dir / "checkpoints"));
  CHECK_FALSE(fs::exists(dir / "metrics.jsonl"));
  fs::remove(fifo);
}
#endif
