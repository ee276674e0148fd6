// Errors of a run and what it leaves: data too short for one window found before step 1 (not
// at the final evaluation), a data path that is a folder, an error during training saving a
// checkpoint and naming it, a checkpoint that cannot be saved, metrics that cannot be written.
#include <catch2/catch.hpp>
#include <sstream>

#include "data/synthetic.h"
#include "tests/tools/run_program.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/train/trainer.h"

using Catch::Contains;
using runtest::fresh_dir;
namespace fs = std::filesystem;

namespace {

runconfig::RunConfig small_run(const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> o = {
      "model.vocab_size=64",   "model.d_model=16",        "model.n_layers=2",      "model.n_heads=2",
      "model.max_seq_len=16",  "model.d_ff=24",           "moe.num_experts=4",     "moe.d_expert=12",
      "training.batch_size=2", "training.seq_len=16",     "training.steps=6",      "schedule.warmup_steps=1",
      "training.eval_every=2", "training.eval_batches=1", "checkpointing.every=0", "logging.out_dir=" + out.string()};
  o.insert(o.end(), extra.begin(), extra.end());
  return runconfig::parse_run_config("{}", "test", o);
}

void write_bytes(const fs::path& file, size_t n, char fill = 'a') {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << std::string(n, fill);
}

// Synthetic data that fails (as a disk or a network mount might) when batch `fail_at` is drawn.
class FailingSource : public data::SyntheticDomains {
 public:
  explicit FailingSource(int64_t fail_at) : SyntheticDomains(64, 2, 1, 0.9), fail_at_(fail_at) {}
  data::Batch next_batch(int64_t batch, int64_t seq_len) override {
    if (position_ == fail_at_) throw std::runtime_error("reading batch " + std::to_string(fail_at_) + ": I/O error");
    return SyntheticDomains::next_batch(batch, seq_len);
  }

 private:
  int64_t fail_at_;
};

}  // namespace

TEST_CASE("data too short for one window is refused before step 1, naming the split and the sizes", "[data][errors]") {
  const fs::path dir = fresh_dir("short_data");
  std::ostringstream progress;
  SECTION("a text file whose validation split is too short") {
    const fs::path text = dir / "corpus.txt";
    write_bytes(text, 300);  // val_fraction 0.1: 270 bytes train, 30 validation
    const runconfig::RunConfig c =
        small_run(dir / "out", {"data.kind=text", "data.paths=[" + text.string() + "]", "data.val_fraction=0.1",
                                "model.vocab_size=256", "model.max_seq_len=32", "training.seq_len=32"});
    CHECK_THROWS_AS(train::Trainer(c, progress), runconfig::ConfigError);
    CHECK_THROWS_WITH(
        train::Trainer(c, progress),
        Contains("validation data (data.paths, the last data.val_fraction = 0.1 of each file): '" + text.string() +
                 "' is too short for one window: its validation split has 30 bytes, "
                 "need at least 33 (seq_len + 1), with training.seq_len = 32") &&
            Contains("nothing was trained"));
  }
  SECTION("a validation shard, and a training shard") {
    write_bytes(dir / "train.bin", 200, '\0');  // 100 raw uint16 tokens, all 0
    write_bytes(dir / "val.bin", 20, '\0');     // 10 tokens
    const std::string shards = "data.kind=shards";
    const runconfig::RunConfig val_short =
        small_run(dir / "out", {shards, "data.train_shards=[" + (dir / "train.bin").string() + "]",
                                "data.val_shards=[" + (dir / "val.bin").string() + "]"});
    CHECK_THROWS_WITH(train::Trainer(val_short, progress),
                      Contains("validation data (data.val_shards): '" + (dir / "val.bin").string() +
                               "' is too short for one window: its file has 10 tokens, need at least 17"));
    const runconfig::RunConfig train_short =
        small_run(dir / "out", {shards, "data.train_shards=[" + (dir / "val.bin").string() + "]",
                                "data.val_shards=[" + (dir / "train.bin").string() + "]"});
    CHECK_THROWS_WITH(train::Trainer(train_short, progress),
                      Contains("training data (data.train_shards): '" + (dir / "val.bin").string() +
                               "' is too short for one window: its file has 10 tokens"));
  }
  CHECK_FALSE(fs::exists(dir / "out"));  // refused before the run folder was touched

#ifdef MOE_TRAIN_BINARY
  // The program refuses at once with exit 2: no step, no checkpoint, no metrics.
  const fs::path text = dir / "program.txt";
  write_bytes(text, 300);
  const runtest::Result r = runtest::run(
      runtest::train_args(dir / "run", {"--set", "data.kind=text", "--set", "data.paths=[" + text.string() + "]",
                                        "--set", "data.val_fraction=0.1", "--set", "model.vocab_size=256", "--set",
                                        "training.seq_len=32", "--set", "training.steps=3"}),
      dir.string() + ".log");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Contains("moe-train: validation data (data.paths") &&
                           Contains("its validation split has 30 bytes, need at least 33"));
  CHECK(r.output.find("step 1/") == std::string::npos);
  CHECK_FALSE(fs::exists(dir / "run" / "checkpoints"));
  CHECK_FALSE(fs::exists(dir / "run" / "metrics.jsonl"));
