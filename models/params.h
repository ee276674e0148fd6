// Named parameters. Names mirror PyTorch state_dict paths (layers.3.moe.experts.5.fc1.weight)
// so checkpoints and reference files line up with a PyTorch model of the same config.
#pragma once
#include <string>
#include <vector>

#include "engine/engine.h"

namespace moe {

struct NamedParam {
  std::string name;
  engine::Tensor tensor;
  bool decay;  // weight decay applies (matrices); norms, biases and embeddings are marked false
};

class ParamStore {
 public:
  // Registers a leaf that requires a gradient and returns it.
  engine::Tensor add(const std::string& name, engine::Tensor value, bool decay);
  const std::vector<NamedParam>& all() const { return params_; }
  std::vector<NamedParam>& all() { return params_; }
  const engine::Tensor& get(const std::string& name) const;  // throws naming the missing key
  int64_t count_elements() const;

 private:
  std::vector<NamedParam> params_;
};

}  // namespace moe
