// TokenShards: layout detection, validation at load time, then window sampling.
#include "data/token_shards.h"

#include <stdexcept>

namespace data {
namespace {

// Explicit little-endian decoding: the formats are defined little-endian, whatever the host.
int32_t read_i32_le(const uint8_t* p) {
  return static_cast<int32_t>(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                              (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24));
}
uint16_t read_u16_le(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace

std::vector<uint16_t> load_token_shard(const std::string& path, int32_t vocab) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const int64_t size = static_cast<int64_t>(bytes.size());
  const int64_t header_bytes = kLlmcHeaderInts * 4;
  int64_t begin = 0, count = 0;
  if (size >= 4 && read_i32_le(bytes.data()) == kLlmcMagic) {
    if (size < header_bytes)
      throw std::runtime_error("data: '" + path + "' has the llm.c magic but only " + std::to_string(size) +
                               " bytes, less than the " + std::to_string(header_bytes) + "-byte header");
    const int32_t version = read_i32_le(bytes.data() + 4);
    if (version != kLlmcVersion)
      throw std::runtime_error("data: '" + path + "' is an llm.c shard of unsupported version " +
                               std::to_string(version) + " (expected " + std::to_string(kLlmcVersion) + ")");
    const int64_t declared = read_i32_le(bytes.data() + 8);
    if (declared < 0 || header_bytes + 2 * declared != size)
      throw std::runtime_error("data: '" + path + "' llm.c header declares " + std::to_string(declared) + " tokens (" +
                               std::to_string(header_bytes + 2 * declared) +
                               " bytes with the header) but the file has " + std::to_string(size) + " bytes");
    begin = header_bytes;
    count = declared;
  } else {
    if (size % 2 != 0)
      throw std::runtime_error("data: '" + path + "' has an odd byte count (" + std::to_string(size) +
                               ") for raw uint16 tokens");
    count = size / 2;
  }
  if (count == 0) throw std::runtime_error("data: '" + path + "' holds no tokens");
  std::vector<uint16_t> tokens(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    tokens[i] = read_u16_le(bytes.data() + begin + 2 * i);
    // Checked here, once, so a bad id never reaches an embedding lookup mid-run.
    if (tokens[i] >= vocab)
      throw std::runtime_error("data: '" + path + "' token " + std::to_string(tokens[i]) + " at index " +
                               std::to_string(i) + " is >= vocab size " + std::to_string(vocab));
  }
  return tokens;
}

TokenShards::TokenShards(const std::vector<std::string>& paths, int32_t vocab, uint64_t seed)
    : WindowSource(seed, "TokenShards::next_batch", "tokens"), vocab_(vocab) {
  if (paths.empty()) throw std::invalid_argument("TokenShards: no shard files given");
  if (vocab < 1 || vocab > 65536)
    throw std::invalid_argument("TokenShards: vocab must be in [1, 65536] for uint16 tokens (got " +
                                std::to_string(vocab) + ")");
  shards_.reserve(paths.size());
  for (const auto& p : paths) {
    shards_.push_back(load_token_shard(p, vocab));
    Segment<uint16_t> s;
    s.path = p;
    s.what = "file";
    s.tokens = shards_.back().data();
    s.size = static_cast<int64_t>(shards_.back().size());
    segments_.push_back(s);
  }
}

}  // namespace data
