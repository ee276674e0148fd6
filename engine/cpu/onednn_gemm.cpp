// oneDNN behind engine/cpu/onednn_gemm.h: the primitive cache, the planner (an exact shape, a
// runtime-size family, or bf16 padding to an exact shape), and the concurrent runner.
#include "engine/cpu/onednn_gemm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include "engine/core/bf16.h"
#include "engine/core/parallel.h"

namespace engine {
namespace cpu {

namespace {

using dnnl::memory;

// bf16: the operands are bf16 (bf16 tensors, or f32 ones rounded under MatmulPrecision::bf16);
// c_bf16: so is the result (a bf16 activation), else it is f32.
struct MatmulKey {
  int64_t batch, m, n, k;
  bool ta, tb, bias, accumulate, bf16, c_bf16;
  bool operator<(const MatmulKey& o) const {
    return std::tie(batch, m, n, k, ta, tb, bias, accumulate, bf16, c_bf16) <
           std::tie(o.batch, o.m, o.n, o.k, o.ta, o.tb, o.bias, o.accumulate, o.bf16, o.c_bf16);
  }
};

bool bf16_operands(const GemmArgs& g, const Tensor& a) {
  return a.dtype() == DType::bf16 || g.precision == MatmulPrecision::bf16;
}

MatmulKey key_of(const GemmArgs& g, const Tensor& a, const Tensor& c, bool bias) {
  return MatmulKey{g.batch,       g.m,           g.n,  g.k,           g.transpose_a,      g.transpose_b,
                   bias,          g.beta != 0.0, bf16_operands(g, a), c.dtype() == DType::bf16};
}

// A primitive and the scratchpad it needs. Scratchpads are ours (scratchpad_mode::user): with
// oneDNN's own (library) scratchpad a primitive may only run on the thread that created it, and
// try_gemm_concurrent runs cached primitives on every thread.
struct Primitive {
  dnnl::matmul matmul;
  memory::desc scratch;
};

// An exact-shape primitive with the memory objects it runs on, created once; each call only
// swaps the data pointers in (set_data_handle), which is what keeps small GEMMs near oneDNN's
// own speed. The memory objects serve one call at a time (under OneDnn::mutex).
struct CachedMatmul {
  Primitive primitive;
  std::unordered_map<int, memory> args;  // SRC, WEIGHTS, DST (+ BIAS, SCRATCHPAD)
};

struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::mutex mutex;                         // held for a whole call: the cached memory objects are per primitive
  std::map<MatmulKey, CachedMatmul> exact;  // one primitive per full shape
  std::map<MatmulKey, Primitive> runtime;   // families keyed with m = 0 (rows vary) or k = 0 (inner size varies)
  std::map<MatmulKey, int> distinct;        // per family: how many sizes of the varying axis were seen
};

OneDnn& onednn() {
  static OneDnn* state = new OneDnn();  // lives for the process: primitives are reused by every call
  return *state;
}

// Descriptors for row-major matrices, with the leading batch axis when batch > 1. m or k may be
// DNNL_RUNTIME_DIM_VAL (only when batch == 1): that size, and the strides that depend on it,
// are then left to execution time.
struct MatmulDescs {
  memory::desc a, b, c, bias;
};
MatmulDescs make_descs(const MatmulKey& key, int64_t m, int64_t k) {
  const auto f32 = memory::data_type::f32, in = key.bf16 ? memory::data_type::bf16 : f32;
  const int64_t n = key.n, batch = key.batch;
  // Stored as [rows, cols] when !transposed, as [cols, rows] when transposed.
  auto matrix = [&](int64_t rows, int64_t cols, bool transposed, memory::data_type dt) {
    const int64_t rs = transposed ? 1 : cols, cs = transposed ? rows : 1;
    if (batch > 1) return memory::desc({batch, rows, cols}, dt, {rows * cols, rs, cs});
    return memory::desc({rows, cols}, dt, {rs, cs});
  };
  MatmulDescs d;
  d.a = matrix(m, k, key.ta, in);
  d.b = matrix(k, n, key.tb, in);
  d.c = matrix(m, n, false, key.c_bf16 ? memory::data_type::bf16 : f32);
  if (key.bias) d.bias = batch > 1 ? memory::desc({1, 1, n}, f32, {n, n, 1}) : memory::desc({1, n}, f32, {n, 1});
  return d;
}

Primitive make_primitive(OneDnn& st, const MatmulKey& key, const MatmulDescs& d) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (key.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  auto desc = key.bias ? dnnl::matmul::desc(d.a, d.b, d.bias, d.c) : dnnl::matmul::desc(d.a, d.b, d.c);
  const dnnl::matmul::primitive_desc pd(desc, attr, st.engine);
  return Primitive{dnnl::matmul(pd), pd.scratchpad_desc()};
}

// The buffers of one call: A and B are the f32 tensors' data, or their bf16 copies.
struct Operands {
  void *a, *b, *bias, *c;
};

std::unordered_map<int, memory> make_args(OneDnn& st, const MatmulDescs& d, const Operands& p) {
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, memory(d.a, st.engine, p.a)},
                                       {DNNL_ARG_WEIGHTS, memory(d.b, st.engine, p.b)},
                                       {DNNL_ARG_DST, memory(d.c, st.engine, p.c)}};
  if (p.bias) args.emplace(DNNL_ARG_BIAS, memory(d.bias, st.engine, p.bias));
  return args;
}

