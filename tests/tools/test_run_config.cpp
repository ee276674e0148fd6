// Run configuration: defaults, every section parsed, to_yaml round trip, overrides, and for each
// kind of bad config a message naming the file, line, key and allowed values.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tools/lib/config/run_config.h"

using namespace runconfig;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : dir_(fs::temp_directory_path() / ("runconfig_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }

 private:
  fs::path dir_;
};

RunConfig parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return parse_run_config(yaml, "test.yaml", overrides);
}
}  // namespace

TEST_CASE("config: an empty map or an empty file gives every default", "[config]") {
  TempDir tmp("defaults");
  const RunConfig a = load_run_config(tmp.write("a.yaml", "{}\n"));
  const RunConfig b = load_run_config(tmp.write("b.yaml", ""));
  CHECK(a == RunConfig{});
  CHECK(b == RunConfig{});
  CHECK(a.model.vocab_size == 256);
  CHECK(a.model.d_model == 128);
  CHECK(a.model.norm == NormKind::layernorm);
  CHECK(a.model.norm_eps == 1e-5);
  CHECK(a.model.tie_embeddings);
  CHECK(a.moe.enabled);
  CHECK(a.moe.num_experts == 8);
  CHECK(a.moe.top_k == 2);
  CHECK(a.moe.router == RouterKind::topk_softmax);
  CHECK(a.moe.capacity_factor == 0.0);
  CHECK(a.moe.losses.switch_aux == 0.0);
  CHECK(a.data.kind == DataKind::synthetic);
  CHECK(a.data.concentration == 0.9);
  CHECK(a.optimizer.lr == 3e-3);
  CHECK(a.optimizer.beta2 == 0.95);
  CHECK(a.schedule.decay == DecayKind::cosine);
  CHECK(a.training.steps == 200);
  CHECK(a.training.seq_len == 64);
  CHECK(a.logging.out_dir == "runs/default");
  CHECK(a.checkpointing.keep_last == 3);
  CHECK(a.device == DeviceKind::cpu);
}

namespace {
// Every key set to a value other than its default.
const char* kFullConfig = R"(# a config that sets every key
model:
  vocab_size: 300
  d_model: 96
  n_layers: 6
  n_heads: 6
  max_seq_len: 256
  norm: rmsnorm
  norm_eps: 1.0e-6
  position: rope
  tie_embeddings: false
  dropout: 0.1
  d_ff: 384
  activation: swiglu
  init_std: 0.01
  embedding_init_std: 1.0
moe:
  enabled: false
  layers: every_n
  every_n: 3
  first_dense: 1
  num_experts: 16
  top_k: 4
  d_expert: 64
  num_shared_experts: 2
  d_shared: 128
  router: noisy_topk
  normalize_topk: true
  capacity_factor: 1.25
  drop_policy: score
  input_jitter: 0.1
  routed_scaling: 2.5
  expert_groups: 4
  topk_groups: 2
  eval_capacity_factor: 2.0
  force_balance: true
  losses: {switch_aux: 0.01, importance: 0.1, load: 0.1, z_loss: 0.001, sequence_aux: 0.0001, device_aux: 0.001}
  bias_update_rate: 0.001
  device_groups: 4
data:
  kind: synthetic
  seed: 7
  num_domains: 3
  concentration: 0.5
  paths: [x.txt]
  val_fraction: 0.2
  train_shards: [t0.bin, t1.bin]
  val_shards: [v0.bin]
optimizer:
  lr: 1e-3
  beta1: 0.8
  beta2: 0.99
  eps: 1e-6
  weight_decay: 0.0
  decay_embeddings: true
  decay_norms_and_biases: yes
  grad_clip: 0
schedule:
  warmup_steps: 5
  decay: constant
  min_lr_ratio: 0.0
  total_steps: 1000
training:
  steps: 500
  batch_size: 8
  seq_len: 128
  grad_accum: 2
  seed: 3
  eval_every: 0
  eval_batches: 2
logging:
  every: 1
  out_dir: runs/full run
checkpointing:
  every: 100
  keep_last: 1
diagnostics:
  warnings: false
  max_vio: 2.5
  max_dead: 1
  topk_share: 0.8
  dead_fraction: 0.05
  starved_fraction: 0.25
  device_imbalance: 2.0
device: cpu
precision: bf16
)";
}  // namespace

