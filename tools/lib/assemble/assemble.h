// A model and its data from a run config, and a model's state from a checkpoint: the one place
// that maps the config's keys onto models/ and data/, shared by the trainer, moe-diagnose,
// moe-refcheck and moe-bench.
#pragma once
#include <memory>
#include <string>

#include "data/batch.h"
#include "models/transformer.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/config/run_config.h"

namespace assemble {

// The model config of a run config. Throws runconfig::ConfigError for precision bf16 on a CPU
// that cannot run it.
// The balance-loss coefficients and the bias update rate are those of step 1 (moe.losses.* and
// moe.bias_update_rate may be schedules).
moe::ModelConfig model_config(const runconfig::RunConfig& config);

// Gives a model the balancing strength of a step (runconfig::balance_strength).
void set_balance_strength(moe::TransformerLM& model, const runconfig::BalanceStrength& strength);

// The training or validation token source of data.* (validation draws from its own stream).
std::unique_ptr<data::TokenSource> data_source(const runconfig::RunConfig& config, bool validation);

// The run config a checkpoint was saved with. An invalid one throws ckpt::CheckpointError "the
// WHAT's config is invalid: PATH:/config:LINE:COL: ..." (what: "checkpoint", "dense checkpoint").
runconfig::RunConfig saved_config(const ckpt::Checkpoint& c, const std::string& path, const std::string& what);

// Loads /model and /router/<layer>/bias of a checkpoint into a model built from its config.
// Throws ckpt::CheckpointError naming `source` and the tensor when a name or shape does not fit.
void load_model(moe::TransformerLM& model, const ckpt::Checkpoint& c, const std::string& source);

// One tensor of a checkpoint copied into a tensor of the same shape, on whatever device it lives.
void load_tensor(const ckpt::NamedArray& a, engine::Tensor& t, const std::string& source, const std::string& group);

}  // namespace assemble
