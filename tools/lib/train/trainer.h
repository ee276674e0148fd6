// The training loop behind moe-train: builds the model and data from a RunConfig, runs AdamW
// steps (gradient accumulation, global-norm clipping, warm-up + cosine schedule, loss-free bias
// updates, the balancing strength of each step where it is a schedule, dead-expert revival:
// tools/lib/train/revival.h), evaluates on the validation split, prints a progress line, keeps the metrics
// (tools/lib/train/metrics_log.h) and saves checkpoints (tools/lib/checkpoint/checkpoint.h) into
// OUT/checkpoints/step_NNNNNNNN.h5, keeping the last K.
//
// Resuming (resume()) restores everything a step depends on: parameters, AdamW moments and
// step count, loss-free biases, the router-noise and dropout generators, both data cursors, the
// step and the metrics history; on the CPU the continued run is bit-identical to one that never
// stopped. A checkpoint whose model or moe keys differ from the config is refused, naming them,
// and so is an output folder holding checkpoints of another model or data.
//
// The constructor checks every data source against the config (each file, split or shard must
// hold one window of seq_len + 1 tokens) and throws runconfig::ConfigError naming the keys, so
// data that cannot serve the run is found before step 1, not at the final evaluation.
//
// Several processes (tools/lib/train/parallel.h): given process groups of R ranks, each rank
// trains on its rows of every batch (rank r: rows r*b ... of the batch a single process would
// draw with batch size R*b), the experts are spread over each expert group, gradients are
// averaged and clipped by the global norm, and every logged number is the whole run's. Only
// world rank 0 writes files (config.yaml, metrics, checkpoints: one file in the single-process
// layout, whatever R); every rank calls run(), save_checkpoint() and resume() together. A stop
// request seen by any rank stops every rank after the same step. An error on one rank is not
// saved from: it propagates (the caller ends every rank), and the last checkpoint stays.
//
// A non-finite loss or gradient stops training with NonFiniteError naming the first tensor
// where it appeared (a parameter, the logits, a loss term, or a parameter's gradient), after a
// diagnostic checkpoint (OUT/checkpoints/diagnostic_step_N.h5) has been saved.
//
// A file that cannot be written (config.yaml, the metrics files, a checkpoint: a full disk)
// stops run() with OutputError: the file, the system's reason, and the last good checkpoint
// with the --resume to continue from it. A failed save leaves no .tmp behind. Any other error
// during run() saves a regular checkpoint of the last finished step (a failed step is undone)
// and rethrows with its path, or with the newest checkpoint's path when the save fails too.
#pragma once
#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "data/batch.h"
#include "engine/engine.h"
#include "models/transformer.h"
#include "tools/lib/assemble/memory_estimate.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/train/metrics_log.h"
#include "tools/lib/train/parallel.h"
#include "tools/lib/train/revival.h"
#include "tools/lib/train/routing_stats.h"
#include "tools/lib/config/run_config.h"

namespace train {

class ExpertHealth;

class NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class RunEnd { finished, stopped };  // stopped: the stop flag was raised, a checkpoint saved

class Trainer {
 public:
  // train_source replaces the config's training data when given (moe-refcheck feeds one fixed
  // batch). An empty logging.out_dir writes no files (progress still goes to `progress`).
  // Throws runconfig::ConfigError before building anything when the config's memory estimate
  // exceeds memory_limit or the available memory.
  Trainer(const runconfig::RunConfig& config, std::ostream& progress,
          std::unique_ptr<data::TokenSource> train_source = nullptr,
          const ProcessGroups& groups = ProcessGroups::single());
  ~Trainer();

  StepMetrics step();  // one optimizer step; throws NonFiniteError (nothing updated)
  double evaluate();   // mean cross-entropy over eval_batches validation batches
  // All remaining steps with logging, evaluation and checkpoints. When *stop becomes true (a
  // signal handler sets it), the current step finishes, a checkpoint is saved and run returns.
  RunEnd run(const std::atomic<bool>* stop = nullptr);

