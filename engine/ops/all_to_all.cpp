#include "engine/ops/all_to_all.h"

#include "engine/core/tape.h"
#include "engine/ops/copy.h"

namespace engine {

Tensor all_to_all_rows(const Tensor& x, const std::shared_ptr<dist::Communicator>& group,
                       const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows) {
  ENGINE_CHECK(group != nullptr, "all_to_all_rows", "no communicator");
  ENGINE_CHECK(x.defined() && x.ndim() == 2, "all_to_all_rows", "x must be [rows, d], got " + x.str());
  Tensor out = group->all_to_all_rows(kernel_input(x), send_rows, recv_rows);
  if (is_floating(x.dtype()) && needs_grad({x})) {
    record(out, {x}, [group, send_rows, recv_rows](const Tensor& dout, GradSink& g) {
      g.add(0, group->all_to_all_rows(kernel_input(dout), recv_rows, send_rows));
    });
  }
  return out;
}

}  // namespace engine
