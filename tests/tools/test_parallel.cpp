// Multi-process training against one process: run under mpirun with 4 ranks (CTest does; see
// tests/tools/CMakeLists.txt). Each case trains the same small model 10 steps on sub-groups of
// 2 and 4 ranks with several expert-parallel layouts, then world rank 0 trains the one-process
// run of the same global batch and compares every logged number and every final parameter.
//
// The one-process equivalent of R ranks with expert parallelism P and micro-batch b, in the
// global-batch balance scope (f_i over the whole step): batch R*b; with a capacity, batch P*b
// and grad_accum R/P (capacity counts one expert group's tokens, the P*b of one micro-batch).
// The capacity cases use routers without noise: rank r draws rows r*b... of each random draw a
// batch of R*b would make, which equals one process drawing R*b rows at once, not R/P
// micro-batches drawing in turn. For the micro-batch scope it is batch b with grad_accum R
// (each balance term on one rank's batch), with P = 1. In every case the one process groups its
// experts into P devices for device_aux (moe.device_groups P), as the parallel run's ranks do.
//
// Rank 0 decides; its verdict is broadcast so that every rank passes or fails the same check
// (Catch2 on other ranks prints nothing).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "engine/dist/world.h"
#include "models/moe_layer.h"
#include "tests/tools/parallel_support.h"
#include "tools/lib/config/run_config.h"
#include "tools/lib/train/parallel.h"
#include "tools/lib/train/trainer.h"

namespace parallel_test {
std::shared_ptr<engine::dist::Communicator> g_world;
}  // namespace parallel_test

using namespace parallel_test;  // with its rc = runconfig, ProcessGroups and Trainer

TEST_CASE("parallel: topk_softmax over 2 and 4 ranks equals one process", "[parallel]") {
  check_layouts(small_config(rc::RouterKind::topk_softmax));
}

TEST_CASE("parallel: sigmoid_topk with loss-free bias equals one process", "[parallel]") {
  rc::RunConfig c = small_config(rc::RouterKind::sigmoid_topk);
  c.moe.bias_update_rate = 0.01;
  check_layouts(c);
}

TEST_CASE("parallel: noisy_topk (each rank its rows of the noise) equals one process", "[parallel]") {
  check_layouts(small_config(rc::RouterKind::noisy_topk));
}

TEST_CASE("parallel: routing options (jitter rows per rank and groups and scaling and softmax after top-k) equal one process",
          "[parallel][routing]") {
  rc::RunConfig c = small_config(rc::RouterKind::noisy_topk);
  c.moe.input_jitter = 0.1;
  c.moe.expert_groups = 2;
  c.moe.topk_groups = 1;
  c.moe.routed_scaling = 2.0;
  check_layouts(c);
  c = small_config(rc::RouterKind::topk_softmax);
  c.moe.softmax_order = rc::SoftmaxOrder::after_topk;
  c.moe.input_jitter = 0.1;
  check_layouts(c);
}

TEST_CASE("parallel: switch with capacity drops what one process drops", "[parallel]") {
  for (rc::DropPolicy policy : {rc::DropPolicy::position, rc::DropPolicy::score}) {
    rc::RunConfig c = small_config(rc::RouterKind::switch_k1);
    c.moe.top_k = 1;
    c.moe.capacity_factor = 1.0;
    c.moe.drop_policy = policy;
    INFO("drop_policy " << rc::to_string(policy));
    check_layouts(c);
  }
}

TEST_CASE("parallel: an expert no token reaches is left alone as in one process", "[parallel]") {
  // The hash router over a vocabulary of 4 tokens reaches at most 4 of 8 experts: the others get
  // no token, so no gradient, and AdamW must not move them (nor decay their moments) on any rank.
  rc::RunConfig c = small_config(rc::RouterKind::hash);
  c.moe.top_k = 1;
  c.moe.num_experts = 8;
  c.moe.losses.z_loss = 0;  // the hash router has no logits
  c.model.vocab_size = 4;
  const Trace many = train_parallel(c, 4, 4);
  const Trace one = train_alone(grouped_as(c, 4), 4 * c.training.batch_size, 1);
  std::string diff;
  if (g_world->rank() == 0) {
    diff = differences(many, one, 1e-5);
    if (one.fewest != 0) diff += "no expert went without tokens: the case tests nothing\n";
  }
  diff = verdict(diff);
  INFO(diff);
  CHECK(diff.empty());
}

TEST_CASE("parallel: expert_choice picks over the expert group as one process does", "[parallel]") {
  rc::RunConfig c = small_config(rc::RouterKind::expert_choice);
  c.moe.capacity_factor = 1.0;
  check_layouts(c);
}

