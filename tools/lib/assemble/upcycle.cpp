#include "tools/lib/assemble/upcycle.h"

#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include "tools/lib/assemble/assemble.h"

namespace assemble {

namespace rc = runconfig;
using engine::Tensor;

namespace {

template <class T>
std::string text(const T& v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// The model keys that decide what the dense model computes besides its FFN width (d_ff may
// differ: a MoE model's dense layers are checked tensor by tensor). Initialization and dropout
// may differ: they do not change the loaded tensors' meaning.
std::vector<std::pair<std::string, std::function<std::string(const rc::ModelConfig&)>>> model_keys() {
  return {{"model.vocab_size", [](const rc::ModelConfig& m) { return text(m.vocab_size); }},
          {"model.d_model", [](const rc::ModelConfig& m) { return text(m.d_model); }},
          {"model.n_layers", [](const rc::ModelConfig& m) { return text(m.n_layers); }},
          {"model.n_heads", [](const rc::ModelConfig& m) { return text(m.n_heads); }},
          {"model.max_seq_len", [](const rc::ModelConfig& m) { return text(m.max_seq_len); }},
          {"model.norm", [](const rc::ModelConfig& m) { return text(rc::to_string(m.norm)); }},
          {"model.norm_eps", [](const rc::ModelConfig& m) { return text(m.norm_eps); }},
          {"model.position", [](const rc::ModelConfig& m) { return text(rc::to_string(m.position)); }},
          {"model.tie_embeddings", [](const rc::ModelConfig& m) { return text(m.tie_embeddings ? "true" : "false"); }},
          {"model.activation", [](const rc::ModelConfig& m) { return text(rc::to_string(m.activation)); }}};
}

bool is_router_tensor(const std::string& name) { return name.find(".router.") != std::string::npos; }
bool is_shared_expert_tensor(const std::string& name) { return name.find(".shared_experts.") != std::string::npos; }

// A stream per tensor, from the seed and the tensor's name (FNV-1a): the same noise whichever
// rank holds the expert and whatever order the tensors are visited in.
engine::Generator noise_stream(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return engine::Generator(h);
}

}  // namespace

void check_upcycle_source(const rc::RunConfig& moe_config, const ckpt::Checkpoint& dense, const std::string& source) {
  if (!dense.router_bias.empty())
    throw ckpt::CheckpointError(source + ": already a MoE checkpoint (it has " +
                                std::to_string(dense.router_bias.size()) +
                                " routers); --init-from takes the checkpoint of a dense model (moe.enabled: false)");
  const rc::RunConfig saved = saved_config(dense, source, "dense checkpoint");
  if (!moe_config.moe.enabled || moe_config.moe.layers == rc::MoeLayers::none)
    throw rc::ConfigError("--init-from " + source + ": the config has no MoE layers to upcycle into (moe.enabled: " +
                          (moe_config.moe.enabled ? "true" : "false") + ", moe.layers: none)");
  for (const auto& [key, value] : model_keys())
    if (value(saved.model) != value(moe_config.model))
      throw ckpt::CheckpointError(source + ": the dense model has " + key + " = " + value(saved.model) +
                                  ", the config upcycled into has " + value(moe_config.model) +
                                  "; only the FFN may change (moe.d_expert = the dense model.d_ff)");
}

std::string dense_name_of_expert(const std::string& name) {
  static const std::regex expert(R"(layers\.([0-9]+)\.moe\.experts\.[0-9]+\.(.+))");
  std::smatch m;
  if (!std::regex_match(name, m, expert)) return "";
  return "layers." + m[1].str() + ".mlp." + m[2].str();
}

UpcycleSummary upcycle(moe::TransformerLM& model, const ckpt::Checkpoint& dense, const std::string& source,
                       const UpcycleOptions& options) {
  std::map<std::string, const ckpt::NamedArray*> by_name;
  for (const ckpt::NamedArray& a : dense.params) by_name[a.name] = &a;
  std::map<std::string, bool> used;
  UpcycleSummary summary;
  for (moe::NamedParam& p : model.params().all()) {
    if (is_router_tensor(p.name) || is_shared_expert_tensor(p.name)) {
      ++summary.fresh_tensors;  // the MoE model's own initialization (upcycle.h says why)
      continue;
    }
    const std::string expert_source = dense_name_of_expert(p.name);
    const std::string from = expert_source.empty() ? p.name : expert_source;
    auto it = by_name.find(from);
    if (it == by_name.end())
      throw ckpt::CheckpointError(source + ": /model/" + from + ": missing (the MoE model's " + p.name +
                                  " is loaded from it)");
    const ckpt::NamedArray& a = *it->second;
    if (a.shape != p.tensor.shape())
      throw ckpt::CheckpointError(source + ": /model/" + a.name + ": has shape " + engine::shape_str(a.shape) + ", " +
                                  p.name + " of the MoE model has shape " + engine::shape_str(p.tensor.shape()) +
                                  (expert_source.empty() ? "" : " (moe.d_expert must equal the dense model.d_ff)"));
    load_tensor(a, p.tensor, source, "/model");
    used[a.name] = true;
    ++summary.copied_tensors;
    if (expert_source.empty() || options.noise_std <= 0) continue;
    engine::Generator gen = noise_stream(options.seed, p.name);
    engine::NoGradScope no_grad;
    const Tensor noise =
        engine::randn(p.tensor.shape(), gen, 0.0, options.noise_std, p.tensor.dtype(), p.tensor.device());
    engine::copy_into(engine::add(p.tensor, noise), p.tensor);
  }
  for (const ckpt::NamedArray& a : dense.params)
    if (!used.count(a.name))
      throw ckpt::CheckpointError(source + ": /model/" + a.name +
                                  ": the MoE model built from the config has no place for it");
  for (moe::MoeLayer* layer : model.moe_layers()) {
    layer->set_bias(std::vector<float>(static_cast<size_t>(layer->config().router.num_experts), 0.0f));
    ++summary.moe_layers;
    summary.experts = layer->config().router.num_experts;
  }
  return summary;
}

}  // namespace assemble
