// Run configuration: the schema (one table of sections and fields), YAML parsing with locations,
// overrides, emission and comparison. Contract in run_config.h; value checks are in
// run_config_validate.cpp, what a resume may change in resume.cpp. Each section's fields are
// listed once, in schema<S>(), and every operation (parse, emit, compare, list allowed keys)
// walks that list through a visitor.
#include "tools/lib/config/run_config.h"
#include "tools/lib/config/text.h"
#include "tools/lib/config/yaml_document.h"
#include "tools/lib/config/yaml_read.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <type_traits>
#include <utility>

namespace runconfig {
namespace {

using namespace text;

template <class T>
using NameTable = std::vector<std::pair<T, const char*>>;

const NameTable<NormKind>& names(NormKind) {
  static const NameTable<NormKind> t{{NormKind::layernorm, "layernorm"}, {NormKind::rmsnorm, "rmsnorm"}};
  return t;
}
const NameTable<PositionKind>& names(PositionKind) {
  static const NameTable<PositionKind> t{{PositionKind::learned, "learned"}, {PositionKind::rope, "rope"}};
  return t;
}
const NameTable<Activation>& names(Activation) {
  static const NameTable<Activation> t{{Activation::gelu, "gelu"}, {Activation::swiglu, "swiglu"}};
  return t;
}
const NameTable<MoeLayers>& names(MoeLayers) {
  static const NameTable<MoeLayers> t{
      {MoeLayers::all, "all"}, {MoeLayers::every_n, "every_n"}, {MoeLayers::none, "none"}};
  return t;
}
const NameTable<RouterKind>& names(RouterKind) {
  static const NameTable<RouterKind> t = [] {
    NameTable<RouterKind> out;
    for (const moe::RouterInfo& r : moe::router_infos()) out.emplace_back(r.kind, r.key);
    return out;
  }();
  return t;
}
const NameTable<DropPolicy>& names(DropPolicy) {
  static const NameTable<DropPolicy> t{{DropPolicy::position, "position"}, {DropPolicy::score, "score"}};
  return t;
}
const NameTable<DataKind>& names(DataKind) {
  static const NameTable<DataKind> t{
      {DataKind::synthetic, "synthetic"}, {DataKind::text, "text"}, {DataKind::shards, "shards"}};
  return t;
}
const NameTable<DecayKind>& names(DecayKind) {
  static const NameTable<DecayKind> t{{DecayKind::cosine, "cosine"}, {DecayKind::constant, "constant"}};
  return t;
}
const NameTable<DeviceKind>& names(DeviceKind) {
  static const NameTable<DeviceKind> t{{DeviceKind::cpu, "cpu"}, {DeviceKind::cuda, "cuda"}};
  return t;
}
const NameTable<BalanceScope>& names(BalanceScope) {
  static const NameTable<BalanceScope> t{{BalanceScope::micro_batch, "micro_batch"},
                                         {BalanceScope::global_batch, "global_batch"}};
  return t;
}
const NameTable<PrecisionKind>& names(PrecisionKind) {
  static const NameTable<PrecisionKind> t{{PrecisionKind::f32, "f32"}, {PrecisionKind::bf16, "bf16"}};
  return t;
}

const NameTable<SoftmaxOrder>& names(SoftmaxOrder) {
  static const NameTable<SoftmaxOrder> t{{SoftmaxOrder::before_topk, "before_topk"},
                                         {SoftmaxOrder::after_topk, "after_topk"}};
  return t;
}

const NameTable<RevivalMode>& names(RevivalMode) {
  static const NameTable<RevivalMode> t{{RevivalMode::fresh, "fresh"}, {RevivalMode::copy_busiest, "copy_busiest"}};
  return t;
}

template <class T>
const char* enum_name(T v) {
  for (const auto& [value, name] : names(T{}))
    if (value == v) return name;
  return "?";
}

template <class T>
std::string enum_allowed(T) {
  std::string out;
  for (const auto& [value, name] : names(T{})) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

// ---- the schema: every section's keys, in the order they are written ----

template <class S>
struct Tag {};

template <class V>
void schema(V& v, Tag<ModelConfig>) {
  v.field("vocab_size", &ModelConfig::vocab_size);
  v.field("d_model", &ModelConfig::d_model);
  v.field("n_layers", &ModelConfig::n_layers);
  v.field("n_heads", &ModelConfig::n_heads);
  v.field("max_seq_len", &ModelConfig::max_seq_len);
  v.field("norm", &ModelConfig::norm);
  v.field("norm_eps", &ModelConfig::norm_eps);
  v.field("position", &ModelConfig::position);
  v.field("tie_embeddings", &ModelConfig::tie_embeddings);
  v.field("dropout", &ModelConfig::dropout);
  v.field("d_ff", &ModelConfig::d_ff);
  v.field("activation", &ModelConfig::activation);
  v.field("init_std", &ModelConfig::init_std);
  v.field("embedding_init_std", &ModelConfig::embedding_init_std);
}
template <class V>
void schema(V& v, Tag<LossCoefficients>) {
#define MOE_BALANCE_LOSS(key, needs, summary) v.field(#key, &LossCoefficients::key);
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS
}
template <class V>
void schema(V& v, Tag<RevivalConfig>) {
  v.field("check_every", &RevivalConfig::check_every);
  v.field("mode", &RevivalConfig::mode);
  v.field("noise", &RevivalConfig::noise);
}
template <class V>
void schema(V& v, Tag<MoeConfig>) {
  v.field("enabled", &MoeConfig::enabled);
  v.field("layers", &MoeConfig::layers);
  v.field("every_n", &MoeConfig::every_n);
  v.field("first_dense", &MoeConfig::first_dense);
  v.field("num_experts", &MoeConfig::num_experts);
  v.field("top_k", &MoeConfig::top_k);
  v.field("d_expert", &MoeConfig::d_expert);
  v.field("num_shared_experts", &MoeConfig::num_shared_experts);
  v.field("d_shared", &MoeConfig::d_shared);
  v.field("router", &MoeConfig::router);
  v.field("normalize_topk", &MoeConfig::normalize_topk);
  v.field("capacity_factor", &MoeConfig::capacity_factor);
  v.field("drop_policy", &MoeConfig::drop_policy);
#define MOE_ROUTING_OPTION(key, type, default_value, scope, allowed, source, summary) v.field(#key, &MoeConfig::key);
#include "models/routers/options.def"
#undef MOE_ROUTING_OPTION
  v.section("losses", &MoeConfig::losses);
  v.field("bias_update_rate", &MoeConfig::bias_update_rate);
  v.field("balance_scope", &MoeConfig::balance_scope);
  v.field("device_groups", &MoeConfig::device_groups);
  v.section("revival", &MoeConfig::revival);
}
template <class V>
void schema(V& v, Tag<ParallelConfig>) {
  v.field("expert", &ParallelConfig::expert);
}
template <class V>
void schema(V& v, Tag<DataConfig>) {
  v.field("kind", &DataConfig::kind);
  v.field("seed", &DataConfig::seed);
  v.field("num_domains", &DataConfig::num_domains);
  v.field("concentration", &DataConfig::concentration);
  v.field("paths", &DataConfig::paths);
  v.field("val_fraction", &DataConfig::val_fraction);
  v.field("train_shards", &DataConfig::train_shards);
  v.field("val_shards", &DataConfig::val_shards);
}
template <class V>
void schema(V& v, Tag<OptimizerConfig>) {
  v.field("lr", &OptimizerConfig::lr);
  v.field("beta1", &OptimizerConfig::beta1);
  v.field("beta2", &OptimizerConfig::beta2);
  v.field("eps", &OptimizerConfig::eps);
  v.field("weight_decay", &OptimizerConfig::weight_decay);
  v.field("decay_embeddings", &OptimizerConfig::decay_embeddings);
  v.field("decay_norms_and_biases", &OptimizerConfig::decay_norms_and_biases);
  v.field("grad_clip", &OptimizerConfig::grad_clip);
}
template <class V>
void schema(V& v, Tag<ScheduleConfig>) {
  v.field("warmup_steps", &ScheduleConfig::warmup_steps);
  v.field("decay", &ScheduleConfig::decay);
  v.field("min_lr_ratio", &ScheduleConfig::min_lr_ratio);
  v.field("total_steps", &ScheduleConfig::total_steps);
}
template <class V>
void schema(V& v, Tag<TrainingConfig>) {
  v.field("steps", &TrainingConfig::steps);
  v.field("batch_size", &TrainingConfig::batch_size);
  v.field("seq_len", &TrainingConfig::seq_len);
  v.field("grad_accum", &TrainingConfig::grad_accum);
  v.field("seed", &TrainingConfig::seed);
  v.field("eval_every", &TrainingConfig::eval_every);
  v.field("eval_batches", &TrainingConfig::eval_batches);
}
template <class V>
void schema(V& v, Tag<LoggingConfig>) {
  v.field("every", &LoggingConfig::every);
  v.field("routing_trace_every", &LoggingConfig::routing_trace_every);
  v.field("out_dir", &LoggingConfig::out_dir);
}
template <class V>
void schema(V& v, Tag<CheckpointingConfig>) {
  v.field("every", &CheckpointingConfig::every);
  v.field("keep_last", &CheckpointingConfig::keep_last);
}
template <class V>
void schema(V& v, Tag<DiagnosticsConfig>) {
  v.field("warnings", &DiagnosticsConfig::warnings);
  v.field("max_vio", &DiagnosticsConfig::max_vio);
  v.field("max_dead", &DiagnosticsConfig::max_dead);
  v.field("topk_share", &DiagnosticsConfig::topk_share);
  v.field("dead_fraction", &DiagnosticsConfig::dead_fraction);
  v.field("starved_fraction", &DiagnosticsConfig::starved_fraction);
  v.field("device_imbalance", &DiagnosticsConfig::device_imbalance);
  v.field("idle_window", &DiagnosticsConfig::idle_window);
  v.field("vanishing_grad_norm", &DiagnosticsConfig::vanishing_grad_norm);
}
template <class V>
void schema(V& v, Tag<RunConfig>) {
  v.section("model", &RunConfig::model);
  v.section("moe", &RunConfig::moe);
  v.section("data", &RunConfig::data);
  v.section("optimizer", &RunConfig::optimizer);
  v.section("schedule", &RunConfig::schedule);
  v.section("training", &RunConfig::training);
  v.section("logging", &RunConfig::logging);
  v.section("checkpointing", &RunConfig::checkpointing);
  v.section("diagnostics", &RunConfig::diagnostics);
  v.section("parallel", &RunConfig::parallel);
  v.field("device", &RunConfig::device);
  v.field("precision", &RunConfig::precision);
  v.field("memory_limit", &RunConfig::memory_limit);
}

// ---- visitors ----

template <class S>
struct KeyLister {
  std::vector<std::string> keys;
  template <class T>
  void field(const char* key, T S::*) {
    keys.emplace_back(key);
  }
  template <class Sub>
  void section(const char* key, Sub S::*) {
    keys.emplace_back(key);
  }
};

template <class S>
std::vector<std::string> keys_of() {
  KeyLister<S> lister;
  schema(lister, Tag<S>{});
  return lister.keys;
}

std::string value_text(int v) { return std::to_string(v); }
std::string value_text(std::int64_t v) { return std::to_string(v); }
std::string value_text(double v) { return format_double(v); }
std::string value_text(bool v) { return v ? "true" : "false"; }

// Where values come from: a file (locations from node marks) or one override (its text).
struct Source {
  std::string name;
  bool is_override = false;
  std::string at(const YAML::Mark& mark) const {
    if (is_override) return name;
    if (mark.line < 0) return name;
    return name + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
  }
};

using detail::describe;
using detail::fail;

// Reads one value of type T from a node; on failure throws naming the key.
template <class T>
void read_value(const YAML::Node& n, const std::string& at, const std::string& key, T* out) {
  const bool scalar = n && n.IsScalar();
  const std::string text = scalar ? n.Scalar() : "";
  if constexpr (std::is_same_v<T, int> || std::is_same_v<T, std::int64_t>) {
    const std::int64_t v = detail::read_integer(n, at, key);
    if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
      fail(at, key, "integer " + text + " is out of range");
    *out = static_cast<T>(v);
  } else if constexpr (std::is_same_v<T, double>) {
    *out = detail::read_number(n, at, key);
  } else if constexpr (std::is_same_v<T, bool>) {
    static const std::vector<std::string> yes{"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const std::vector<std::string> no{"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    if (scalar && std::count(yes.begin(), yes.end(), text)) {
      *out = true;
    } else if (scalar && std::count(no.begin(), no.end(), text)) {
      *out = false;
    } else {
      fail(at, key, "expected a boolean, got " + describe(n), "true, false");
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!scalar) fail(at, key, "expected a string, got " + describe(n));
    if (!clean_utf8(text)) fail(at, key, "expected UTF-8 text without NUL bytes");
    *out = text;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (!n || !n.IsSequence()) fail(at, key, "expected a list of strings, got " + describe(n));
    std::vector<std::string> items;
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar())
        fail(at, key, "expected a list of strings, item " + std::to_string(i + 1) + " is " + describe(n[i]));
      if (!clean_utf8(n[i].Scalar()))
        fail(at, key, "item " + std::to_string(i + 1) + ": expected UTF-8 text without NUL bytes");
      items.push_back(n[i].Scalar());
    }
    *out = std::move(items);
  } else {
    static_assert(std::is_enum_v<T>, "unsupported field type");
    for (const auto& [value, name] : names(T{}))
      if (scalar && text == name) {
        *out = value;
        return;
      }
    fail(at, key, "unknown value " + describe(n), enum_allowed(T{}));
  }
}

template <class S>
void parse_section(S& obj, const YAML::Node& node, const std::string& prefix, const Source& src,
                   detail::KeyLocations& locs);

// Reads the keys present in one map node into a section, recording where each was set.
template <class S>
struct Parser {
  S& obj;
  const YAML::Node& node;
  std::string prefix;  // "moe." or "" at the top
  const Source& src;
  detail::KeyLocations& locs;