TEST_CASE("config: every section and key is parsed", "[config]") {
  const RunConfig c = parse(kFullConfig);
  CHECK(c.model.vocab_size == 300);
  CHECK(c.model.d_model == 96);
  CHECK(c.model.n_layers == 6);
  CHECK(c.model.n_heads == 6);
  CHECK(c.model.max_seq_len == 256);
  CHECK(c.model.norm == NormKind::rmsnorm);
  CHECK(c.model.norm_eps == 1e-6);
  CHECK(c.model.position == PositionKind::rope);
  CHECK_FALSE(c.model.tie_embeddings);
  CHECK(c.model.dropout == 0.1);
  CHECK(c.model.d_ff == 384);
  CHECK(c.model.activation == Activation::swiglu);
  CHECK(c.model.init_std == 0.01);
  CHECK(c.model.embedding_init_std == 1.0);
  CHECK_FALSE(c.moe.enabled);
  CHECK(c.moe.layers == MoeLayers::every_n);
  CHECK(c.moe.every_n == 3);
  CHECK(c.moe.first_dense == 1);
  CHECK(c.moe.num_experts == 16);
  CHECK(c.moe.top_k == 4);
  CHECK(c.moe.d_expert == 64);
  CHECK(c.moe.num_shared_experts == 2);
  CHECK(c.moe.d_shared == 128);
  CHECK(c.moe.router == RouterKind::noisy_topk);
  CHECK(c.moe.normalize_topk);
  CHECK(c.moe.capacity_factor == 1.25);
  CHECK(c.moe.drop_policy == DropPolicy::score);
  CHECK(c.moe.input_jitter == 0.1);
  CHECK(c.moe.routed_scaling == 2.5);
  CHECK(c.moe.expert_groups == 4);
  CHECK(c.moe.topk_groups == 2);
  CHECK(c.moe.eval_capacity_factor == 2.0);
  CHECK(c.moe.force_balance);
  CHECK(c.moe.losses.switch_aux == 0.01);
  CHECK(c.moe.losses.importance == 0.1);
  CHECK(c.moe.losses.load == 0.1);
  CHECK(c.moe.losses.z_loss == 0.001);
  CHECK(c.moe.losses.sequence_aux == 0.0001);
  CHECK(c.moe.losses.device_aux == 0.001);
  CHECK(c.moe.bias_update_rate == 0.001);
  CHECK(c.moe.device_groups == 4);
  CHECK(c.data.kind == DataKind::synthetic);
  CHECK(c.data.seed == 7);
  CHECK(c.data.num_domains == 3);
  CHECK(c.data.concentration == 0.5);
  CHECK(c.data.paths == std::vector<std::string>{"x.txt"});
  CHECK(c.data.val_fraction == 0.2);
  CHECK(c.data.train_shards == std::vector<std::string>{"t0.bin", "t1.bin"});
  CHECK(c.data.val_shards == std::vector<std::string>{"v0.bin"});
  CHECK(c.optimizer.lr == 1e-3);
  CHECK(c.optimizer.beta1 == 0.8);
  CHECK(c.optimizer.beta2 == 0.99);
  CHECK(c.optimizer.eps == 1e-6);
  CHECK(c.optimizer.weight_decay == 0.0);
  CHECK(c.optimizer.decay_embeddings);
  CHECK(c.optimizer.decay_norms_and_biases);
  CHECK(c.optimizer.grad_clip == 0.0);
  CHECK(c.schedule.warmup_steps == 5);
  CHECK(c.schedule.decay == DecayKind::constant);
  CHECK(c.schedule.min_lr_ratio == 0.0);
  CHECK(c.schedule.total_steps == 1000);
  CHECK(c.training.steps == 500);
  CHECK(c.training.batch_size == 8);
  CHECK(c.training.seq_len == 128);
  CHECK(c.training.grad_accum == 2);
  CHECK(c.training.seed == 3);
  CHECK(c.training.eval_every == 0);
  CHECK(c.training.eval_batches == 2);
  CHECK(c.logging.every == 1);
  CHECK(c.logging.out_dir == "runs/full run");
  CHECK(c.checkpointing.every == 100);
  CHECK(c.checkpointing.keep_last == 1);
  CHECK(c.device == DeviceKind::cpu);
  CHECK(c.precision == PrecisionKind::bf16);
  CHECK_FALSE(c.diagnostics.warnings);
  CHECK(c.diagnostics.max_vio == 2.5);
  CHECK(c.diagnostics.max_dead == 1);
  CHECK(c.diagnostics.topk_share == 0.8);
  CHECK(c.diagnostics.dead_fraction == 0.05);
  CHECK(c.diagnostics.starved_fraction == 0.25);
  CHECK(c.diagnostics.device_imbalance == 2.0);
  // Every key differs from its default.
  CHECK(keys_differing(c, RunConfig{}).size() == 79);
}

