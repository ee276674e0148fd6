// TokenSource defaults: cursor/restore over the Philox stream, and Batch assembly.
#include "data/batch.h"

#include <stdexcept>
#include <string>

namespace data {

LoaderCursor TokenSource::cursor() const { return {gen_.seed(), gen_.offset(), position_}; }

void TokenSource::restore(const LoaderCursor& c) {
  if (c.position < 0) throw std::invalid_argument("TokenSource::restore: negative cursor position");
  gen_.set_state(c.seed, c.offset);
  position_ = c.position;
}

void TokenSource::check_batch_args(const char* who, int64_t batch, int64_t seq_len) {
  if (batch <= 0 || seq_len <= 0)
    throw std::invalid_argument(std::string(who) + ": batch and seq_len must be positive (got batch " +
                                std::to_string(batch) + ", seq_len " + std::to_string(seq_len) + ")");
}

Batch TokenSource::make_batch(const std::vector<int32_t>& windows, int64_t batch, int64_t seq_len,
                              std::vector<int32_t> domains) {
  // Split each window of seq_len + 1 tokens into its first seq_len (inputs) and last seq_len
  // (targets), so the target at t is the token that follows input t.
  std::vector<int32_t> in(static_cast<size_t>(batch * seq_len)), tg(in.size());
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < seq_len; ++t) {
      in[b * seq_len + t] = windows[b * (seq_len + 1) + t];
      tg[b * seq_len + t] = windows[b * (seq_len + 1) + t + 1];
    }
  Batch out;
  out.inputs = engine::Tensor::from_vector(in, {batch, seq_len});
  out.targets = engine::Tensor::from_vector(tg, {batch, seq_len});
  out.domains = std::move(domains);
  return out;
}

}  // namespace data
