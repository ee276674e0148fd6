#include "tools/lib/refcheck/refcheck.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include "tools/lib/hdf5/hdf5_file.h"
#include "tools/lib/train/trainer.h"

namespace refcheck {

using engine::Tensor;
namespace rc = runconfig;

namespace {

// The reference's one batch, served for every step the trainer asks for.
class FixedBatch : public data::TokenSource {
 public:
  FixedBatch(data::Batch batch, int32_t vocab) : TokenSource(0), batch_(std::move(batch)), vocab_(vocab) {}
  data::Batch next_batch(int64_t b, int64_t t) override {
    ENGINE_CHECK(b == batch_.inputs.size(0) && t == batch_.inputs.size(1), "refcheck",
                 "the trainer asked for a different batch shape than the reference's");
    ++position_;
    return batch_;
  }
  int32_t vocab_size() const override { return vocab_; }

 private:
  data::Batch batch_;
  int32_t vocab_;
};

Comparison compare_scalar(const std::string& what, double engine, double ref, double tolerance) {
  Comparison c{what, std::fabs(engine - ref), 0, tolerance};
  c.max_rel = ref != 0 ? c.max_abs / std::fabs(ref) : c.max_abs;
  return c;
}

Comparison compare_tensor(const std::string& what, const std::vector<float>& engine, const std::vector<float>& ref,
                          double tolerance) {
  Comparison c{what, 0, 0, tolerance};
  double scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(engine[i]) - ref[i]);
    if (!(d <= c.max_abs)) c.max_abs = d;  // a NaN sticks
    scale = std::max(scale, static_cast<double>(std::fabs(ref[i])));
  }
  c.max_rel = scale > 0 ? c.max_abs / scale : c.max_abs;
  return c;
}

Comparison missing(const std::string& what, const std::string& where, double tolerance) {
  const double inf = std::numeric_limits<double>::infinity();
  return Comparison{what + " (missing in the " + where + ")", inf, inf, tolerance};
}

[[noreturn]] void bad_file(const h5::File& f, const std::string& object, const std::string& what) {
  throw std::runtime_error(f.path() + ": " + object + ": " + what);
}

// Copies /params into the model, requiring the same names and shapes in both.
void load_parameters(const h5::File& f, moe::ParamStore& store) {
  std::set<std::string> in_file;
  for (const std::string& n : f.members("/params")) in_file.insert(n);
  for (moe::NamedParam& p : store.all()) {
    const std::string ds = "/params/" + p.name;
    if (!in_file.erase(p.name)) bad_file(f, ds, "missing (the model built from /config has this parameter)");
    h5::Dims dims;
    std::vector<float> values = f.read_floats(ds, &dims);
    if (engine::Shape(dims.begin(), dims.end()) != p.tensor.shape())
      bad_file(f, ds,
               "has shape " + engine::shape_str(engine::Shape(dims.begin(), dims.end())) + ", the model expects " +
                   engine::shape_str(p.tensor.shape()));
    std::copy(values.begin(), values.end(), p.tensor.data<float>());
  }
  if (!in_file.empty())
    bad_file(f, "/params/" + *in_file.begin(), "is not a parameter of the model built from /config");
}

// One router draw of every MoE layer and step from /GROUP/layers.<l> [S, tokens, width]:
// [S][layer]. Only for layers' draws the config makes (read when `present`).
void read_draws(const h5::File& f, const moe::ModelConfig& mc, const std::string& group, int64_t tokens, int64_t width,
                const char* what, Tensor moe::RouterReplay::*slot, std::vector<std::vector<moe::RouterReplay>>& per_step) {
  size_t moe_index = 0;
  for (int64_t l = 0; l < mc.n_layers; ++l) {
    if (!moe::is_moe_layer(mc, l)) continue;
    const std::string ds = "/" + group + "/layers." + std::to_string(l);
    h5::Dims dims;
    std::vector<float> v = f.read_floats(ds, &dims);
    if (dims.size() != 3 || dims[0] < static_cast<int64_t>(per_step.size()) || dims[1] != tokens || dims[2] != width)
      bad_file(f, ds,
               "must be [S >= " + std::to_string(per_step.size()) + ", " + std::to_string(tokens) + ", " +
                   std::to_string(width) + "] (steps, tokens, " + what + ")");
    for (size_t s = 0; s < per_step.size(); ++s) {
      std::vector<float> step(v.begin() + s * tokens * width, v.begin() + (s + 1) * tokens * width);
      per_step[s][moe_index].*slot = Tensor::from_vector(step, {tokens, width});
    }
    ++moe_index;
  }
}

