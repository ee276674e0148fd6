// Sparse upcycling (tools/lib/assemble/upcycle.h, moe-train --init-from): experts copied from the
// dense FFN (plus noise when asked), routers fresh, every other tensor the dense checkpoint's,
// the dense model's loss reproduced exactly where the gates sum to one, and the errors named.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/tools/run_program.h"
#include "tools/lib/assemble/assemble.h"
#include "tools/lib/assemble/upcycle.h"
#include "tools/lib/train/start_run.h"
#include "tools/lib/train/trainer.h"

using Catch::Contains;
using runtest::fresh_dir;
namespace fs = std::filesystem;

namespace {

// A MoE model small enough to build in a blink; moe.d_expert equals the dense model's d_ff.
std::vector<std::string> small_keys(const fs::path& out) {
  return {"model.vocab_size=64",   "model.d_model=16",      "model.n_layers=2",
          "model.n_heads=2",       "model.max_seq_len=16",  "model.d_ff=24",
          "moe.num_experts=4",     "moe.d_expert=24",       "training.batch_size=2",
          "training.seq_len=16",   "training.steps=4",      "schedule.warmup_steps=1",
          "training.eval_every=0", "checkpointing.every=0", "logging.out_dir=" + out.string()};
}

runconfig::RunConfig small_run(const fs::path& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> o = small_keys(out);
  o.insert(o.end(), extra.begin(), extra.end());
  return runconfig::parse_run_config("{}", "test", o);
}

// A dense model trained for two steps (so its tensors differ from any fresh initialization),
// saved; returns the checkpoint's path.
std::string dense_checkpoint(const fs::path& dir, std::vector<std::string> extra = {}) {
  extra.push_back("moe.enabled=false");
  std::ostringstream progress;
  train::Trainer dense(small_run(dir, extra), progress);
  dense.step();
  dense.step();
  return dense.save_checkpoint();
}

std::map<std::string, std::vector<float>> tensors(moe::TransformerLM& model) {
  std::map<std::string, std::vector<float>> out;
  for (const moe::NamedParam& p : model.params().all()) out[p.name] = p.tensor.to_float_vector();
  return out;
}

std::map<std::string, std::vector<float>> tensors(const ckpt::Checkpoint& c) {
  std::map<std::string, std::vector<float>> out;
  for (const ckpt::NamedArray& a : c.params) out[a.name] = a.values;
  return out;
}

// Cross-entropy of a model on the first validation batch of its config, in evaluation mode.
double eval_ce(moe::TransformerLM& model, const runconfig::RunConfig& config) {
  const data::Batch b =
      assemble::data_source(config, true)->next_batch(config.training.batch_size, config.training.seq_len);
  engine::NoGradScope no_grad;
  return model.forward(b.inputs, b.targets, false).ce.item();
}

}  // namespace

TEST_CASE("upcycling copies the dense FFN into every expert and leaves the routers fresh", "[upcycle]") {
  const fs::path dir = fresh_dir("upcycle_copy");
  const std::string dense_path = dense_checkpoint(dir / "dense");
  const auto dense = tensors(ckpt::read_checkpoint(dense_path));
  std::ostringstream progress;
  const runconfig::RunConfig config = small_run(dir / "moe");
  train::Trainer fresh(config, progress);
  const auto initial = tensors(fresh.model());
  train::Trainer up(config, progress);
  up.upcycle(dense_path, 0.0);
  CHECK_THAT(progress.str(), Contains("upcycled from " + dense_path) && Contains("4 experts in each of 2 MoE layers"));
  int experts = 0, routers = 0, others = 0;
  for (const auto& [name, values] : tensors(up.model())) {
    const std::string from = assemble::dense_name_of_expert(name);
    if (!from.empty()) {
      CHECK(values == dense.at(from));
      ++experts;
    } else if (name.find(".router.") != std::string::npos) {
      CHECK(values == initial.at(name));  // the MoE model's own initialization
      ++routers;
    } else {
      CHECK(values == dense.at(name));
      ++others;
    }
  }
  CHECK(experts == 2 * 4 * 4);  // layers x experts x (fc1, fc2) x (weight, bias)
  CHECK(routers == 2);
  CHECK(others > 0);
  for (moe::MoeLayer* layer : up.model().moe_layers()) CHECK(layer->bias() == std::vector<float>(4, 0.0f));
  // The run trains from step 0 and its checkpoints name the source, also after a resume.
  CHECK(up.steps_done() == 0);
  CHECK(std::isfinite(up.step().loss));
  const std::string saved = up.save_checkpoint();
  CHECK(ckpt::read_checkpoint(saved).upcycled_from == dense_path);
  train::Trainer resumed(small_run(dir / "moe"), progress);
  resumed.resume(saved);
  CHECK(resumed.snapshot().upcycled_from == dense_path);
  // A checkpoint of a run that was not upcycled has no such attribute (older files read the same).
  CHECK(ckpt::read_checkpoint(dense_path).upcycled_from.empty());
}

