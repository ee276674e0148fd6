// The oneDNN GEMM backend (engine/cpu/onednn_gemm.h): the primitive cache and its planner
// (exact shapes, runtime-rows and runtime-K families, bf16 padding), and products run side by
// side. The cache lives for the process, so each case uses a width n no other test uses and
// checks how much the cache grew, not its size.
#include <omp.h>

#include <catch2/catch.hpp>

#include "tests/support/gradcheck.h"

using namespace engine;
using engine::testing::bf16_available;
using engine::testing::max_abs_diff;
using engine::testing::random_tensor;

namespace {

// One product (f32 operands, batch 1) with its double reference.
struct GemmCase {
  GemmCall call;
  Tensor want;
};
GemmCase gemm_case(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool bias, bool accumulate, uint64_t seed) {
  GemmCase c;
  c.call.args.m = m;
  c.call.args.n = n;
  c.call.args.k = k;
  c.call.args.transpose_a = ta;
  c.call.args.transpose_b = tb;
  c.call.args.beta = accumulate ? 1.0 : 0.0;
  c.call.a = random_tensor(ta ? Shape{k, m} : Shape{m, k}, seed, 1.0, DType::f32);
  c.call.b = random_tensor(tb ? Shape{n, k} : Shape{k, n}, seed + 1, 1.0, DType::f32);
  c.call.c = random_tensor({m, n}, seed + 2, 1.0, DType::f32);
  if (bias) c.call.bias = random_tensor({n}, seed + 3, 1.0, DType::f32);
  c.want = matmul(c.call.a.to(DType::f64), c.call.b.to(DType::f64), ta, tb);
  if (accumulate) c.want = add(c.want, c.call.c.to(DType::f64));
  if (bias) c.want = add(c.want, c.call.bias.to(DType::f64));
  return c;
}

// Runs the cases as one gemm_concurrent set and checks each against its reference.
void run_and_check(const std::vector<GemmCase>& cases) {
  std::vector<GemmCall> calls;
  for (const GemmCase& c : cases) calls.push_back(c.call);
  cpu::gemm_concurrent(calls);
  for (size_t i = 0; i < cases.size(); ++i) {
    const GemmArgs& g = cases[i].call.args;
    INFO("product " << i << ": " << g.m << " x " << g.n << " x " << g.k << " ta " << g.transpose_a << " tb "
                    << g.transpose_b);
    CHECK(max_abs_diff(cases[i].call.c.to(DType::f64), cases[i].want) < 1e-4 * g.k);
  }
}

// Runs one case through the backend alone and checks it against its reference.
void run_one_and_check(GemmCase& c) {
  cpu::onednn_gemm(c.call.args, c.call.a, c.call.b, c.call.bias, c.call.c);
  const GemmArgs& g = c.call.args;
  INFO(g.m << " x " << g.n << " x " << g.k << " ta " << g.transpose_a << " tb " << g.transpose_b);
  CHECK(max_abs_diff(c.call.c.to(DType::f64), c.want) < 1e-4 * g.k);
}

// How many primitives the cache gained since `before`.
struct CacheGrowth {
  size_t exact, runtime;
};
CacheGrowth growth_since(const cpu::OneDnnCacheStats& before) {
  const cpu::OneDnnCacheStats now = cpu::onednn_cache_stats();
  return CacheGrowth{now.exact - before.exact, now.runtime - before.runtime};
}

// C = A B at bf16 precision, through the backend.
Tensor bf16_product(const Tensor& a, const Tensor& b) {
  GemmArgs g;
  g.m = a.size(0);
  g.k = a.size(1);
  g.n = b.size(1);
  g.precision = MatmulPrecision::bf16;
  Tensor c = Tensor::empty({g.m, g.n}, DType::f32);
  cpu::onednn_gemm(g, a, b, Tensor(), c);
  return c;
}

// This many OpenMP threads for the scope, whatever OMP_NUM_THREADS says.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n) : previous_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsScope() { omp_set_num_threads(previous_); }

 private:
  int previous_;
};

}  // namespace

TEST_CASE("gemm_concurrent: independent products side by side equal their double reference", "[matmul][gemm][onednn]") {
  if (omp_get_max_threads() < 2) WARN("one OpenMP thread: the products run one by one, nothing runs side by side");
  // 40 small products (1 to 700 rows, several sharing a shape, so one primitive runs on two
  // threads at once; transposed operands, bias and beta = 1 mixed in) plus two large ones that
  // run alone first.
  std::vector<GemmCase> cases;
  for (int i = 0; i < 40; ++i)
    cases.push_back(gemm_case(i % 7 == 0 ? 64 : (i * 37) % 700 + 1, 48, 64, i % 5 == 0, i % 2 == 0, i % 3 == 0,
                              i % 4 == 0, 100 + 10 * i));
  cases.push_back(gemm_case(600, 256, 128, false, true, true, false, 900));
  cases.push_back(gemm_case(2000, 96, 128, false, false, false, true, 910));
  run_and_check(cases);
}

