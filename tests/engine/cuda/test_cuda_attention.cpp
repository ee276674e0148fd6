// causal_attention on CUDA against the CPU. See compare.h for how a case compares.
#include <catch2/catch.hpp>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda causal_attention", "[cuda][attention]") {
  for (DType dt : kFloatTypes) {
    Tensor q = rnd({2, 3, 17, 8}, 36, dt), k = rnd({2, 3, 17, 8}, 37, dt), v = rnd({2, 3, 17, 8}, 38, dt);
    compare("attention", [](const Ins& in) { return Ins{causal_attention(in[0], in[1], in[2])}; }, {q, k, v});
    compare("attention scale 0.7, views",
            [](const Ins& in) {
              return Ins{causal_attention(transpose(in[0], 1, 2), transpose(in[1], 1, 2), transpose(in[2], 1, 2), 0.7)};
            },
            {rnd({1, 9, 2, 4}, 39, dt), rnd({1, 9, 2, 4}, 40, dt), rnd({1, 9, 2, 4}, 41, dt)});
    // Backward recomputing P from the log-sum-exp instead of reading the kept probabilities
    // (the limit restored even when a REQUIRE inside compare fails).
    struct Restore {
      int64_t previous;
      ~Restore() { set_attention_saved_probs_limit(previous); }
    } restore{set_attention_saved_probs_limit(0)};
    compare("attention, probabilities recomputed",
            [](const Ins& in) { return Ins{causal_attention(in[0], in[1], in[2])}; }, {q, k, v});
  }
}
