#include "tools/lib/assemble/memory_estimate.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "models/catalog.h"
#include "tools/lib/assemble/assemble.h"

namespace assemble {

namespace rc = runconfig;

namespace {
constexpr double kFloat = 4;  // every parameter, gradient, moment and activation is f32
}  // namespace

std::string format_bytes(double bytes) {
  char out[32];
  if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(out, sizeof out, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    std::snprintf(out, sizeof out, "%.0f MiB", bytes / (1024.0 * 1024));
  else
    std::snprintf(out, sizeof out, "%.0f KiB", bytes / 1024.0);
  return out;
}

std::string MemoryEstimate::summary() const {
  return format_bytes(total_bytes()) + " (parameters " + format_bytes(parameter_bytes) + ", gradients " +
         format_bytes(gradient_bytes) + ", AdamW " + format_bytes(optimizer_bytes) + ", activations " +
         format_bytes(activation_bytes) + ")";
}

MemoryEstimate estimate_memory(const rc::RunConfig& c) {
  // Doubles throughout: the point is to survive configs whose counts overflow int64.
  const double d = c.model.d_model, V = c.model.vocab_size, L = c.model.n_layers, H = c.model.n_heads;
  const double E = c.moe.num_experts, k = c.moe.top_k, de = c.moe.d_expert, dff = c.model.d_ff;
  const double T = c.training.seq_len, tokens = static_cast<double>(c.training.batch_size) * T;
  const bool swiglu = c.model.activation == rc::Activation::swiglu;
  const bool layernorm = c.model.norm == rc::NormKind::layernorm;
  // One MLP of hidden width h: gelu has fc1, fc2 and their biases; swiglu three matrices, no biases.
  auto mlp = [&](double h) { return swiglu ? 3 * d * h : 2 * d * h + h + d; };
  const moe::RouterInfo& router = moe::router_info(c.moe.router);
  const double router_weights = router.weights == moe::RouterWeightKind::none         ? 0
                                : router.weights == moe::RouterWeightKind::gate_noise ? 2 * E * d
                                                                                      : E * d;
  const double shared_h = c.moe.d_shared > 0 ? c.moe.d_shared : de;
  const moe::ModelConfig placement = model_config(c);  // the model's own rule for which blocks are MoE
  double moe_layers = 0;
  for (int64_t l = 0; l < c.model.n_layers; ++l) moe_layers += moe::is_moe_layer(placement, l) ? 1 : 0;
  const double dense_layers = L - moe_layers;
  const double norm = layernorm ? 2 * d : d;

  const double embeddings = V * d + (c.model.position == rc::PositionKind::learned ? c.model.max_seq_len * d : 0) +
                            (c.model.tie_embeddings ? 0 : V * d) + norm;
  const double attention = L * (4 * d * d + 4 * d + 2 * norm);
  // Expert parallelism: each rank holds E / parallel.expert of the routed experts.
  const double local_experts = E / std::max(1, c.parallel.expert);
  const double experts =
      moe_layers * (local_experts * mlp(de) + c.moe.num_shared_experts * mlp(shared_h) + router_weights);
  const double dense = dense_layers * mlp(dff);

  // Saved for backward, per token: the block's norms, q/k/v and the attention output and
  // projection (about 8 d), the attention probabilities (H T per token, within a 256 MB budget
  // shared by all layers), the MLP's input, hidden activations and output, or for MoE the router's
  // scores, the k dispatched rows, their hidden activations and outputs; the head's logits and
  // their gradient (2 V). Backward adds about one layer's worth of transient gradients.
  const double act = swiglu ? 3 : 2;
  const double attention_acts = L * 8 * d * tokens;
  const double probs = std::min(L * H * T * tokens * kFloat, 256.0 * 1024 * 1024) / kFloat;
  const double moe_acts =
      moe_layers * tokens * (3 * d + 3 * E + 2 * k * d + act * k * de + c.moe.num_shared_experts * (act * shared_h + d));
  const double dense_acts = dense_layers * tokens * (3 * d + act * dff);
  const double head_acts = tokens * (2 * V + 2 * d);
  const double per_layer_max = tokens * (8 * d + std::max(3 * E + act * k * de + 2 * k * d, act * dff));

  MemoryEstimate e;
  const double params = embeddings + attention + experts + dense;
  e.parameters = params < 9e18 ? static_cast<int64_t>(params) : INT64_MAX;
  e.parameter_bytes = params * kFloat;
  e.gradient_bytes = params * kFloat;
  e.optimizer_bytes = 2 * params * kFloat;
  e.activation_bytes = (attention_acts + probs + moe_acts + dense_acts + head_acts + per_layer_max) * kFloat;
  const double state = 4 * kFloat;  // a parameter, its gradient and two moments
  e.parts = {
      {"embeddings and head", embeddings * state, {"model.vocab_size", "model.d_model", "model.tie_embeddings"}},
      {"attention weights", attention * state, {"model.n_layers", "model.d_model"}},
      {"expert weights", experts * state,
       {"moe.num_experts", "moe.d_expert", "model.d_model", "model.n_layers", "moe.num_shared_experts"}},
      {"dense MLP weights", dense * state, {"model.d_ff", "model.d_model", "model.n_layers"}},
      {"activations of one micro-batch", e.activation_bytes,
       {"training.batch_size", "training.seq_len", "model.n_layers", "model.d_model", "model.vocab_size",
        "moe.top_k"}},
  };
  std::sort(e.parts.begin(), e.parts.end(), [](const MemoryPart& a, const MemoryPart& b) { return a.bytes > b.bytes; });
  return e;
}

double available_memory_bytes() {
  double available = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kib = 0;
    meminfo >> kib;
    if (key == "MemAvailable:") {
      available = kib * 1024;
      break;
    }
    meminfo.ignore(256, '\n');
  }
  std::ifstream cgroup("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (cgroup >> limit && limit != "max") {
    double used = 0;
    std::ifstream current("/sys/fs/cgroup/memory.current");
    current >> used;
    const double room = std::max(0.0, std::stod(limit) - used);
    available = available > 0 ? std::min(available, room) : room;
  }
  return available;
}

void check_memory(const rc::RunConfig& c, const MemoryEstimate& e, double available) {
  const bool limited = c.memory_limit > 0;
  const double limit = limited ? c.memory_limit * 1024 * 1024 * 1024 : available;
  if (!limited && (c.device == rc::DeviceKind::cuda || limit <= 0)) return;
  if (e.total_bytes() <= limit) return;
  std::ostringstream why;
  why << "this config needs about " << e.summary() << ", more than "
      << (limited ? "memory_limit (" + format_bytes(limit) + ")" : "the memory available (" + format_bytes(limit) + ")")
      << "; the largest parts:";
  for (size_t i = 0; i < e.parts.size() && i < 2; ++i) {
    why << (i ? ";" : "") << " " << e.parts[i].what << " " << format_bytes(e.parts[i].bytes) << " (";
    for (size_t j = 0; j < e.parts[i].keys.size(); ++j) why << (j ? ", " : "") << e.parts[i].keys[j];
    why << ")";
  }
  why << (limited ? "" : ". Set memory_limit (GiB) to override the check");
  throw rc::ConfigError(why.str());
}

}  // namespace assemble