TEST_CASE("config: to_yaml writes every key and parses back to an equal config", "[config]") {
  // Schedules too: a constant is written as a plain number, the others as flow maps.
  const std::vector<std::string> scheduled = {
      "moe.losses.switch_aux={schedule: linear, from: 0.1, to: 0.001, steps: 500, start: 10}",
      "moe.losses.z_loss={schedule: warmup, value: 0.01, steps: 100}", "moe.losses.load={schedule: constant, value: 0.2}",
      "moe.bias_update_rate={schedule: linear, from: 0.001, to: 0, steps: 50, start: 450}"};
  for (const RunConfig& original : {RunConfig{}, parse(kFullConfig), parse(kFullConfig, scheduled)}) {
    const std::string text = to_yaml(original);
    const RunConfig back = parse(text);
    CHECK(back == original);
    CHECK(to_yaml(back) == text);
  }
  const std::string text = to_yaml(RunConfig{});
  for (const char* key :
       {"vocab_size:", "embedding_init_std:", "sequence_aux:", "device_aux:", "bias_update_rate:", "device_groups: 0",
        "val_shards:", "decay_norms_and_biases:", "total_steps:", "eval_batches:", "out_dir:", "keep_last:",
        "device: cpu", "precision: f32", "router: topk_softmax", "norm_eps: 1.0e-05", "eps: 1.0e-08"})
    CHECK_THAT(text, Contains(key));
  // Awkward values survive too: a double with no short form, a string that looks like a number.
  RunConfig odd;
  odd.optimizer.lr = 0.1 + 0.2;
  odd.logging.out_dir = "123";
  odd.data.paths = {"a b.txt", "c: d.txt"};
  CHECK(parse(to_yaml(odd)) == odd);
}

TEST_CASE("config: keys_differing in schema order, and the model, data and seed keys are fixed on resume", "[config]") {
  RunConfig a, b;
  CHECK(keys_differing(a, b).empty());
  b.moe.top_k = 1;
  b.moe.losses.z_loss = 0.001;
  b.model.d_ff = 64;
  b.training.steps = 5;
  b.training.seed = 3;
  b.data.seed = 2;
  b.optimizer.lr = 1.0;
  const std::vector<std::string> differing = keys_differing(a, b);
  CHECK(differing == std::vector<std::string>{"model.d_ff", "moe.top_k", "moe.losses.z_loss", "data.seed",
                                              "optimizer.lr", "training.steps", "training.seed"});
  std::vector<std::string> fixed;
  for (const std::string& k : differing)
    if (fixed_on_resume(k)) fixed.push_back(k);
  CHECK(fixed == std::vector<std::string>{"model.d_ff", "moe.top_k", "moe.losses.z_loss", "data.seed", "training.seed"});
  CHECK(a != b);
}

TEST_CASE("config: moe.device_groups: 0 follows parallel.expert, else any divisor of num_experts", "[config]") {
  CHECK(RunConfig{}.moe.device_groups == 0);
  CHECK(device_groups(parse("")) == 1);
  CHECK(device_groups(parse("parallel:\n  expert: 2\n")) == 2);
  for (int d : {1, 2, 4, 8}) {
    const RunConfig c = parse("moe:\n  num_experts: 8\n  device_groups: " + std::to_string(d) + "\n");
    CHECK(c.moe.device_groups == d);
    CHECK(device_groups(c) == d);
  }
  // Grouping the ranks of an expert-parallel run differently (by node, say) is allowed too.
  CHECK(device_groups(parse("moe:\n  device_groups: 2\nparallel:\n  expert: 4\n")) == 2);
  CHECK(device_groups(parse("moe:\n  device_groups: 8\nparallel:\n  expert: 2\n")) == 8);
  const std::string allowed = "(allowed: 0, 1, 2, 4, 8)";
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 8\n  device_groups: 3\n"),
                    Contains("test.yaml:3:18: moe.device_groups: must be 0 (as many devices as parallel.expert) or a "
                             "divisor of moe.num_experts (8), got 3 " +
                             allowed));
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 8\n  device_groups: 16\n"),
                    Contains("moe.device_groups: must be 0") && Contains("(8), got 16 " + allowed));
  CHECK_THROWS_WITH(parse("moe:\n  device_groups: -2\n"),
                    Contains("test.yaml:2:18: moe.device_groups:") && Contains("(8), got -2 " + allowed));
  CHECK_THROWS_WITH(parse("", {"moe.device_groups=3"}),
                    Contains("override 'moe.device_groups=3'") && Contains("moe.device_groups") && Contains("got 3"));
  CHECK_THROWS_WITH(parse("moe:\n  num_experts: 6\n  device_groups: 4\n"),
                    Contains("(6), got 4 (allowed: 0, 1, 2, 3, 6)"));
}