TEST_CASE("parallel: micro_batch scope equals one process with grad_accum = ranks", "[parallel]") {
  rc::RunConfig c = small_config(rc::RouterKind::topk_softmax);
  c.moe.balance_scope = rc::BalanceScope::micro_batch;
  c.moe.losses.importance = 0.01;
  for (int ranks : {2, 4}) {
    const Trace many = train_parallel(c, ranks, 1);
    const Trace one = train_alone(c, c.training.batch_size, ranks);
    // Here every term, importance included, is a mean of per-micro-batch values on both sides.
    std::string diff;
    if (g_world->rank() == 0) {
      diff = differences(many, one, 1e-5);
      if (many.terms.at("importance").size() != one.terms.at("importance").size()) diff += "importance steps\n";
      for (size_t s = 0; s < one.terms.at("importance").size(); ++s)
        if (relative(many.terms.at("importance")[s], one.terms.at("importance")[s]) > 1e-5)
          diff += "importance at step " + std::to_string(s + 1) + "\n";
    }
    diff = verdict(diff);
    INFO(ranks << " ranks:\n" << diff);
    CHECK(diff.empty());
  }
}

// Every rank sees the all-reduced counts and draws from an unsharded generator, so each revives
// the same experts with the same values. Every expert below the uniform share is dead: every check
// (steps 3, 6, 9) revives some. Expert parallelism is refused by the config.
TEST_CASE("parallel: dead-expert revival with data parallelism equals one process", "[parallel][revival]") {
  rc::RunConfig c = small_config(rc::RouterKind::topk_softmax);
  c.moe.revival.check_every = 3;
  c.moe.revival.mode = rc::RevivalMode::copy_busiest;
  c.moe.revival.noise = 0.01;
  c.diagnostics.dead_fraction = 1.0;
  c.diagnostics.starved_fraction = 1.0;
  for (const int ranks : {2, 4}) {
    const Trace many = train_parallel(c, ranks, 1);
    const Trace one = train_alone(c, ranks * c.training.batch_size, 1);
    const std::string diff = verdict(g_world->rank() == 0 ? differences(many, one, 1e-5) : "");
    INFO(ranks << " ranks:\n" << diff);
    CHECK(diff.empty());
    const bool revived_alike = g_world->rank() != 0 || (!one.revived.empty() && many.revived == one.revived);
    CHECK(verdict(revived_alike ? "" : "the revived experts differ or none were") == "");
  }
}

TEST_CASE("parallel: the same run twice is bit-identical", "[parallel]") {
  const rc::RunConfig c = small_config(rc::RouterKind::noisy_topk);
  const Trace first = train_parallel(c, 4, 2);
  const Trace second = train_parallel(c, 4, 2);
  const std::string diff = verdict(g_world->rank() == 0 ? differences(first, second, 0.0) : "");
  INFO(diff);
  CHECK(diff.empty());
}

namespace {

// A folder every rank names the same, emptied by rank 0.
std::string shared_folder(const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("moe_parallel_" + name)).string();
  if (g_world->rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  g_world->barrier();
  return dir;
}

// Trains `first` steps on (ranks, expert) and saves; then `ranks2`, `expert2` resume and train
// to step 10. Returns the trace of the resumed part (rank 0 complete).
Trace save_then_resume(rc::RunConfig c, int ranks, int expert, int ranks2, int expert2, const std::string& dir) {
  c.logging.out_dir = dir;
  std::string path;
  {
    const bool member = g_world->rank() < ranks;
    auto sub = g_world->split(member ? 0 : 1);
    if (member) {
      c.parallel.expert = expert;
      std::ostringstream quiet;
      Trainer t(c, quiet, nullptr, ProcessGroups::make(sub, expert));
      for (int s = 0; s < 5; ++s) t.step();
      path = t.save_checkpoint();
    }
  }
  path = g_world->broadcast(path, 0);
  const bool member = g_world->rank() < ranks2;
  auto sub = g_world->split(member ? 0 : 1);
  if (!member) return {};
  c.parallel.expert = expert2;
  std::ostringstream quiet;
  Trainer t(c, quiet, nullptr, ProcessGroups::make(sub, expert2));
  t.resume(path);
  Trace trace;
  for (int s = 5; s < 10; ++s) record(trace, t.step());
  finish(trace, t);
  return trace;
}

Trace steps_after_five(const Trace& t) {
  Trace out = t;
  if (out.loss.size() < 5) return out;  // a rank that took no part
  out.loss.erase(out.loss.begin(), out.loss.begin() + 5);
  out.ce.erase(out.ce.begin(), out.ce.begin() + 5);
  out.grad_norm.erase(out.grad_norm.begin(), out.grad_norm.begin() + 5);
  for (auto& [name, v] : out.terms) v.erase(v.begin(), v.begin() + 5);
  // The per-expert values exist at log steps only: those of steps 1 to 5 go.
  size_t early = 0;
  while (early < out.logged.size() && out.logged[early] <= 5) ++early;
  if (early > 0) {
    const size_t layers = out.idle_share.size() / out.logged.size();
    const size_t experts = out.expert_grad_norm.size() / out.idle_share.size();
    out.logged.erase(out.logged.begin(), out.logged.begin() + early);
    out.idle_share.erase(out.idle_share.begin(), out.idle_share.begin() + early * layers);
    for (std::vector<double>* v : {&out.expert_grad_norm, &out.expert_update_ratio})
      v->erase(v->begin(), v->begin() + early * layers * experts);
  }
  return out;
}

}  // namespace

