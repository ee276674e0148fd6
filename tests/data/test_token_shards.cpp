// TokenShards: raw and llm.c layouts, validation at load, reproducibility, errors naming files.
#include "data/token_shards.h"
#include "tests/data/data_test_util.h"

using namespace data;
using datatest::check_shift_by_one;
using datatest::same_batch;
using datatest::write_bytes;

namespace {

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v & 0xFF));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put_i32(std::vector<uint8_t>& out, int32_t v) {
  const uint32_t u = static_cast<uint32_t>(v);
  for (int s = 0; s < 32; s += 8) out.push_back(static_cast<uint8_t>(u >> s));
}

std::vector<uint8_t> raw_shard(const std::vector<uint16_t>& tokens) {
  std::vector<uint8_t> out;
  for (uint16_t t : tokens) put_u16(out, t);
  return out;
}

std::vector<uint8_t> llmc_shard(const std::vector<uint16_t>& tokens, int32_t declared, int32_t version = 1) {
  std::vector<uint8_t> out;
  put_i32(out, kLlmcMagic);
  put_i32(out, version);
  put_i32(out, declared);
  for (int i = 3; i < 256; ++i) put_i32(out, 0);
  for (uint16_t t : tokens) put_u16(out, t);
  return out;
}

// Tokens 1000, 1001, ..., so a window's contents show where it came from.
std::vector<uint16_t> ramp(int n, uint16_t first) {
  std::vector<uint16_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<uint16_t>(first + i));
  return t;
}

}  // namespace

TEST_CASE("shards: raw and llm.c layouts load the same tokens", "[data][shards]") {
  datatest::TempDir tmp("shards_layouts");
  const auto tokens = ramp(500, 1000);
  write_bytes(tmp.path("raw.bin"), raw_shard(tokens));
  write_bytes(tmp.path("llmc.bin"), llmc_shard(tokens, 500));
  CHECK(load_token_shard(tmp.path("raw.bin"), 50304) == tokens);
  CHECK(load_token_shard(tmp.path("llmc.bin"), 50304) == tokens);  // header skipped, not read as tokens
  TokenShards src({tmp.path("raw.bin"), tmp.path("llmc.bin")}, 50304, 3);
  CHECK(src.vocab_size() == 50304);
  CHECK(src.num_tokens() == 1000);
  const Batch b = src.next_batch(16, 20);
  check_shift_by_one(b, 16, 20);
  for (int32_t d : b.domains) CHECK(d == -1);
  const auto in = b.inputs.to_int_vector();
  for (int r = 0; r < 16; ++r)
    for (int t = 0; t < 20; ++t) {
      REQUIRE((in[r * 20 + t] >= 1000 && in[r * 20 + t] < 1500));
      if (t > 0) REQUIRE(in[r * 20 + t] == in[r * 20 + t - 1] + 1);  // windows are contiguous
    }
}

TEST_CASE("shards: reproducible, different seeds differ, cursor resume", "[data][shards]") {
  datatest::TempDir tmp("shards_repro");
  write_bytes(tmp.path("a.bin"), raw_shard(ramp(4000, 0)));
  const std::vector<std::string> paths{tmp.path("a.bin")};
  TokenShards a(paths, 4000, 1), b(paths, 4000, 1), c(paths, 4000, 2);
  const Batch a1 = a.next_batch(8, 16);
  CHECK(same_batch(a1, b.next_batch(8, 16)));
  CHECK_FALSE(same_batch(a1, c.next_batch(8, 16)));
  CHECK_FALSE(same_batch(a1, a.next_batch(8, 16)));
  const LoaderCursor saved = a.cursor();
  CHECK(saved.position == 2);
  const Batch next = a.next_batch(8, 16);
  TokenShards resumed(paths, 4000, 99);
  resumed.restore(saved);
  CHECK(same_batch(resumed.next_batch(8, 16), next));
}

TEST_CASE("shards: every window start is reachable, including the last", "[data][shards]") {
  datatest::TempDir tmp("shards_cover");
  write_bytes(tmp.path("a.bin"), raw_shard(ramp(12, 0)));
  TokenShards src({tmp.path("a.bin")}, 12, 4);
  std::vector<int> starts(12, 0);
  for (int i = 0; i < 50; ++i) {
    const auto in = src.next_batch(8, 3).inputs.to_int_vector();
    for (int r = 0; r < 8; ++r) ++starts[in[r * 3]];
  }
  for (int s = 0; s <= 8; ++s) CHECK(starts[s] > 0);  // 9 valid starts for windows of 4 in 12 tokens
  for (int s = 9; s < 12; ++s) CHECK(starts[s] == 0);
}