TEST_CASE("gemm_concurrent: runtime-size primitives shared by several threads", "[matmul][gemm][onednn]") {
  // Past 8 row counts a shape family runs one runtime-rows primitive; past 8 inner sizes, one
  // runtime-K primitive (expert dW). Warm both families up, then run 12 new sizes of each side
  // by side: every product of a family then executes the same primitive.
  std::vector<GemmCase> warm, rows, inner;
  for (int64_t i = 0; i < 8; ++i) {
    warm.push_back(gemm_case(3 + i, 37, 29, false, true, false, false, 1000 + 10 * i));
    warm.push_back(gemm_case(31, 23, 5 + i, true, false, false, false, 1100 + 10 * i));
  }
  run_and_check(warm);
  for (int64_t i = 0; i < 12; ++i) {
    rows.push_back(gemm_case(40 + 7 * i, 37, 29, false, true, false, false, 1200 + 10 * i));
    inner.push_back(gemm_case(31, 23, 50 + 9 * i, true, false, false, false, 1400 + 10 * i));
  }
  run_and_check(rows);
  run_and_check(inner);
}

TEST_CASE("oneDNN cache: a shape seen again runs the primitive made for it", "[onednn][gemm]") {
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  for (uint64_t rep = 0; rep < 3; ++rep) {
    GemmCase c = gemm_case(13, 211, 17, false, false, true, false, 2000 + 10 * rep);
    run_one_and_check(c);
  }
  const CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == 1);
  CHECK(grew.runtime == 0);
}

TEST_CASE("oneDNN cache: past kMaxExactSizes row counts, one runtime-rows primitive runs the rest", "[onednn][gemm]") {
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  for (int64_t i = 0; i < cpu::kMaxExactSizes; ++i) {
    GemmCase c = gemm_case(1 + i, 223, 19, false, true, false, false, 2100 + 10 * i);
    run_one_and_check(c);
  }
  CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == static_cast<size_t>(cpu::kMaxExactSizes));
  CHECK(grew.runtime == 0);
  // New row counts: the runtime-rows primitive gives what an exact one would (the reference).
  for (int64_t i = 0; i < 12; ++i) {
    GemmCase c = gemm_case(20 + 13 * i, 223, 19, false, true, false, false, 2200 + 10 * i);
    run_one_and_check(c);
  }
  grew = growth_since(before);
  CHECK(grew.exact == static_cast<size_t>(cpu::kMaxExactSizes));
  CHECK(grew.runtime == 1);
  GemmCase seen = gemm_case(3, 223, 19, false, true, false, false, 2300);  // an exact shape still
  run_one_and_check(seen);
  CHECK(growth_since(before).exact == grew.exact);
  CHECK(growth_since(before).runtime == grew.runtime);
}

TEST_CASE("oneDNN cache: past kMaxExactSizes inner sizes, one runtime-K primitive runs the rest", "[onednn][gemm]") {
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  for (int64_t i = 0; i < cpu::kMaxExactSizes + 12; ++i) {
    const int64_t k = i < cpu::kMaxExactSizes ? 5 + i : 50 + 9 * i;  // dW = dY^T X: k is the row count
    GemmCase c = gemm_case(31, 227, k, true, false, false, false, 2400 + 10 * i);
    run_one_and_check(c);
  }
  const CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == static_cast<size_t>(cpu::kMaxExactSizes));
  CHECK(grew.runtime == 1);
}

TEST_CASE("oneDNN cache: batched products always get exact primitives", "[onednn][gemm]") {
  // Runtime sizes are for batch 1 only (a batch's strides depend on both sizes).
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  const int64_t batch = 2, n = 229, k = 7;
  for (int64_t m = 1; m <= cpu::kMaxExactSizes + 4; ++m) {
    Tensor a = random_tensor({batch, m, k}, 2500 + m, 1.0, DType::f32);
    Tensor b = random_tensor({batch, k, n}, 2600 + m, 1.0, DType::f32);
    Tensor c = Tensor::empty({batch, m, n}, DType::f32);
    cpu::onednn_gemm(batched_gemm_args(batch, m, n, k, false, false), a, b, Tensor(), c);
    CHECK(max_abs_diff(c.to(DType::f64), matmul(a.to(DType::f64), b.to(DType::f64))) < 1e-4 * k);
  }
  const CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == static_cast<size_t>(cpu::kMaxExactSizes + 4));
  CHECK(grew.runtime == 0);
}

