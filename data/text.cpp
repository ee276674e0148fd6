// TextSource: whole files in memory, one segment per file for the chosen split.
#include "data/text.h"

#include <stdexcept>

namespace data {

TextSource::TextSource(const std::vector<std::string>& paths, Split split, double val_fraction, uint64_t seed)
    : WindowSource(seed, "TextSource::next_batch", "bytes") {
  if (paths.empty()) throw std::invalid_argument("TextSource: no input files given");
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw std::invalid_argument("TextSource: val_fraction must be in [0, 1) (got " + std::to_string(val_fraction) +
                                ")");
  files_.reserve(paths.size());
  for (const auto& p : paths) {
    files_.push_back(read_file_bytes(p));
    const auto& bytes = files_.back();
    const int64_t n = static_cast<int64_t>(bytes.size());
    // The boundary rounds toward validation, so a positive fraction always yields a non-empty
    // validation part and the two parts are disjoint by construction.
    const int64_t cut = n - static_cast<int64_t>(static_cast<double>(n) * val_fraction + 0.999999);
    Segment<uint8_t> s;
    s.path = p;
    if (split == Split::train) {
      s.what = "train split";
      s.tokens = bytes.data();
      s.size = cut;
    } else {
      s.what = "validation split";
      s.tokens = bytes.data() + cut;
      s.size = n - cut;
    }
    segments_.push_back(s);
  }
}

}  // namespace data
