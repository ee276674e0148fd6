// engine-bench's measurements: the engine's matmul next to a direct oneDNN matmul on the same
// shapes (forward and backward shapes of a transformer layer, MoE expert shapes with few rows),
// and the bandwidth of elementwise and row ops next to oneDNN's primitive where it has one.
// Contenders run in alternation (medians after warm-up), so drift hits both alike.
#include "tools/lib/bench/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>

#include "engine/engine.h"

namespace bench {

using namespace engine;

namespace {

double seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> t) {
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

double median_seconds(int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();  // warm-up: primitive creation, allocator, caches
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(seconds(fn));
  return median(t);
}

// Two contenders timed in alternation, so drift in the machine's speed hits both alike.
std::pair<double, double> paired_median_seconds(int reps, const std::function<void()>& a,
                                                const std::function<void()>& b) {
  for (int i = 0; i < 3; ++i) a(), b();
  std::vector<double> ta, tb;
  for (int i = 0; i < reps; ++i) {
    ta.push_back(seconds(a));
    tb.push_back(seconds(b));
  }
  return {median(ta), median(tb)};
}

// The baseline: one oneDNN primitive built once for exactly this shape, executed on
// preallocated buffers. The engine has to find its primitive, allocate its output and record
// nothing (no grad) on top of this.
std::function<void()> direct_onednn_matmul(int64_t M, int64_t K, int64_t N, bool ta, bool tb) {
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  memory::desc a({M, K}, memory::data_type::f32, ta ? memory::dims{1, M} : memory::dims{K, 1});
  memory::desc b({K, N}, memory::data_type::f32, tb ? memory::dims{1, K} : memory::dims{N, 1});
  memory::desc c({M, N}, memory::data_type::f32, memory::dims{N, 1});
  dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), eng));
  auto buffers = std::make_shared<std::vector<float>>(M * K + K * N + M * N, 0.5f);
  memory ma(a, eng, buffers->data()), mb(b, eng, buffers->data() + M * K), mc(c, eng, buffers->data() + M * K + K * N);
  return [=]() mutable {
    prim.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream.wait();
    (void)buffers;  // keeps the memory alive as long as the closure
  };
}

struct MatmulCase {
  const char* what;
  int64_t M, K, N;
  bool ta, tb;
};

}  // namespace

std::vector<MatmulRow> bench_matmuls(int reps, bool quick) {
  std::vector<MatmulCase> cases = {
      {"square", 1024, 1024, 1024, false, false},
      {"qkv fwd  (4096x128 @ 128x384)", 4096, 128, 384, false, false},
      {"qkv dX   (dY @ W)", 4096, 384, 128, false, true},
      {"qkv dW   (X^T @ dY)", 128, 4096, 384, true, false},
      {"ffn fwd  (64x256 @ 256x512)", 64, 256, 512, false, false},
      {"ffn dX", 64, 512, 256, false, true},
      {"ffn dW", 256, 64, 512, true, false},
      {"expert 17 rows", 17, 256, 512, false, false},
      {"expert 33 rows", 33, 256, 512, false, false},
      {"expert 130 rows", 130, 256, 512, false, false},
      {"expert dW 33 rows", 256, 33, 512, true, false},
  };
  if (quick) cases.resize(3);
  std::vector<MatmulRow> rows;
  NoGradScope no_grad;
  Generator gen(1);
  for (const MatmulCase& c : cases) {
    Tensor a = randn(c.ta ? Shape{c.K, c.M} : Shape{c.M, c.K}, gen);
    Tensor b = randn(c.tb ? Shape{c.N, c.K} : Shape{c.K, c.N}, gen);
    const double flops = 2.0 * c.M * c.K * c.N;
    const auto [t_engine, t_direct] = paired_median_seconds(
        reps, [&] { Tensor out = matmul(a, b, c.ta, c.tb); }, direct_onednn_matmul(c.M, c.K, c.N, c.ta, c.tb));
    rows.push_back({c.what, c.M, c.K, c.N, flops / t_engine * 1e-9, flops / t_direct * 1e-9});
  }
  return rows;
}

void print_matmuls(const std::vector<MatmulRow>& rows, std::FILE* out) {
  std::fprintf(out, "%-32s %6s %6s %6s  %12s %12s %7s\n", "matmul f32 (M x K @ K x N)", "M", "K", "N", "engine GF/s",
               "oneDNN GF/s", "ratio");
  for (const MatmulRow& r : rows)
    std::fprintf(out, "%-32s %6ld %6ld %6ld  %12.1f %12.1f %6.2fx\n", r.what.c_str(), static_cast<long>(r.M),
                 static_cast<long>(r.K), static_cast<long>(r.N), r.engine_gflops, r.onednn_gflops,
                 r.engine_gflops / r.onednn_gflops);
}

namespace {

// Direct oneDNN forward primitives on the same data, for the ops oneDNN has: the engine must
// match or beat them.
struct OneDnnRowOps {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{eng};
  dnnl::memory::desc md;
  explicit OneDnnRowOps(int64_t rows, int64_t cols)
      : md({rows, cols}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::ab) {}

