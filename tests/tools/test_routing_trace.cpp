// Routing traces (logging.routing_trace_every) and churn: the probe batch's top-k experts kept in
// the checkpoint history, churn 0 while the router stands still and > 0 once it moves, the
// traces surviving a resume bit for bit, and the key's errors named.
#include <catch2/catch.hpp>
#include <sstream>

#include "tests/tools/small_run.h"
#include "tests/tools/run_program.h"
#include "tools/lib/collapse/churn.h"
#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/trainer.h"

using Catch::Contains;
using runtest::fresh_dir;
namespace fs = std::filesystem;

namespace {

runconfig::RunConfig traced_run(const fs::path& out, std::vector<std::string> extra = {}) {
  extra.insert(extra.begin(), {"model.d_ff=512", "model.embedding_init_std=0.02", "training.batch_size=4",
                               "schedule.warmup_steps=1", "training.eval_every=0", "checkpointing.every=3",
                               "logging.every=2", "logging.routing_trace_every=2"});
  return runtest::small_run(out, extra);
}

std::vector<double> churn_of(const ckpt::MetricsHistory& h) {
  return collapse::routing_churn(h.trace_experts, static_cast<int64_t>(h.trace_step.size()), h.layers, h.trace_tokens,
                                 h.trace_k);
}

double total(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace

TEST_CASE("routing churn counts the tokens whose top-1 expert changed in each layer", "[trace]") {
  // 3 traces x 1 layer x 4 tokens x k 2: token 1's top-1 changes, then tokens 0 and 3's; a change of
  // the second choice alone is no churn.
  const std::vector<int32_t> experts = {0, 1, 2, 3, 1, 0, 3, 2,   // trace 0
                                        0, 2, 1, 3, 1, 0, 3, 1,   // trace 1
                                        1, 2, 1, 3, 1, 0, 2, 1};  // trace 2
  const std::vector<double> churn = collapse::routing_churn(experts, 3, 1, 4, 2);
  REQUIRE(churn.size() == 2);
  CHECK(churn[0] == 0.25);
  CHECK(churn[1] == 0.5);
  CHECK_THROWS_WITH(collapse::routing_churn(experts, 3, 2, 4, 2), Contains("24 experts for 3 traces x 2 layers"));
}

TEST_CASE("a run with a tiny lr keeps its routing (churn 0) and a large lr moves it", "[trace]") {
  const fs::path dir = fresh_dir("trace_churn");
  std::ostringstream progress;
  train::Trainer still(traced_run(dir / "still", {"optimizer.lr=1e-12"}), progress);
  still.run();
  const ckpt::MetricsHistory& h = still.metrics().history();
  CHECK(h.trace_step == std::vector<int64_t>{0, 2, 4, 6});
  CHECK(h.trace_tokens == 4 * 16);
  CHECK(h.trace_k == 2);
  CHECK(h.trace_experts.size() == size_t{4 * 2 * 64 * 2});
  CHECK(total(churn_of(h)) == 0.0);

  train::Trainer moving(traced_run(dir / "moving", {"optimizer.lr=0.05"}), progress);
  moving.run();
  CHECK(total(churn_of(moving.metrics().history())) > 0.0);
}

TEST_CASE("routing traces survive a resume bit for bit and are stored only when recorded", "[trace][checkpoint]") {
  const fs::path dir = fresh_dir("trace_resume");
  std::ostringstream progress;
  train::Trainer whole(traced_run(dir / "whole", {"optimizer.lr=0.05"}), progress);
  whole.run();
  train::Trainer resumed(traced_run(dir / "resumed", {"optimizer.lr=0.05"}), progress);
  resumed.resume((dir / "whole" / "checkpoints" / "step_00000003.h5").string());
  CHECK(resumed.metrics().history().trace_step == std::vector<int64_t>{0, 2});
  resumed.run();
  const ckpt::MetricsHistory& a = whole.metrics().history();
  const ckpt::MetricsHistory& b = resumed.metrics().history();
  CHECK(b.trace_step == a.trace_step);
  CHECK(b.trace_experts == a.trace_experts);
  // The file holds the traces, and reads back as written.
  const std::string last = (dir / "whole" / "checkpoints" / "step_00000006.h5").string();
  CHECK(ckpt::read_checkpoint(last).metrics.trace_experts == a.trace_experts);
  // A run without traces writes no /metrics/routing_trace (its checksum stays that of older files).
  train::Trainer plain(traced_run(dir / "plain", {"logging.routing_trace_every=0", "training.steps=1"}), progress);
  plain.run();
  h5::File f((dir / "plain" / "checkpoints" / "step_00000001.h5").string(), h5::File::Mode::read);
  CHECK_FALSE(f.exists("/metrics/routing_trace"));
}

TEST_CASE("logging.routing_trace_every must be 0 or more and the error names it", "[trace][config]") {
  CHECK_THROWS_WITH(traced_run("out", {"logging.routing_trace_every=-1"}),
                    Contains("logging.routing_trace_every") && Contains("-1"));
}
