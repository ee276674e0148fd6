// File reading and random-window sampling shared by the text and token-shard sources.
// Contract: read_file_bytes throws std::runtime_error naming the path when the file is missing,
// unreadable or empty. sample_windows draws `batch` windows of seq_len + 1 tokens uniformly over
// every valid start position in every segment (so a long file is sampled in proportion to its
// length), using one Philox block per window from `gen`; it throws std::runtime_error naming the
// path, its length and the needed length when a segment cannot hold one window
// (check_segments_fit, which a run calls before its first step, says the same).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/batch.h"

namespace data {

std::vector<uint8_t> read_file_bytes(const std::string& path);

// A contiguous run of tokens from one file (a whole file, or its train/validation part).
template <class T>
struct Segment {
  std::string path;
  std::string what;  // "train split", "validation split", "file": used in error messages
  const T* tokens = nullptr;
  int64_t size = 0;
};

// Throws unless every segment holds one window of seq_len + 1 tokens: a silently skipped file
// would change the data mix. Called before training starts and again at every draw.
template <class T>
void check_segments_fit(const std::vector<Segment<T>>& segments, int64_t seq_len, const char* unit) {
  const int64_t need = seq_len + 1;
  if (segments.empty()) throw std::runtime_error("data: no input files");
  for (const auto& s : segments)
    if (s.size < need)
      throw std::runtime_error("data: '" + s.path + "' is too short for one window: its " + s.what + " has " +
                               std::to_string(s.size) + " " + unit + ", need at least " + std::to_string(need) +
                               " (seq_len + 1)");
}

template <class T>
std::vector<int32_t> sample_windows(const std::vector<Segment<T>>& segments, int64_t batch, int64_t seq_len,
                                    engine::Generator& gen, const char* unit) {
  const int64_t need = seq_len + 1;
  check_segments_fit(segments, seq_len, unit);
  std::vector<uint64_t> cum_starts;
  uint64_t total = 0;
  for (const auto& s : segments) {
    total += static_cast<uint64_t>(s.size - need + 1);
    cum_starts.push_back(total);
  }
  const uint64_t first_block = gen.reserve(4 * static_cast<uint64_t>(batch)) / 4;
  std::vector<int32_t> windows(static_cast<size_t>(batch * need));
  for (int64_t b = 0; b < batch; ++b) {
    uint64_t k = random_u64(gen.seed(), first_block + b) % total;
    size_t seg = 0;
    while (k >= cum_starts[seg]) ++seg;
    const uint64_t start = k - (seg == 0 ? 0 : cum_starts[seg - 1]);
    const T* src = segments[seg].tokens + start;
    for (int64_t i = 0; i < need; ++i) windows[b * need + i] = static_cast<int32_t>(src[i]);
  }
  return windows;
}

// A source that serves random windows from segments of T tokens (text bytes, token shards).
// Subclasses fill segments_ in their constructor; `unit` names the tokens in error messages.
template <class T>
class WindowSource : public TokenSource {
 public:
  WindowSource(uint64_t seed, const char* name, const char* unit) : TokenSource(seed), name_(name), unit_(unit) {}

  Batch next_batch(int64_t batch, int64_t seq_len) override {
    check_batch_args(name_, batch, seq_len);
    std::vector<int32_t> windows = sample_windows(segments_, batch, seq_len, gen_, unit_);
    ++position_;
    return make_batch(windows, batch, seq_len, std::vector<int32_t>(static_cast<size_t>(batch), -1));
  }

  void check_fits(int64_t seq_len) const override { check_segments_fit(segments_, seq_len, unit_); }

  // Tokens over all segments.
  int64_t total_tokens() const {
    int64_t total = 0;
    for (const auto& s : segments_) total += s.size;
    return total;
  }

 protected:
  std::vector<Segment<T>> segments_;

 private:
  const char* name_;
  const char* unit_;
};

}  // namespace data
