#include "models/transformer.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe {

using namespace engine;

bool is_moe_layer(const ModelConfig& c, int64_t layer) {
  if (c.moe_layers == MoePlacement::none || layer < c.first_dense) return false;
  if (c.moe_layers == MoePlacement::all) return true;
  return (layer - c.first_dense) % c.moe_every_n == 0;
}

double residual_init_std(const ModelConfig& c) { return c.init_std / std::sqrt(2.0 * static_cast<double>(c.n_layers)); }

TransformerLM::TransformerLM(const ModelConfig& config)
    : config_(config), noise_gen_(config.seed * 2 + 1), dropout_gen_(config.seed * 2 + 2) {
  const ModelConfig& c = config_;
  if (c.d_model % c.n_heads != 0)
    throw std::invalid_argument("TransformerLM: d_model " + std::to_string(c.d_model) +
                                " is not divisible by n_heads " + std::to_string(c.n_heads));
  Generator gen(c.seed);
  const DType dt = c.dtype;
  const Device dev = c.device;
  const double residual_std = residual_init_std(c);
  const bool layernorm = c.norm == NormKind::layernorm;
  auto norm_params = [&](const std::string& prefix, Tensor& w, Tensor& b) {
    w = params_.add(prefix + ".weight", Tensor::full({c.d_model}, 1.0, dt, dev), false);
    if (layernorm) b = params_.add(prefix + ".bias", Tensor::zeros({c.d_model}, dt, dev), false);
  };

  tok_embedding_ = params_.add("tok_embedding.weight",
                               randn({c.vocab_size, c.d_model}, gen, 0.0, c.embedding_init_std, dt, dev), false);
  if (c.position == PositionKind::learned)
    pos_embedding_ = params_.add("pos_embedding.weight",
                                 randn({c.max_seq_len, c.d_model}, gen, 0.0, c.embedding_init_std, dt, dev), false);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l);
    Block b;
    norm_params(p + ".norm1", b.norm1_w, b.norm1_b);
    b.qkv_w =
        params_.add(p + ".attn.qkv.weight", randn({3 * c.d_model, c.d_model}, gen, 0.0, c.init_std, dt, dev), true);
    b.qkv_b = params_.add(p + ".attn.qkv.bias", Tensor::zeros({3 * c.d_model}, dt, dev), false);
    b.proj_w =
        params_.add(p + ".attn.proj.weight", randn({c.d_model, c.d_model}, gen, 0.0, residual_std, dt, dev), true);
    b.proj_b = params_.add(p + ".attn.proj.bias", Tensor::zeros({c.d_model}, dt, dev), false);
    norm_params(p + ".norm2", b.norm2_w, b.norm2_b);
    if (is_moe_layer(c, l)) {
      MoeLayerConfig mc = c.moe;
      mc.d_model = c.d_model;
      mc.activation = c.activation;
      mc.dtype = dt;
      mc.device = dev;
      b.moe = std::make_unique<MoeLayer>(mc, params_, p + ".moe", c.init_std, residual_std, gen);
    } else {
      b.mlp = std::make_unique<ExpertMlp>(ExpertMlp::create(params_, p + ".mlp", c.activation, c.d_model, c.d_ff,
                                                            c.init_std, residual_std, gen, dt, dev));
    }
    blocks_.push_back(std::move(b));
  }
  norm_params("norm_f", norm_f_w_, norm_f_b_);
  if (!c.tie_embeddings)
    lm_head_ = params_.add("lm_head.weight", randn({c.vocab_size, c.d_model}, gen, 0.0, c.init_std, dt, dev), true);
}

void TransformerLM::set_loss_coefficient(const std::string& name, double coef) {
  const std::vector<BalanceLoss>& all = balance_losses();
  if (std::none_of(all.begin(), all.end(), [&](const BalanceLoss& bl) { return bl.name == name; }))
    throw std::invalid_argument("set_loss_coefficient: no balance loss '" + name + "'");
  config_.loss_coefs[name] = coef;
}

void TransformerLM::set_bias_update_rate(double rate) {
  config_.moe.bias_update_rate = rate;
  for (MoeLayer* layer : moe_layers()) layer->set_bias_update_rate(rate);
}

std::vector<MoeLayer*> TransformerLM::moe_layers() {
  std::vector<MoeLayer*> out;
  for (Block& b : blocks_)
    if (b.moe) out.push_back(b.moe.get());
  return out;
}