TEST_CASE("bf16 padding: padded row counts equal the unpadded product bit for bit", "[onednn][gemm][bf16]") {
  if (!bf16_available()) return;
  // The 64-row product runs first, on an exact 64-row primitive. Once the family has seen
  // kMaxExactSizes row counts, m rows are padded with zeros to 64 and run on that same primitive:
  // row i of C reads only row i of A, so the first m rows must match the 64-row product exactly.
  const int64_t K = 40, N = 233;
  const Tensor a64 = random_tensor({cpu::kPadStep, K}, 2700, 1.0, DType::f32);
  const Tensor b = random_tensor({K, N}, 2701, 1.0, DType::f32);
  const Tensor c64 = bf16_product(a64, b);
  for (int64_t m = 1; m < cpu::kMaxExactSizes; ++m) bf16_product(random_tensor({m, K}, 2702 + m, 1.0, DType::f32), b);
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  for (int64_t m : {50, 9, 33, 63}) {
    INFO("rows " << m);
    const Tensor c = bf16_product(slice(a64, 0, 0, m).contiguous(), b);
    CHECK(c.to_float_vector() == slice(c64, 0, 0, m).to_float_vector());
  }
  const CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == 0);  // every padded product ran on the 64-row primitive
  CHECK(grew.runtime == 0);
}

TEST_CASE("bf16 padding: padded inner sizes equal the product with zeros appended, bit for bit",
          "[onednn][gemm][bf16]") {
  if (!bf16_available()) return;
  // The inner size k pads to 64 with zero columns of A and zero rows of B: exactly the 64-wide
  // product of those zero-extended operands, on the same exact primitive.
  const int64_t M = 24, N = 239, K = cpu::kPadStep;
  const Tensor a = random_tensor({M, K}, 2800, 1.0, DType::f32), b = random_tensor({K, N}, 2801, 1.0, DType::f32);
  bf16_product(a, b);
  for (int64_t k = 1; k < cpu::kMaxExactSizes; ++k)
    bf16_product(slice(a, 1, 0, k).contiguous(), slice(b, 0, 0, k).contiguous());
  const cpu::OneDnnCacheStats before = cpu::onednn_cache_stats();
  for (int64_t k : {40, 17, 63}) {
    INFO("inner size " << k);
    const Tensor a_k = slice(a, 1, 0, k).contiguous(), b_k = slice(b, 0, 0, k).contiguous();
    const Tensor a_zeros = concat({a_k, Tensor::zeros({M, K - k})}, 1);
    const Tensor b_zeros = concat({b_k, Tensor::zeros({K - k, N})}, 0);
    CHECK(bf16_product(a_k, b_k).to_float_vector() == bf16_product(a_zeros, b_zeros).to_float_vector());
  }
  const CacheGrowth grew = growth_since(before);
  CHECK(grew.exact == 0);
  CHECK(grew.runtime == 0);
}

TEST_CASE("try_gemm_concurrent: side by side gives what onednn_gemm gives one by one", "[onednn][gemm]") {
  ThreadsScope two(2);  // side by side needs two threads, whatever OMP_NUM_THREADS says
  std::vector<GemmCase> cases;
  for (int i = 0; i < 10; ++i)
    cases.push_back(gemm_case(5 + 11 * i, 241, 24 + i, i % 3 == 0, i % 2 == 0, i % 4 == 0, i % 5 == 0, 2900 + 10 * i));
  std::vector<GemmCall> calls;
  std::vector<Tensor> one_by_one;
  for (const GemmCase& c : cases) {
    calls.push_back(c.call);
    Tensor out = c.call.c.clone();
    cpu::onednn_gemm(c.call.args, c.call.a, c.call.b, c.call.bias, out);
    one_by_one.push_back(out);
  }
  REQUIRE(cpu::try_gemm_concurrent(calls));
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO("product " << i);
    CHECK(max_abs_diff(cases[i].call.c, one_by_one[i]) < 1e-5 * cases[i].call.args.k);
  }
}

TEST_CASE("try_gemm_concurrent declines, running nothing, where side by side gains nothing", "[onednn][gemm]") {
  ThreadsScope two(2);
  auto declines = [](std::vector<GemmCall> calls) {
    std::vector<std::vector<double>> before;
    for (const GemmCall& call : calls) before.push_back(call.c.to_vector());
    bool declined = !cpu::try_gemm_concurrent(calls);
    for (size_t i = 0; i < calls.size(); ++i) declined = declined && calls[i].c.to_vector() == before[i];
    return declined;
  };
  const GemmCall plain = gemm_case(8, 251, 16, false, false, false, false, 3000).call;
  const GemmCall other = gemm_case(9, 251, 16, false, false, false, false, 3010).call;
  CHECK(declines({plain}));  // one product
  GemmCall bf16 = gemm_case(9, 251, 16, false, false, false, false, 3020).call;
  bf16.args.precision = MatmulPrecision::bf16;
  CHECK(declines({plain, bf16}));
  GemmCall f64 = other;
  f64.a = other.a.to(DType::f64);
  f64.b = other.b.to(DType::f64);
  f64.c = other.c.to(DType::f64);
  CHECK(declines({plain, f64}));
  GemmCall empty = other;
  empty.args.m = 0;
  CHECK(declines({plain, empty}));
  {
    ThreadsScope one(1);
    CHECK(declines({plain, other}));
  }
  bool inside = false;
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    inside = declines({plain, other});
  }
  CHECK(inside);
}