  // The value node for key and its location (the key's when the value is null).
  bool lookup(const char* key, YAML::Node* value, std::string* at) const {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar() != key) continue;
      *value = it->second;
      // A null value (`key:` with nothing after it) has its mark past the line end: use the key.
      const bool use_value = !it->second.IsNull() && it->second.Mark().line >= 0;
      *at = src.at(use_value ? it->second.Mark() : it->first.Mark());
      return true;
    }
    return false;
  }
  template <class T>
  void field(const char* key, T S::*member) {
    YAML::Node value;
    std::string at;
    if (!lookup(key, &value, &at)) return;
    if constexpr (std::is_same_v<T, Schedule>)
      obj.*member = read_schedule(value, at, prefix + key, [this](const YAML::Mark& m) { return src.at(m); });
    else
      read_value(value, at, prefix + key, &(obj.*member));
    locs.at[prefix + key] = at;
  }
  template <class Sub>
  void section(const char* key, Sub S::*member) {
    YAML::Node value;
    std::string at;
    if (!lookup(key, &value, &at)) return;
    locs.at[prefix + key] = at;
    parse_section(obj.*member, value, prefix + key + ".", src, locs);
  }
};

// Checks that node is a map with only known, unique keys, then reads the keys into obj.
template <class S>
void parse_section(S& obj, const YAML::Node& node, const std::string& prefix, const Source& src,
                   detail::KeyLocations& locs) {
  const std::vector<std::string> allowed = keys_of<S>();
  const std::string name = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
  if (!node.IsMap()) {
    if (prefix.empty()) fail(src.at(node.Mark()), "(top level)", "expected a map of sections", join(allowed));
    fail(src.at(node.Mark()), name, "expected a map of keys, got " + describe(node), join(allowed));
  }
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : describe(it->first);
    const std::string at = src.at(it->first.Mark());
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      const std::string near = closest_key(key, allowed);
      fail(at, prefix + key, "unknown key" + (near.empty() ? "" : ", did you mean '" + near + "'?"), join(allowed));
    }
    if (!seen.insert(key).second) fail(at, prefix + key, "key given twice");
  }
  Parser<S> parser{obj, node, prefix, src, locs};
  schema(parser, Tag<S>{});
}

