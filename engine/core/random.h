// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011). The value at position i
// of a draw depends only on (seed, offset + i), so CPU and CUDA produce the same numbers, any
// thread split produces the same numbers, and a generator's state is two integers that a
// checkpoint can store.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/core/hostdevice.h"

namespace engine {

struct Philox4 {
  uint32_t v[4];
};

ENGINE_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Four 32-bit random words for counter `counter` under key `seed`.
ENGINE_HD Philox4 philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() is safe. 24 bits, exact in float.
ENGINE_HD float uniform_from_bits(uint32_t bits) { return ((bits >> 8) + 1u) * (1.0f / 16777216.0f); }

// Offsets count 32-bit Philox words (four per block). A uniform value takes one word and a
// normal value two (Box-Muller needs a pair), so a draw of n values of either kind covers
// exactly the words its reservation advanced over, and a uniform draw after a normal one (or
// the reverse) on the same generator never reuses a block.
constexpr uint64_t kUniformWords = 1;
constexpr uint64_t kNormalWords = 2;

// Element i of a uniform draw.
ENGINE_HD float uniform_at(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t w = offset + i * kUniformWords;
  return uniform_from_bits(philox4x32(seed, w >> 2).v[w & 3]);
}

// Element i of a standard normal draw (Box-Muller on one half of a Philox block). Offsets from
// Generator::reserve are even for normal draws, so the pair never straddles two blocks.
ENGINE_HD double normal_at(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t w = offset + i * kNormalWords;
  const Philox4 r = philox4x32(seed, w >> 2);
  const bool upper = (w & 2) != 0;
  const uint32_t a = upper ? r.v[2] : r.v[0];
  const uint32_t b = upper ? r.v[3] : r.v[1];
  const double u1 = ((a >> 8) + 1u) * (1.0 / 16777216.0);
  const double u2 = (b >> 8) * (1.0 / 16777216.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// A stream of draws: each call reserves the words of `count` values (words_per_value: 1 for
// uniform, 2 for normal), rounded up to whole blocks, so consecutive draws never overlap.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  uint64_t reserve(uint64_t count, uint64_t words_per_value = kUniformWords) {
    const uint64_t words = count * words_per_value;
    const uint64_t start = offset_ + shard_index_ * words;
    offset_ += (words * shard_count_ + 3) / 4 * 4;  // whole Philox blocks, so streams stay aligned
    return start;
  }
  // Data parallelism: this generator becomes part `index` of `count` equal parts. A draw of n
  // values then returns values index*n ... (index+1)*n - 1 of the draw of count*n values an
  // unsharded generator would make, and advances as that draw does, so ranks that each draw
  // their own rows of a batch together hold exactly one process's batch, and their generators
  // stay in the same state (one checkpoint serves them all).
  void set_shard(uint64_t index, uint64_t count) {
    shard_index_ = index;
    shard_count_ = count < 1 ? 1 : count;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
  uint64_t shard_index_ = 0, shard_count_ = 1;
};

}  // namespace engine