Tensor TransformerLM::norm(const Tensor& x, const Tensor& w, const Tensor& b) const {
  return config_.norm == NormKind::layernorm ? layernorm(x, w, b, config_.norm_eps) : rmsnorm(x, w, config_.norm_eps);
}

// Rotary embedding, rotate-half form (GPT-NeoX / LLaMA): x * cos + rotate_half(x) * sin with
// angle t * 10000^(-2i/Dh) for the pair (i, i + Dh/2).
Tensor TransformerLM::rope(const Tensor& x) const {
  const int64_t T = x.size(2), Dh = x.size(3), half = Dh / 2;
  RopeTables& tables = rope_tables_;
  if (tables.T != T || tables.Dh != Dh || tables.dtype != x.dtype() || !(tables.device == x.device())) {
    std::vector<double> cos_t(T * Dh), sin_t(T * Dh);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < Dh; ++i) {
        const double angle = static_cast<double>(t) * std::pow(10000.0, -2.0 * static_cast<double>(i % half) / Dh);
        cos_t[t * Dh + i] = std::cos(angle);
        sin_t[t * Dh + i] = std::sin(angle);
      }
    NoGradScope no_grad;  // constants, never part of the graph
    tables.cos = Tensor::from_vector(cos_t, {T, Dh}).to(x.dtype()).to(x.device());
    tables.sin = Tensor::from_vector(sin_t, {T, Dh}).to(x.dtype()).to(x.device());
    tables.T = T;
    tables.Dh = Dh;
    tables.dtype = x.dtype();
    tables.device = x.device();
  }
  const Tensor& cos_table = tables.cos;
  const Tensor& sin_table = tables.sin;
  Tensor rotated = concat({neg(slice(x, 3, half, Dh)), slice(x, 3, 0, half)}, 3);
  return add(mul(x, cos_table), mul(rotated, sin_table));
}

Tensor TransformerLM::attention(const Block& b, const Tensor& x, bool training) {
  const int64_t B = x.size(0), T = x.size(1), C = config_.d_model, H = config_.n_heads, Dh = C / H;
  Tensor qkv = linear(x, b.qkv_w, b.qkv_b);  // [B, T, 3C]
  auto heads = [&](int64_t i) {
    return permute(reshape(slice(qkv, 2, i * C, (i + 1) * C), {B, T, H, Dh}), {0, 2, 1, 3});
  };
  Tensor q = heads(0), k = heads(1), v = heads(2);
  if (config_.position == PositionKind::rope) {
    q = rope(q);
    k = rope(k);
  }
  Tensor a = reshape(permute(causal_attention(q, k, v), {0, 2, 1, 3}), {B, T, C});
  return dropout(linear(a, b.proj_w, b.proj_b), config_.dropout, dropout_gen_, training);
}

