// Activations and swiglu on CUDA against the CPU. See compare.h for how a case compares.
#include <catch2/catch.hpp>
#include <string>

#include "tests/engine/cuda/compare.h"

using namespace engine;
using namespace engine::testing;

TEST_CASE("cuda activations: every kind and swiglu", "[cuda][activation]") {
  const Activation kinds[] = {Activation::gelu_tanh, Activation::silu,      Activation::sigmoid, Activation::softplus,
                              Activation::relu,      Activation::tanh,      Activation::exp,     Activation::log,
                              Activation::square,    Activation::normal_cdf};
  for (DType dt : kFloatTypes) {
    for (Activation kind : kinds) {
      // log needs positive inputs; the others get both signs, including |x| large enough to
      // exercise the overflow-safe branches of sigmoid and softplus.
      Tensor x = kind == Activation::log ? uniform({4, 33}, 14, dt, 0.1, 5.0) : rnd({4, 33}, 14, dt, 4.0);
      compare("activation " + std::to_string(static_cast<int>(kind)),
              [kind](const Ins& in) { return Ins{activation(kind, in[0])}; }, {x});
    }
    compare("swiglu", [](const Ins& in) { return Ins{swiglu(in[0], in[1])}; },
            {rnd({3, 40}, 15, dt, 2.0), rnd({3, 40}, 16, dt)});
  }
}
