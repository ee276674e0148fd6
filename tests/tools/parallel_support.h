// Shared by the multi-process test files (test_parallel.cpp, test_parallel_devices.cpp): a small
// config, training a run on a sub-group of the world ranks or in one process on rank 0, and the
// comparison of the two, decided on rank 0 and broadcast. See test_parallel.cpp for how a
// multi-rank run and its one-process equivalent correspond.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/dist/world.h"
#include "models/moe_layer.h"
#include "tools/lib/config/run_config.h"
#include "tools/lib/train/parallel.h"
#include "tools/lib/train/trainer.h"

namespace parallel_test {

namespace rc = runconfig;
using train::ProcessGroups;
using train::Trainer;

extern std::shared_ptr<engine::dist::Communicator> g_world;  // defined in test_parallel.cpp

inline rc::RunConfig small_config(rc::RouterKind router) {
  rc::RunConfig c;
  c.model.vocab_size = 64;
  c.model.d_model = 32;
  c.model.n_layers = 2;
  c.model.n_heads = 2;
  c.model.max_seq_len = 16;
  c.model.d_ff = 64;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.d_expert = 32;
  c.moe.router = router;
  c.moe.losses.switch_aux = 0.01;
  c.moe.losses.z_loss = 0.001;
  c.moe.balance_scope = rc::BalanceScope::global_batch;
  c.training.steps = 10;
  c.training.batch_size = 2;
  c.training.seq_len = 16;
  c.training.eval_every = 0;
  c.training.eval_batches = 1;
  c.schedule.warmup_steps = 1;
  // The key third of the attention's qkv bias has an exactly zero gradient (softmax ignores a
  // constant added to all of a query's scores), so what is computed for it is rounding noise,
  // different in any two summation orders; AdamW with eps 1e-8 turns noise of 1e-10 into
  // full-size steps. eps 1e-5 keeps such steps small and leaves real gradients (>= 1e-4 here)
  // as they are, so parameters can be compared at 1e-5.
  c.optimizer.eps = 1e-5;
  c.logging.out_dir = "";  // nothing written unless a case sets a folder
  return c;
}

struct Trace {
  std::vector<double> loss, ce, grad_norm;
  std::map<std::string, std::vector<double>> terms;
  std::vector<std::vector<int64_t>> counts;  // last step
  int64_t fewest = -1;                       // the smallest count of any expert in any step
  std::vector<ckpt::NamedArray> params;      // final, every expert (on the writing rank)
  // Per logged step, every layer's experts in turn (tools/lib/train/expert_health.h): with
  // expert parallelism each rank measures its own experts, and every rank must hold them all.
  std::vector<double> expert_grad_norm, expert_update_ratio, idle_share;
  std::vector<int64_t> logged;  // the steps they were measured at
  std::vector<int64_t> revived;              // the experts moe.revival re-initialized, in order
};

inline void record(Trace& t, const train::StepMetrics& m) {
  t.loss.push_back(m.loss);
  t.ce.push_back(m.ce);
  t.grad_norm.push_back(m.grad_norm);
  for (const auto& [name, value] : m.terms) t.terms[name].push_back(value);
  t.counts = m.counts;
  if (!m.layers.empty()) t.logged.push_back(m.step);
  for (const collapse::LayerStats& s : m.layers) {
    t.expert_grad_norm.insert(t.expert_grad_norm.end(), s.expert_grad_norm.begin(), s.expert_grad_norm.end());
    t.expert_update_ratio.insert(t.expert_update_ratio.end(), s.expert_update_ratio.begin(),
                                 s.expert_update_ratio.end());
    t.idle_share.push_back(s.idle_share);
  }
  for (const auto& layer : m.counts)
    for (int64_t c : layer) t.fewest = t.fewest < 0 ? c : std::min(t.fewest, c);
}

inline void finish(Trace& t, Trainer& trainer) {
  ckpt::Checkpoint c = trainer.snapshot();  // a collective: rank 0 gathers the experts
  t.params = c.params;
  t.revived = c.metrics.revival_expert;
  std::sort(t.params.begin(), t.params.end(),
            [](const ckpt::NamedArray& a, const ckpt::NamedArray& b) { return a.name < b.name; });
}

inline Trace train_steps(const rc::RunConfig& c, const ProcessGroups& g, int steps) {
  std::ostringstream quiet;
  Trainer trainer(c, quiet, nullptr, g);
  Trace t;
  for (int s = 0; s < steps; ++s) record(t, trainer.step());
  finish(t, trainer);
  return t;
}

// The run on the first `ranks` world ranks with expert parallelism `expert`; the others wait.
// Returns the trace (complete on world rank 0).
inline Trace train_parallel(rc::RunConfig c, int ranks, int expert, int steps = 10) {
  const bool member = g_world->rank() < ranks;
  auto sub = g_world->split(member ? 0 : 1);
  if (!member) return {};
  c.parallel.expert = expert;
  return train_steps(c, ProcessGroups::make(sub, expert), steps);
}

// The one-process equivalent of a run with expert parallelism `expert` groups its experts into
// that run's devices for device_aux, which moe.device_groups 0 takes from parallel.expert.
inline rc::RunConfig grouped_as(rc::RunConfig c, int expert) {
  if (c.moe.device_groups == 0) c.moe.device_groups = expert;
  return c;
}

inline Trace train_alone(rc::RunConfig c, int batch, int accum, int steps = 10) {
  c.training.batch_size = batch;
  c.training.grad_accum = accum;
  if (g_world->rank() != 0) return {};
  return train_steps(c, ProcessGroups::single(), steps);
}

inline double relative(double a, double b) { return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-30}); }