// Per step and MoE layer, the router draws the reference carries: noisy_topk's eps (/noise) and
// the input jitter's multipliers (/jitter).
std::vector<std::vector<moe::RouterReplay>> read_router_draws(const h5::File& f, const rc::RunConfig& cfg,
                                                              const moe::ModelConfig& mc, int64_t tokens,
                                                              int64_t steps) {
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < mc.n_layers; ++l) moe_layers += moe::is_moe_layer(mc, l);
  std::vector<std::vector<moe::RouterReplay>> per_step(static_cast<size_t>(std::max<int64_t>(steps, 1)),
                                                       std::vector<moe::RouterReplay>(moe_layers));
  if (cfg.moe.router == rc::RouterKind::noisy_topk)
    read_draws(f, mc, "noise", tokens, cfg.moe.num_experts, "experts", &moe::RouterReplay::noise, per_step);
  if (cfg.moe.input_jitter > 0)
    read_draws(f, mc, "jitter", tokens, cfg.model.d_model, "d_model", &moe::RouterReplay::jitter, per_step);
  return per_step;
}

}  // namespace

bool Report::ok() const {
  return !rows.empty() && std::all_of(rows.begin(), rows.end(), [](const Comparison& c) { return c.ok(); });
}

const Comparison* Report::worst() const {
  const Comparison* w = nullptr;
  for (const Comparison& c : rows)
    if (!w || !(c.max_rel / c.tolerance <= w->max_rel / w->tolerance)) w = &c;
  return w;
}