#endif
}

#ifdef MOE_TRAIN_BINARY
TEST_CASE("moe-train: a data path that is a folder is called a folder, exit 2", "[data][errors][program]") {
  const fs::path dir = fresh_dir("data_folder");
  fs::create_directories(dir / "corpus");
  const runtest::Result r =
      runtest::run(runtest::train_args(dir / "run", {"--set", "data.kind=text", "--set",
                                                     "data.paths=[" + (dir / "corpus").string() + "]", "--set",
                                                     "model.vocab_size=256"}),
                   dir.string() + ".log");
  CHECK(r.status == 2);
  CHECK_THAT(r.output, Contains("data.paths: '" + (dir / "corpus").string() + "' is a directory, not a file"));
}
#endif

TEST_CASE("an error during training saves the last finished step and says where", "[errors][checkpoint]") {
  const fs::path dir = fresh_dir("error_saves");
  std::ostringstream progress;
  {
    train::Trainer t(small_run(dir), progress, std::make_unique<FailingSource>(3));
    // Steps 1-3 finish, step 4 draws batch 3 and fails; checkpointing.every = 0 saved nothing so far.
    const std::string checkpoint = (dir / "checkpoints" / "step_00000003.h5").string();
    CHECK_THROWS_WITH(t.run(), Contains("training stopped by an error in step 4: reading batch 3: I/O error") &&
                                   Contains("saved the state after step 3 to " + checkpoint) &&
                                   Contains("--resume latest"));
    const ckpt::Checkpoint c = ckpt::read_checkpoint(checkpoint);
    CHECK(c.step == 3);
    CHECK(c.loaders.at("train")[2] == 3);  // the failed step's draw was undone
    CHECK(c.metrics.eval_step == std::vector<int64_t>{2});
  }
  // It resumes and finishes with the configured data.
  std::ostringstream quiet;
  train::Trainer again(small_run(dir), quiet);
  again.resume(train::latest_checkpoint(dir.string()));
  CHECK(again.steps_done() == 3);
  CHECK(again.run() == train::RunEnd::finished);
  CHECK(again.steps_done() == 6);

  // Failing at the first step: nothing to save, and the message says so.
  const fs::path first = fresh_dir("error_first_step");
  train::Trainer t(small_run(first), progress, std::make_unique<FailingSource>(0));
  CHECK_THROWS_WITH(t.run(), Contains("error in step 1") && Contains("no step had finished, nothing to save"));
  CHECK(train::checkpoint_steps((first / "checkpoints").string()).empty());
}

#ifdef MOE_TRAIN_BINARY
TEST_CASE("moe-train: a checkpoint that cannot be saved names the last good one, exit 1", "[errors][program]") {
  const fs::path dir = fresh_dir("save_fails");
  // The save of step 2 writes step_00000002.h5.tmp first: a non-empty folder there makes it fail.
  fs::create_directories(dir / "checkpoints" / "step_00000002.h5.tmp" / "in_the_way");
  const runtest::Result r = runtest::run(
      runtest::train_args(dir, {"--set", "training.steps=3", "--set", "checkpointing.every=1"}), dir.string() + ".log");
  const std::string good = (dir / "checkpoints" / "step_00000001.h5").string();
  CHECK(r.status == 1);
  // A save that cannot write is an output error: it names the file and the reason, and resumes
  // from the last good checkpoint (no second save is tried on a folder that just refused one).
  CHECK_THAT(r.output, Contains("moe-train: training stopped after step 2: " +
                                (dir / "checkpoints" / "step_00000002.h5.tmp").string() +
                                ": cannot create the file: Is a directory") &&
                           Contains("the last good checkpoint is " + good + " (step 1)") &&
                           Contains("--resume latest"));
  CHECK(ckpt::read_checkpoint(good).step == 1);
  CHECK(train::latest_checkpoint(dir.string()) == good);
}

TEST_CASE("moe-train: metrics that cannot be written: the file and the system's reason, one prefix",
          "[errors][program]") {
  const fs::path dir = fresh_dir("metrics_unwritable");
  fs::create_directories(dir / "metrics.jsonl");  // a folder where the file should go
  const runtest::Result r =
      runtest::run(runtest::train_args(dir, {"--set", "training.steps=2"}), dir.string() + ".log");
  CHECK(r.status == 1);
  CHECK_THAT(r.output, Contains("moe-train: " + (dir / "metrics.jsonl").string() + ": cannot create: Is a directory"));
  CHECK(r.output.find("moe-train: moe-train:") == std::string::npos);
}
#endif
