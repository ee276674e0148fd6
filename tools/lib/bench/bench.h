// moe-bench's library: times full training steps (forward, backward, clipping, AdamW) of a
// config after warm-up and reports the median step, tokens/s, model GFLOP/s against a measured
// sgemm peak, peak resident memory, and where a step's time goes (engine/core/profile.h).
#pragma once
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "tools/lib/bench/dense_baseline.h"
#include "tools/lib/config/run_config.h"
#include "tools/lib/train/parallel.h"

namespace bench {

struct Options {
  int warmup = 5, steps = 20;
  bool profile = true;
  // Routing held skewed, to measure what imbalance costs: the first hot_experts experts of every
  // MoE layer get the selection bias hot_bias (the loss-free bias state, held fixed), so tokens
  // pick them over the others (hot_bias 10 > any score: always; small values: some tokens).
  // 0: the routing the model's router gives.
  int64_t hot_experts = 0;
  double hot_bias = 10.0;
  // After the timed steps, save the model (with the hot experts' bias) as a checkpoint here, so
  // moe-diagnose --ep can predict from the checkpoint alone what the steps measured.
  std::string checkpoint;
  // Then time the engine's dense step with the same active FLOPs (dense_baseline.h) against
  // further MoE steps, in alternation (its own warm-up, then `steps` steps of each). One process.
  bool dense_baseline = false;
};

struct Result {
  std::string config_name;
  int64_t tokens_per_step = 0;
  double median_step_s = 0, tokens_per_s = 0;
  double flops_per_step = 0, model_gflops = 0;  // model FLOPs (the formula below), not executed FLOPs
  std::string precision;                        // the config's matmul precision: f32 or bf16
  // The engine's matmul on n x n x n at that precision on the run's device (n = 1024 on the CPU,
  // 4096 on a GPU), best of 5; with several ranks the sum of every rank's, measured at the same time.
  double sgemm_peak_gflops = 0;
  double peak_rss_mb = 0;
  std::vector<double> step_seconds;
  std::vector<std::pair<std::string, double>> stages;  // seconds per step, median-free mean over timed steps
  std::string flop_formula;
  // Several ranks: where each rank's step goes (mean per timed step, seconds). compute is the
  // step less the collectives; wait is time at the barrier before a collective, the time a rank
  // idles until the slowest rank arrives (with expert parallelism: the most loaded experts).
  struct RankTimes {
    double step = 0, compute = 0, all_to_all = 0, all_reduce = 0, wait = 0;
  };
  std::vector<RankTimes> ranks;

  // Devices (expert parallelism; tools/lib/collapse/devices.h), over the timed steps: per MoE
  // layer the slots each device (expert-group member) computed, summed over copies, and its
  // imbalance (the busiest device over the mean: the predicted slowdown of the layer's expert
  // work); overall the sums over layers of the busiest and of the mean. expert_share and
  // wait_share: the step's share spent in expert compute (the layers' grouped MLPs, forward and
  // backward) and waiting in the layers' all-to-alls, means over ranks.
  int64_t devices = 1;
  std::vector<std::vector<double>> device_slots;  // [layer][device], per step
  std::vector<double> layer_imbalance;
  double device_imbalance = 0, expert_share = 0, wait_share = 0;

  bool has_dense_baseline = false;  // Options::dense_baseline
  DenseBaseline dense;
};

// Model FLOPs of one training step: 3 x forward (forward + backward's two matmuls per weight).
double training_flops(const runconfig::RunConfig& config, std::string* formula = nullptr);

// Every rank of `groups` calls it together; tokens count the whole run's batch.
Result run(const runconfig::RunConfig& config, const std::string& name, const Options& options,
           const train::ProcessGroups& groups = train::ProcessGroups::single());
void print(const Result& r, std::ostream& out);
double peak_rss_mb();

}  // namespace bench
