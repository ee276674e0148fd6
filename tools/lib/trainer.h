// The training loop behind moe-train: builds the model and data from a RunConfig, runs AdamW
// steps (gradient accumulation, global-norm clipping, warm-up + cosine schedule, loss-free bias
// updates), evaluates on the validation split, prints a progress line and appends metrics to
// OUT/metrics.jsonl and OUT/metrics.csv (per-layer, per-expert token counts at every log step).
#pragma once
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "data/batch.h"
#include "engine/engine.h"
#include "models/transformer.h"
#include "tools/lib/run_config.h"

namespace train {

moe::ModelConfig to_model_config(const runconfig::RunConfig& config);
std::unique_ptr<data::TokenSource> make_source(const runconfig::RunConfig& config, bool validation);

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, ce = 0, lr = 0, grad_norm = 0, tokens_per_second = 0;
  std::map<std::string, double> terms;       // balance terms, averaged over micro-batches
  std::vector<std::vector<int64_t>> counts;  // [MoE layer][expert], summed over micro-batches
  int64_t dropped = 0;
};

class Trainer {
 public:
  // train_source replaces the config's training data when given (moe-refcheck feeds one fixed
  // batch). An empty logging.out_dir writes no files (progress still goes to `progress`).
  Trainer(const runconfig::RunConfig& config, std::ostream& progress,
          std::unique_ptr<data::TokenSource> train_source = nullptr);
  ~Trainer();

  StepMetrics step();  // one optimizer step
  double evaluate();   // mean cross-entropy over eval_batches validation batches
  void run();          // all remaining steps, with logging and evaluation
  int64_t steps_done() const { return step_; }
  moe::TransformerLM& model() { return *model_; }

 private:
  void log(const StepMetrics& m);
  void log_eval(double loss);

  runconfig::RunConfig config_;
  std::ostream& progress_;
  std::unique_ptr<moe::TransformerLM> model_;
  std::unique_ptr<engine::AdamW> optimizer_;
  std::vector<engine::Tensor> params_;  // the model's parameters, for clipping
  engine::LrSchedule schedule_;
  std::unique_ptr<data::TokenSource> train_data_, eval_data_;
  std::unique_ptr<std::ofstream> jsonl_, csv_;
  int64_t step_ = 0;
  double elapsed_seconds_ = 0;
};

}  // namespace train
