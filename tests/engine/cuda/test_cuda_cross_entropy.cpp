// cross_entropy on CUDA against the CPU, ignored targets and bad targets included. See compare.h
// for how a case compares.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda cross_entropy with ignore_index", "[cuda][cross_entropy]") {
  for (DType dt : kFloatTypes) {
    Tensor logits = rnd({2, 4, 11}, 34, dt, 2.0);
    Tensor targets = Tensor::from_vector(std::vector<int32_t>{3, -100, 10, 0, 5, -100, 7, 1}, {2, 4});
    compare("cross_entropy", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1])}; }, {logits, targets});
    Tensor sevens = Tensor::from_vector(std::vector<int32_t>{3, 7, 10, 0, 7, 7, 2, 1}, {2, 4});
    compare("cross_entropy ignore 7", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1], 7)}; },
            {logits, sevens});
    Tensor ignored = Tensor::full({2, 4}, -100, DType::i32);
    compare("cross_entropy all ignored", [](const Ins& in) { return Ins{cross_entropy(in[0], in[1])}; },
            {logits, ignored});
  }
  // A bad target throws on both devices with the same message (the first bad row).
  Tensor logits = rnd({4, 5}, 35, DType::f32);
  Tensor bad = ints({1, 2, 9, -3});
  std::string cpu_msg, gpu_msg;
  try {
    cross_entropy(logits, bad);
  } catch (const std::invalid_argument& e) {
    cpu_msg = e.what();
  }
  try {
    cross_entropy(logits.to(kGpu), bad.to(kGpu));
  } catch (const std::invalid_argument& e) {
    gpu_msg = e.what();
  }
  CHECK(!cpu_msg.empty());
  CHECK(cpu_msg == gpu_msg);
}