// Every difference beyond `tolerance` (relative; tensors: max |a-b| over max |b|), one line
// each; empty when the traces agree. tolerance 0: bit for bit.
inline std::string differences(const Trace& a, const Trace& b, double tolerance) {
  std::ostringstream out;
  auto series = [&](const std::string& name, const std::vector<double>& x, const std::vector<double>& y,
                    double within = -1) {
    if (within < 0) within = tolerance;
    if (x.size() != y.size()) {
      out << name << ": " << x.size() << " vs " << y.size() << " steps\n";
      return;
    }
    for (size_t s = 0; s < x.size(); ++s)
      if (relative(x[s], y[s]) > within || std::isnan(x[s]) != std::isnan(y[s]))
        out << name << " at step " << s + 1 << ": " << x[s] << " vs " << y[s] << "\n";
  };
  series("loss", a.loss, b.loss);
  series("ce", a.ce, b.ce);
  series("grad_norm", a.grad_norm, b.grad_norm);
  for (const auto& [name, values] : b.terms) {
    if (name == "importance" || name == "load") continue;  // measured per micro-batch in any scope
    series(name, a.terms.count(name) ? a.terms.at(name) : std::vector<double>{}, values);
  }
  if (a.counts != b.counts) out << "expert counts of the last step differ\n";
  // Entries are (logged step, layer, expert); an expert's update is a difference of nearly equal
  // parameters, so it agrees to fewer digits than the parameters themselves.
  series("expert_grad_norm", a.expert_grad_norm, b.expert_grad_norm, tolerance == 0 ? 0 : std::max(tolerance, 1e-4));
  series("expert_update_ratio", a.expert_update_ratio, b.expert_update_ratio,
         tolerance == 0 ? 0 : std::max(tolerance, 1e-2));
  series("idle_share", a.idle_share, b.idle_share, 0);
  if (a.params.size() != b.params.size())
    out << "parameters: " << a.params.size() << " tensors vs " << b.params.size() << "\n";
  for (size_t i = 0; i < a.params.size() && i < b.params.size(); ++i) {
    const ckpt::NamedArray &x = a.params[i], &y = b.params[i];
    if (x.name != y.name || x.values.size() != y.values.size()) {
      out << "parameter " << x.name << " vs " << y.name << "\n";
      continue;
    }
    double diff = 0, scale = 0;
    for (size_t k = 0; k < x.values.size(); ++k) {
      diff = std::max(diff, static_cast<double>(std::abs(x.values[k] - y.values[k])));
      scale = std::max(scale, static_cast<double>(std::abs(y.values[k])));
    }
    if (diff > tolerance * std::max(scale, 1e-30) || (tolerance == 0 && diff != 0))
      out << "parameter " << x.name << ": max difference " << diff << " (max value " << scale << ")\n";
  }
  return out.str();
}

// Rank 0's verdict on every rank.
inline std::string verdict(const std::string& mine) { return g_world->broadcast(mine, 0); }

struct Layout {
  int ranks, expert;
};
inline const Layout kLayouts[] = {{2, 1}, {2, 2}, {4, 1}, {4, 2}, {4, 4}};

// Every layout against its one-process equivalent (global-batch scope).
inline void check_layouts(const rc::RunConfig& c) {
  for (const Layout& l : kLayouts) {
    const Trace many = train_parallel(c, l.ranks, l.expert);
    const bool capacity = c.moe.capacity_factor > 0;
    const int batch = c.training.batch_size;
    const rc::RunConfig alone = grouped_as(c, l.expert);
    const Trace one =
        capacity ? train_alone(alone, l.expert * batch, l.ranks / l.expert) : train_alone(alone, l.ranks * batch, 1);
    const std::string diff = verdict(g_world->rank() == 0 ? differences(many, one, 1e-5) : "");
    INFO(l.ranks << " ranks, parallel.expert " << l.expert << ":\n" << diff);
    CHECK(diff.empty());
  }
}

}  // namespace parallel_test
