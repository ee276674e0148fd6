// all_to_all_rows: the differentiable exchange behind expert parallelism. Each rank sends
// send_rows[q] of x's rows to rank q (x holds them grouped by destination, in rank order) and
// receives recv_rows[q] rows from rank q, returned grouped by source in rank order.
// Backward is the reverse exchange: the gradient of every received row goes back to the rank
// and the position it came from. Every rank of the group must call it (a collective), in the
// same order in forward and so in backward.
#pragma once
#include <memory>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"

namespace engine {

Tensor all_to_all_rows(const Tensor& x, const std::shared_ptr<dist::Communicator>& group,
                       const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows);

}  // namespace engine
