// Byte-level text: every byte is a token (vocab 256), read from one or more files.
// Contract: each file is split on its own; its first (1 - val_fraction) of the bytes belong to
// the train split and the rest to the validation split, so the splits never share a byte and
// windows never straddle two files. A source serves one split; each sequence is a window of
// seq_len + 1 bytes drawn uniformly over every valid start in that split (seeded, reproducible
// from (seed, offset)). Errors name the file: missing, empty, or a split too short for a window.
#pragma once
#include <string>
#include <vector>

#include "data/batch.h"
#include "data/io.h"

namespace data {

enum class Split { train, validation };

class TextSource : public WindowSource<uint8_t> {
 public:
  TextSource(const std::vector<std::string>& paths, Split split, double val_fraction, uint64_t seed);

  int32_t vocab_size() const override { return 256; }

  // Bytes in this source's split, summed over the files.
  int64_t split_bytes() const { return total_tokens(); }

 private:
  std::vector<std::vector<uint8_t>> files_;
};

}  // namespace data
