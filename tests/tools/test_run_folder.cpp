// One run per output folder: the lock (refusal naming the holder, released by SIGKILL).
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

TEST_CASE("RunLock: a second lock on a folder is refused naming the holder; releasing frees it", "[lock]") {
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
TEST_CASE("moe-train refuses a folder another moe-train holds, naming its PID; after SIGKILL a run starts",
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

