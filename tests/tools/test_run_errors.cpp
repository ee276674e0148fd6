// Errors of a run and what it leaves: data too short for one window found before step 1 (not
// at the final evaluation), and a data path that is a folder.
#include <catch2/catch.hpp>
#include <sstream>

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

