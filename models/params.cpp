#include "models/params.h"

#include <stdexcept>

namespace moe {

engine::Tensor ParamStore::add(const std::string& name, engine::Tensor value, bool decay) {
  for (const NamedParam& p : params_)
    if (p.name == name) throw std::logic_error("ParamStore: parameter '" + name + "' registered twice");
  value.set_requires_grad(true);
  params_.push_back({name, value, decay});
  return value;
}

const engine::Tensor& ParamStore::get(const std::string& name) const {
  for (const NamedParam& p : params_)
    if (p.name == name) return p.tensor;
  throw std::out_of_range("ParamStore: no parameter named '" + name + "'");
}

int64_t ParamStore::count_elements() const {
  int64_t n = 0;
  for (const NamedParam& p : params_) n += p.tensor.numel();
  return n;
}

}  // namespace moe
