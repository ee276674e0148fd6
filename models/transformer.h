// A decoder-only transformer language model with MoE feed-forward layers.
//
//   x = tok_embedding[ids] (+ pos_embedding[t], or RoPE inside attention)
//   per layer: x = x + attn(norm1(x));  x = x + ffn(norm2(x))      (pre-norm; ffn dense or MoE)
//   logits = norm_f(x) @ W_out^T, W_out = tok_embedding (tied) or lm_head
//   loss = CE + sum over balance losses of coef * (mean over MoE layers of the layer's term)
//
// Initialization (GPT-2): every matrix ~ N(0, init_std); the projections that write into the
// residual stream (attn.proj, fc2 / down_proj) ~ N(0, init_std / sqrt(2 n_layers)); token and
// position embeddings ~ N(0, embedding_init_std); biases 0; norm scales 1. A large
// embedding_init_std makes routers start confident, which is how short CPU runs collapse.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "models/balance/balance_loss.h"
#include "models/moe_layer.h"
#include "models/params.h"

namespace moe {

enum class NormKind { layernorm, rmsnorm };
enum class PositionKind { learned, rope };
enum class MoePlacement { all, every_n, none };

struct ModelConfig {
  int64_t vocab_size = 256, d_model = 128, n_layers = 4, n_heads = 4, max_seq_len = 128;
  NormKind norm = NormKind::layernorm;
  double norm_eps = 1e-5;
  PositionKind position = PositionKind::learned;
  bool tie_embeddings = true;
  double dropout = 0.0;
  int64_t d_ff = 512;  // dense feed-forward layers
  ExpertActivation activation = ExpertActivation::gelu;
  double init_std = 0.02, embedding_init_std = 0.02;

  MoePlacement moe_layers = MoePlacement::all;
  int64_t moe_every_n = 2, first_dense = 0;
  MoeLayerConfig moe;                        // d_model, activation and dtype are taken from above
  std::map<std::string, double> loss_coefs;  // balance loss name -> coefficient

  engine::DType dtype = engine::DType::f32;
  engine::Device device = engine::Device::cpu();  // where parameters live; inputs are moved there
  // bf16: activations and their gradients are stored in bf16 from the embedding to the logits
  // (products on bf16 operands with f32 sums, every other op computing in f32 from them);
  // parameters, their gradients and optimizer state stay f32, and so do the router (see route()),
  // the norms' statistics and the loss.
  engine::MatmulPrecision precision = engine::MatmulPrecision::f32;
  uint64_t seed = 0;
};

bool is_moe_layer(const ModelConfig& config, int64_t layer);
// The init std of the projections that write into the residual stream (attn.proj, fc2 /
// down_proj): init_std / sqrt(2 n_layers). Dead-expert revival re-draws experts with it too.
double residual_init_std(const ModelConfig& config);

struct ForwardResult {
  engine::Tensor logits;                 // [B, T, V]
  engine::Tensor loss, ce;               // loss = ce + weighted balance terms (when targets given)
  std::map<std::string, double> terms;   // every balance term, averaged over MoE layers (logged even at coef 0)
  std::vector<int64_t> moe_layer_index;  // which layers are MoE
  std::vector<Routing> routings;         // one per MoE layer
  SequenceLayout layout;                 // of the batch, for the sequence-wise terms
};

class TransformerLM {
 public:
  explicit TransformerLM(const ModelConfig& config);

  // inputs, targets: i32 [B, T]; targets may be undefined (no loss). balance = false leaves
  // loss = ce and the terms empty, for a caller that adds them with add_balance_terms once it
  // knows the counts to measure them on.
  ForwardResult forward(const engine::Tensor& inputs, const engine::Tensor& targets, bool training,
                        bool balance = true);
  // Adds every balance term (logged) and coef x term (to out.loss). step_counts, when given,
  // holds per MoE layer the expert counts over step_tokens tokens that the count-based terms
  // measure f_i on (the global-batch balance scope: every micro-batch of every rank); null
  // measures each layer on its own routing's counts (the micro-batch scope).
  void add_balance_terms(ForwardResult& out, const std::vector<std::vector<int64_t>>* step_counts = nullptr,
                         int64_t step_tokens = 0) const;

  // The balancing strength may follow a schedule: the trainer sets the step's values before its
  // forward. set_loss_coefficient throws std::invalid_argument for a name that is no balance loss;
  // set_bias_update_rate sets every MoE layer's rate.
  void set_loss_coefficient(const std::string& name, double coef);
  void set_bias_update_rate(double rate);

  const ModelConfig& config() const { return config_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  std::vector<MoeLayer*> moe_layers();
  engine::Generator& noise_generator() { return noise_gen_; }
  engine::Generator& dropout_generator() { return dropout_gen_; }
  // The routers use these draws (one RouterReplay per MoE layer: noisy_topk's [B*T, E], the
  // input jitter's [B*T, d]) instead of the noise generator until replaced; an empty vector
  // returns to drawing. For replaying reference files.
  void replay_router_draws(std::vector<RouterReplay> per_moe_layer) { replay_ = std::move(per_moe_layer); }

 private:
  struct Block {
    engine::Tensor norm1_w, norm1_b, norm2_w, norm2_b;
    engine::Tensor qkv_w, qkv_b, proj_w, proj_b;
    std::unique_ptr<ExpertMlp> mlp;  // dense layers
    std::unique_ptr<MoeLayer> moe;   // MoE layers
  };

  engine::Tensor norm(const engine::Tensor& x, const engine::Tensor& w, const engine::Tensor& b) const;
  engine::Tensor attention(const Block& block, const engine::Tensor& x, bool training);
  engine::Tensor rope(const engine::Tensor& x) const;  // [B, H, T, Dh]

  // RoPE's cos and sin tables for one (T, Dh, dtype, device): built and uploaded on the first
  // call, then reused by q and k of every layer and step (rebuilding them cost two host-to-device
  // copies, each a wait for the device, per use).
  struct RopeTables {
    int64_t T = -1, Dh = -1;
    engine::DType dtype = engine::DType::f32;
    engine::Device device;
    engine::Tensor cos, sin;
  };
  mutable RopeTables rope_tables_;

  ModelConfig config_;
  ParamStore params_;
  engine::Tensor tok_embedding_, pos_embedding_, lm_head_, norm_f_w_, norm_f_b_;
  std::vector<Block> blocks_;
  engine::Generator noise_gen_, dropout_gen_;
  std::vector<RouterReplay> replay_;
};

}  // namespace moe