TEST_CASE("config: a resume compares the device grouping device_aux trains with, not its spelling", "[config]") {
  RunConfig saved;  // two expert-parallel ranks, one device each
  saved.parallel.expert = 2;
  saved.moe.losses.device_aux = 0.01;
  RunConfig alone = saved;  // one process, the same grouping spelled out
  alone.parallel.expert = 1;
  alone.moe.device_groups = 2;
  ResumeChanges same = resume_changes(saved, alone);
  CHECK(same.fixed.empty());
  CHECK(same.changed == std::vector<std::string>{"parallel.expert"});
  RunConfig regrouped = alone;  // one process, one device: device_aux would train another objective
  regrouped.moe.device_groups = 0;
  CHECK(resume_changes(saved, regrouped).fixed == std::vector<std::string>{"moe.device_groups"});
  // Without the loss the grouping only changes what is logged: a training key like parallel.expert.
  saved.moe.losses.device_aux = regrouped.moe.losses.device_aux = 0;
  const ResumeChanges logged = resume_changes(saved, regrouped);
  CHECK(logged.fixed.empty());
  CHECK(logged.changed == std::vector<std::string>{"moe.device_groups", "parallel.expert"});
  // Other model keys stay fixed.
  regrouped.moe.top_k = 1;
  CHECK(resume_changes(saved, regrouped).fixed == std::vector<std::string>{"moe.top_k"});
}

TEST_CASE("config: overrides set scalars, nested keys and lists, after the file", "[config]") {
  TempDir tmp("overrides");
  const std::string a = tmp.write("a.txt", "hello");
  const std::string b = tmp.write("b.txt", "world");
  const std::string cfg = tmp.write("run.yaml", "moe:\n  top_k: 2\ntraining:\n  steps: 40\n");
  const RunConfig c =
      load_run_config(cfg, {"moe.top_k=1", "moe.losses.switch_aux=0.01", "model.tie_embeddings=false", "data.kind=text",
                            "data.paths=[" + a + ", " + b + "]", "moe.router=switch", "logging.out_dir=runs/x"});
  CHECK(c.moe.top_k == 1);
  CHECK(c.moe.losses.switch_aux == 0.01);
  CHECK_FALSE(c.model.tie_embeddings);
  CHECK(c.data.kind == DataKind::text);
  CHECK(c.data.paths == std::vector<std::string>{a, b});
  CHECK(c.moe.router == RouterKind::switch_k1);
  CHECK(c.logging.out_dir == "runs/x");
  CHECK(c.training.steps == 40);  // untouched keys keep the file's value
  // A whole section as a map merges into it.
  const RunConfig d = parse("", {"moe.losses={z_loss: 0.001, importance: 0.5}"});
  CHECK(d.moe.losses.z_loss == 0.001);
  CHECK(d.moe.losses.importance == 0.5);
  CHECK(d.moe.losses.switch_aux == 0.0);
}

TEST_CASE("config: a bad override names the override", "[config]") {
  CHECK_THROWS_AS(parse("", {"moe.topk=1"}), ConfigError);
  CHECK_THROWS_WITH(parse("", {"moe.topk=1"}), Contains("override 'moe.topk=1'") && Contains("moe.topk: unknown key") &&
                                                   Contains("did you mean 'top_k'?"));
  CHECK_THROWS_WITH(parse("", {"modle.d_model=4"}),
                    Contains("override 'modle.d_model=4'") && Contains("did you mean 'model'?"));
  CHECK_THROWS_WITH(parse("", {"moe.top_k=two"}),
                    Contains("override 'moe.top_k=two'") && Contains("expected an integer, got 'two'"));
  CHECK_THROWS_WITH(parse("", {"moe.top_k=9"}), Contains("override 'moe.top_k=9'") && Contains("(allowed: 1..8)"));
  CHECK_THROWS_WITH(parse("", {"moe.top_k"}),
                    Contains("override 'moe.top_k'") && Contains("must look like KEY.PATH=VALUE"));
  CHECK_THROWS_WITH(parse("", {"data.paths=[a"}), Contains("override 'data.paths=[a'") && Contains("not valid YAML"));
}