  // Checkpoints.
  ckpt::Checkpoint snapshot(const std::string& diagnostic = "") const;
  void restore(const ckpt::Checkpoint& c, const std::string& source);  // source names the file in errors
  void resume(const std::string& path);  // read, compare configs (refuse model changes), restore
  // Sparse upcycling (tools/lib/assemble/upcycle.h): the model's tensors from a dense checkpoint,
  // experts copied from its FFN plus noise of noise_std, routers, optimizer and step fresh. Its
  // checkpoints then name the source (ckpt::Checkpoint::upcycled_from), also after a resume.
  void upcycle(const std::string& dense_path, double noise_std);
  // Returns the path written (on ranks other than 0, which write nothing: the path rank 0 writes).
  std::string save_checkpoint(const std::string& diagnostic = "");
  std::string checkpoint_dir() const;
  // Creates the run folder's files (config.yaml, metrics), refusing a folder that holds another
  // run's checkpoints (OutputError, CheckpointError); run() calls it, a caller may call it first
  // to fail before training.
  void start_outputs();

  // The MoE layers' expert load (models/moe_layer.h) is measured at log steps; on, at every step
  // (moe-bench reads it after each).
  void measure_expert_load_every_step(bool on) { measure_every_step_ = on; }

  int64_t steps_done() const { return step_; }
  moe::TransformerLM& model() { return *model_; }
  const MetricsLog& metrics() const { return metrics_; }
  const ProcessGroups& groups() const { return groups_; }

 private:
  void log(const StepMetrics& m);
  void open_outputs();
  bool is_log_step(int64_t step) const;
  int64_t domain_count() const;
  int64_t device_count() const;
  void warn_on_collapse(const StepMetrics& m);
  void record_routing_trace();  // at multiples of logging.routing_trace_every (routing_trace.cpp)
  std::string stopped_writing(const std::string& what) const;  // what failed, and how to resume
  void check_finite(const moe::ForwardResult& out) const;
  void check_finite_gradients() const;
  std::string stopped_by_error(const std::string& where, const std::string& what);

  bool writes_files() const { return !config_.logging.out_dir.empty() && groups_.rank() == 0; }
  bool any_rank(bool flag) const;  // flag raised on at least one rank (a collective)
  void forward_backward(StepMetrics& m, std::vector<RoutingObserver>& observers);

  runconfig::RunConfig config_;
  std::ostream& progress_;
  ProcessGroups groups_;
  assemble::MemoryEstimate memory_;  // checked against the memory limit before model_ is built
  std::unique_ptr<moe::TransformerLM> model_;
  std::unique_ptr<engine::AdamW> optimizer_;
  std::unique_ptr<ExpertHealth> health_;  // per-expert gradient, update and idle diagnostics
  std::vector<engine::Tensor> params_;  // the model's parameters, for clipping
  engine::LrSchedule schedule_;
  std::unique_ptr<data::TokenSource> train_data_, eval_data_;
  MetricsLog metrics_;
  std::unique_ptr<Revival> revival_;  // moe.revival: dead experts re-initialized after some steps
  int64_t step_ = 0, tokens_seen_ = 0, start_step_ = 0;
  double last_lr_ = 0, elapsed_seconds_ = 0;
  bool resumed_ = false, outputs_open_ = false, measure_every_step_ = false;
  std::vector<int64_t> moe_blocks_;  // the block index of each MoE layer
  std::vector<int> warned_;          // per MoE layer: the thresholds crossed at the last log step

  // The newest regular checkpoint of this run (saved, or resumed from) and its step; none at step
  // 0, where nothing needs saving. An error during training names it or saves a newer one.
  std::string last_checkpoint_;
  int64_t last_checkpoint_step_ = 0;
  std::string upcycled_from_;  // the dense checkpoint this run started from (--init-from)
  std::unique_ptr<data::Batch> probe_;  // the routing trace's probe batch, drawn at the first trace
};

// Steps of the regular checkpoints (step_N.h5) in a checkpoint folder, ascending.
std::vector<int64_t> checkpoint_steps(const std::string& dir);

// The newest complete, non-diagnostic checkpoint in a run folder's checkpoints/ (files that
// fail to load are skipped, with a note in *skipped); throws when there is none.
std::string latest_checkpoint(const std::string& run_dir, std::vector<std::string>* skipped = nullptr);

}  // namespace train
