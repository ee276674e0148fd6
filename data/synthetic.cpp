// SyntheticDomains: transition tables from a key derived from the seed (so building them does
// not consume the batch stream), then one Philox block per sampled token.
#include "data/synthetic.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace data {
namespace {
// Tables use their own Philox key: the batch stream (gen_) then starts at offset 0, and a
// restored cursor never needs to know how many numbers the tables took.
constexpr uint64_t kTableKey = 0x9E3779B97F4A7C15ull;
constexpr int kFavoured = 4;
}  // namespace

SyntheticDomains::SyntheticDomains(int32_t vocab, int num_domains, uint64_t seed, double concentration)
    : TokenSource(seed), vocab_(vocab), num_domains_(num_domains), concentration_(concentration) {
  if (vocab < 2)
    throw std::invalid_argument("SyntheticDomains: vocab must be at least 2 (got " + std::to_string(vocab) + ")");
  if (num_domains < 1)
    throw std::invalid_argument("SyntheticDomains: num_domains must be at least 1 (got " + std::to_string(num_domains) +
                                ")");
  if (!(concentration >= 0.0 && concentration <= 1.0))
    throw std::invalid_argument("SyntheticDomains: concentration must be in [0, 1] (got " +
                                std::to_string(concentration) + ")");
  k_ = std::min<int>(kFavoured, vocab);
  const uint64_t key = seed ^ kTableKey;
  const size_t rows = static_cast<size_t>(num_domains) * vocab;
  succ_.resize(rows * k_);
  cum_.resize(rows * k_);
  uint64_t block = 0;
  for (size_t row = 0; row < rows; ++row) {
    int32_t* s = &succ_[row * k_];
    float* c = &cum_[row * k_];
    float total = 0;
    for (int j = 0; j < k_; ++j) {
      // Distinct successors by rejection: k_ <= vocab, so this ends quickly.
      int32_t tok;
      do {
        tok = static_cast<int32_t>(random_u64(key, block++) % static_cast<uint64_t>(vocab));
      } while (std::find(s, s + j, tok) != s + j);
      s[j] = tok;
      // Weights in [0.5, 1.5): uneven, but no favoured successor is negligible.
      const float w = 0.5f + engine::uniform_from_bits(engine::philox4x32(key, block++).v[2]);
      total += w;
      c[j] = total;
    }
    for (int j = 0; j < k_; ++j) c[j] /= total;
    c[k_ - 1] = 1.0f;
  }
}

Batch SyntheticDomains::next_batch(int64_t batch, int64_t seq_len) {
  check_batch_args("SyntheticDomains::next_batch", batch, seq_len);
  const int64_t need = seq_len + 1;
  // Block 0 of a sequence picks its domain and first token; block 1 + t picks token t + 1.
  const uint64_t blocks_per_seq = static_cast<uint64_t>(need);
  const uint64_t first = gen_.reserve(4 * blocks_per_seq * static_cast<uint64_t>(batch)) / 4;
  const uint64_t seed = gen_.seed();
  std::vector<int32_t> windows(static_cast<size_t>(batch * need));
  std::vector<int32_t> domains(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const uint64_t base = first + b * blocks_per_seq;
    const engine::Philox4 r0 = engine::philox4x32(seed, base);
    const int d = static_cast<int>(r0.v[0] % static_cast<uint32_t>(num_domains_));
    domains[b] = d;
    int32_t tok = static_cast<int32_t>(r0.v[1] % static_cast<uint32_t>(vocab_));
    windows[b * need] = tok;
    for (int64_t t = 1; t < need; ++t) {
      const engine::Philox4 r = engine::philox4x32(seed, base + t);
      if (engine::uniform_from_bits(r.v[0]) <= concentration_) {
        const size_t row = (static_cast<size_t>(d) * vocab_ + tok) * k_;
        const float u = engine::uniform_from_bits(r.v[1]);
        int j = 0;
        while (j < k_ - 1 && u > cum_[row + j]) ++j;
        tok = succ_[row + j];
      } else {
        tok = static_cast<int32_t>(r.v[2] % static_cast<uint32_t>(vocab_));
      }
      windows[b * need + t] = tok;
    }
  }
  ++position_;
  return make_batch(windows, batch, seq_len, std::move(domains));
}

}  // namespace data
