// Whole-file reads with errors that name the file.
#include "data/io.h"

#include <filesystem>
#include <fstream>

namespace data {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw std::runtime_error("data: '" + path + "' does not exist");
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error("data: '" + path + "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("data: cannot open '" + path + "' for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error("data: cannot determine the size of '" + path + "'");
  if (size == 0) throw std::runtime_error("data: '" + path + "' is empty");
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  if (in.gcount() != size) throw std::runtime_error("data: short read from '" + path + "'");
  return bytes;
}

}  // namespace data