TEST_CASE("config: deep nesting and a second document are refused, naming the place", "[config]") {
  CHECK_THROWS_WITH(parse("model: " + std::string(10000, '[')),
                    Contains("test.yaml:1:") && Contains("YAML nested more than") &&
                        Contains("levels deep (a run config nests 3)") && !Contains("bad file"));
  CHECK_THROWS_WITH(parse("model:\n  d_model: 64\n---\nmodel:\n  d_model: 32\n"),
                    Contains("test.yaml:3:1: a second YAML document (after '---' or '...')"));
  CHECK_THROWS_WITH(parse("model:\n  d_model: 64\n...\n# a comment\n--- {model: {d_model: 32}}\n"),
                    Contains("test.yaml:5:1: a second YAML document"));
  CHECK(parse("model:\n  d_model: 64\n...\n# only a comment after the end marker\n").model.d_model == 64);
  // yaml-cpp's LoadAll looped forever on this input (found by fuzzing), and Load reads nothing
  // from it: it is refused, not taken for an empty config.
  std::ifstream hang(std::string(ENGINE_SOURCE_DIR) + "/tests/fuzz/seeds/config/loadall_hang.yaml", std::ios::binary);
  REQUIRE(hang);
  std::stringstream hang_text;
  hang_text << hang.rdbuf();
  CHECK_THROWS_WITH(parse(hang_text.str()), Contains("test.yaml:1:1: YAML syntax error: nothing could be read"));
  CHECK(parse("# only comments\n---\n...\n").model.d_model == 128);  // no content: the defaults
  CHECK_THROWS_WITH(parse("", {"model.d_model=1\n---\n2"}),
                    Contains("override 'model.d_model=1") && Contains("a second YAML document"));
  CHECK(parse("---\nmodel:\n  d_model: 64\n").model.d_model == 64);  // one document with its marker is fine
}

TEST_CASE("config: YAML syntax error names the file and line", "[config]") {
  TempDir tmp("syntax");
  const std::string path = tmp.write("bad.yaml", "model:\n  d_model: 128\n  n_heads: [4, 8\ntraining:\n  steps: 3\n");
  CHECK_THROWS_AS(load_run_config(path), ConfigError);
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":") && Contains("YAML syntax error"));
  const std::string path2 = tmp.write("bad2.yaml", "model:\n  d_model: 128\n  n_heads: 4: 5\n");
  CHECK_THROWS_WITH(load_run_config(path2), Contains(path2 + ":3:") && Contains("YAML syntax error"));
}

TEST_CASE("config: unknown key is named, with a suggestion and the allowed keys", "[config]") {
  TempDir tmp("unknown");
  const std::string path = tmp.write("run.yaml", "model:\n  d_model: 128\nmoe:\n  num_experts: 8\n  topk: 2\n");
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":5:3: moe.topk: unknown key, did you mean 'top_k'?") &&
                                               Contains("(allowed: enabled, layers,") &&
                                               Contains("bias_update_rate, balance_scope, device_groups, revival)"));
  const std::string far = tmp.write("far.yaml", "training:\n  banana: 1\n");
  CHECK_THROWS_WITH(load_run_config(far), Contains(far + ":2:3: training.banana: unknown key (allowed: steps,"));
  const std::string top = tmp.write("top.yaml", "optimiser:\n  lr: 0.1\n");
  CHECK_THROWS_WITH(
      load_run_config(top),
      Contains(top + ":1:1: optimiser: unknown key, did you mean 'optimizer'?") &&
          Contains("allowed: model, moe, data, optimizer, schedule, training, logging, checkpointing, diagnostics, parallel, "
                   "device"));
  const std::string loss = tmp.write("loss.yaml", "moe:\n  losses:\n    aux: 0.01\n");
  CHECK_THROWS_WITH(load_run_config(loss),
                    Contains(loss + ":3:5: moe.losses.aux: unknown key") &&
                        Contains("(allowed: switch_aux, importance, load, z_loss, sequence_aux, device_aux)"));
  const std::string twice = tmp.write("twice.yaml", "moe:\n  top_k: 1\n  top_k: 2\n");
  CHECK_THROWS_WITH(load_run_config(twice), Contains(twice + ":3:3: moe.top_k: key given twice"));
}