Report check_reference(const std::string& path, const Tolerances& tol, bool bf16) {
  h5::File f(path, h5::File::Mode::read);
  rc::RunConfig cfg = rc::parse_run_config(f.read_string_attribute("/", "config"), path + ":/config");
  cfg.logging.out_dir.clear();       // no run folder: nothing is written
  cfg.device = rc::DeviceKind::cpu;  // the tolerances are the CPU's float32
  // The references are float64 products: f32 unless the bf16 path is what is checked.
  cfg.precision = bf16 ? rc::PrecisionKind::bf16 : rc::PrecisionKind::f32;
  cfg.data = rc::DataConfig{};       // the batch comes from the file; no data files are opened
  if (cfg.model.dropout != 0) bad_file(f, "/config", "model.dropout must be 0 in a reference (masks are not carried)");
  if (cfg.training.grad_accum != 1) bad_file(f, "/config", "training.grad_accum must be 1 in a reference");
  Report report;
  report.source = path;
  report.router = rc::to_string(cfg.moe.router);

  h5::Dims in_dims, tgt_dims;
  const std::vector<int32_t> inputs = f.read_ints("/batch/inputs", &in_dims);
  const std::vector<int32_t> targets = f.read_ints("/batch/targets", &tgt_dims);
  if (in_dims != h5::Dims{cfg.training.batch_size, cfg.training.seq_len})
    bad_file(f, "/batch/inputs",
             "must be [training.batch_size, training.seq_len] = [" + std::to_string(cfg.training.batch_size) + ", " +
                 std::to_string(cfg.training.seq_len) + "] as in /config");
  if (tgt_dims != in_dims) bad_file(f, "/batch/targets", "must have the shape of /batch/inputs");
  for (int32_t v : inputs)
    if (v < 0 || v >= cfg.model.vocab_size) bad_file(f, "/batch/inputs", "holds a token outside the vocabulary");
  for (int32_t v : targets)
    if (v < 0 || v >= cfg.model.vocab_size) bad_file(f, "/batch/targets", "holds a token outside the vocabulary");
  data::Batch batch;
  batch.inputs = Tensor::from_vector(inputs, {in_dims[0], in_dims[1]});
  batch.targets = Tensor::from_vector(targets, {in_dims[0], in_dims[1]});
  batch.domains.assign(static_cast<size_t>(in_dims[0]), -1);

  std::vector<float> step_losses;
  if (f.exists("/expected/steps/loss")) step_losses = f.read_floats("/expected/steps/loss");
  std::ostringstream quiet;
  train::Trainer trainer(cfg, quiet, std::make_unique<FixedBatch>(batch, cfg.model.vocab_size));
  moe::TransformerLM& model = trainer.model();
  load_parameters(f, model.params());
  const auto draws =
      read_router_draws(f, cfg, model.config(), in_dims[0] * in_dims[1], static_cast<int64_t>(step_losses.size()));

  // Evaluation at the reference's parameters, where the file has it: no noise, no jitter, the
  // evaluation capacity, plain top-k for sinkhorn.
  if (f.exists("/expected/eval/loss")) {
    moe::ForwardResult eval = model.forward(batch.inputs, batch.targets, false);
    report.rows.push_back(
        compare_tensor("eval/logits", eval.logits.to_float_vector(), f.read_floats("/expected/eval/logits"), tol.logits));
    report.rows.push_back(compare_scalar("eval/loss", eval.ce.item(), f.read_scalar("/expected/eval/loss"), tol.loss));
    engine::clear_tape();
  }

  // Forward and backward at the reference's parameters.
  model.replay_router_draws(draws[0]);
  moe::ForwardResult out = model.forward(batch.inputs, batch.targets, true);
  h5::Dims logit_dims;
  const std::vector<float> ref_logits = f.read_floats("/expected/logits", &logit_dims);
  if (engine::Shape(logit_dims.begin(), logit_dims.end()) != out.logits.shape())
    bad_file(f, "/expected/logits", "must be " + engine::shape_str(out.logits.shape()));
  report.rows.push_back(compare_tensor("logits", out.logits.to_float_vector(), ref_logits, tol.logits));
  report.rows.push_back(compare_scalar("loss/total", out.loss.item(), f.read_scalar("/expected/loss/total"), tol.loss));
  report.rows.push_back(compare_scalar("loss/ce", out.ce.item(), f.read_scalar("/expected/loss/ce"), tol.loss));
  std::set<std::string> ref_terms;
  for (const std::string& n : f.members("/expected/loss"))
    if (n != "total" && n != "ce") ref_terms.insert(n);
  for (const auto& [name, value] : out.terms) {
    if (!ref_terms.erase(name)) {
      report.rows.push_back(missing("loss/" + name, "reference", tol.loss));
      continue;
    }
    report.rows.push_back(compare_scalar("loss/" + name, value, f.read_scalar("/expected/loss/" + name), tol.loss));
  }
  for (const std::string& name : ref_terms) report.rows.push_back(missing("loss/" + name, "engine", tol.loss));

  engine::backward(out.loss);
  for (moe::NamedParam& p : model.params().all()) {
    const std::string ds = "/expected/grads/" + p.name;
    h5::Dims dims;
    const std::vector<float> ref = f.read_floats(ds, &dims);
    if (engine::Shape(dims.begin(), dims.end()) != p.tensor.shape())
      bad_file(f, ds, "must be " + engine::shape_str(p.tensor.shape()));
    const Tensor g = p.tensor.grad();
    const std::vector<float> mine = g.defined() ? g.to_float_vector() : std::vector<float>(ref.size(), 0.0f);
    report.rows.push_back(compare_tensor("grad/" + p.name, mine, ref, tol.grads));
    p.tensor.zero_grad();
  }

  // The training steps, through the real loop.
  for (size_t s = 0; s < step_losses.size(); ++s) {
    model.replay_router_draws(draws[s]);
    const train::StepMetrics m = trainer.step();
    report.rows.push_back(compare_scalar("step " + std::to_string(s + 1) + " loss", m.loss, step_losses[s], tol.steps));
  }
  return report;
}

void print_report(const Report& r, std::ostream& out, bool verbose) {
  size_t failed = 0;
  char line[256];
  for (const Comparison& c : r.rows) {
    if (!c.ok()) ++failed;
    if (!verbose && c.ok()) continue;
    std::snprintf(line, sizeof line, "  %-52s max abs %9.3e  max rel %9.3e  tol %7.1e  %s\n", c.what.c_str(), c.max_abs,
                  c.max_rel, c.tolerance, c.ok() ? "ok" : "FAIL");
    out << line;
  }
  const Comparison* w = r.worst();
  out << r.source << " (router " << r.router << "): " << (r.ok() ? "PASS" : "FAIL") << ", " << r.rows.size()
      << " comparisons";
  if (failed) out << ", " << failed << " beyond tolerance";
  if (w) {
    std::snprintf(line, sizeof line, "; worst %s at %.2e (tol %.0e)", w->what.c_str(), w->max_rel, w->tolerance);
    out << line;
  }
  out << "\n";
}

}  // namespace refcheck
