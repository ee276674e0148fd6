// TextSource: byte tokens, disjoint train/validation splits, reproducibility, errors naming files.
#include "data/text.h"
#include "tests/data/data_test_util.h"

using namespace data;
using datatest::check_shift_by_one;
using datatest::same_batch;
using datatest::write_bytes;

namespace {
// 1000 bytes: the first 800 are lowercase letters, the last 200 uppercase, so with
// val_fraction 0.2 any byte reveals which split it came from.
std::vector<uint8_t> marked_text() {
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 800; ++i) bytes.push_back(static_cast<uint8_t>('a' + i % 26));
  for (int i = 0; i < 200; ++i) bytes.push_back(static_cast<uint8_t>('A' + i % 26));
  return bytes;
}
}  // namespace

TEST_CASE("text: shapes, shift by one, bytes as tokens, unknown domains", "[data][text]") {
  datatest::TempDir tmp("text_shapes");
  write_bytes(tmp.path("a.txt"), marked_text());
  TextSource src({tmp.path("a.txt")}, Split::train, 0.2, 1);
  CHECK(src.vocab_size() == 256);
  CHECK(src.split_bytes() == 800);
  const Batch b = src.next_batch(16, 32);
  check_shift_by_one(b, 16, 32);
  for (int32_t d : b.domains) CHECK(d == -1);
  // Windows are contiguous runs of the file: consecutive inputs follow the alphabet cycle.
  const auto in = b.inputs.to_int_vector();
  for (int r = 0; r < 16; ++r)
    for (int t = 0; t + 1 < 32; ++t) REQUIRE(in[r * 32 + t + 1] == 'a' + (in[r * 32 + t] - 'a' + 1) % 26);
}

TEST_CASE("text: train and validation splits do not overlap", "[data][text]") {
  datatest::TempDir tmp("text_split");
  write_bytes(tmp.path("a.txt"), marked_text());
  TextSource train({tmp.path("a.txt")}, Split::train, 0.2, 5);
  TextSource val({tmp.path("a.txt")}, Split::validation, 0.2, 5);
  CHECK(train.split_bytes() + val.split_bytes() == 1000);
  CHECK(val.split_bytes() == 200);
  for (int i = 0; i < 20; ++i) {
    const Batch tb = train.next_batch(8, 50), vb = val.next_batch(8, 50);
    for (int32_t v : tb.inputs.to_int_vector()) REQUIRE((v >= 'a' && v <= 'z'));
    for (int32_t v : tb.targets.to_int_vector()) REQUIRE((v >= 'a' && v <= 'z'));
    for (int32_t v : vb.inputs.to_int_vector()) REQUIRE((v >= 'A' && v <= 'Z'));
    for (int32_t v : vb.targets.to_int_vector()) REQUIRE((v >= 'A' && v <= 'Z'));
  }
}

TEST_CASE("text: several files, reproducible, cursor resume", "[data][text]") {
  datatest::TempDir tmp("text_repro");
  write_bytes(tmp.path("a.txt"), marked_text());
  write_bytes(tmp.path("b.txt"), std::vector<uint8_t>(300, '7'));
  const std::vector<std::string> paths{tmp.path("a.txt"), tmp.path("b.txt")};
  TextSource a(paths, Split::train, 0.2, 9), b(paths, Split::train, 0.2, 9), c(paths, Split::train, 0.2, 10);
  const Batch a1 = a.next_batch(32, 8);
  CHECK(same_batch(a1, b.next_batch(32, 8)));
  CHECK_FALSE(same_batch(a1, c.next_batch(32, 8)));
  // Both files are sampled (b.txt holds 240 of the 880 train bytes).
  int sevens = 0;
  for (int32_t v : a1.inputs.to_int_vector()) sevens += v == '7';
  CHECK(sevens > 0);
  CHECK(sevens < 32 * 8);
  const LoaderCursor saved = a.cursor();
  const Batch next = a.next_batch(32, 8);
  a.next_batch(32, 8);
  a.restore(saved);
  CHECK(same_batch(a.next_batch(32, 8), next));
}

TEST_CASE("text: errors name the file and the problem", "[data][text]") {
  datatest::TempDir tmp("text_errors");
  const std::string missing = tmp.path("missing.txt");
  CHECK_THROWS_WITH(TextSource({missing}, Split::train, 0.1, 0),
                    Catch::Contains(missing) && Catch::Contains("does not exist"));
  write_bytes(tmp.path("empty.txt"), {});
  CHECK_THROWS_WITH(TextSource({tmp.path("empty.txt")}, Split::train, 0.1, 0),
                    Catch::Contains(tmp.path("empty.txt")) && Catch::Contains("is empty"));
  write_bytes(tmp.path("short.txt"), std::vector<uint8_t>(20, 'x'));
  TextSource short_src({tmp.path("short.txt")}, Split::train, 0.5, 0);
  // Train split of 10 bytes; a window of seq_len 16 needs 17.
  CHECK_THROWS_WITH(short_src.next_batch(2, 16), Catch::Contains(tmp.path("short.txt")) &&
                                                     Catch::Contains("too short") && Catch::Contains("has 10 bytes") &&
                                                     Catch::Contains("need at least 17"));
  CHECK_NOTHROW(short_src.next_batch(2, 9));
  // check_fits says the same before any draw, and draws nothing.
  const data::LoaderCursor before = short_src.cursor();
  CHECK_THROWS_WITH(short_src.check_fits(16), Catch::Contains(tmp.path("short.txt")) &&
                                                  Catch::Contains("train split has 10 bytes") &&
                                                  Catch::Contains("need at least 17"));
  CHECK_NOTHROW(short_src.check_fits(9));
  CHECK(short_src.cursor().offset == before.offset);
  TextSource no_val({tmp.path("short.txt")}, Split::validation, 0.0, 0);
  CHECK_THROWS_WITH(no_val.next_batch(1, 1), Catch::Contains("validation split has 0 bytes"));
  CHECK_THROWS_WITH(TextSource({tmp.path("short.txt")}, Split::train, 1.0, 0), Catch::Contains("val_fraction"));
  CHECK_THROWS_WITH(TextSource({}, Split::train, 0.1, 0), Catch::Contains("no input files"));
  CHECK_THROWS_WITH(TextSource({tmp.dir.string()}, Split::train, 0.1, 0), Catch::Contains("is a directory"));
}
