// Checkpoint files: what a training run needs to continue bit for bit, in one HDF5 file that
// h5py and h5ls read. This library knows the file format only (no engine, no model), so the
// fuzz target can exercise the reader alone; train::Trainer fills and applies a Checkpoint.
//
// Layout (format_version 1; documented for users in README.md, "Checkpoints and resuming"):
//   bytes 0-511               a text header (HDF5 user block): magic, format version, file size,
//                             and a hash of every later byte, checked before HDF5 reads the file
//   /                         attributes: format "moe-engine checkpoint", format_version "1",
//                             engine_version, config (the resolved YAML), diagnostic (empty, or
//                             why training stopped), upcycled_from (only in a run started with
//                             --init-from: the dense checkpoint it was upcycled from), checksum
//                             (written last: the completeness mark)
//   /model/<name>             float32, each parameter (PyTorch state_dict names)
//   /optimizer/step           int64 scalar, AdamW's step count
//   /optimizer/m/<name>, /optimizer/v/<name>   float32, AdamW's moments
//   /optimizer/hyperparameters/{lr,beta1,beta2,eps,weight_decay}   float64 scalars
//   /router/<layer>/bias      float32 [E], the loss-free balancing bias of MoE layer <layer>
//   /state/{step,tokens_seen} int64 scalars; /state/lr float64 (the lr of the last step)
//   /state/rng/<name>         uint64 [2]: Philox (seed, offset) of each generator
//   /state/loader/<name>      uint64 [3]: data cursor (seed, offset, position) of train and eval
//   /state/expert_last_active int64 [MoE layers x experts], row-major: the last step each expert
//                             computed a slot (absent in older files)
//   /metrics/...              the run's logged history (MetricsHistory below); per-layer collapse
//                             metrics under /metrics/layers/<metric> [logged steps, MoE layers];
//                             per-rank expert load under /metrics/ranks/{slots,compute_seconds,
//                             wait_seconds} [logged steps, MoE layers, ranks]; the balancing
//                             strength in force: /metrics/coefficients/<loss> and
//                             /metrics/bias_update_rate [logged steps] (each absent before it
//                             was recorded: older files read as having none); routing traces
//                             (logging.routing_trace_every): /metrics/routing_trace/step [traces]
//                             and /metrics/routing_trace/experts int32 [traces, MoE layers,
//                             probe tokens, k] (absent in runs without traces); per expert at each
//                             logged step /metrics/experts/{grad_norm,update_ratio} [logged steps,
//                             MoE layers, experts] (absent before they were recorded); dead-expert
//                             revivals: /metrics/revivals/{step,layer,expert,source} int64 [revivals]
//                             (absent when none happened)
//   /state/revival/window     int64 [MoE layers * E]: each expert's slots since the last revival
//                             check (absent when revival is off)
//
// Contract: write_checkpoint is atomic: it writes `path`.tmp in the same folder, flushes, fsyncs,
// renames over `path` and fsyncs the folder, so at any moment either the old file or the complete
// new one exists under `path`. A save that fails (a full disk) closes and deletes its .tmp and
// throws CheckpointError with "FILE: /OBJECT: write failed: SYSTEM'S REASON". read_checkpoint
// returns only a complete, self-consistent file and otherwise throws CheckpointError with
// "FILE: what is wrong (which tensor or key)".
#pragma once
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ckpt {

constexpr int kFormatVersion = 1;
extern const char* const kEngineVersion;

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct NamedArray {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

struct MetricsHistory {
  std::vector<int64_t> step, dropped;
  std::vector<double> loss, ce, lr, grad_norm, tokens_per_s;
  std::map<std::string, std::vector<double>> terms;  // balance term -> value at each logged step
  // The balancing strength in force at each logged step (absent before it was recorded: empty).
  std::map<std::string, std::vector<double>> coefficients;  // balance loss -> its coefficient
  std::vector<double> bias_update_rate;
  int64_t layers = 0, experts = 0;
  std::vector<int64_t> expert_counts;                        // [step][layer][expert], row-major
  std::map<std::string, std::vector<double>> layer_metrics;  // collapse metric -> [step][layer]
  // Measured on each rank at each logged step (training's expert load): [step][layer][rank], NaN
  // where a step has fewer ranks (a run resumed on another number of processes).
  int64_t ranks = 0;
  std::vector<double> rank_slots, rank_compute_seconds, rank_wait_seconds;
  // Training's per-expert gradient norm and update ratio: [step][layer][expert], NaN for a step
  // without them; empty in files from before they were recorded.
  std::vector<double> expert_grad_norm, expert_update_ratio;
  // Dead-expert revivals, one entry each, in order: the step after which it happened, the MoE
  // layer, the expert, and the expert it was copied from (-1: re-initialized fresh).
  std::vector<int64_t> revival_step, revival_layer, revival_expert, revival_source;
  std::vector<int64_t> eval_step;
  std::vector<double> eval_loss;
  // Routing traces: each probe token's top-k experts (best first) at each traced step,
  // [trace][MoE layer][token][k] row-major; empty in runs without traces.
  std::vector<int64_t> trace_step;
  int64_t trace_tokens = 0, trace_k = 0;
  std::vector<int32_t> trace_experts;
  size_t size() const { return step.size(); }
};

struct Checkpoint {
  std::string config_yaml;
  std::string engine_version;      // filled by read_checkpoint (the writer stamps its own)
  std::string diagnostic;          // non-empty: saved because training stopped; such files are not resumed from
  std::string upcycled_from;       // non-empty: the run started from this dense checkpoint (--init-from)
  std::vector<NamedArray> params;  // read back sorted by name
  int64_t optimizer_step = 0;
  std::vector<NamedArray> adam_m, adam_v;  // same names and order as params
  std::map<std::string, double> hyperparameters;
  std::map<int64_t, std::vector<float>> router_bias;  // model layer index -> bias
  int64_t step = 0, tokens_seen = 0;
  double lr = 0;
  std::map<std::string, std::vector<uint64_t>> rng;      // name -> {seed, offset}
  std::map<std::string, std::vector<uint64_t>> loaders;  // name -> {seed, offset, position}
  // [MoE layer][expert], row-major: the last step in which each expert computed a slot, for the
  // idle share's window (empty in files from before it was saved).
  std::vector<int64_t> expert_last_active;
  MetricsHistory metrics;
  // Revival's slot counts since its last check ([MoE layer][expert], row-major); empty when off.
  std::vector<int64_t> revival_window;
};

// Test hook: when the environment variable MOE_ENGINE_CRASH_IN_SAVE names a point of the save
// ("open", "params", "optimizer", "flush", "rename", "cleanup"), the process kills itself with
// SIGKILL there, so tests can check what a crash at that moment leaves behind.
void write_checkpoint(const std::string& path, const Checkpoint& c);
Checkpoint read_checkpoint(const std::string& path);

// The checks read_checkpoint makes across the parts of a file: /optimizer/m and /v list the
// tensors of /model with their shapes, and the per-layer history fits the routers. Throws
// CheckpointError "PATH: /OBJECT: what is wrong".
void check_consistency(const Checkpoint& c, const std::string& path);

// Reading a file edited on purpose (h5py in r+ mode): its header's size and hash and its
// checksum attribute no longer match what it holds. read_edited_checkpoint reads it as
// read_checkpoint does but reports those two seals instead of refusing a stale one; the header
// must still be a checkpoint header of this format version. It does not call check_consistency,
// so that a caller checking tensor by tensor (assemble::seal) names what is wrong first.
struct Seals {
  bool header = false;    // the header's size and hash match the bytes after it
  bool checksum = false;  // the checksum attribute matches the contents
};
Checkpoint read_edited_checkpoint(const std::string& path, Seals* seals);

// An exact byte copy of a checkpoint file, written as write_checkpoint writes (TO.tmp, fsync,
// rename, fsync of the folder): TO is either as it was or the whole copy.
void copy_checkpoint_file(const std::string& from, const std::string& to);

// The FNV-1a hash of everything a checkpoint holds, in a fixed order: written last as the
// completeness mark and recomputed on read.
std::string checksum(const Checkpoint& c);

}  // namespace ckpt
