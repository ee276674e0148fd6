// The checkpoint file's header: HDF5's user block, 512 bytes that HDF5 skips (h5py and h5ls read
// such files as usual). It holds a magic line, the format version, the file size and a hash of
// every byte after the header, so a truncated or damaged file is refused before HDF5 parses it:
// the HDF5 library does not survive every corrupted file (fuzzing found heap overflows in it).
// Internal to the checkpoint library (checkpoint.cpp writes and checks it, and reads edited files).
#pragma once
#include <cstddef>
#include <string>

namespace ckpt {

constexpr size_t kHeaderBytes = 512;

// Writes the header of a file whose HDF5 contents are complete: size and hash of what follows.
void write_header(const std::string& path);

enum class HeaderCheck {
  whole,     // magic, version, size and hash: anything else throws
  identity,  // magic and version only: a file edited since its save (h5py) has a stale size or hash
};

// Throws CheckpointError "PATH: what is wrong" unless the file passes `check`. Returns whether its
// size and hash match the bytes after the header (always true for HeaderCheck::whole).
bool check_header(const std::string& path, HeaderCheck check);

}  // namespace ckpt