TEST_CASE("config: wrong type names the key and the value", "[config]") {
  TempDir tmp("type");
  const std::string path = tmp.write("run.yaml", "moe:\n  top_k: two\n");
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":2:10: moe.top_k: expected an integer, got 'two'"));
  const std::string dbl = tmp.write("dbl.yaml", "optimizer:\n  lr: fast\n");
  CHECK_THROWS_WITH(load_run_config(dbl), Contains(dbl + ":2:7: optimizer.lr: expected a number, got 'fast'"));
  const std::string flag = tmp.write("flag.yaml", "model:\n  tie_embeddings: maybe\n");
  CHECK_THROWS_WITH(load_run_config(flag), Contains(flag + ":2:19: model.tie_embeddings: expected a boolean") &&
                                               Contains("(allowed: true, false)"));
  const std::string list = tmp.write("list.yaml", "data:\n  paths: a.txt\n");
  CHECK_THROWS_WITH(load_run_config(list), Contains(list + ":2:10: data.paths: expected a list of strings"));
  const std::string frac = tmp.write("frac.yaml", "training:\n  steps: 2.5\n");
  CHECK_THROWS_WITH(load_run_config(frac), Contains(frac + ":2:10: training.steps: expected an integer, got '2.5'"));
  const std::string empty = tmp.write("empty.yaml", "training:\n  steps:\n");
  CHECK_THROWS_WITH(load_run_config(empty), Contains(empty + ":2:") && Contains("expected an integer, got nothing"));
  const std::string router = tmp.write("router.yaml", "moe:\n  router: top2\n");
  CHECK_THROWS_WITH(load_run_config(router),
                    Contains(router + ":2:11: moe.router: unknown value 'top2'") &&
                        Contains("(allowed: topk_softmax, switch, noisy_topk, sigmoid_topk, expert_choice, sinkhorn, hash)"));
}

TEST_CASE("config: top_k larger than num_experts", "[config]") {
  TempDir tmp("topk");
  const std::string path = tmp.write("run.yaml", "moe:\n  num_experts: 4\n  top_k: 5\n");
  CHECK_THROWS_WITH(load_run_config(path),
                    Contains(path + ":3:10: moe.top_k: must be between 1 and moe.num_experts (4), got 5") &&
                        Contains("(allowed: 1..4)"));
  // Only num_experts in the file: the error points at it.
  const std::string fewer = tmp.write("fewer.yaml", "moe:\n  num_experts: 1\n");
  CHECK_THROWS_WITH(load_run_config(fewer), Contains(fewer + ":2:16: moe.top_k:") && Contains("(allowed: 1..1)"));
  const std::string sw = tmp.write("switch.yaml", "moe:\n  router: switch\n");
  CHECK_THROWS_WITH(load_run_config(sw), Contains(sw + ":2:11: moe.top_k: router switch") && Contains("(allowed: 1)"));
  const std::string hash = tmp.write("hash.yaml", "moe:\n  router: hash\n  top_k: 2\n");
  CHECK_THROWS_WITH(load_run_config(hash),
                    Contains(hash + ":3:10: moe.top_k: router hash") && Contains("(allowed: 1)"));
  const std::string ec = tmp.write("ec.yaml", "moe:\n  router: expert_choice\n");
  CHECK_THROWS_WITH(load_run_config(ec), Contains(ec + ":2:11: moe.capacity_factor: router expert_choice needs") &&
                                             Contains("(allowed: > 0 with router expert_choice)"));
}

TEST_CASE("config: negative loss coefficient", "[config]") {
  TempDir tmp("coef");
  const std::string path = tmp.write("run.yaml", "moe:\n  losses:\n    switch_aux: 0.01\n    z_loss: -0.001\n");
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":4:13: moe.losses.z_loss: must be >= 0, got -0.001") &&
                                               Contains("(allowed: >= 0)"));
}

TEST_CASE("config: d_model not divisible by n_heads", "[config]") {
  TempDir tmp("heads");
  const std::string path = tmp.write("run.yaml", "model:\n  d_model: 100\n  n_heads: 3\n");
  CHECK_THROWS_WITH(
      load_run_config(path),
      Contains(path + ":3:12: model.n_heads: model.d_model (100) is not divisible by model.n_heads (3)") &&
          Contains("(allowed: divisors of d_model)"));
}