TEST_CASE("shared experts start fresh when upcycling and the routed experts are still copies", "[upcycle]") {
  const fs::path dir = fresh_dir("upcycle_shared");
  const std::string dense_path = dense_checkpoint(dir / "dense");
  const auto dense = tensors(ckpt::read_checkpoint(dense_path));
  std::ostringstream progress;
  const runconfig::RunConfig config = small_run(dir / "moe", {"moe.num_shared_experts=1"});
  train::Trainer fresh(config, progress);
  const auto initial = tensors(fresh.model());
  train::Trainer up(config, progress);
  up.upcycle(dense_path, 0.0);
  CHECK_THAT(progress.str(), Contains("routers, shared experts and optimizer fresh"));
  int shared = 0;
  for (const auto& [name, values] : tensors(up.model())) {
    if (name.find(".shared_experts.") != std::string::npos) {
      CHECK(values == initial.at(name));
      ++shared;
    } else if (!assemble::dense_name_of_expert(name).empty()) {
      CHECK(values == dense.at(assemble::dense_name_of_expert(name)));
    }
  }
  CHECK(shared == 2 * 4);  // layers x (fc1, fc2) x (weight, bias)
}

TEST_CASE("upcycling noise: each expert differs from the dense FFN by the noise scale", "[upcycle]") {
  const fs::path dir = fresh_dir("upcycle_noise");
  const std::string dense_path = dense_checkpoint(dir / "dense");
  const auto dense = tensors(ckpt::read_checkpoint(dense_path));
  std::ostringstream progress;
  train::Trainer up(small_run(dir / "moe"), progress);
  up.upcycle(dense_path, 0.01);
  const auto got = tensors(up.model());
  double sum2 = 0;
  int64_t n = 0;
  for (const auto& [name, values] : got) {
    const std::string from = assemble::dense_name_of_expert(name);
    if (from.empty()) continue;
    for (size_t i = 0; i < values.size(); ++i) {
      const double d = values[i] - dense.at(from)[i];
      sum2 += d * d;
      ++n;
    }
  }
  CHECK(std::sqrt(sum2 / n) == Approx(0.01).epsilon(0.05));
  // Each expert draws its own noise, so the experts start apart.
  CHECK(got.at("layers.0.moe.experts.0.fc1.weight") != got.at("layers.0.moe.experts.1.fc1.weight"));
  // The same seed draws the same noise.
  train::Trainer again(small_run(dir / "moe"), progress);
  again.upcycle(dense_path, 0.01);
  CHECK(tensors(again.model()) == got);
}

TEST_CASE("an upcycled model with normalize_topk computes exactly the dense model's loss", "[upcycle]") {
  const fs::path dir = fresh_dir("upcycle_loss");
  const std::vector<std::string> plain = {"moe.losses.switch_aux=0", "moe.losses.z_loss=0"};
  const std::string dense_path = dense_checkpoint(dir / "dense", plain);
  std::ostringstream progress;
  std::vector<std::string> dense_keys = plain;
  dense_keys.push_back("moe.enabled=false");
  train::Trainer dense(small_run(dir / "dense2", dense_keys), progress);
  dense.resume(dense_path);
  const double dense_ce = eval_ce(dense.model(), small_run(dir / "dense2", dense_keys));

  std::vector<std::string> normalized = plain;
  normalized.push_back("moe.normalize_topk=true");
  const runconfig::RunConfig config = small_run(dir / "moe", normalized);
  train::Trainer up(config, progress);
  up.upcycle(dense_path, 0.0);
  // Every expert computes the dense FFN's output and the gates sum to one: the same function,
  // up to the rounding of g1 y + g2 y.
  CHECK(eval_ce(up.model(), config) == Approx(dense_ce).epsilon(1e-6));

  // Without normalize_topk the top-2 gates of 4 experts sum to less than one: a weaker FFN.
  const runconfig::RunConfig unnormalized = small_run(dir / "moe_plain", plain);
  train::Trainer weaker(unnormalized, progress);
  weaker.upcycle(dense_path, 0.0);
  CHECK(std::abs(eval_ce(weaker.model(), unnormalized) - dense_ce) > 1e-4);
}

