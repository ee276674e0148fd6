// SyntheticDomains: shapes, reproducibility, cursor resume, and domains that really differ.
#include <cmath>

#include "data/synthetic.h"
#include "tests/data/data_test_util.h"

using namespace data;
using datatest::check_shift_by_one;
using datatest::same_batch;

namespace {

// Empirical next-token distribution per (domain, token), counted from many batches.
std::vector<std::vector<double>> transition_counts(SyntheticDomains& src, int batches, int domain_filter_parity = -1) {
  const int V = src.vocab_size(), D = src.num_domains();
  std::vector<std::vector<double>> counts(static_cast<size_t>(D * V), std::vector<double>(V, 0.0));
  int seq_index = 0;
  for (int i = 0; i < batches; ++i) {
    const Batch b = src.next_batch(32, 64);
    const auto in = b.inputs.to_int_vector(), tg = b.targets.to_int_vector();
    for (int r = 0; r < 32; ++r, ++seq_index) {
      if (domain_filter_parity >= 0 && seq_index % 2 != domain_filter_parity) continue;
      for (int t = 0; t < 64; ++t) counts[b.domains[r] * V + in[r * 64 + t]][tg[r * 64 + t]] += 1;
    }
  }
  return counts;
}

// Mean over source tokens of the total-variation distance between two rows' distributions.
double mean_tv(const std::vector<std::vector<double>>& a, size_t a_row0, const std::vector<std::vector<double>>& b,
               size_t b_row0, int V) {
  double sum = 0;
  int rows = 0;
  for (int tok = 0; tok < V; ++tok) {
    const auto& ra = a[a_row0 + tok];
    const auto& rb = b[b_row0 + tok];
    double na = 0, nb = 0;
    for (int j = 0; j < V; ++j) na += ra[j], nb += rb[j];
    if (na < 50 || nb < 50) continue;  // too few samples to judge this row
    double tv = 0;
    for (int j = 0; j < V; ++j) tv += std::fabs(ra[j] / na - rb[j] / nb);
    sum += tv / 2;
    ++rows;
  }
  REQUIRE(rows > V / 2);
  return sum / rows;
}

}  // namespace

TEST_CASE("synthetic: shapes, shift by one, token range, domain labels", "[data][synthetic]") {
  SyntheticDomains src(50, 3, 7, 0.9);
  CHECK(src.vocab_size() == 50);
  CHECK(src.num_domains() == 3);
  const Batch b = src.next_batch(64, 16);
  check_shift_by_one(b, 64, 16);
  for (int32_t v : b.inputs.to_int_vector()) REQUIRE((v >= 0 && v < 50));
  for (int32_t v : b.targets.to_int_vector()) REQUIRE((v >= 0 && v < 50));
  std::vector<int> seen(3, 0);
  for (int32_t d : b.domains) {
    REQUIRE((d >= 0 && d < 3));
    ++seen[d];
  }
  for (int n : seen) CHECK(n > 5);  // uniform choice: each domain ~21 of 64
}

TEST_CASE("synthetic: reproducible from the seed, different seeds differ", "[data][synthetic]") {
  SyntheticDomains a(100, 4, 11, 0.8), b(100, 4, 11, 0.8), c(100, 4, 12, 0.8);
  const Batch a1 = a.next_batch(8, 32), b1 = b.next_batch(8, 32), c1 = c.next_batch(8, 32);
  CHECK(same_batch(a1, b1));
  CHECK_FALSE(same_batch(a1, c1));
  const Batch a2 = a.next_batch(8, 32);
  CHECK_FALSE(same_batch(a1, a2));  // the stream advanced
  CHECK(a.cursor().position == 2);
}

TEST_CASE("synthetic: cursor save and restore gives the identical next batch", "[data][synthetic]") {
  SyntheticDomains src(64, 2, 3, 0.9);
  src.next_batch(4, 10);
  const LoaderCursor saved = src.cursor();
  CHECK(saved.seed == 3);
  CHECK(saved.offset > 0);
  const Batch expected = src.next_batch(4, 10);
  src.next_batch(4, 10);  // move past it
  src.restore(saved);
  CHECK(same_batch(src.next_batch(4, 10), expected));
  // A fresh source restored from the cursor resumes the same stream too.
  SyntheticDomains fresh(64, 2, 3, 0.9);
  fresh.restore(saved);
  CHECK(same_batch(fresh.next_batch(4, 10), expected));
  CHECK(fresh.cursor().position == saved.position + 1);
}

TEST_CASE("synthetic: domains have clearly different next-token distributions", "[data][synthetic]") {
  const int V = 32;
  // Two disjoint halves of the same stream, so within-domain noise is measured the same way.
  SyntheticDomains src_even(V, 2, 21, 0.9), src_odd(V, 2, 21, 0.9);
  const auto even = transition_counts(src_even, 40, 0);
  const auto odd = transition_counts(src_odd, 40, 1);
  const double within0 = mean_tv(even, 0, odd, 0, V);
  const double within1 = mean_tv(even, V, odd, V, V);
  const double between = mean_tv(even, 0, odd, V, V);
  INFO("within0 " << within0 << " within1 " << within1 << " between " << between);
  CHECK(within0 < 0.2);
  CHECK(within1 < 0.2);
  CHECK(between > 0.6);
  // Concentration 0 makes every domain uniform: the signal disappears.
  SyntheticDomains flat_a(V, 2, 21, 0.0), flat_b(V, 2, 21, 0.0);
  const auto fe = transition_counts(flat_a, 40, 0), fo = transition_counts(flat_b, 40, 1);
  CHECK(mean_tv(fe, 0, fo, V, V) < 0.35);
}

TEST_CASE("synthetic: bad arguments are rejected with a clear message", "[data][synthetic]") {
  CHECK_THROWS_WITH(SyntheticDomains(1, 2, 0, 0.5), Catch::Contains("vocab must be at least 2"));
  CHECK_THROWS_WITH(SyntheticDomains(10, 0, 0, 0.5), Catch::Contains("num_domains"));
  CHECK_THROWS_WITH(SyntheticDomains(10, 2, 0, 1.5), Catch::Contains("concentration"));
  SyntheticDomains src(10, 2, 0, 0.5);
  CHECK_THROWS_WITH(src.next_batch(0, 4), Catch::Contains("batch and seq_len must be positive"));
  CHECK_THROWS_WITH(src.next_batch(2, -1), Catch::Contains("batch and seq_len must be positive"));
}