// f32 -> bf16 with the engine's one rounding (engine/core/bf16.h: nearest even, NaN kept).
ENGINE_SIMD_CLONES void to_bf16_span(const float* __restrict x, uint16_t* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = float_to_bf16_bits(x[i]);
}

void copy_bf16_span(const uint16_t* x, uint16_t* y, int64_t n) {
  std::memcpy(y, x, static_cast<size_t>(n) * sizeof(uint16_t));
}
// A bf16 copy of a row-major [batch, rows, cols] matrix (f32, rounded; or already bf16),
// zero-padded to [batch, rows_pad, cols_pad], in a bf16 tensor from the caching allocator.
template <class Src>
Tensor to_bf16(const Src* x, int64_t batch, int64_t rows, int64_t cols, int64_t rows_pad, int64_t cols_pad,
               Device device) {
  auto convert = [](const Src* from, uint16_t* to, int64_t count) {
    if constexpr (std::is_same<Src, float>::value)
      to_bf16_span(from, to, count);
    else
      copy_bf16_span(from, to, count);
  };
  const int64_t n = batch * rows_pad * cols_pad;
  Tensor out = Tensor::empty({n}, DType::bf16, device);
  uint16_t* y = static_cast<uint16_t*>(out.raw_data());
  if (rows == rows_pad && cols == cols_pad) {
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) { convert(x + b, y + b, e - b); });
    return out;
  }
  parallel_for(batch * rows_pad, std::max<int64_t>(1, (1 << 15) / cols_pad), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t bi = r / rows_pad, i = r % rows_pad;
      uint16_t* dst = y + r * cols_pad;
      int64_t done = 0;
      if (i < rows) {
        convert(x + (bi * rows + i) * cols, dst, cols);
        done = cols;
      }
      std::fill(dst + done, dst + cols_pad, uint16_t{0});
    }
  });
  return out;
}

// The scratch buffer of one call (or one thread's run of calls) from the caching allocator,
// grown when a primitive needs more.
void* scratch_buffer(Tensor& buffer, size_t bytes) {
  const int64_t floats = static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float));
  if (!buffer.defined() || buffer.numel() < floats) buffer = Tensor::empty({floats}, DType::f32, Device::cpu());
  return buffer.raw_data();
}

CachedMatmul& exact_entry(OneDnn& st, const MatmulKey& key, const Operands& p) {
  auto it = st.exact.find(key);
  if (it == st.exact.end()) {
    const MatmulDescs d = make_descs(key, key.m, key.k);
    it = st.exact.emplace(key, CachedMatmul{make_primitive(st, key, d), make_args(st, d, p)}).first;
  }
  return it->second;
}