ForwardResult TransformerLM::forward(const Tensor& inputs, const Tensor& targets, bool training, bool balance) {
  const ModelConfig& c = config_;
  ENGINE_CHECK(inputs.dtype() == DType::i32 && inputs.ndim() == 2, "TransformerLM::forward",
               "inputs must be i32 [B, T], got " + inputs.str());
  const int64_t B = inputs.size(0), T = inputs.size(1);
  ENGINE_CHECK(T <= c.max_seq_len, "TransformerLM::forward",
               "sequence length " + std::to_string(T) + " exceeds max_seq_len " + std::to_string(c.max_seq_len));
  const std::vector<int32_t> ids = inputs.to_int_vector();
  for (size_t i = 0; i < ids.size(); ++i)
    ENGINE_CHECK(ids[i] >= 0 && ids[i] < c.vocab_size, "TransformerLM::forward",
                 "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) + " is outside [0, " +
                     std::to_string(c.vocab_size) + ")");

  ForwardResult out;
  MatmulPrecisionScope precision(c.precision);
  Tensor x;
  {
    StageTimer stage("embedding");
    x = embedding(tok_embedding_, inputs.to(c.device));
    if (c.position == PositionKind::learned) x = add(x, slice(pos_embedding_, 0, 0, T));
    // bf16 activations from here to the logits: every op computes in f32 from them and stores
    // bf16; the parameters stay f32 (each product rounds its weight), as do the router, the
    // norms' statistics and the loss.
    if (c.precision == MatmulPrecision::bf16) x = cast(x, DType::bf16);
    x = dropout(x, c.dropout, dropout_gen_, training);
  }
  const SequenceLayout layout{B, T};
  for (size_t l = 0; l < blocks_.size(); ++l) {
    Block& b = blocks_[l];
    {
      StageTimer stage("attention");
      x = add(x, attention(b, norm(x, b.norm1_w, b.norm1_b), training));
    }
    Tensor h;
    {
      StageTimer stage("norm");
      h = norm(x, b.norm2_w, b.norm2_b);
    }
    if (b.moe) {
      const size_t moe_index = out.routings.size();
      ENGINE_CHECK(replay_.empty() || moe_index < replay_.size(), "TransformerLM::forward",
                   "replayed router draws cover " + std::to_string(replay_.size()) + " MoE layers, not all");
      MoeForward m =
          b.moe->forward(h, &ids, training, &noise_gen_, replay_.empty() ? RouterReplay{} : replay_[moe_index]);
      x = add(x, dropout(m.output, c.dropout, dropout_gen_, training));
      out.moe_layer_index.push_back(static_cast<int64_t>(l));
      out.routings.push_back(std::move(m.routing));
    } else {
      StageTimer stage("dense_ffn");
      x = add(x, dropout(b.mlp->forward(h), c.dropout, dropout_gen_, training));
    }
  }
  {
    StageTimer stage("lm_head");
    x = norm(x, norm_f_w_, norm_f_b_);
    out.logits = matmul(x, c.tie_embeddings ? tok_embedding_ : lm_head_, false, true);
  }
  if (!targets.defined()) return out;

  StageTimer stage("loss");
  out.ce = cross_entropy(out.logits, targets.to(c.device));
  out.loss = out.ce;
  out.layout = layout;
  if (balance) add_balance_terms(out);
  return out;
}

void TransformerLM::add_balance_terms(ForwardResult& out, const std::vector<std::vector<int64_t>>* step_counts,
                                      int64_t step_tokens) const {
  ENGINE_CHECK(!step_counts || step_counts->size() == out.routings.size(), "TransformerLM::add_balance_terms",
               "step counts for " + std::to_string(step_counts ? step_counts->size() : 0) +
                   " MoE layers, the model has " + std::to_string(out.routings.size()));
  StageTimer stage("loss");
  std::vector<Routing> measured = out.routings;
  if (step_counts)
    for (size_t l = 0; l < measured.size(); ++l) {
      measured[l].balance_counts = (*step_counts)[l];
      measured[l].balance_tokens = step_tokens;
    }
  const double layers = static_cast<double>(measured.size());
  // Every term is logged, so each is read back; one buffer of them is read once, not one wait
  // for the device per term.
  std::vector<std::string> names;
  std::vector<Tensor> values;
  for (const BalanceLoss& bl : balance_losses()) {
    auto coef_it = config_.loss_coefs.find(bl.name);
    const double coef = coef_it == config_.loss_coefs.end() ? 0.0 : coef_it->second;
    std::unique_ptr<NoGradScope> log_only = coef > 0 ? nullptr : std::make_unique<NoGradScope>();
    Tensor term_sum;
    for (const Routing& r : measured) {
      Tensor t = bl.fn(r, out.layout);
      if (t.defined()) term_sum = term_sum.defined() ? add(term_sum, t) : t;
    }
    if (!term_sum.defined()) continue;
    Tensor term = scale(term_sum, 1.0 / layers);
    {
      NoGradScope no_grad;
      names.push_back(bl.name);
      values.push_back(reshape(cast(term.detach(), DType::f64), {1}));
    }
    if (coef > 0) out.loss = add(out.loss, scale(term, coef));
  }
  if (values.empty()) return;
  NoGradScope no_grad;
  bool one_device = true;
  for (const Tensor& v : values) one_device = one_device && v.device() == values.front().device();
  if (!one_device) {  // terms from host-side counts beside device ones: read each where it is
    for (size_t i = 0; i < names.size(); ++i) out.terms[names[i]] = values[i].item();
    return;
  }
  const std::vector<double> read = concat(values, 0).to_vector();
  for (size_t i = 0; i < names.size(); ++i) out.terms[names[i]] = read[i];
}

}  // namespace moe
