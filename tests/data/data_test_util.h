// Helpers for the data tests: a per-test temp folder, file writers, and batch checks.
#pragma once
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/batch.h"

namespace datatest {

// A fresh folder under the system temp dir, removed when the test ends.
struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& name) {
    dir = std::filesystem::temp_directory_path() / ("moe_data_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string path(const std::string& file) const { return (dir / file).string(); }
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Checks shape [B, T], i32, and that targets are the inputs shifted by one within each row.
inline void check_shift_by_one(const data::Batch& b, int64_t batch, int64_t seq_len) {
  REQUIRE(b.inputs.shape() == engine::Shape{batch, seq_len});
  REQUIRE(b.targets.shape() == engine::Shape{batch, seq_len});
  CHECK(b.inputs.dtype() == engine::DType::i32);
  CHECK(b.targets.dtype() == engine::DType::i32);
  REQUIRE(b.domains.size() == static_cast<size_t>(batch));
  const auto in = b.inputs.to_int_vector(), tg = b.targets.to_int_vector();
  for (int64_t r = 0; r < batch; ++r)
    for (int64_t t = 0; t + 1 < seq_len; ++t) REQUIRE(tg[r * seq_len + t] == in[r * seq_len + t + 1]);
}

inline bool same_batch(const data::Batch& a, const data::Batch& b) {
  return a.inputs.to_int_vector() == b.inputs.to_int_vector() &&
         a.targets.to_int_vector() == b.targets.to_int_vector() && a.domains == b.domains;
}

}  // namespace datatest
