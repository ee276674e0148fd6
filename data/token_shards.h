// Pre-tokenized uint16 shards, as written by nanoGPT (raw little-endian uint16, ".bin") and by
// llm.c (a header of 256 little-endian int32: [0] magic 20240520, [1] version 1, [2] token
// count, then the uint16 tokens). The layout is detected per file by the magic; a file without
// it is read as raw.
// Contract: every file is validated when loaded, and errors name the file and the problem:
// missing or empty file, odd byte count (raw), unsupported version or a token count that
// disagrees with the file size (llm.c), a token >= the declared vocab (with its position), or
// at sampling time a file shorter than one window. Sequences are windows of seq_len + 1 tokens
// drawn uniformly over all valid starts across the files, reproducible from (seed, offset).
#pragma once
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/io.h"

namespace data {

constexpr int32_t kLlmcMagic = 20240520;
constexpr int32_t kLlmcVersion = 1;
constexpr int64_t kLlmcHeaderInts = 256;

// Reads one shard (either layout) and checks every token against vocab.
std::vector<uint16_t> load_token_shard(const std::string& path, int32_t vocab);

class TokenShards : public WindowSource<uint16_t> {
 public:
  TokenShards(const std::vector<std::string>& paths, int32_t vocab, uint64_t seed);

  int32_t vocab_size() const override { return vocab_; }
  int64_t num_tokens() const { return total_tokens(); }

 private:
  int32_t vocab_;
  std::vector<std::vector<uint16_t>> shards_;
};

}  // namespace data
