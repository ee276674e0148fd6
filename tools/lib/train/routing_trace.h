// Routing traces (logging.routing_trace_every): the top-k experts of every token of one fixed
// probe batch, taken every N steps, so that a run's history shows how often tokens change expert
// (churn, tools/lib/collapse/churn.h). The probe batch is drawn from a fresh validation source of
// the config (its seed is data.seed's validation stream), so it is the same batch in every run of
// the config and after any resume, without being stored; the routing runs in evaluation mode so
// router noise and dropout do not change it.
//
// Storage: the trace is kept in the checkpoint's history (/metrics/routing_trace, int32
// [traces, MoE layers, probe tokens, k]): it then survives a resume bit for bit and never holds
// traces from beyond the resumed step, which a side file in the run folder would need cutting
// back for. Its size is bounded by the probe: at most 8 sequences (tiny: 8 x 128 tokens x 4 layers
// x k 2 x 4 bytes = 32 KiB per trace).
#pragma once
#include <cstdint>
#include <vector>

#include "data/batch.h"
#include "models/transformer.h"
#include "tools/lib/config/run_config.h"

namespace train {

constexpr int64_t kProbeSequences = 8;

// The probe batch: the first min(training.batch_size, 8) sequences of training.seq_len tokens of
// the validation data.
data::Batch probe_batch(const runconfig::RunConfig& config);

// Each MoE layer's top-k experts of every probe token, best first: [layer][token][k] row-major.
// Token-choice routers report their own choice (a loss-free bias or capacity included, drops not);
// expert_choice, which chooses no k per token, reports each token's k highest router scores.
// A collective under expert parallelism (every rank routes the whole probe).
std::vector<int32_t> trace_routing(moe::TransformerLM& model, const data::Batch& probe);

}  // namespace train