// Writes every key of a section into an emitter map.
template <class S>
struct Emitter {
  const S& obj;
  YAML::Emitter& out;
  template <class T>
  void field(const char* key, T S::*member) {
    out << YAML::Key << key << YAML::Value;
    const T& v = obj.*member;
    if constexpr (std::is_enum_v<T>) {
      out << enum_name(v);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& s : v) out << s;
      out << YAML::EndSeq;
    } else if constexpr (std::is_same_v<T, std::string>) {
      out << YAML::DoubleQuoted << v;
    } else if constexpr (std::is_same_v<T, Schedule>) {
      emit_schedule(out, v);
    } else {
      out << value_text(v);
    }
  }
  template <class Sub>
  void section(const char* key, Sub S::*member) {
    out << YAML::Key << key << YAML::Value << YAML::BeginMap;
    Emitter<Sub> inner{obj.*member, out};
    schema(inner, Tag<Sub>{});
    out << YAML::EndMap;
  }
};

// Collects the dotted keys whose values differ between two configs.
template <class S>
struct Differ {
  const S& a;
  const S& b;
  std::string prefix;
  std::vector<std::string>& out;
  template <class T>
  void field(const char* key, T S::*member) {
    if (!(a.*member == b.*member)) out.push_back(prefix + key);
  }
  template <class Sub>
  void section(const char* key, Sub S::*member) {
    Differ<Sub> inner{a.*member, b.*member, prefix + key + ".", out};
    schema(inner, Tag<Sub>{});
  }
};

}  // namespace