TEST_CASE("parallel: 4 ranks save and 1 resumes (and the reverse); the same layout resumes bit-exactly", "[parallel]") {
  const rc::RunConfig c = small_config(rc::RouterKind::topk_softmax);
  const Trace straight4 = steps_after_five(train_parallel(c, 4, 2));
  const Trace straight1 = steps_after_five(train_alone(c, 2 * c.training.batch_size, 2));
  {
    const Trace resumed = save_then_resume(c, 4, 2, 4, 2, shared_folder("same"));
    const std::string diff = verdict(g_world->rank() == 0 ? differences(resumed, straight4, 0.0) : "");
    INFO("4 ranks save, the same 4 resume:\n" << diff);
    CHECK(diff.empty());
  }
  {
    // One process with the equivalent batch (2 x 2 rows, grad_accum 2) continues the 4 ranks.
    rc::RunConfig one = c;
    one.training.batch_size = 4;
    one.training.grad_accum = 2;
    rc::RunConfig many = c;
    const std::string dir = shared_folder("to_one");
    many.logging.out_dir = dir;
    std::string path;
    {
      const bool member = g_world->rank() < 4;
      auto sub = g_world->split(member ? 0 : 1);
      many.parallel.expert = 2;
      std::ostringstream quiet;
      Trainer t(many, quiet, nullptr, ProcessGroups::make(sub, 2));
      for (int s = 0; s < 5; ++s) t.step();
      path = t.save_checkpoint();
    }
    std::string diff;
    if (g_world->rank() == 0) {
      one.logging.out_dir = dir;
      std::ostringstream quiet;
      Trainer t(one, quiet, nullptr, ProcessGroups::single());
      t.resume(path);
      Trace resumed;
      for (int s = 5; s < 10; ++s) record(resumed, t.step());
      finish(resumed, t);
      diff = differences(resumed, straight1, 1e-5);
    }
    diff = verdict(diff);
    INFO("4 ranks save, 1 process resumes:\n" << diff);
    CHECK(diff.empty());
  }
  {
    // The reverse: one process saves, 4 ranks with every expert on its own rank resume.
    rc::RunConfig one = c;
    one.training.batch_size = 4;
    one.training.grad_accum = 2;
    const std::string dir = shared_folder("from_one");
    one.logging.out_dir = dir;
    std::string path;
    if (g_world->rank() == 0) {
      std::ostringstream quiet;
      Trainer t(one, quiet, nullptr, ProcessGroups::single());
      for (int s = 0; s < 5; ++s) t.step();
      path = t.save_checkpoint();
    }
    path = g_world->broadcast(path, 0);
    rc::RunConfig many = c;
    many.logging.out_dir = dir;
    many.parallel.expert = 2;
    std::ostringstream quiet;
    Trainer t(many, quiet, nullptr, ProcessGroups::make(g_world, 2));
    t.resume(path);
    Trace resumed;
    for (int s = 5; s < 10; ++s) record(resumed, t.step());
    finish(resumed, t);
    const std::string diff = verdict(g_world->rank() == 0 ? differences(resumed, straight4, 1e-5) : "");
    INFO("1 process saves, 4 ranks resume:\n" << diff);
    CHECK(diff.empty());
  }
}

