#include "tools/lib/assemble/seal.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <vector>

#include "tools/lib/assemble/assemble.h"
#include "tools/lib/hdf5/hdf5_file.h"

namespace assemble {

namespace {

namespace rc = runconfig;
using ckpt::CheckpointError;

// "[2, 5]": the position of a flat index in a row-major tensor, as numpy would index it.
std::string position(const std::vector<int64_t>& shape, int64_t flat) {
  std::vector<int64_t> at(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    at[d] = shape[d] > 0 ? flat % shape[d] : 0;
    flat = shape[d] > 0 ? flat / shape[d] : 0;
  }
  std::string s = "[";
  for (size_t d = 0; d < at.size(); ++d) s += (d ? ", " : "") + std::to_string(at[d]);
  return s + "]";
}

std::string number(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  return buf;
}

// One stored tensor against what the model expects: shape, stored type, values.
class TensorCheck {
 public:
  TensorCheck(const std::string& path, const h5::File& file) : path_(path), file_(file) {}

  void check(const std::string& object, const std::vector<int64_t>& shape, const std::vector<float>& values,
             const std::vector<int64_t>& expected, bool non_negative = false) {
    if (shape != expected)
      fail(object, "has shape " + engine::shape_str(shape) + ", the model built from its config expects " +
                       engine::shape_str(expected));
    // The readers convert any float width, and sealing would write float32: a float64 array
    // (h5py's default for a new numpy array) would lose its digits without a word.
    const std::string stored = file_.element_type(object);
    if (stored != "float32")
      fail(object, "stored as " + stored + ", checkpoints hold float32 (write it with dtype=\"float32\")");
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i]))
        fail(object, "holds " + std::string(std::isnan(values[i]) ? "NaN" : "an infinity") + " at " +
                         position(shape, static_cast<int64_t>(i)));
      // AdamW divides by sqrt(v) + eps: a negative second moment gives NaN at the next step.
      if (non_negative && values[i] < 0)
        fail(object, "holds " + number(values[i]) + " at " + position(shape, static_cast<int64_t>(i)) +
                         ": AdamW's second moment is an average of squares, never negative");
    }
    ++checked_;
  }
  [[noreturn]] void fail(const std::string& object, const std::string& what) const {
    throw CheckpointError(path_ + ": " + object + ": " + what);
  }
  int64_t checked() const { return checked_; }

 private:
  const std::string& path_;
  const h5::File& file_;
  int64_t checked_ = 0;
};

}  // namespace

int64_t check_edited_tensors(const ckpt::Checkpoint& c, const std::string& path) {
  rc::RunConfig cfg = saved_config(c, path, "checkpoint");
  // Shapes depend on neither: a checkpoint of a CUDA or bf16 run is checked on any machine.
  cfg.device = rc::DeviceKind::cpu;
  cfg.precision = rc::PrecisionKind::f32;
  const moe::TransformerLM model(model_config(cfg));
  h5::File file(path, h5::File::Mode::read);
  TensorCheck check(path, file);

  struct Group {
    const char* name;
    const std::vector<ckpt::NamedArray>* arrays;
    const char* missing;  // why a parameter needs an entry here
  };
  const Group groups[] = {{"/model", &c.params, "the model built from its config has this parameter"},
                          {"/optimizer/m", &c.adam_m, "AdamW's first moment of /model/"},
                          {"/optimizer/v", &c.adam_v, "AdamW's second moment of /model/"}};
  for (const Group& g : groups) {
    std::map<std::string, const ckpt::NamedArray*> stored;
    for (const ckpt::NamedArray& a : *g.arrays) stored[a.name] = &a;
    const bool moments = std::string(g.name) != "/model";
    for (const moe::NamedParam& p : model.params().all()) {
      const std::string object = std::string(g.name) + "/" + p.name;
      auto it = stored.find(p.name);
      if (it == stored.end()) check.fail(object, std::string("missing (") + g.missing + (moments ? p.name : "") + ")");
      check.check(object, it->second->shape, it->second->values, p.tensor.shape(),
                  std::string(g.name) == "/optimizer/v");
      stored.erase(it);
    }
    if (!stored.empty())
      check.fail(std::string(g.name) + "/" + stored.begin()->first,
                 "not a parameter of the model built from its config");
  }

  std::map<int64_t, int64_t> experts;  // MoE block -> E
  const moe::ModelConfig& m = model.config();
  for (int64_t l = 0; l < m.n_layers; ++l)
    if (moe::is_moe_layer(m, l)) experts[l] = m.moe.router.num_experts;
  for (const auto& [block, e] : experts) {
    const std::string object = "/router/" + std::to_string(block) + "/bias";
    auto it = c.router_bias.find(block);
    if (it == c.router_bias.end())
      check.fail(object,
                 "missing (block " + std::to_string(block) + " is a MoE layer of " + std::to_string(e) + " experts)");
    check.check(object, file.dims(object), it->second, {e});
  }
  for (const auto& [block, bias] : c.router_bias)
    if (!experts.count(block))
      check.fail("/router/" + std::to_string(block) + "/bias",
                 "block " + std::to_string(block) + " is not a MoE layer of the model built from its config");
  // Not tensors, but a resume stops without them: the generators and data cursors it restores.
  const std::vector<std::pair<const char*, bool>> state = {{"/state/rng/router_noise", c.rng.count("router_noise") > 0},
                                                           {"/state/rng/dropout", c.rng.count("dropout") > 0},
                                                           {"/state/loader/train", c.loaders.count("train") > 0},
                                                           {"/state/loader/eval", c.loaders.count("eval") > 0}};
  for (const auto& [object, present] : state)
    if (!present) check.fail(object, "missing");
  if (cfg.moe.revival.check_every > 0 && !c.rng.count("revival"))
    check.fail("/state/rng/revival", "missing (moe.revival is on)");
  ckpt::check_consistency(c, path);
  return check.checked();
}

SealResult seal_checkpoint(const std::string& in, const std::string& out) {
  namespace fs = std::filesystem;
  SealResult r;
  const ckpt::Checkpoint c = ckpt::read_edited_checkpoint(in, &r.found);
  r.tensors = check_edited_tensors(c, in);
  std::error_code ec;
  const bool in_place = fs::exists(out, ec) && fs::equivalent(in, out, ec);
  if (r.found.header && r.found.checksum) {
    // Unedited: rewriting would change bytes (the engine version, HDF5's layout) for nothing.
    if (!in_place) ckpt::copy_checkpoint_file(in, out);
    r.wrote = !in_place;
    return r;
  }
  ckpt::write_checkpoint(out, c);
  r.wrote = true;
  return r;
}

}  // namespace assemble
