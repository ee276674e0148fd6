#include "tools/lib/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "tools/lib/checkpoint/header.h"
#include "tools/lib/fileio/fileio.h"
#include "tools/lib/hdf5/hdf5_file.h"

// Hashes and checksums read integers and words in the machine's byte order; every platform the
// engine builds for (x86-64, AArch64) is little-endian, and this keeps it that way.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint hashing assumes a little-endian host");

namespace ckpt {

const char* const kEngineVersion = ENGINE_VERSION;  // the project version in CMakeLists.txt

namespace {

const char* const kFormatName = "moe-engine checkpoint";

void crash_point(const char* point) {
  const char* at = std::getenv("MOE_ENGINE_CRASH_IN_SAVE");
  if (at && std::strcmp(at, point) == 0) std::raise(SIGKILL);
}

// FNV-1a (byte-wise) over typed chunks, each prefixed by its length so that boundaries matter.
class Hasher {
 public:
  void bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * 1099511628211ull;
  }
  void text(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
  template <class T>
  void vec(const std::vector<T>& v) {
    u64(v.size());
    bytes(v.data(), v.size() * sizeof(T));
  }
  void array(const NamedArray& a) {
    text(a.name);
    vec(a.shape);
    vec(a.values);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  uint64_t h_ = 1469598103934665603ull;
};

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) throw CheckpointError(path + ": cannot open to sync: " + std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems (FUSE, network mounts) cannot sync a folder; the rename itself stands.
  if (rc != 0 && !(directory && (err == EINVAL || err == ENOTSUP)))
    throw CheckpointError(path + ": fsync failed: " + std::strerror(err));
}

void write_array(h5::File& f, const std::string& group, const NamedArray& a) {
  if (static_cast<int64_t>(a.values.size()) != numel(a.shape))
    throw CheckpointError(f.path() + ": " + group + a.name + ": value count does not match its shape");
  f.write_floats(group + a.name, a.values, a.shape);
}

std::vector<NamedArray> read_arrays(const h5::File& f, const std::string& group) {
  std::vector<NamedArray> out;
  for (const std::string& name : f.members(group)) {
    NamedArray a;
    a.name = name;
    a.values = f.read_floats(group + "/" + name, &a.shape);
    out.push_back(std::move(a));
  }
  return out;
}

int64_t read_int64_scalar(const h5::File& f, const std::string& ds) {
  h5::Dims dims;
  const std::vector<int64_t> v = f.read_int64s(ds, &dims);
  if (v.size() != 1) throw CheckpointError(f.path() + ": " + ds + ": must hold one integer");
  return v[0];
}

double read_double_scalar(const h5::File& f, const std::string& ds) {
  const std::vector<double> v = f.read_doubles(ds);
  if (v.size() != 1) throw CheckpointError(f.path() + ": " + ds + ": must hold one number");
  return v[0];
}

std::vector<uint64_t> read_u64s(const h5::File& f, const std::string& ds, size_t n) {
  const std::vector<uint64_t> v = f.read_uint64s(ds);
  if (v.size() != n) throw CheckpointError(f.path() + ": " + ds + ": must hold " + std::to_string(n) + " values");
  return v;
}

template <class History>
auto revival_columns(History& m) {
  using Column = decltype(&m.revival_step);
  return std::vector<std::pair<std::string, Column>>{{"/metrics/revivals/step", &m.revival_step},
                                                     {"/metrics/revivals/layer", &m.revival_layer},
                                                     {"/metrics/revivals/expert", &m.revival_expert},
                                                     {"/metrics/revivals/source", &m.revival_source}};
}

template <class History>
auto rank_columns(History& m) {
  using Column = decltype(&m.rank_slots);
  return std::vector<std::pair<std::string, Column>>{{"/metrics/ranks/slots", &m.rank_slots},
                                                     {"/metrics/ranks/compute_seconds", &m.rank_compute_seconds},
                                                     {"/metrics/ranks/wait_seconds", &m.rank_wait_seconds}};
}

template <class History>
auto expert_columns(History& m) {
  using Column = decltype(&m.expert_grad_norm);
  return std::vector<std::pair<std::string, Column>>{{"/metrics/experts/grad_norm", &m.expert_grad_norm},
                                                     {"/metrics/experts/update_ratio", &m.expert_update_ratio}};
}

void write_metrics(h5::File& f, const MetricsHistory& m) {
  const int64_t n = static_cast<int64_t>(m.size());
  f.write_int64s("/metrics/step", m.step, {n});
  f.write_int64s("/metrics/dropped", m.dropped, {n});
  f.write_doubles("/metrics/loss", m.loss, {n});
  f.write_doubles("/metrics/ce", m.ce, {n});
  f.write_doubles("/metrics/lr", m.lr, {n});
  f.write_doubles("/metrics/grad_norm", m.grad_norm, {n});
  f.write_doubles("/metrics/tokens_per_s", m.tokens_per_s, {n});
  for (const auto& [name, values] : m.terms) f.write_doubles("/metrics/terms/" + name, values, {n});
  for (const auto& [name, values] : m.coefficients) f.write_doubles("/metrics/coefficients/" + name, values, {n});
  if (!m.bias_update_rate.empty()) f.write_doubles("/metrics/bias_update_rate", m.bias_update_rate, {n});
  f.write_int64s("/metrics/expert_counts", m.expert_counts, {n, m.layers, m.experts});
  for (const auto& [name, values] : m.layer_metrics) f.write_doubles("/metrics/layers/" + name, values, {n, m.layers});
  if (m.ranks > 0)
    for (const auto& [name, values] : rank_columns(m)) f.write_doubles(name, *values, {n, m.layers, m.ranks});
  for (const auto& [name, values] : expert_columns(m))
    if (!values->empty()) f.write_doubles(name, *values, {n, m.layers, m.experts});
  if (!m.revival_step.empty())
    for (const auto& [name, values] : revival_columns(m))
      f.write_int64s(name, *values, {static_cast<int64_t>(values->size())});
  f.write_int64s("/metrics/eval/step", m.eval_step, {static_cast<int64_t>(m.eval_step.size())});
  f.write_doubles("/metrics/eval/loss", m.eval_loss, {static_cast<int64_t>(m.eval_loss.size())});
  if (!m.trace_step.empty()) {
    const int64_t traces = static_cast<int64_t>(m.trace_step.size());
    f.write_int64s("/metrics/routing_trace/step", m.trace_step, {traces});
    f.write_ints("/metrics/routing_trace/experts", m.trace_experts, {traces, m.layers, m.trace_tokens, m.trace_k});
  }
}

MetricsHistory read_metrics(const h5::File& f) {
  MetricsHistory m;
  m.step = f.read_int64s("/metrics/step");
  const size_t n = m.step.size();
  auto same_length = [&](const std::string& ds, size_t got) {
    if (got != n)
      throw CheckpointError(f.path() + ": " + ds + ": has " + std::to_string(got) + " entries, /metrics/step has " +
                            std::to_string(n));
  };
  m.dropped = f.read_int64s("/metrics/dropped");
  same_length("/metrics/dropped", m.dropped.size());
  const std::pair<const char*, std::vector<double>*> columns[] = {{"/metrics/loss", &m.loss},
                                                                  {"/metrics/ce", &m.ce},
                                                                  {"/metrics/lr", &m.lr},
                                                                  {"/metrics/grad_norm", &m.grad_norm},
                                                                  {"/metrics/tokens_per_s", &m.tokens_per_s}};
  for (const auto& [ds, column] : columns) {
    *column = f.read_doubles(ds);
    same_length(ds, column->size());
  }
  if (f.exists("/metrics/terms"))
    for (const std::string& name : f.members("/metrics/terms")) {
      m.terms[name] = f.read_doubles("/metrics/terms/" + name);
      same_length("/metrics/terms/" + name, m.terms[name].size());
    }
  if (f.exists("/metrics/coefficients"))
    for (const std::string& name : f.members("/metrics/coefficients")) {
      m.coefficients[name] = f.read_doubles("/metrics/coefficients/" + name);
      same_length("/metrics/coefficients/" + name, m.coefficients[name].size());
    }
  if (f.exists("/metrics/bias_update_rate")) {
    m.bias_update_rate = f.read_doubles("/metrics/bias_update_rate");
    same_length("/metrics/bias_update_rate", m.bias_update_rate.size());
  }
  h5::Dims dims;
  m.expert_counts = f.read_int64s("/metrics/expert_counts", &dims);
  if (dims.size() != 3 || dims[0] != static_cast<int64_t>(n))
    throw CheckpointError(f.path() + ": /metrics/expert_counts: must be [logged steps, layers, experts]");
  m.layers = dims[1];
  m.experts = dims[2];
  if (f.exists("/metrics/layers"))
    for (const std::string& name : f.members("/metrics/layers")) {
      h5::Dims d;
      m.layer_metrics[name] = f.read_doubles("/metrics/layers/" + name, &d);
      if (d != h5::Dims{static_cast<int64_t>(n), m.layers})
        throw CheckpointError(f.path() + ": /metrics/layers/" + name + ": must be [logged steps, layers]");
    }
  if (f.exists("/metrics/ranks")) {
    for (const auto& [name, values] : rank_columns(m)) {
      h5::Dims d;
      *values = f.read_doubles(name, &d);
      if (d.size() != 3 || d[0] != static_cast<int64_t>(n) || d[1] != m.layers || d[2] < 1 ||
          (m.ranks > 0 && d[2] != m.ranks))
        throw CheckpointError(f.path() + ": " + name + ": must be [logged steps, layers, ranks], like /metrics/ranks/slots");
      m.ranks = d[2];
    }
  }
  for (const auto& [name, values] : expert_columns(m)) {
    if (!f.exists(name)) continue;
    h5::Dims d;
    *values = f.read_doubles(name, &d);
    if (d != h5::Dims{static_cast<int64_t>(n), m.layers, m.experts})
      throw CheckpointError(f.path() + ": " + name + ": must be [logged steps, layers, experts], like /metrics/expert_counts");
  }
  if (f.exists("/metrics/revivals")) {
    for (const auto& [name, values] : revival_columns(m)) *values = f.read_int64s(name);
    for (const auto& [name, values] : revival_columns(m))
      if (values->size() != m.revival_step.size())
        throw CheckpointError(f.path() + ": " + name + ": has " + std::to_string(values->size()) +
                              " entries, /metrics/revivals/step has " + std::to_string(m.revival_step.size()));
  }
  m.eval_step = f.read_int64s("/metrics/eval/step");
  m.eval_loss = f.read_doubles("/metrics/eval/loss");
  if (m.eval_step.size() != m.eval_loss.size())
    throw CheckpointError(f.path() + ": /metrics/eval: step and loss differ in length");
  if (f.exists("/metrics/routing_trace")) {
    m.trace_step = f.read_int64s("/metrics/routing_trace/step");
    h5::Dims d;
    m.trace_experts = f.read_ints("/metrics/routing_trace/experts", &d);
    if (d.size() != 4 || d[0] != static_cast<int64_t>(m.trace_step.size()) || d[1] != m.layers || d[2] < 1 || d[3] < 1)
      throw CheckpointError(f.path() + ": /metrics/routing_trace/experts: must be [traces, MoE layers, tokens, k], " +
                            std::to_string(m.trace_step.size()) + " traces by /metrics/routing_trace/step");
    m.trace_tokens = d[2];
    m.trace_k = d[3];
  }
  return m;
}

// The per-layer history is read by layer and expert (moe-inspect, the metrics files), so its
// shape must agree with the routers the file holds: one bias of E values per MoE layer.
void check_metrics_shape(const std::string& path, const Checkpoint& c) {
  const MetricsHistory& m = c.metrics;
  const std::string counts = path + ": /metrics/expert_counts: ";
  if (m.layers > 0 && m.experts < 1)
    throw CheckpointError(counts + "counts " + std::to_string(m.layers) + " MoE layers of 0 experts");
  if (m.layers != static_cast<int64_t>(c.router_bias.size()))
    throw CheckpointError(counts + "counts " + std::to_string(m.layers) + " MoE layers, /router holds " +
                          std::to_string(c.router_bias.size()));
  for (const auto& [layer, bias] : c.router_bias)
    if (static_cast<int64_t>(bias.size()) != m.experts)
      throw CheckpointError(path + ": /router/" + std::to_string(layer) + "/bias: holds " +
                            std::to_string(bias.size()) + " experts, /metrics/expert_counts " +
                            std::to_string(m.experts));
}

}  // namespace

std::string checksum(const Checkpoint& c) {
  Hasher h;
  h.text(c.config_yaml);
  h.text(c.diagnostic);
  if (!c.upcycled_from.empty()) h.text(c.upcycled_from);  // files without it keep their checksum
  for (const auto* arrays : {&c.params, &c.adam_m, &c.adam_v}) {
    // By name: a file lists its datasets alphabetically, the model in its own order.
    std::vector<const NamedArray*> sorted;
    for (const NamedArray& a : *arrays) sorted.push_back(&a);
    std::sort(sorted.begin(), sorted.end(), [](const NamedArray* x, const NamedArray* y) { return x->name < y->name; });
    h.u64(sorted.size());
    for (const NamedArray* a : sorted) h.array(*a);
  }
  h.u64(static_cast<uint64_t>(c.optimizer_step));
  for (const auto& [k, v] : c.hyperparameters) {
    h.text(k);
    h.bytes(&v, sizeof v);
  }
  for (const auto& [layer, bias] : c.router_bias) {
    h.u64(static_cast<uint64_t>(layer));
    h.vec(bias);
  }
  h.u64(static_cast<uint64_t>(c.step));
  h.u64(static_cast<uint64_t>(c.tokens_seen));
  h.bytes(&c.lr, sizeof c.lr);
  for (const auto* states : {&c.rng, &c.loaders})
    for (const auto& [k, v] : *states) {
      h.text(k);
      h.vec(v);
    }
  const MetricsHistory& m = c.metrics;
  h.vec(m.step);
  h.vec(m.dropped);
  for (const auto* column : {&m.loss, &m.ce, &m.lr, &m.grad_norm, &m.tokens_per_s}) h.vec(*column);
  for (const auto& [k, v] : m.terms) {
    h.text(k);
    h.vec(v);
  }
  h.u64(static_cast<uint64_t>(m.layers));
  h.u64(static_cast<uint64_t>(m.experts));
  h.vec(m.expert_counts);
  for (const auto& [k, v] : m.layer_metrics) {
    h.text(k);
    h.vec(v);
  }
  if (m.ranks > 0) {  // files from before the per-rank history keep their checksum
    h.u64(static_cast<uint64_t>(m.ranks));
    for (const auto& [name, values] : rank_columns(m)) h.vec(*values);
  }
  // Files from before the balancing strength was logged keep their checksum: both are empty there.
  for (const auto& [k, v] : m.coefficients) {
    h.text(k);
    h.vec(v);
  }
  if (!m.bias_update_rate.empty()) h.vec(m.bias_update_rate);
  // Files from before the per-expert history and the idle state keep their checksum: all empty there.
  for (const auto& [name, values] : expert_columns(m))
    if (!values->empty()) {
      h.text(name);
      h.vec(*values);
    }
  if (!c.expert_last_active.empty()) h.vec(c.expert_last_active);
  // Files from before dead-expert revival keep their checksum: no revival, no window.
  if (!m.revival_step.empty())
    for (const auto& [name, values] : revival_columns(m)) h.vec(*values);
  if (!c.revival_window.empty()) h.vec(c.revival_window);
  h.vec(m.eval_step);
  h.vec(m.eval_loss);
  if (!m.trace_step.empty()) {  // files without routing traces keep their checksum
    h.vec(m.trace_step);
    h.u64(static_cast<uint64_t>(m.trace_tokens));
    h.u64(static_cast<uint64_t>(m.trace_k));
    h.vec(m.trace_experts);
  }
  return h.hex();
}

namespace {

void write_contents(h5::File& f, const Checkpoint& c) {
  crash_point("open");
  f.write_string_attribute("/", "format", kFormatName);
  f.write_string_attribute("/", "format_version", std::to_string(kFormatVersion));
  f.write_string_attribute("/", "engine_version", kEngineVersion);
  f.write_string_attribute("/", "config", c.config_yaml);
  f.write_string_attribute("/", "diagnostic", c.diagnostic);
  if (!c.upcycled_from.empty()) f.write_string_attribute("/", "upcycled_from", c.upcycled_from);
  for (const NamedArray& a : c.params) write_array(f, "/model/", a);
  crash_point("params");
  f.write_int64s("/optimizer/step", {c.optimizer_step}, {});
  for (const NamedArray& a : c.adam_m) write_array(f, "/optimizer/m/", a);
  for (const NamedArray& a : c.adam_v) write_array(f, "/optimizer/v/", a);
  for (const auto& [k, v] : c.hyperparameters) f.write_doubles("/optimizer/hyperparameters/" + k, {v}, {});
  crash_point("optimizer");
  for (const auto& [layer, bias] : c.router_bias)
    f.write_floats("/router/" + std::to_string(layer) + "/bias", bias, {static_cast<int64_t>(bias.size())});
  f.write_int64s("/state/step", {c.step}, {});
  f.write_int64s("/state/tokens_seen", {c.tokens_seen}, {});
  f.write_doubles("/state/lr", {c.lr}, {});
  for (const auto& [name, v] : c.rng) f.write_uint64s("/state/rng/" + name, v, {static_cast<int64_t>(v.size())});
  for (const auto& [name, v] : c.loaders) f.write_uint64s("/state/loader/" + name, v, {static_cast<int64_t>(v.size())});
  // Flat, like the optimizer's step: its shape is checked against the history's on read, and a
  // history of the wrong shape is refused there, by check_metrics_shape, with its own message.
  if (!c.expert_last_active.empty())
    f.write_int64s("/state/expert_last_active", c.expert_last_active, {static_cast<int64_t>(c.expert_last_active.size())});
  if (!c.revival_window.empty())
    f.write_int64s("/state/revival/window", c.revival_window, {static_cast<int64_t>(c.revival_window.size())});
  write_metrics(f, c.metrics);
  f.write_string_attribute("/", "checksum", checksum(c));  // last: marks the file complete
  f.flush();
  crash_point("flush");
  f.close();
}

}  // namespace

void write_checkpoint(const std::string& path, const Checkpoint& c) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp";
  // A save that fails (a full disk, above all) closes and deletes its .tmp and leaves `path`
  // as it was; the error says what failed and why.
  std::unique_ptr<h5::File> f;
  try {
    f = std::make_unique<h5::File>(tmp, h5::File::Mode::create, kHeaderBytes);
    write_contents(*f, c);
    f.reset();
    write_header(tmp);
    fsync_path(tmp, false);
  } catch (const std::exception& e) {
    if (f) f->discard();
    f.reset();
    std::error_code ec;
    fs::remove(tmp, ec);
    const std::string what = e.what();
    throw CheckpointError(
        what + (ec ? "; could not delete the partial file: " + ec.message() : "; the partial file was deleted"));
  }
  crash_point("rename");
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw CheckpointError(path + ": cannot move the new checkpoint into place: " + ec.message());
  }
  const fs::path folder = fs::path(path).parent_path();
  fsync_path(folder.empty() ? "." : folder.string(), true);
  crash_point("cleanup");
}