TEST_CASE("config: a loss whose input the router lacks (load without noise, z_loss without logits)", "[config]") {
  TempDir tmp("load");
  const std::string path = tmp.write("run.yaml", "moe:\n  router: sigmoid_topk\n  losses: {load: 0.1}\n");
  CHECK_THROWS_WITH(load_run_config(path),
                    Contains(path + ":3:") &&
                        Contains("moe.losses.load: the load loss needs the router's noise (router noisy_topk), "
                                 "router is sigmoid_topk") &&
                        Contains("(allowed: 0 with router sigmoid_topk)"));
  CHECK_NOTHROW(parse("moe:\n  router: noisy_topk\n  losses: {load: 0.1}\n"));
  CHECK_THROWS_WITH(parse("moe:\n  router: hash\n  top_k: 1\n  losses: {z_loss: 0.01}\n"),
                    Contains("moe.losses.z_loss: the z_loss loss needs the router's logits (routers topk_softmax, "
                             "switch, noisy_topk, sigmoid_topk, expert_choice, sinkhorn), router is hash"));
  CHECK_NOTHROW(parse("moe:\n  router: hash\n  top_k: 1\n  losses: {switch_aux: 0.01}\n"));
}

TEST_CASE("config: strings must be UTF-8 without NUL bytes (found by fuzzing)", "[config]") {
  CHECK_THROWS_WITH(parse("logging:\n  out_dir: run\xff\xfe\n"),
                    Contains("test.yaml:2:12: logging.out_dir: expected UTF-8 text without NUL bytes"));
  CHECK_THROWS_WITH(parse("data:\n  paths: [a.txt, \"b\\0c\"]\n"),
                    Contains("data.paths: item 2: expected UTF-8 text without NUL bytes"));
  CHECK(parse("logging:\n  out_dir: runs/caf\xc3\xa9\n").logging.out_dir == "runs/caf\xc3\xa9");
}

TEST_CASE("config: a warm-up longer than the schedule", "[config]") {
  TempDir tmp("warmup");
  const std::string path = tmp.write("run.yaml", "schedule:\n  warmup_steps: 50\ntraining:\n  steps: 30\n");
  CHECK_THROWS_WITH(load_run_config(path),
                    Contains(path + ":2:17: schedule.warmup_steps: must not exceed the schedule's length "
                                    "(training.steps = 30), got 50 (allowed: 0..30)"));
  CHECK_THROWS_WITH(parse("", {"schedule.total_steps=10"}),
                    Contains("schedule.warmup_steps") && Contains("(schedule.total_steps = 10), got 20"));
  CHECK(parse("", {"training.steps=5", "schedule.total_steps=100"}).schedule.warmup_steps == 20);
}

TEST_CASE("config: training.seq_len longer than model.max_seq_len", "[config]") {
  TempDir tmp("seq");
  const std::string path = tmp.write("run.yaml", "model:\n  max_seq_len: 32\ntraining:\n  seq_len: 64\n");
  CHECK_THROWS_WITH(load_run_config(path),
                    Contains(path + ":4:12: training.seq_len: must be <= model.max_seq_len (32), got 64") &&
                        Contains("(allowed: 1..32)"));
}

TEST_CASE("config: missing data files are named", "[config]") {
  TempDir tmp("files");
  const std::string real = tmp.write("real.txt", "abc");
  const std::string gone = tmp.path("gone.txt");
  const std::string path = tmp.write("run.yaml", "data:\n  kind: text\n  paths: [" + real + ", " + gone + "]\n");
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":3:10: data.paths: file not found: '" + gone + "'"));
  const std::string none = tmp.write("none.yaml", "data:\n  kind: text\n");
  CHECK_THROWS_WITH(load_run_config(none),
                    Contains(none + ":2:9: data.paths: data.kind text needs at least one file") &&
                        Contains("(allowed: a non-empty list of files)"));
  const std::string shards =
      tmp.write("shards.yaml", "data:\n  kind: shards\n  train_shards: [" + real + "]\n  val_shards: [" + gone + "]\n");
  CHECK_THROWS_WITH(load_run_config(shards),
                    Contains(shards + ":4:15: data.val_shards: file not found: '" + gone + "'"));
  CHECK_NOTHROW(load_run_config(path, {"data.paths=[" + real + "]"}));
  // A folder given as a data file is called a folder, not "not found".
  const std::string folder = tmp.path("corpus");
  fs::create_directories(folder);
  CHECK_THROWS_WITH(load_run_config(path, {"data.paths=[" + folder + "]"}),
                    Contains("data.paths: '" + folder + "' is a directory, not a file"));
  CHECK_THROWS_WITH(load_run_config(shards, {"data.val_shards=[" + folder + "]"}),
                    Contains("data.val_shards: '" + folder + "' is a directory, not a file"));
}

