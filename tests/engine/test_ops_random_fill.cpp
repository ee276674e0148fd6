// randn and rand_uniform: reproducible from (seed, offset), with the right statistics.
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "tests/support/gradcheck.h"

using namespace engine;

TEST_CASE("randn and rand_uniform: reproducible streams with the right moments", "[random]") {
  Generator g1(42), g2(42), g3(43);
  Tensor a = randn({20000}, g1, 0.0, 2.0, DType::f64), b = randn({20000}, g2, 0.0, 2.0, DType::f64);
  CHECK(a.to_vector() == b.to_vector());
  CHECK(randn({4}, g1).to_vector() != randn({4}, g3).to_vector());
  CHECK(randn({4}, g1).to_vector() != a.to_vector());  // the stream moved on
  const auto v = a.to_vector();
  double m = 0, s = 0;
  for (double x : v) m += x / v.size();
  for (double x : v) s += (x - m) * (x - m) / v.size();
  CHECK(m == Approx(0.0).margin(0.05));
  CHECK(std::sqrt(s) == Approx(2.0).epsilon(0.03));
  Generator g4(7);
  const auto u = rand_uniform({10000}, g4, -1.0, 3.0, DType::f64).to_vector();
  double um = 0, lo = 10, hi = -10;
  for (double x : u) {
    um += x / u.size();
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  CHECK(um == Approx(1.0).margin(0.05));
  CHECK(lo >= -1.0);
  CHECK(hi <= 3.0);
}

namespace {
// The Philox blocks a draw of n values at `offset` reads: uniform values take one 32-bit word,
// normal values two, four words to a block.
std::set<uint64_t> blocks_read(uint64_t offset, uint64_t n, uint64_t words_per_value) {
  std::set<uint64_t> blocks;
  for (uint64_t i = 0; i < n; ++i)
    for (uint64_t w = 0; w < words_per_value; ++w) blocks.insert((offset + i * words_per_value + w) >> 2);
  return blocks;
}
}  // namespace

TEST_CASE("randn and uniform draws from one generator never share a Philox block", "[random]") {
  // Odd sizes so that reservations end mid-block; every order of the two kinds.
  for (uint64_t shards : {1, 3}) {
    for (uint64_t shard = 0; shard < shards; ++shard) {
      Generator g(5);
      g.set_shard(shard, shards);
      std::set<uint64_t> used;
      const uint64_t sizes[] = {1, 3, 5, 2, 7, 4, 1, 9};
      for (int k = 0; k < 8; ++k) {
        const uint64_t words = (k % 3 == 0) ? kUniformWords : kNormalWords;
        // Every shard's part of the draw, as the unsharded stream would place it.
        const uint64_t start = g.reserve(sizes[k], words) - shard * sizes[k] * words;
        const std::set<uint64_t> blocks = blocks_read(start, sizes[k] * shards, words);
        for (uint64_t b : blocks) {
          INFO("draw " << k << " reuses block " << b);
          CHECK(used.count(b) == 0);
        }
        used.insert(blocks.begin(), blocks.end());
      }
    }
  }
}

TEST_CASE("A normal draw then a uniform draw on one generator matches fresh streams", "[random]") {
  // Values do not depend on what was drawn before except through the offset: a randn of 5 then
  // a uniform of 6 equals those draws at the offsets reserve handed out.
  Generator g(11);
  const auto n = randn({5}, g, 0.0, 1.0, DType::f64).to_vector();
  const auto u = rand_uniform({6}, g, 0.0, 1.0, DType::f64).to_vector();
  for (uint64_t i = 0; i < 5; ++i) CHECK(n[i] == normal_at(11, 0, i));
  // 5 normal values use 10 words, rounded to 12: the uniform draw starts at block 3.
  for (uint64_t i = 0; i < 6; ++i) CHECK(u[i] == static_cast<double>(uniform_at(11, 12, i)));
  CHECK(g.offset() == 20);
}