// Whether a new shape joins a family that has seen too many sizes (caller holds st.mutex).
struct FamilyChoice {
  bool rows_vary = false, inner_vary = false;
};
FamilyChoice choose_family(OneDnn& st, const MatmulKey& key) {
  FamilyChoice c;
  if (st.exact.count(key)) return c;
  MatmulKey rows_family = key, inner_family = key;
  rows_family.m = 0;
  inner_family.k = 0;
  c.rows_vary = key.batch == 1 && st.distinct[rows_family] >= kMaxExactSizes;
  c.inner_vary = key.batch == 1 && !c.rows_vary && st.distinct[inner_family] >= kMaxExactSizes;
  if (!c.rows_vary && !c.inner_vary) {
    ++st.distinct[rows_family];
    ++st.distinct[inner_family];
  }
  return c;
}

// What runs one call: a cached primitive, and its cached memory objects for an exact shape.
struct Plan {
  const Primitive* primitive = nullptr;
  CachedMatmul* cached = nullptr;  // null: runtime-size primitive, memory objects made per call
  MatmulKey key;                   // this call's sizes
};

// Whether bf16 products must keep exact shapes: AMX's bf16 kernels exist for exact shapes only
// (a runtime size falls back to a generic kernel at half the speed). Without AMX (AVX512-BF16)
// runtime-size bf16 primitives keep their speed, and bf16 tensors then need no padded copies.
bool bf16_needs_exact_shapes() {
  static const bool amx = [] {
    const int isa = static_cast<int>(dnnl::get_effective_cpu_isa());
    const int amx_bits = static_cast<int>(dnnl::cpu_isa::avx512_core_amx);
    return (isa & amx_bits) == amx_bits;
  }();
  return amx;
}

// The plan of a call whose operands need no conversion: f32, or bf16 tensors where runtime sizes
// are fast (caller holds st.mutex).
Plan plan_f32(OneDnn& st, const MatmulKey& key, const Operands& p) {
  const FamilyChoice c = choose_family(st, key);
  if (!c.rows_vary && !c.inner_vary) {
    CachedMatmul& entry = exact_entry(st, key, p);
    return Plan{&entry.primitive, &entry, key};
  }
  MatmulKey family = key;
  (c.rows_vary ? family.m : family.k) = 0;
  auto rt = st.runtime.find(family);
  if (rt == st.runtime.end()) {
    const int64_t m = c.rows_vary ? DNNL_RUNTIME_DIM_VAL : key.m, k = c.inner_vary ? DNNL_RUNTIME_DIM_VAL : key.k;
    rt = st.runtime.emplace(family, make_primitive(st, family, make_descs(family, m, k))).first;
  }
  return Plan{&rt->second, nullptr, key};
}

// Runs a plan on `stream` with `scratch` as its scratchpad. With reuse_cached_args the exact
// primitive's memory objects get the new pointers (one thread at a time); without, every call
// makes its own, so that several threads can run the same primitive at once.
void execute(OneDnn& st, const Plan& plan, const Operands& p, dnnl::stream& stream, Tensor& scratch,
             bool reuse_cached_args) {
  std::unordered_map<int, memory> own;
  std::unordered_map<int, memory>* args = &own;
  if (plan.cached && reuse_cached_args) {
    args = &plan.cached->args;
    args->at(DNNL_ARG_SRC).set_data_handle(p.a);
    args->at(DNNL_ARG_WEIGHTS).set_data_handle(p.b);
    args->at(DNNL_ARG_DST).set_data_handle(p.c);
    if (p.bias) args->at(DNNL_ARG_BIAS).set_data_handle(p.bias);
  } else {
    own = make_args(st, make_descs(plan.key, plan.key.m, plan.key.k), p);
  }
  const memory::desc& scratch_desc = plan.primitive->scratch;
  if (scratch_desc.get_size() > 0) {
    void* buffer = scratch_buffer(scratch, scratch_desc.get_size());
    auto it = args->find(DNNL_ARG_SCRATCHPAD);
    if (it == args->end())
      args->emplace(DNNL_ARG_SCRATCHPAD, memory(scratch_desc, st.engine, buffer));
    else
      it->second.set_data_handle(buffer);
  }
  plan.primitive->matmul.execute(stream, *args);
  stream.wait();
}