TEST_CASE("parallel: all_to_all_rows passes a finite-difference gradient check over 4 ranks",
          "[parallel][all_to_all][gradcheck]") {
  using engine::Tensor;
  const int R = g_world->size(), r = g_world->rank();
  const int64_t d = 3;
  std::vector<int64_t> send(R), recv(R);
  for (int q = 0; q < R; ++q) {
    send[q] = (r + 2 * q) % 3;  // rows r sends to q (some none)
    recv[q] = (q + 2 * r) % 3;  // rows q sends to r
  }
  int64_t rows = 0;
  for (int64_t n : send) rows += n;
  engine::Generator gen(100 + r);
  Tensor x = engine::randn({rows, d}, gen, 0.0, 1.0, engine::DType::f64);
  int64_t out_rows = 0;
  for (int64_t n : recv) out_rows += n;
  Tensor w = engine::randn({out_rows, d}, gen, 0.0, 1.0, engine::DType::f64);
  // L = sum over ranks of sum(w * y * y), y = this rank's received rows: quadratic, so a
  // gradient sent back to the wrong rank or row shows.
  auto local_loss = [&](const Tensor& input) {
    Tensor y = engine::all_to_all_rows(input, g_world, send, recv);
    return engine::sum_all(engine::mul(w, engine::mul(y, y)));
  };
  auto total_loss = [&](const Tensor& input) {
    engine::NoGradScope no_grad;
    std::vector<double> v = {local_loss(input).item()};
    g_world->all_reduce_sum(v);
    return v[0];
  };
  Tensor leaf = x.clone().set_requires_grad(true);
  engine::backward(local_loss(leaf));
  const std::vector<double> analytic = leaf.grad().to_vector();
  const std::vector<int64_t> sizes = g_world->all_gather(std::vector<int64_t>{x.numel()});
  const double h = 1e-6;
  double worst = 0;
  for (int q = 0; q < R; ++q)
    for (int64_t i = 0; i < sizes[q]; ++i) {
      auto shifted = [&](double by) {
        std::vector<double> v = x.to_vector();
        if (q == r) v[static_cast<size_t>(i)] += by;
        return total_loss(Tensor::from_vector(v, x.shape()));
      };
      const double numeric = (shifted(h) - shifted(-h)) / (2 * h);
      if (q == r) worst = std::max(worst, std::abs(numeric - analytic[static_cast<size_t>(i)]));
    }
  const std::vector<double> all = g_world->all_gather(std::vector<double>{worst});
  const double max_error = *std::max_element(all.begin(), all.end());
  INFO("largest |numeric - analytic| over every rank's rows: " << max_error);
  CHECK(max_error < 1e-6);
}

TEST_CASE("parallel: all_reduce_sum adds in rank order with the same bits on every rank", "[parallel][all_reduce]") {
  using engine::Tensor;
  const int R = g_world->size(), me = g_world->rank();
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{10}, int64_t{1001}}) {
    for (engine::DType dt : {engine::DType::f32, engine::DType::f64}) {
      // Magnitudes differ by rank, so another order of additions changes the last bits.
      auto input = [&](int q) {
        engine::Generator gen(7 + q);
        return engine::randn({n}, gen, 0.0, q % 2 ? 1e-3 : 1e3, dt);
      };
      std::vector<double> expected = input(0).to_vector();
      for (int q = 1; q < R; ++q) {
        const std::vector<double> x = input(q).to_vector();
        for (int64_t i = 0; i < n; ++i)
          expected[i] = dt == engine::DType::f32
                            ? static_cast<double>(static_cast<float>(expected[i]) + static_cast<float>(x[i]))
                            : expected[i] + x[i];
      }
      Tensor t = input(me);
      engine::all_reduce_sum(t, *g_world);
      const std::vector<double> got = t.to_vector();
      std::vector<int64_t> same = {got == expected ? 1 : 0};
      g_world->all_reduce_sum(same);
      INFO(n << " elements, " << engine::dtype_name(dt));
      CHECK(same[0] == R);
    }
  }
}

int main(int argc, char** argv) {
  g_world = engine::dist::world();
  if (g_world->size() < 4) {
    std::cerr << "test_parallel: needs 4 MPI ranks (mpirun -np 4), got " << g_world->size() << "\n";
    engine::dist::finalize();
    return 77;  // skipped: CTest runs it under mpirun
  }
  // Only rank 0 reports: every check's verdict is rank 0's, so the others would repeat it.
  static std::ostringstream elsewhere;  // outlives main: the streams are flushed at exit
  if (g_world->rank() != 0) {
    std::cout.rdbuf(elsewhere.rdbuf());
    std::cerr.rdbuf(elsewhere.rdbuf());
  }
  const int failed = Catch::Session().run(argc, argv);
  g_world.reset();
  engine::dist::finalize();
  return failed;
}
