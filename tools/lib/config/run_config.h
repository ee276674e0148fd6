// Run configuration: the typed form of a YAML run file (configs/README.md documents every key).
// Contract: load_run_config / parse_run_config either return a fully validated RunConfig or throw
// ConfigError before any work starts, with a message `FILE:LINE:COL: KEY.PATH: what is wrong
// (allowed: ...)` (1-based line and column; overrides are named as `override 'KEY=VALUE'`).
// Every key has a default, so `{}` (or an empty file) is a valid config. to_yaml writes every
// key and parses back to an equal config. This library does not depend on the engine.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/catalog.h"
#include "tools/lib/config/schedule.h"

namespace runconfig {

// Thrown for every problem with a config: syntax, unknown keys, wrong types, invalid values.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class NormKind { layernorm, rmsnorm };
enum class PositionKind { learned, rope };
enum class Activation { gelu, swiglu };
enum class MoeLayers { all, every_n, none };
using moe::RouterKind;  // one enum for the config and the model, from models/routers/routers.def
using moe::SoftmaxOrder;
enum class DropPolicy { position, score };
enum class DataKind { synthetic, text, shards };
enum class DecayKind { cosine, constant };
enum class DeviceKind { cpu, cuda };
enum class PrecisionKind { f32, bf16 };
enum class BalanceScope { micro_batch, global_batch };
enum class RevivalMode { fresh, copy_busiest };

// The YAML spelling of each enum value (RouterKind::switch_k1 is "switch").
const char* to_string(NormKind v);
const char* to_string(PositionKind v);
const char* to_string(Activation v);
const char* to_string(MoeLayers v);
const char* to_string(RouterKind v);
const char* to_string(DropPolicy v);
const char* to_string(DataKind v);
const char* to_string(DecayKind v);
const char* to_string(DeviceKind v);
const char* to_string(PrecisionKind v);
const char* to_string(BalanceScope v);
const char* to_string(SoftmaxOrder v);
const char* to_string(RevivalMode v);

struct ModelConfig {
  int vocab_size = 256;
  int d_model = 128;
  int n_layers = 4;
  int n_heads = 4;
  int max_seq_len = 128;
  NormKind norm = NormKind::layernorm;
  double norm_eps = 1e-5;
  PositionKind position = PositionKind::learned;
  bool tie_embeddings = true;
  double dropout = 0.0;
  int d_ff = 512;  // hidden width of the dense FFN layers
  Activation activation = Activation::gelu;
  double init_std = 0.02;
  double embedding_init_std = 0.02;  // large values make routers collapse (the collapse demo)
};

// Balance-loss coefficients, one per entry of models/balance/losses.def; each adds
// coef x (mean over MoE layers) to the training loss, coef being the schedule's value at the step.
struct LossCoefficients {
#define MOE_BALANCE_LOSS(key, needs, summary) Schedule key = 0.0;
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS

  const Schedule& of(const std::string& key) const;  // by config key; throws std::out_of_range for an unknown key
};

// Dead-expert revival (tools/lib/train/revival.h): every check_every steps (0: never), each
// expert whose load share over the steps since the last check is below
// diagnostics.dead_fraction / E is re-initialized, fresh (as at model init) or as a copy of its
// layer's busiest expert plus N(0, noise^2) noise on every weight and on its router row.
struct RevivalConfig {
  int check_every = 0;
  RevivalMode mode = RevivalMode::fresh;
  double noise = 0.002;  // copy_busiest: the standard deviation added to each copied value
};

struct MoeConfig {
  bool enabled = true;
  MoeLayers layers = MoeLayers::all;
  int every_n = 2;      // with layers every_n: every n-th layer (after first_dense) is MoE
  int first_dense = 0;  // the first layers stay dense
  int num_experts = 8;
  int top_k = 2;
  int d_expert = 256;
  int num_shared_experts = 0;
  int d_shared = 0;  // 0 means d_expert
  RouterKind router = RouterKind::topk_softmax;
  bool normalize_topk = false;
  double capacity_factor = 0.0;  // <= 0 means dropless
  DropPolicy drop_policy = DropPolicy::position;
  // The routing options, one field per entry of models/routers/options.def (moe.KEY).
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) type key = default_value;
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  LossCoefficients losses;
  Schedule bias_update_rate = 0.0;  // loss-free balancing bias step (the schedule's value at the step); 0 disables
  // What the count-based balance terms (switch_aux's f_i) are measured on: each micro-batch of
  // each rank, or the step's whole batch (every micro-batch of every rank).
  BalanceScope balance_scope = BalanceScope::micro_batch;
  // The devices the device-level balance term (device_aux) groups the experts into, as
  // contiguous blocks of num_experts / device_groups; 0: as many as parallel.expert.
  int device_groups = 0;
  RevivalConfig revival;
};

// Several processes (mpirun): expert = the number of ranks that share one copy of each MoE
// layer's experts; the world size / expert copies of every expert exist, every other parameter
// lives on every rank.
struct ParallelConfig {
  int expert = 1;
};

struct DataConfig {
  DataKind kind = DataKind::synthetic;
  std::int64_t seed = 0;
  int num_domains = 4;
  double concentration = 0.9;
  std::vector<std::string> paths;  // text: the files
  double val_fraction = 0.1;
  std::vector<std::string> train_shards;  // shards: token shard files
  std::vector<std::string> val_shards;
};

struct OptimizerConfig {
  double lr = 3e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  bool decay_embeddings = false;
  bool decay_norms_and_biases = false;
  double grad_clip = 1.0;  // <= 0 disables clipping
};

struct ScheduleConfig {
  int warmup_steps = 20;
  DecayKind decay = DecayKind::cosine;
  double min_lr_ratio = 0.1;
  int total_steps = 0;  // 0 means training.steps
};