int64_t round_up(int64_t v, int64_t step) { return (v + step - 1) / step * step; }

// An operand as the bf16 primitive reads it: a bf16 tensor's own data when no padding is needed,
// else a (rounded, padded) bf16 copy. Stored as [rows, cols] per batch.
const void* bf16_operand(const Tensor& t, int64_t batch, int64_t rows, int64_t cols, int64_t rows_pad,
                         int64_t cols_pad, Tensor& holder) {
  if (t.dtype() == DType::bf16) {
    if (rows == rows_pad && cols == cols_pad) return t.raw_data();
    holder = to_bf16(static_cast<const uint16_t*>(t.raw_data()), batch, rows, cols, rows_pad, cols_pad, t.device());
  } else {
    holder = to_bf16(t.data<float>(), batch, rows, cols, rows_pad, cols_pad, t.device());
  }
  return holder.raw_data();
}

}  // namespace

void onednn_gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& bias, Tensor& c) {
  OneDnn& st = onednn();
  const bool bf16 = bf16_operands(g, a);
  ENGINE_CHECK(a.dtype() == b.dtype() && (a.dtype() == DType::f32 || a.dtype() == DType::bf16) &&
                   (c.dtype() == DType::f32 || c.dtype() == DType::bf16) && (bf16 || c.dtype() == DType::f32),
               "matmul", "oneDNN products take f32 or bf16 operands of one type: " + a.str() + ", " + b.str() + " -> " +
                             c.str());
  if (bf16) {
    std::string why;
    ENGINE_CHECK(bf16_matmul_supported(&why), "matmul", why);
  }
  MatmulKey key = key_of(g, a, c, bias.defined());
  void* pbias = bias.defined() ? bias.raw_data() : nullptr;
  std::lock_guard<std::mutex> lock(st.mutex);
  if (!bf16 || (a.dtype() == DType::bf16 && !bf16_needs_exact_shapes())) {
    const Operands p{a.raw_data(), b.raw_data(), pbias, c.raw_data()};
    Tensor scratch;
    execute(st, plan_f32(st, key, p), p, st.stream, scratch, true);
    return;
  }
  const FamilyChoice family = choose_family(st, key);
  const int64_t m = g.m, k = g.k, n = g.n;
  key.m = family.rows_vary ? round_up(m, kPadStep) : m;
  key.k = family.inner_vary ? round_up(k, kPadStep) : k;
  Tensor a_holder, b_holder;
  const void* a16 = g.transpose_a ? bf16_operand(a, g.batch, k, m, key.k, key.m, a_holder)
                                  : bf16_operand(a, g.batch, m, k, key.m, key.k, a_holder);
  const void* b16 = g.transpose_b ? bf16_operand(b, g.batch, n, k, n, key.k, b_holder)
                                  : bf16_operand(b, g.batch, k, n, key.k, n, b_holder);
  // Padded rows: the product lands in a taller scratch C whose first m rows are the answer.
  const bool padded_rows = key.m != m;
  Tensor c_pad = padded_rows ? Tensor::empty({key.m, n}, c.dtype(), c.device()) : c;
  const size_t c_bytes = static_cast<size_t>(m * n) * dtype_size(c.dtype());
  if (padded_rows && g.beta != 0.0) std::memcpy(c_pad.raw_data(), c.raw_data(), c_bytes);
  const Operands p{const_cast<void*>(a16), const_cast<void*>(b16), pbias, c_pad.raw_data()};
  CachedMatmul& entry = exact_entry(st, key, p);
  Tensor scratch;
  execute(st, Plan{&entry.primitive, &entry, key}, p, st.stream, scratch, true);
  if (padded_rows) std::memcpy(c.raw_data(), c_pad.raw_data(), c_bytes);
}

