// Sparse upcycling (Komatsuzaki et al. 2022; Megatron-Core's upcycling): a MoE model started
// from the checkpoint of the same model trained dense (moe.enabled: false). Every routed expert
// of a MoE layer becomes a copy of that layer's dense FFN (layers.<l>.mlp.* ->
// layers.<l>.moe.experts.<e>.*), optionally plus Gaussian noise; every other tensor the dense
// model has (embeddings, attention, norms, dense FFN layers, the head) is loaded as it is.
// Left at the MoE model's own initialization: the routers (weights and loss-free bias), and the
// shared experts (moe.num_shared_experts): their output is added to the routed experts', so a
// copy of the FFN there would count the dense FFN twice; fresh, they start as a small addition.
//
// Contract: check_upcycle_source refuses, with ckpt::CheckpointError naming the file, a source
// that is already MoE or whose model differs in a key other than d_ff (naming the key and both
// values); upcycle refuses a tensor whose shape does not fit, naming it and both shapes (d_expert
// must equal the dense d_ff), and a tensor of the source that would be left unused. The noise of
// a tensor depends on the seed and its name only, so any expert-parallel split draws the same.
#pragma once
#include <cstdint>
#include <string>

#include "models/transformer.h"
#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/config/run_config.h"

namespace assemble {

struct UpcycleOptions {
  double noise_std = 0.0;  // standard deviation of the noise added to each expert's copy
  uint64_t seed = 0;
};

// What was done, for the progress line.
struct UpcycleSummary {
  int64_t moe_layers = 0, experts = 0, copied_tensors = 0, fresh_tensors = 0;
};

void check_upcycle_source(const runconfig::RunConfig& moe_config, const ckpt::Checkpoint& dense,
                          const std::string& source);

// The expert tensor of a dense FFN tensor: "layers.3.moe.experts.5.fc1.weight" ->
// "layers.3.mlp.fc1.weight"; empty for a tensor that is no routed expert's.
std::string dense_name_of_expert(const std::string& name);

UpcycleSummary upcycle(moe::TransformerLM& model, const ckpt::Checkpoint& dense, const std::string& source,
                       const UpcycleOptions& options);

}  // namespace assemble
