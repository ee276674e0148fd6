// Strided copies, casts, fills and device transfers on CUDA against the CPU. See compare.h for how
// a case compares.
#include <catch2/catch.hpp>
#include <vector>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda strided copy of a 6-D permutation, cast and fill", "[cuda][copy]") {
  Tensor x = rnd({2, 3, 2, 4, 3, 5}, 26, DType::f64);
  Tensor perm_cpu = permute(x, {5, 3, 1, 0, 4, 2}).contiguous();
  Tensor perm_gpu = permute(x.to(kGpu), {5, 3, 1, 0, 4, 2}).contiguous().to(kCpu);
  CHECK(perm_cpu.to_vector() == perm_gpu.to_vector());
  for (DType from : {DType::f32, DType::f64, DType::i32})
    for (DType to : {DType::f32, DType::f64, DType::i32}) {
      Tensor src = rnd({37}, 27, DType::f64, 50.0).to(from);
      INFO(dtype_name(from) << " -> " << dtype_name(to));
      CHECK(src.to(to).to_vector() == src.to(kGpu).to(to).to(kCpu).to_vector());
    }
  for (DType dt : {DType::f32, DType::f64, DType::i32})
    CHECK(Tensor::full({3, 5}, -7.0, dt, kGpu).to_vector() == std::vector<double>(15, -7.0));
}

TEST_CASE("cuda to_device round trips and gradients", "[cuda][copy][to_device]") {
  Tensor f = rnd({3, 4}, 28, DType::f32), d = rnd({3, 4}, 29, DType::f64);
  Tensor i = Tensor::from_vector(std::vector<int32_t>{1, -2, 3, 2147483647, -2147483647 - 1, 0}, {2, 3});
  CHECK(f.to(kGpu).to(kCpu).to_float_vector() == f.to_float_vector());
  CHECK(d.to(kGpu).to(kCpu).to_vector() == d.to_vector());
  CHECK(i.to(kGpu).to(kCpu).to_int_vector() == i.to_int_vector());
  CHECK(d.to(kGpu).clone().to(kCpu).to_vector() == d.to_vector());  // device to device
  CHECK(transpose(d, 0, 1).to(kGpu).to(kCpu).to_vector() == transpose(d, 0, 1).contiguous().to_vector());
  CHECK(Tensor::empty({0, 3}, DType::f32, kGpu).to(kCpu).numel() == 0);
  // The gradient of a transfer is moved back.
  compare("to_device", [](const Ins& in) { return Ins{mul(in[0].to(kGpu), in[0].to(kGpu)).to(kCpu)}; }, {d});
}