bool bf16_matmul_supported(std::string* reason) {
  static const std::string failure = [] {
    try {
      OneDnn& st = onednn();
      const MatmulKey key{1, 4, 4, 4, false, false, false, false, true, true};
      make_primitive(st, key, make_descs(key, 4, 4));
      return std::string();
    } catch (const dnnl::error& e) {
      return std::string("oneDNN has no bf16 matmul for this CPU (it needs AVX-512): ") + e.what();
    }
  }();
  if (reason) *reason = failure;
  return failure.empty();
}

OneDnnCacheStats onednn_cache_stats() {
  OneDnn& st = onednn();
  std::lock_guard<std::mutex> lock(st.mutex);
  return OneDnnCacheStats{st.exact.size(), st.runtime.size()};
}

// m * n * k from which a product runs alone on all threads: a 512 x 256 x 128 product does about
// as well that way, while 64-row expert products gain 1.2-1.4x side by side (E = 64: the
// experts' forward and backward 10-15% faster; E = 8: within noise).
constexpr int64_t kAloneWork = int64_t{1} << 24;

bool try_gemm_concurrent(const std::vector<GemmCall>& calls) {
  bool concurrent = calls.size() > 1 && num_threads() > 1 && !omp_in_parallel();
  for (const GemmCall& call : calls) {
    const GemmArgs& g = call.args;
    const bool f32 = call.a.dtype() == DType::f32 && call.c.dtype() == DType::f32 && g.precision == MatmulPrecision::f32;
    const bool bf16 = call.a.dtype() == DType::bf16 && !bf16_needs_exact_shapes();
    concurrent = concurrent && (f32 || bf16) && call.a.dtype() == call.b.dtype() && g.batch == 1 && g.m > 0 &&
                 g.n > 0 && g.k > 0;
  }
  if (!concurrent) return false;
  OneDnn& st = onednn();
  std::lock_guard<std::mutex> lock(st.mutex);
  std::vector<Operands> operands;
  std::vector<Plan> plans;
  for (const GemmCall& call : calls) {
    const GemmArgs& g = call.args;
    const MatmulKey key = key_of(g, call.a, call.c, call.bias.defined());
    operands.push_back(Operands{call.a.raw_data(), call.b.raw_data(),
                                call.bias.defined() ? call.bias.raw_data() : nullptr, call.c.raw_data()});
    plans.push_back(plan_f32(st, key, operands.back()));
  }
  // Largest first. A product too big to balance (more than a thread's share of what is left) or
  // big enough to keep every thread busy by itself runs alone on all threads; the rest are
  // handed out one at a time, so the threads finish close together.
  std::vector<size_t> order(calls.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto work = [&](size_t i) { return calls[i].args.m * calls[i].args.n * calls[i].args.k; };
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return work(x) > work(y); });
  int64_t remaining = 0;
  for (size_t i : order) remaining += work(i);
  size_t first_shared = 0;
  for (; first_shared < order.size(); ++first_shared) {
    const int64_t w = work(order[first_shared]);
    if (w * num_threads() <= remaining && w < kAloneWork) break;
    Tensor scratch;
    execute(st, plans[order[first_shared]], operands[order[first_shared]], st.stream, scratch, true);
    remaining -= w;
  }
  std::exception_ptr failure;
  std::mutex failure_mutex;
  // No exception may leave the parallel region: each is kept (the first one is rethrown after
  // it), and every thread still takes part in the loop so none waits at its barrier forever.
  auto keep_failure = [&] {
    std::lock_guard<std::mutex> guard(failure_mutex);
    if (!failure) failure = std::current_exception();
  };
#pragma omp parallel
  {
    // oneDNN runs single-threaded inside a parallel region (OpenMP does not nest teams here).
    std::unique_ptr<dnnl::stream> stream;
    try {
      stream = std::make_unique<dnnl::stream>(st.engine);
    } catch (...) {
      keep_failure();
    }
    Tensor scratch;
#pragma omp for schedule(dynamic, 1)
    for (size_t i = first_shared; i < order.size(); ++i) {
      if (!stream) continue;
      try {
        execute(st, plans[order[i]], operands[order[i]], *stream, scratch, false);
      } catch (...) {
        keep_failure();
      }
    }
  }
  if (failure) std::rethrow_exception(failure);
  return true;
}

}  // namespace cpu
}  // namespace engine