TEST_CASE("upcycling errors name the tensor or the key or the file", "[upcycle][errors]") {
  const fs::path dir = fresh_dir("upcycle_errors");
  const std::string dense_path = dense_checkpoint(dir / "dense");
  std::ostringstream progress;
  SECTION("d_expert differs from the dense d_ff: the tensor and both shapes") {
    train::Trainer up(small_run(dir / "moe", {"moe.d_expert=12"}), progress);
    CHECK_THROWS_WITH(up.upcycle(dense_path, 0.0),
                      Contains(dense_path + ": /model/layers.0.mlp.fc1.weight: has shape (24, 16)") &&
                          Contains("layers.0.moe.experts.0.fc1.weight of the MoE model has shape (12, 16)") &&
                          Contains("moe.d_expert must equal the dense model.d_ff"));
  }
  SECTION("another model: the key and both values") {
    train::Trainer up(small_run(dir / "moe", {"model.n_layers=3"}), progress);
    CHECK_THROWS_WITH(up.upcycle(dense_path, 0.0),
                      Contains("the dense model has model.n_layers = 2, the config upcycled into has 3"));
  }
  SECTION("an activation that differs") {
    train::Trainer up(small_run(dir / "moe", {"model.activation=swiglu"}), progress);
    CHECK_THROWS_WITH(up.upcycle(dense_path, 0.0), Contains("model.activation = gelu"));
  }
  SECTION("a checkpoint that is already MoE") {
    train::Trainer moe_run(small_run(dir / "moe_source"), progress);
    const std::string moe_path = moe_run.save_checkpoint();
    train::Trainer up(small_run(dir / "moe"), progress);
    CHECK_THROWS_WITH(up.upcycle(moe_path, 0.0), Contains(moe_path + ": already a MoE checkpoint"));
  }
  SECTION("a missing file and a corrupt one") {
    train::Trainer up(small_run(dir / "moe"), progress);
    CHECK_THROWS_WITH(up.upcycle((dir / "no_such.h5").string(), 0.0), Contains("no_such.h5"));
    const fs::path corrupt = dir / "corrupt.h5";
    fs::copy_file(dense_path, corrupt);
    {
      std::fstream f(corrupt, std::ios::in | std::ios::out | std::ios::binary);
      const auto middle = static_cast<std::streamoff>(fs::file_size(corrupt) / 2);
      f.seekg(middle);
      const char byte = static_cast<char>(f.get());
      f.seekp(middle);
      f.put(static_cast<char>(~byte));  // surely another byte
    }
    CHECK_THROWS_WITH(up.upcycle(corrupt.string(), 0.0), Contains("corrupt.h5: corrupted checkpoint"));
  }
}

TEST_CASE("moe-train refuses --init-from together with --resume and an upcycle without MoE layers",
          "[upcycle][errors]") {
  const fs::path dir = fresh_dir("upcycle_flags");
  const std::string dense_path = dense_checkpoint(dir / "dense");
  fs::create_directories(dir);
  const fs::path yaml = dir / "run.yaml";
  std::ofstream(yaml) << "{}\n";
  auto start = [&](train::StartRequest r, std::string* err_text) {
    std::ostringstream out, err;
    r.config_path = yaml.string();
    r.overrides = small_keys(dir / "moe");
    train::StartedRun run = train::start_run(r, out, err, [](train::StartPhase) {});
    *err_text = err.str();
    return run.exit_code;
  };
  std::string err;
  train::StartRequest both;
  both.init_from = dense_path;
  both.resume = "latest";
  CHECK(start(both, &err) == 2);
  CHECK_THAT(err, Contains("--init-from and --resume together"));
  train::StartRequest dense_target;
  dense_target.init_from = dense_path;
  {
    std::ostringstream out, e;
    dense_target.config_path = yaml.string();
    std::vector<std::string> keys = small_keys(dir / "moe_dense");
    keys.push_back("moe.enabled=false");
    dense_target.overrides = keys;
    train::StartedRun run = train::start_run(dense_target, out, e, [](train::StartPhase) {});
    CHECK(run.exit_code == 2);
    CHECK_THAT(e.str(), Contains("the config has no MoE layers to upcycle into"));
  }
  train::StartRequest good;
  good.init_from = dense_path;
  CHECK(start(good, &err) == 0);
}
