// The NCCL implementation of Communicator: CUDA tensors move between GPUs over NCCL, on the
// engine's stream (cuda::stream()), without staging through the host.
//
// Contract (on top of communicator.h's):
// - One rank per GPU. The caller makes this rank's device current (cudaSetDevice, usually the
//   local rank) before creating the communicator; it stays bound to that device, and CUDA
//   tensors passed in must live there. NCCL refuses two ranks of one group on one GPU.
// - Tensors are summed by engine::all_reduce_sum (engine/ops/all_reduce.h) over this
//   communicator's row exchanges: the rank-order sum, bit-identical to the MPI backend's.
// - exchange_rows (all_to_all_rows) on CUDA returns after the exchange has completed (the stream is
//   synchronized). The row counts must agree between ranks (send_rows[q] on p equals
//   recv_rows[p] on q), as for MPI; NCCL does not check them.
// - CPU tensors and host vectors (all_reduce_sum of vectors, all_gather, all_to_all of counts,
//   broadcast, send, receive, barrier) go through `host`, the MPI communicator over the same
//   ranks. split() splits `host` and builds a new NCCL communicator over each sub-group.
// - Every NCCL or CUDA failure throws std::runtime_error naming the collective.
#pragma once
#include <memory>

#include "engine/dist/communicator.h"

namespace engine::dist {

// True when this build has NCCL (ENGINE_WITH_NCCL: CUDA, MPI and NCCL all found).
bool built_with_nccl();

// A communicator over host's ranks (collective: every rank of host calls it). Rank 0 creates
// the ncclUniqueId and broadcasts it over host. Throws std::runtime_error in a build without
// NCCL, or when this rank has no usable CUDA device.
std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> host);
// The same, bound to cuda:device (made current for the creation).
std::shared_ptr<Communicator> nccl_communicator(std::shared_ptr<Communicator> host, int device);

}  // namespace engine::dist