namespace {

// Everything a checkpoint holds, read and checked part by part; `stored_checksum` gets the
// checksum attribute, which the caller compares (a file edited on purpose has a stale one).
Checkpoint read_contents(const std::string& path, std::string* stored_checksum) {
  try {
    h5::File f(path, h5::File::Mode::read);
    if (!f.has_attribute("/", "format") || f.read_string_attribute("/", "format") != kFormatName)
      throw CheckpointError(path + ": not a moe-engine checkpoint (no 'format' attribute saying so)");
    const std::string version = f.read_string_attribute("/", "format_version");
    if (version != std::to_string(kFormatVersion))
      throw CheckpointError(path + ": checkpoint format version " + version + ", this build reads version " +
                            std::to_string(kFormatVersion));
    if (!f.has_attribute("/", "checksum"))
      throw CheckpointError(path + ": incomplete checkpoint (no checksum: the save did not finish)");
    Checkpoint c;
    c.config_yaml = f.read_string_attribute("/", "config");
    c.engine_version = f.read_string_attribute("/", "engine_version");
    c.diagnostic = f.read_string_attribute("/", "diagnostic");
    if (f.has_attribute("/", "upcycled_from")) c.upcycled_from = f.read_string_attribute("/", "upcycled_from");
    c.params = read_arrays(f, "/model");
    c.optimizer_step = read_int64_scalar(f, "/optimizer/step");
    c.adam_m = read_arrays(f, "/optimizer/m");
    c.adam_v = read_arrays(f, "/optimizer/v");
    if (f.exists("/optimizer/hyperparameters"))
      for (const std::string& k : f.members("/optimizer/hyperparameters"))
        c.hyperparameters[k] = read_double_scalar(f, "/optimizer/hyperparameters/" + k);
    if (f.exists("/router"))
      for (const std::string& layer : f.members("/router")) {
        char* end = nullptr;
        const long long index = std::strtoll(layer.c_str(), &end, 10);
        if (layer.empty() || *end != '\0' || index < 0)
          throw CheckpointError(path + ": /router/" + layer + ": a layer index is expected");
        c.router_bias[index] = f.read_floats("/router/" + layer + "/bias");
      }
    c.step = read_int64_scalar(f, "/state/step");
    c.tokens_seen = read_int64_scalar(f, "/state/tokens_seen");
    c.lr = read_double_scalar(f, "/state/lr");
    for (const std::string& name : f.members("/state/rng")) c.rng[name] = read_u64s(f, "/state/rng/" + name, 2);
    for (const std::string& name : f.members("/state/loader"))
      c.loaders[name] = read_u64s(f, "/state/loader/" + name, 3);
    if (f.exists("/state/revival/window")) c.revival_window = f.read_int64s("/state/revival/window");
    c.metrics = read_metrics(f);
    if (f.exists("/state/expert_last_active")) c.expert_last_active = f.read_int64s("/state/expert_last_active");
    *stored_checksum = f.read_string_attribute("/", "checksum");
    return c;
  } catch (const h5::Error& e) {
    throw CheckpointError(e.what());
  }
}

}  // namespace

