// The MPI implementation of Communicator (CPU memory; CUDA tensors are staged through the host).
// Built only with ENGINE_MPI; reached through engine/dist/world.h.
#pragma once
#include <memory>

#include "engine/dist/communicator.h"

namespace engine::dist {

std::shared_ptr<Communicator> mpi_world();  // MPI_Init on first call (threads: funneled)
void mpi_finalize();
[[noreturn]] void mpi_abort(int code);

}  // namespace engine::dist
