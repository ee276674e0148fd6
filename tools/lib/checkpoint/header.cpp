#include "tools/lib/checkpoint/header.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tools/lib/checkpoint/checkpoint.h"
#include "tools/lib/fileio/fileio.h"

// The hash reads 8-byte words in the machine's order; see checkpoint.cpp.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint hashing assumes a little-endian host");

namespace ckpt {

namespace {

const char* const kHeaderMagic = "MOE-ENGINE-CHECKPOINT";

uint64_t hash_file_tail(std::FILE* f, uint64_t from) {
  std::fseek(f, static_cast<long>(from), SEEK_SET);
  uint64_t h = 1469598103934665603ull;
  std::vector<unsigned char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {  // FNV-1a's mixing on 64-bit little-endian words: 8x fewer steps
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; ++i) h = (h ^ buf[i]) * 1099511628211ull;
  }
  return h;
}

}  // namespace

void write_header(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r+b");
  if (!f) throw CheckpointError(path + ": cannot reopen to write the header: " + std::strerror(errno));
  std::fseek(f, 0, SEEK_END);
  const uint64_t size = static_cast<uint64_t>(std::ftell(f));
  const uint64_t hash = hash_file_tail(f, kHeaderBytes);
  char header[kHeaderBytes] = {};
  std::snprintf(header, sizeof header, "%s\nformat_version %d\nsize %llu\nhash %016llx\n", kHeaderMagic, kFormatVersion,
                static_cast<unsigned long long>(size), static_cast<unsigned long long>(hash));
  std::fseek(f, 0, SEEK_SET);
  const bool ok = std::fwrite(header, 1, sizeof header, f) == sizeof header && std::fflush(f) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok)
    throw CheckpointError(path + ": cannot write the header: " + std::strerror(ok ? errno : err));
}

bool check_header(const std::string& path, HeaderCheck check) {
  const std::string unreadable = fileio::unreadable_reason(path);
  if (unreadable == "no such file") throw CheckpointError(path + ": no such file");
  if (!unreadable.empty())
    throw CheckpointError(path + ": " + unreadable +
                          (unreadable == "is a directory" ? ", not a checkpoint file" : ", not a checkpoint"));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw CheckpointError(path + ": cannot open: " + std::strerror(errno));
  char header[kHeaderBytes + 1] = {};
  const size_t got = std::fread(header, 1, kHeaderBytes, f);
  std::fseek(f, 0, SEEK_END);
  const uint64_t size = static_cast<uint64_t>(std::ftell(f));
  auto fail = [&](const std::string& what) {
    std::fclose(f);
    throw CheckpointError(path + ": " + what);
  };
  if (std::strncmp(header, kHeaderMagic, std::strlen(kHeaderMagic)) != 0) {
    // A save that died before its last act leaves a zero header in front of the HDF5 data.
    char signature[8] = {};
    const bool blank = got == kHeaderBytes && std::all_of(header, header + kHeaderBytes, [](char c) { return c == 0; });
    std::fseek(f, static_cast<long>(kHeaderBytes), SEEK_SET);
    if (blank && std::fread(signature, 1, 8, f) == 8 && std::memcmp(signature, "\x89HDF\r\n\x1a\n", 8) == 0)
      fail("incomplete checkpoint: its save did not finish (no header)");
    const bool hdf5 = got >= 8 && std::memcmp(header, "\x89HDF\r\n\x1a\n", 8) == 0;
    fail(hdf5 ? "not a moe-engine checkpoint (an HDF5 file without the checkpoint header)"
              : "not a moe-engine checkpoint (no checkpoint header, and not an HDF5 file)");
  }
  int version = -1;
  unsigned long long want_size = 0, want_hash = 0;
  const char* fields = header + std::strlen(kHeaderMagic);
  if (std::sscanf(fields, "\nformat_version %d\nsize %llu\nhash %llx", &version, &want_size, &want_hash) != 3)
    fail("damaged checkpoint header");
  if (version != kFormatVersion)
    fail("checkpoint format version " + std::to_string(version) + ", this build reads version " +
         std::to_string(kFormatVersion));
  if (check == HeaderCheck::identity) {
    const bool matches = size == want_size && hash_file_tail(f, kHeaderBytes) == want_hash;
    std::fclose(f);
    return matches;
  }
  if (size != want_size)
    fail(size < want_size ? "truncated checkpoint: " + std::to_string(size) + " bytes of " + std::to_string(want_size)
                          : "damaged checkpoint: " + std::to_string(size - want_size) + " bytes more than written");
  const uint64_t hash = hash_file_tail(f, kHeaderBytes);
  if (hash != want_hash) fail("corrupted checkpoint: the file's bytes do not match the hash in its header");
  std::fclose(f);
  return true;
}

}  // namespace ckpt