void check_consistency(const Checkpoint& c, const std::string& path) {
  auto same_names = [&](const std::vector<NamedArray>& a, const char* group) {
    if (a.size() != c.params.size())
      throw CheckpointError(path + ": " + group + ": holds " + std::to_string(a.size()) + " tensors, /model holds " +
                            std::to_string(c.params.size()));
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].name != c.params[i].name || a[i].shape != c.params[i].shape)
        throw CheckpointError(path + ": " + group + "/" + a[i].name + ": does not match /model/" + c.params[i].name);
  };
  same_names(c.adam_m, "/optimizer/m");
  same_names(c.adam_v, "/optimizer/v");
  check_metrics_shape(path, c);
  if (!c.expert_last_active.empty() &&
      static_cast<int64_t>(c.expert_last_active.size()) != c.metrics.layers * c.metrics.experts)
    throw CheckpointError(path + ": /state/expert_last_active: must hold MoE layers x experts = " +
                          std::to_string(c.metrics.layers * c.metrics.experts) + " values, like /metrics/expert_counts");
}

Checkpoint read_checkpoint(const std::string& path) {
  check_header(path, HeaderCheck::whole);
  std::string stored;
  Checkpoint c = read_contents(path, &stored);
  if (stored != checksum(c))
    throw CheckpointError(path + ": corrupted checkpoint: checksum " + checksum(c) + " does not match the stored " +
                          stored);
  check_consistency(c, path);
  return c;
}

Checkpoint read_edited_checkpoint(const std::string& path, Seals* seals) {
  const bool header = check_header(path, HeaderCheck::identity);
  std::string stored;
  Checkpoint c = read_contents(path, &stored);
  if (seals) *seals = Seals{header, stored == checksum(c)};
  return c;
}

void copy_checkpoint_file(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  const std::string tmp = to + ".tmp";
  std::error_code ec;
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (!ec) {
    try {
      fsync_path(tmp, false);
    } catch (const CheckpointError&) {
      fs::remove(tmp, ec);
      throw;
    }
    fs::rename(tmp, to, ec);
  }
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw CheckpointError(to + ": cannot copy " + from + " there: " + ec.message() + "; the partial file was deleted");
  }
  const fs::path folder = fs::path(to).parent_path();
  fsync_path(folder.empty() ? "." : folder.string(), true);
}

}  // namespace ckpt