TEST_CASE("config: device cuda without a GPU gives the reason", "[config]") {
  TempDir tmp("device");
  const std::string path = tmp.write("run.yaml", "training:\n  steps: 50\ndevice: cuda\n");
  const CudaProbe no_gpu = [](std::string* reason) {
    *reason = "cudaGetDeviceCount: no CUDA-capable device is detected";
    return false;
  };
  CHECK_THROWS_WITH(load_run_config(path, {}, no_gpu),
                    Contains(path + ":3:9: device: no usable CUDA device: cudaGetDeviceCount: no CUDA-capable") &&
                        Contains("(allowed: cpu, cuda)"));
  CHECK(load_run_config(path, {}, [](std::string*) { return true; }).device == DeviceKind::cuda);
  CHECK(load_run_config(path, {"device=cpu"}, no_gpu).device == DeviceKind::cpu);  // never asks
}

TEST_CASE("config: a section that is not a map", "[config]") {
  TempDir tmp("section");
  const std::string path = tmp.write("run.yaml", "training:\n  steps: 5\nmoe: 8\n");
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ":3:6: moe: expected a map of keys, got '8'") &&
                                               Contains("(allowed: enabled, layers, every_n,"));
  const std::string list = tmp.write("list.yaml", "model: [1, 2]\n");
  CHECK_THROWS_WITH(load_run_config(list), Contains(list + ":1:8: model: expected a map of keys, got a list"));
  const std::string top = tmp.write("top.yaml", "- model\n- moe\n");
  CHECK_THROWS_WITH(load_run_config(top), Contains(top + ":1:1:") && Contains("expected a map of sections") &&
                                              Contains("(allowed: model, moe,"));
}

TEST_CASE("config: a missing config file is named", "[config]") {
  TempDir tmp("missing");
  const std::string path = tmp.path("nope.yaml");
  CHECK_THROWS_AS(load_run_config(path), ConfigError);
  CHECK_THROWS_WITH(load_run_config(path), Contains(path + ": cannot open the config file"));
  CHECK_THROWS_WITH(load_run_config(tmp.path("")), Contains("is a directory"));
}

TEST_CASE("config: other range checks name the key and the allowed values", "[config]") {
  CHECK_THROWS_WITH(
      parse("model:\n  dropout: 1.0\n"),
      Contains("test.yaml:2:12: model.dropout: must be in [0, 1), got 1") && Contains("(allowed: [0, 1))"));
  CHECK_THROWS_WITH(parse("data:\n  val_fraction: 0\n"),
                    Contains("data.val_fraction") && Contains("(allowed: (0, 1))"));
  CHECK_THROWS_WITH(parse("optimizer:\n  lr: 0\n"), Contains("test.yaml:2:7: optimizer.lr: must be > 0"));
  CHECK_THROWS_WITH(parse("model:\n  n_layers: 2\nmoe:\n  first_dense: 2\n"),
                    Contains("test.yaml:4:16: moe.first_dense:") && Contains("(allowed: 0..1)"));
  CHECK_THROWS_WITH(parse("training:\n  grad_accum: 0\n"),
                    Contains("training.grad_accum: must be >= 1") && Contains("(allowed: >= 1)"));
  CHECK_THROWS_WITH(parse("checkpointing:\n  keep_last: 0\n"), Contains("checkpointing.keep_last"));
  CHECK_THROWS_WITH(parse("diagnostics:\n  topk_share: 1.5\n"),
                    Contains("test.yaml:2:15: diagnostics.topk_share: must be in (0, 1], got 1.5"));
  CHECK_THROWS_WITH(parse("diagnostics:\n  dead_fraction: 0.6\n"),
                    Contains("diagnostics.dead_fraction: must not exceed diagnostics.starved_fraction (0.5)"));
  CHECK_THROWS_WITH(parse("diagnostics:\n  device_imbalance: 0.5\n"),
                    Contains("test.yaml:2:21: diagnostics.device_imbalance: must be >= 1"));
  CHECK_THROWS_WITH(parse("logging:\n  every: 0\n"), Contains("logging.every"));
  CHECK_THROWS_WITH(parse("model:\n  n_heads: 8\n  d_model: 24\n  position: rope\n"),
                    Contains("test.yaml:4:13: model.position: rope needs an even head size"));
  CHECK_THROWS_WITH(parse("training:\n  seed: -1\n"), Contains("test.yaml:2:9: training.seed: must be >= 0"));
  CHECK_NOTHROW(parse("optimizer:\n  grad_clip: -1\n"));
  CHECK_THROWS_WITH(parse("precision: fp16\n"), Contains("test.yaml:1:12: precision") && Contains("f32, bf16"));
}