TEST_CASE("shards: errors name the file and the problem", "[data][shards]") {
  datatest::TempDir tmp("shards_errors");
  const std::string missing = tmp.path("missing.bin");
  CHECK_THROWS_WITH(TokenShards({missing}, 100, 0), Catch::Contains(missing) && Catch::Contains("does not exist"));

  write_bytes(tmp.path("empty.bin"), {});
  CHECK_THROWS_WITH(TokenShards({tmp.path("empty.bin")}, 100, 0),
                    Catch::Contains(tmp.path("empty.bin")) && Catch::Contains("is empty"));

  write_bytes(tmp.path("odd.bin"), {1, 0, 2});
  CHECK_THROWS_WITH(TokenShards({tmp.path("odd.bin")}, 100, 0),
                    Catch::Contains(tmp.path("odd.bin")) && Catch::Contains("odd byte count (3)"));

  write_bytes(tmp.path("count.bin"), llmc_shard(ramp(10, 0), 11));
  CHECK_THROWS_WITH(TokenShards({tmp.path("count.bin")}, 100, 0), Catch::Contains(tmp.path("count.bin")) &&
                                                                      Catch::Contains("declares 11 tokens") &&
                                                                      Catch::Contains("1044 bytes"));

  write_bytes(tmp.path("version.bin"), llmc_shard(ramp(10, 0), 10, 7));
  CHECK_THROWS_WITH(TokenShards({tmp.path("version.bin")}, 100, 0),
                    Catch::Contains(tmp.path("version.bin")) && Catch::Contains("unsupported version 7"));

  std::vector<uint8_t> truncated_header;
  put_i32(truncated_header, kLlmcMagic);
  put_i32(truncated_header, 1);
  write_bytes(tmp.path("header.bin"), truncated_header);
  CHECK_THROWS_WITH(TokenShards({tmp.path("header.bin")}, 100, 0),
                    Catch::Contains(tmp.path("header.bin")) && Catch::Contains("less than the 1024-byte header"));

  write_bytes(tmp.path("vocab.bin"), raw_shard({1, 2, 300, 4}));
  CHECK_THROWS_WITH(
      TokenShards({tmp.path("vocab.bin")}, 256, 0),
      Catch::Contains(tmp.path("vocab.bin")) && Catch::Contains("token 300 at index 2 is >= vocab size 256"));
  write_bytes(tmp.path("vocab_llmc.bin"), llmc_shard({5, 100}, 2));
  CHECK_THROWS_WITH(TokenShards({tmp.path("vocab_llmc.bin")}, 100, 0),
                    Catch::Contains(tmp.path("vocab_llmc.bin")) && Catch::Contains("token 100 at index 1"));

  write_bytes(tmp.path("short.bin"), raw_shard(ramp(5, 0)));
  TokenShards short_src({tmp.path("short.bin")}, 100, 0);
  CHECK_THROWS_WITH(short_src.next_batch(1, 5),
                    Catch::Contains(tmp.path("short.bin")) && Catch::Contains("has 5 tokens, need at least 6"));
  CHECK_NOTHROW(short_src.next_batch(1, 4));
  // The second of two shards is the short one: check_fits names it, before any draw.
  write_bytes(tmp.path("long.bin"), raw_shard(ramp(50, 0)));
  TokenShards mixed({tmp.path("long.bin"), tmp.path("short.bin")}, 100, 0);
  CHECK_THROWS_WITH(mixed.check_fits(5),
                    Catch::Contains(tmp.path("short.bin")) && Catch::Contains("has 5 tokens, need at least 6"));
  CHECK_NOTHROW(mixed.check_fits(4));

  CHECK_THROWS_WITH(TokenShards({}, 100, 0), Catch::Contains("no shard files"));
  CHECK_THROWS_WITH(TokenShards({tmp.path("short.bin")}, 70000, 0), Catch::Contains("vocab must be in [1, 65536]"));
}
