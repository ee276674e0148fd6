#include "tools/lib/assemble/assemble.h"

#include <map>
#include <stdexcept>

#include "data/synthetic.h"
#include "data/text.h"
#include "data/token_shards.h"

namespace assemble {

namespace rc = runconfig;
using engine::Tensor;

moe::ModelConfig model_config(const rc::RunConfig& c) {
  moe::ModelConfig m;
  m.vocab_size = c.model.vocab_size;
  m.d_model = c.model.d_model;
  m.n_layers = c.model.n_layers;
  m.n_heads = c.model.n_heads;
  m.max_seq_len = c.model.max_seq_len;
  m.norm = c.model.norm == rc::NormKind::layernorm ? moe::NormKind::layernorm : moe::NormKind::rmsnorm;
  m.norm_eps = c.model.norm_eps;
  m.position = c.model.position == rc::PositionKind::learned ? moe::PositionKind::learned : moe::PositionKind::rope;
  m.tie_embeddings = c.model.tie_embeddings;
  m.dropout = c.model.dropout;
  m.d_ff = c.model.d_ff;
  m.activation =
      c.model.activation == rc::Activation::gelu ? moe::ExpertActivation::gelu : moe::ExpertActivation::swiglu;
  m.init_std = c.model.init_std;
  m.embedding_init_std = c.model.embedding_init_std;
  m.moe_layers = !c.moe.enabled || c.moe.layers == rc::MoeLayers::none ? moe::MoePlacement::none
                 : c.moe.layers == rc::MoeLayers::all                  ? moe::MoePlacement::all
                                                                       : moe::MoePlacement::every_n;
  m.moe_every_n = c.moe.every_n;
  m.first_dense = c.moe.first_dense;
  m.moe.router.kind = c.moe.router;
  m.moe.router.num_experts = c.moe.num_experts;
  m.moe.router.top_k = c.moe.top_k;
  m.moe.router.normalize_topk = c.moe.normalize_topk;
  m.moe.router.capacity_factor = c.moe.capacity_factor;
  m.moe.router.options = rc::routing_options(c.moe);
  m.moe.router.drop_policy =
      c.moe.drop_policy == rc::DropPolicy::score ? moe::DropPolicy::score : moe::DropPolicy::position;
  m.moe.d_expert = c.moe.d_expert;
  m.moe.num_shared_experts = c.moe.num_shared_experts;
  m.moe.d_shared = c.moe.d_shared;
  // The values of step 1, so that a model built here (moe-refcheck, moe-diagnose, moe-bench)
  // is the one the first training step runs; the trainer sets each later step's values.
  const rc::BalanceStrength strength = rc::balance_strength(c.moe, 1);
  m.moe.bias_update_rate = strength.bias_update_rate;
  m.moe.device_groups = rc::device_groups(c);
  for (const auto& [key, coef] : strength.coefficients) m.loss_coefs[key] = coef;
  m.seed = static_cast<uint64_t>(c.training.seed);
  m.device = c.device == rc::DeviceKind::cuda ? engine::Device::cuda() : engine::Device::cpu();
  m.precision = c.precision == rc::PrecisionKind::bf16 ? engine::MatmulPrecision::bf16 : engine::MatmulPrecision::f32;
  std::string why;
  if (m.precision == engine::MatmulPrecision::bf16 && m.device.is_cpu() && !engine::cpu::bf16_matmul_supported(&why))
    throw rc::ConfigError("precision: bf16 cannot run on this machine: " + why + "; use precision: f32");
  return m;
}

void set_balance_strength(moe::TransformerLM& model, const rc::BalanceStrength& strength) {
  for (const auto& [key, coef] : strength.coefficients) model.set_loss_coefficient(key, coef);
  model.set_bias_update_rate(strength.bias_update_rate);
}

std::unique_ptr<data::TokenSource> data_source(const rc::RunConfig& c, bool validation) {
  // Validation draws from its own stream (a different seed) and, for text, its own split.
  const uint64_t seed = static_cast<uint64_t>(c.data.seed) * 2 + (validation ? 1 : 0);
  switch (c.data.kind) {
    case rc::DataKind::synthetic: {
      // The same domains (their tables come from data.seed) sampled by another stream.
      auto source = std::make_unique<data::SyntheticDomains>(c.model.vocab_size, c.data.num_domains,
                                                             static_cast<uint64_t>(c.data.seed), c.data.concentration);
      if (validation) source->restore(data::LoaderCursor{seed, 0, 0});
      return source;
    }
    case rc::DataKind::text:
      return std::make_unique<data::TextSource>(c.data.paths, validation ? data::Split::validation : data::Split::train,
                                                c.data.val_fraction, seed);
    case rc::DataKind::shards:
      return std::make_unique<data::TokenShards>(
          validation && !c.data.val_shards.empty() ? c.data.val_shards : c.data.train_shards, c.model.vocab_size, seed);
  }
  throw std::logic_error("data_source: unknown data kind");
}

void load_tensor(const ckpt::NamedArray& a, Tensor& t, const std::string& source, const std::string& group) {
  if (a.shape != t.shape())
    throw ckpt::CheckpointError(source + ": " + group + "/" + a.name + ": has shape " + engine::shape_str(a.shape) +
                                ", the model built from its config expects " + engine::shape_str(t.shape()));
  Tensor host = Tensor::from_vector(a.values, a.shape).to(t.dtype()).to(t.device());
  engine::NoGradScope no_grad;
  engine::copy_into(host, t);
}

rc::RunConfig saved_config(const ckpt::Checkpoint& c, const std::string& path, const std::string& what) {
  try {
    return rc::parse_run_config(c.config_yaml, path + ":/config");
  } catch (const rc::ConfigError& e) {
    throw ckpt::CheckpointError("the " + what + "'s config is invalid: " + e.what());
  }
}

void load_model(moe::TransformerLM& model, const ckpt::Checkpoint& c, const std::string& source) {
  std::map<std::string, const ckpt::NamedArray*> by_name;
  for (const ckpt::NamedArray& a : c.params) by_name[a.name] = &a;
  for (moe::NamedParam& p : model.params().all()) {
    auto it = by_name.find(p.name);
    if (it == by_name.end())
      throw ckpt::CheckpointError(source + ": /model/" + p.name +
                                  ": missing (the model built from its config has this parameter)");
    load_tensor(*it->second, p.tensor, source, "/model");
    by_name.erase(it);
  }
  if (!by_name.empty())
    throw ckpt::CheckpointError(source + ": /model/" + by_name.begin()->first +
                                ": not a parameter of the model built from its config");
  std::vector<moe::MoeLayer*> layers = model.moe_layers();
  size_t next = 0;
  for (int64_t l = 0; l < model.config().n_layers; ++l) {
    if (!moe::is_moe_layer(model.config(), l)) continue;
    moe::MoeLayer& layer = *layers.at(next++);
    auto it = c.router_bias.find(l);
    if (it == c.router_bias.end())
      throw ckpt::CheckpointError(source + ": /router/" + std::to_string(l) + "/bias: missing");
    if (it->second.size() != static_cast<size_t>(layer.config().router.num_experts))
      throw ckpt::CheckpointError(source + ": /router/" + std::to_string(l) + "/bias: must hold one value per expert");
    layer.set_bias(it->second);
  }
}

}  // namespace assemble