  std::function<void()> eltwise(dnnl::algorithm alg, float* src, float* dst) {
    auto pd = dnnl::eltwise_forward::primitive_desc(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 1.0f, 0.0f), eng);
    auto prim = std::make_shared<dnnl::eltwise_forward>(pd);
    auto in = std::make_shared<dnnl::memory>(md, eng, src), out = std::make_shared<dnnl::memory>(md, eng, dst);
    return [=] {
      prim->execute(stream, {{DNNL_ARG_SRC, *in}, {DNNL_ARG_DST, *out}});
      stream.wait();
    };
  }
  std::function<void()> softmax(float* src, float* dst) {
    auto pd = dnnl::softmax_forward::primitive_desc(
        dnnl::softmax_forward::desc(dnnl::prop_kind::forward_training, md, 1), eng);
    auto prim = std::make_shared<dnnl::softmax_forward>(pd);
    auto in = std::make_shared<dnnl::memory>(md, eng, src), out = std::make_shared<dnnl::memory>(md, eng, dst);
    return [=] {
      prim->execute(stream, {{DNNL_ARG_SRC, *in}, {DNNL_ARG_DST, *out}});
      stream.wait();
    };
  }
  std::function<void()> layernorm(float* src, float* dst, float* scale, float* shift, float* mean, float* var) {
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    auto pd = dnnl::layer_normalization_forward::primitive_desc(
        dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_training, md, 1e-5f, flags), eng);
    auto prim = std::make_shared<dnnl::layer_normalization_forward>(pd);
    auto mem = [&](const dnnl::memory::desc& d, float* p) { return std::make_shared<dnnl::memory>(d, eng, p); };
    auto in = mem(md, src), out = mem(md, dst), sc = mem(pd.weights_desc(), scale), sh = mem(pd.weights_desc(), shift);
    auto mu = mem(pd.mean_desc(), mean), va = mem(pd.variance_desc(), var);
    return [=] {
      prim->execute(stream, {{DNNL_ARG_SRC, *in},
                             {DNNL_ARG_DST, *out},
                             {DNNL_ARG_SCALE, *sc},
                             {DNNL_ARG_SHIFT, *sh},
                             {DNNL_ARG_MEAN, *mu},
                             {DNNL_ARG_VARIANCE, *va}});
      stream.wait();
    };
  }
};

}  // namespace

std::vector<OpRow> bench_elementwise(int reps) {
  NoGradScope no_grad;
  Generator gen(2);
  const int64_t rows = 4096, cols = 1024;  // 16 MiB per f32 tensor: past the caches
  Tensor x = randn({rows, cols}, gen), y = randn({rows, cols}, gen), row = randn({cols}, gen);
  Tensor gamma = Tensor::full({cols}, 1.0), beta = Tensor::zeros({cols});
  Tensor dst = Tensor::empty({rows, cols}), stats_mean = Tensor::empty({rows}), stats_var = Tensor::empty({rows});
  OneDnnRowOps dn(rows, cols);
  float* px = x.data<float>();
  float* pd = dst.data<float>();
  const double bytes1 = 2.0 * x.numel() * 4, bytes2 = 3.0 * x.numel() * 4;  // read(s) + write
  struct Case {
    const char* what;
    double bytes;
    std::function<void()> engine_fn, onednn_fn;
  };
  std::vector<Case> cases = {
      {"add (same shape)", bytes2, [&] { Tensor o = add(x, y); }, nullptr},
      {"add (bias row)", bytes1, [&] { Tensor o = add(x, row); }, nullptr},
      {"gelu (tanh)", bytes1, [&] { Tensor o = gelu(x); }, dn.eltwise(dnnl::algorithm::eltwise_gelu_tanh, px, pd)},
      {"silu (swish)", bytes1, [&] { Tensor o = silu(x); }, dn.eltwise(dnnl::algorithm::eltwise_swish, px, pd)},
      {"softmax (rows of 1024)", bytes1, [&] { Tensor o = softmax(x); }, dn.softmax(px, pd)},
      {"layernorm", bytes1, [&] { Tensor o = layernorm(x, gamma, beta); },
       dn.layernorm(px, pd, gamma.data<float>(), beta.data<float>(), stats_mean.data<float>(),
                    stats_var.data<float>())},
      {"sum over rows", bytes1 / 2, [&] { Tensor o = sum(x, 0); }, nullptr},
  };
  std::vector<OpRow> out;
  for (const Case& c : cases) {
    if (c.onednn_fn) {
      const auto [t, t_dn] = paired_median_seconds(reps, c.engine_fn, c.onednn_fn);
      out.push_back({c.what, t * 1e3, c.bytes / t * 1e-9, c.bytes / t_dn * 1e-9});
    } else {
      const double t = median_seconds(reps, c.engine_fn);
      out.push_back({c.what, t * 1e3, c.bytes / t * 1e-9, 0.0});
    }
  }
  return out;
}

void print_ops(const std::vector<OpRow>& rows, std::FILE* out) {
  std::fprintf(out, "%-32s %10s %10s %12s %7s\n", "forward f32 (4096 x 1024)", "ms", "GB/s", "oneDNN GB/s", "ratio");
  for (const OpRow& r : rows) {
    if (r.onednn_gbps > 0)
      std::fprintf(out, "%-32s %10.3f %10.1f %12.1f %6.2fx\n", r.what.c_str(), r.ms, r.gbps, r.onednn_gbps,
                   r.gbps / r.onednn_gbps);
    else
      std::fprintf(out, "%-32s %10.3f %10.1f %12s %7s\n", r.what.c_str(), r.ms, r.gbps, "-", "");
  }
}

}  // namespace bench
