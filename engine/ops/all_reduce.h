// all_reduce_sum: a tensor summed over the ranks of a group, the same bits on every rank and in
// every run, over any transport (MPI, NCCL, one process). Gradient bookkeeping (data
// parallelism), not part of a model: nothing is recorded on the tape.
//
// Not MPI_Allreduce or ncclAllReduce, whose algorithms (and so the order of floating-point
// additions) the libraries pick by size and topology: a reduce-scatter (rank q receives every
// rank's q-th chunk, one exchange_rows), the chunks added in rank order ((x0 + x1) + x2) + ...
// with the engine's add, and an all-gather (a second exchange_rows). The bytes moved equal a
// ring all-reduce's.
#pragma once
#include "engine/core/tensor.h"
#include "engine/dist/communicator.h"

namespace engine {

// t: f32 or f64, any shape, on any device; becomes the element-wise sum over the group's ranks.
// Charged to the profile stage "all_reduce".
void all_reduce_sum(Tensor& t, dist::Communicator& group);

}  // namespace engine
