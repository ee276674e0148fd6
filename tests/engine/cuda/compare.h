// The CPU-vs-CUDA comparison the cuda_tests cases share. A case builds its inputs on the CPU,
// runs the same function on both devices (forward, then backward of sum_k sum(out_k * w_k) with
// fixed random weights), and compares outputs and input gradients: f32 within 1e-4 of the
// largest magnitude, f64 within 1e-10. Integer outputs must match exactly.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace engine::testing {

const Device kCpu = Device::cpu();
const Device kGpu = Device::cuda(0);
const DType kFloatTypes[] = {DType::f32, DType::f64};

using Ins = std::vector<Tensor>;  // a case's inputs, and its outputs
using Fn = std::function<Ins(const Ins&)>;

// CPU inputs from a Philox stream: normal(0, std), uniform in [low, high), and a 1-D i32 vector.
Tensor rnd(const Shape& shape, uint64_t seed, DType dt, double std = 1.0);
Tensor uniform(const Shape& shape, uint64_t seed, DType dt, double low, double high);
Tensor ints(const std::vector<int32_t>& v);

// Checks that gpu (already copied back to the CPU) matches cpu: same shape and type, integers
// equal, floats within `tol` relative to the largest magnitude (NaN and inf where the other has
// them). `what` names the comparison in the failure message.
void require_match(const Tensor& cpu, const Tensor& gpu, double tol, const std::string& what);

// f on both devices from the same inputs, outputs and gradients compared. By default every
// floating input is differentiable, and the tolerance is the one for the inputs' float type.
void compare(const std::string& name, const Fn& f, const std::vector<Tensor>& inputs, double tol = 0.0,
             std::vector<bool> differentiable = {});

}  // namespace engine::testing
