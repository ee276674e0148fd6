// Router tests' fixture: x = identity, so the logits z[t, e] = W[e, t] are whatever a test
// writes into W; and a softmax row computed by hand.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "models/router.h"

namespace moe::testing {

struct Fixture {
  engine::Tensor x, w;
  explicit Fixture(const std::vector<std::vector<double>>& logits) {
    const int64_t N = static_cast<int64_t>(logits.size()), E = static_cast<int64_t>(logits[0].size());
    std::vector<double> eye(N * N, 0.0), wv(E * N);
    for (int64_t t = 0; t < N; ++t) eye[t * N + t] = 1.0;
    for (int64_t t = 0; t < N; ++t)
      for (int64_t e = 0; e < E; ++e) wv[e * N + t] = logits[t][e];
    x = engine::Tensor::from_vector(eye, {N, N});
    w = engine::Tensor::from_vector(wv, {E, N});
  }
  Routing run(const RouterConfig& cfg, const std::vector<float>* bias = nullptr, bool training = false,
              engine::Generator* noise = nullptr, const engine::Tensor& replay_jitter = engine::Tensor()) const {
    RouteInputs in;
    in.x = x;
    in.bias = bias;
    in.training = training;
    in.noise = noise;
    in.replay_jitter = replay_jitter;
    return route(cfg, RouterWeights{w, engine::Tensor()}, in);
  }
};

inline std::vector<double> softmax_row(std::vector<double> z) {
  double m = *std::max_element(z.begin(), z.end()), s = 0;
  for (double& v : z) s += (v = std::exp(v - m));
  for (double& v : z) v /= s;
  return z;
}

}  // namespace moe::testing
