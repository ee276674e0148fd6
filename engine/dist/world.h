// The group of all processes of a run, and how it starts and ends.
//
// A process started by an MPI launcher (mpirun, srun: its environment names a world) joins MPI
// here; a process started on its own never touches MPI, so single-process runs behave exactly as
// in a build without MPI. A build without MPI (ENGINE_MPI=OFF, or AUTO with no MPI found) that
// is launched as one of several ranks refuses to start rather than train R unrelated copies.
#pragma once
#include <memory>
#include <string>

#include "engine/dist/communicator.h"

namespace engine::dist {

bool built_with_mpi();
// The world size the launcher's environment announces (1 when not launched by MPI).
int launched_world_size();
// The number of ranks of this run on this machine (1 when not launched by MPI), and this
// process's index among them (0 when not launched by MPI): one GPU each.
int launched_local_size();
int launched_local_rank();
// This process's rank in the world the launcher announces (0 when not launched by MPI), for
// before the world is joined.
int launched_rank();

// Joins MPI on first call when launched by it (MPI_Init), else returns a one-process group.
// Throws std::runtime_error when launched as several ranks but built without MPI.
std::shared_ptr<Communicator> world();
// Leaves MPI (MPI_Finalize) if world() joined it; a no-op otherwise. Call once, at exit.
void finalize();
// Ends every rank of the run at once with `code` (MPI_Abort); in one process, std::exit(code).
[[noreturn]] void abort_all(int code);

}  // namespace engine::dist