struct TrainingConfig {
  int steps = 200;
  int batch_size = 16;
  int seq_len = 64;
  int grad_accum = 1;
  std::int64_t seed = 0;
  int eval_every = 50;  // 0 means never
  int eval_batches = 4;
};

struct LoggingConfig {
  int every = 10;
  int routing_trace_every = 0;  // steps between routing traces of the probe batch; 0 means never
  std::string out_dir = "runs/default";
};

struct CheckpointingConfig {
  int every = 0;  // 0 means only at the end
  int keep_last = 3;
};

// Collapse diagnostics: the thresholds of moe-train's live warnings and of moe-diagnose's
// verdicts (definitions: README.md, "Expert-collapse diagnostics").
struct DiagnosticsConfig {
  bool warnings = true;               // print a line when a layer crosses a threshold
  double max_vio = 1.0;               // warn / imbalanced above this MaxVio
  int max_dead = 0;                   // warn / imbalanced with more dead experts than this
  double topk_share = 0.9;            // warn / collapsed when the k busiest experts take more
  double dead_fraction = 0.1;         // dead: load share < dead_fraction / E
  double starved_fraction = 0.5;      // starved: load share < starved_fraction / E
  double device_imbalance = 1.5;      // warn when a layer's busiest device has more than this x the mean slots
  int idle_window = 50;               // idle_share: experts with no gradient in any of the last this many steps
  double vanishing_grad_norm = 1e-3;  // moe-diagnose flags a starved expert whose gradient norm is below this
};

struct RunConfig {
  ModelConfig model;
  MoeConfig moe;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainingConfig training;
  LoggingConfig logging;
  CheckpointingConfig checkpointing;
  DiagnosticsConfig diagnostics;
  ParallelConfig parallel;
  DeviceKind device = DeviceKind::cpu;
  // Matrix products in f32, or bf16 operands with f32 sums (weights, optimizer state and every
  // other op stay f32; the router stays f32).
  PrecisionKind precision = PrecisionKind::f32;
  // GiB a run may use; 0: the memory available when it starts. A config whose estimate
  // (parameters, gradients, AdamW state, activations) exceeds it is refused before allocating.
  double memory_limit = 0.0;
};

// Answers whether a CUDA device can be used; on false it writes the reason. An empty probe means
// "not checked here" (the caller checks later); a config with device cpu never calls it.
using CudaProbe = std::function<bool(std::string* reason)>;

// Reads and validates a YAML file; overrides are `key.path=value` strings applied after the file
// (value parsed as YAML, so `data.paths=[a.txt,b.txt]` works). Relative data paths are checked
// against the current directory.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {},
                          const CudaProbe& cuda_available = {});

// The same from YAML text; source_name stands in for the file name in messages.
RunConfig parse_run_config(const std::string& yaml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides = {}, const CudaProbe& cuda_available = {});

// The full resolved config, every key, in schema order.
std::string to_yaml(const RunConfig& cfg);

bool operator==(const RunConfig& a, const RunConfig& b);
inline bool operator!=(const RunConfig& a, const RunConfig& b) { return !(a == b); }

// Keys a resumed run may not change: the model (model.*, moe.*), and the data (data.*) and seed
// (training.seed) whose restored state would silently override a new value.
bool fixed_on_resume(const std::string& key);

// Every dotted key with a different value, in schema order (empty when a == b).
std::vector<std::string> keys_differing(const RunConfig& a, const RunConfig& b);

// The number of devices device_aux groups the experts into: moe.device_groups, or parallel.expert
// where that is 0.
int device_groups(const RunConfig& cfg);

// The routing options of a config, as the model takes them.
moe::RoutingOptions routing_options(const MoeConfig& moe);
// The router and its options other than the defaults, for people: "sinkhorn (input_jitter 0.05)".
std::string describe_routing(const MoeConfig& moe);

// The balancing strength in force at optimizer step `step` (1-based, as the lr schedule): every
// balance loss's coefficient, by key in losses.def order, and the loss-free bias update rate.
// Depends on the step only, so a resumed run trains with the values of one that never stopped.
struct BalanceStrength {
  std::vector<std::pair<std::string, double>> coefficients;
  double bias_update_rate = 0;
};
BalanceStrength balance_strength(const MoeConfig& moe, std::int64_t step);

// The ways n experts split into equal blocks: n's divisors, ascending, as "1, 2, 4, 8" (for the
// messages that refuse a device count).
std::string divisor_list(std::int64_t n);

// What resuming `saved` with the config `resumed` changes, in schema order: the keys a resume may
// not change (fixed_on_resume) and the others. moe.device_groups is compared by the grouping it
// gives (so 0 at parallel.expert 2 equals 2 in one process), and is fixed only while device_aux
// trains with it (a positive coefficient); otherwise it changes a logged measurement only.
struct ResumeChanges {
  std::vector<std::string> fixed, changed;
};
ResumeChanges resume_changes(const RunConfig& saved, const RunConfig& resumed);

namespace detail {
// Where each dotted key (or section) was last set: "FILE:LINE:COL" or "override 'K=V'".
struct KeyLocations {
  std::string source;  // the file name, used when nothing closer is known
  std::map<std::string, std::string> at;
  // The location of the first key given that was set, else of its closest set section, else source.
  std::string find(const std::vector<std::string>& keys) const;
};
// Cross-field and value checks; throws ConfigError naming the key and where it was set.
void validate(const RunConfig& cfg, const KeyLocations& where, const CudaProbe& cuda_available);
// Builds the message `LOCATION: KEY: WHAT (allowed: ALLOWED)`; allowed may be empty.
std::string error_message(const std::string& location, const std::string& key, const std::string& what,
                          const std::string& allowed);
}  // namespace detail

}  // namespace runconfig