const char* to_string(NormKind v) { return enum_name(v); }
const char* to_string(PositionKind v) { return enum_name(v); }
const char* to_string(Activation v) { return enum_name(v); }
const char* to_string(MoeLayers v) { return enum_name(v); }
const char* to_string(RouterKind v) { return enum_name(v); }
const char* to_string(DropPolicy v) { return enum_name(v); }
const char* to_string(DataKind v) { return enum_name(v); }
const char* to_string(DecayKind v) { return enum_name(v); }
const char* to_string(DeviceKind v) { return enum_name(v); }
const char* to_string(PrecisionKind v) { return enum_name(v); }
const char* to_string(BalanceScope v) { return enum_name(v); }
const char* to_string(SoftmaxOrder v) { return enum_name(v); }
const char* to_string(RevivalMode v) { return enum_name(v); }

const Schedule& LossCoefficients::of(const std::string& key) const {
#define MOE_BALANCE_LOSS(name, needs, summary) \
  if (key == #name) return name;
#include "models/balance/losses.def"
#undef MOE_BALANCE_LOSS
  throw std::out_of_range("LossCoefficients: no balance loss '" + key + "'");
}

namespace detail {

std::string error_message(const std::string& location, const std::string& key, const std::string& what,
                          const std::string& allowed) {
  std::string msg = location + ": " + key + ": " + what;
  if (!allowed.empty()) msg += " (allowed: " + allowed + ")";
  return msg;
}

std::string KeyLocations::find(const std::vector<std::string>& keys) const {
  for (const auto& k : keys)
    if (auto it = at.find(k); it != at.end()) return it->second;
  if (!keys.empty()) {
    for (std::string k = keys.front(); k.find('.') != std::string::npos;) {
      k = k.substr(0, k.rfind('.'));
      if (auto it = at.find(k); it != at.end()) return it->second;
    }
  }
  return source;
}

}  // namespace detail

RunConfig parse_run_config(const std::string& yaml_text, const std::string& source_name,
                           const std::vector<std::string>& overrides, const CudaProbe& cuda_available) {
  const YAML::Node root = detail::load_one_document(yaml_text, source_name, true);
  RunConfig cfg;
  detail::KeyLocations locs;
  locs.source = source_name;
  if (root && !root.IsNull()) parse_section(cfg, root, "", Source{source_name, false}, locs);
  for (const auto& text : overrides) {
    const Source src{"override '" + text + "'", true};
    parse_section(cfg, detail::override_node(text, src.name), "", src, locs);
  }
  detail::validate(cfg, locs, cuda_available);
  return cfg;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides,
                          const CudaProbe& cuda_available) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw ConfigError(path + ": is a directory, not a config file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError(path + ": cannot open the config file: " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read the config file");
  return parse_run_config(text.str(), path, overrides, cuda_available);
}

std::string to_yaml(const RunConfig& cfg) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Emitter<RunConfig> emitter{cfg, out};
  schema(emitter, Tag<RunConfig>{});
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> keys_differing(const RunConfig& a, const RunConfig& b) {
  std::vector<std::string> out;
  Differ<RunConfig> differ{a, b, "", out};
  schema(differ, Tag<RunConfig>{});
  return out;
}

bool operator==(const RunConfig& a, const RunConfig& b) { return keys_differing(a, b).empty(); }

}  // namespace runconfig
