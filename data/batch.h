// Batches of next-token training data and the interface every data source implements.
// Contract: inputs and targets are i32 [B, T] on the CPU, targets[b, t] == inputs[b, t + 1] of
// the same sampled window (the next token); domains holds one label per sequence, -1 when the
// source has no notion of domain. All randomness comes from one counter-based Philox stream,
// so a source's whole state is (seed, offset, position): a checkpoint stores a LoaderCursor and
// restore() makes the next batch identical to the one an uninterrupted run would have drawn.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/core/random.h"
#include "engine/core/tensor.h"

namespace data {

struct Batch {
  engine::Tensor inputs, targets;  // i32 [B, T]
  std::vector<int32_t> domains;    // [B], -1 when unknown
};

struct LoaderCursor {
  uint64_t seed = 0, offset = 0;  // the Philox stream state
  int64_t position = 0;           // batches drawn so far (for logs and sanity checks)
};

class TokenSource {
 public:
  explicit TokenSource(uint64_t seed) : gen_(seed) {}
  virtual ~TokenSource() = default;
  // Sources hold pointers into their own buffers: copying would alias them.
  TokenSource(const TokenSource&) = delete;
  TokenSource& operator=(const TokenSource&) = delete;

  virtual Batch next_batch(int64_t batch, int64_t seq_len) = 0;
  virtual int32_t vocab_size() const = 0;
  // Throws, naming the file and its size, when a window of seq_len + 1 tokens cannot be drawn,
  // so a run can find out before its first step rather than at its first draw (sources that
  // generate their tokens fit any length).
  virtual void check_fits(int64_t /*seq_len*/) const {}

  // The default cursor is the generator state plus the batch count; sources whose state is
  // entirely in the generator (all of ours) need not override these.
  virtual LoaderCursor cursor() const;
  virtual void restore(const LoaderCursor& c);

  // Data parallelism: this source becomes part `index` of `count`. next_batch(b, T) then returns
  // rows index*b ... (index+1)*b - 1 of the batch next_batch(count*b, T) returns unsharded, and
  // the cursor advances as for that batch, so `count` sharded sources together draw exactly
  // one source's batches and share one cursor.
  void set_shard(int64_t index, int64_t count) {
    gen_.set_shard(static_cast<uint64_t>(index), static_cast<uint64_t>(count));
  }

 protected:
  // Throws std::invalid_argument naming `who` unless batch and seq_len are positive.
  static void check_batch_args(const char* who, int64_t batch, int64_t seq_len);
  // Builds a Batch from B rows of seq_len + 1 tokens each (row-major) and the labels.
  static Batch make_batch(const std::vector<int32_t>& windows, int64_t batch, int64_t seq_len,
                          std::vector<int32_t> domains);

  engine::Generator gen_;
  int64_t position_ = 0;
};

// One uniformly distributed 64-bit word from Philox block `block` under `seed`; index choices
// take it modulo n (bias below 2^-40 for any realistic corpus size).
inline uint64_t random_u64(uint64_t seed, uint64_t block) {
  const engine::Philox4 r = engine::philox4x32(seed, block);
  return static_cast<uint64_t>(r.v[0]) | (static_cast<uint64_t>(r.v[1]) << 32);
}

}  // namespace data
