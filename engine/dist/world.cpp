#include "engine/dist/world.h"

#include <cstdlib>
#include <stdexcept>

#ifdef ENGINE_WITH_MPI
#include "engine/dist/mpi_communicator.h"
#endif

namespace engine::dist {

namespace {

int env_int(const char* const* names) {
  for (const char* const* n = names; *n; ++n)
    if (const char* v = std::getenv(*n)) return std::atoi(v);
  return 0;
}

std::shared_ptr<Communicator>& world_slot() {
  static std::shared_ptr<Communicator> w;
  return w;
}

}  // namespace

bool built_with_mpi() {
#ifdef ENGINE_WITH_MPI
  return true;
#else
  return false;
#endif
}

// OpenMPI, MPICH / Intel MPI (hydra), PMIx launchers.
int launched_world_size() {
  // Only what an MPI launcher sets (not SLURM_NTASKS, which a one-process step in a multi-task
  // job also sees).
  static const char* const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", nullptr};
  const int n = env_int(names);
  return n > 0 ? n : 1;
}

int launched_local_size() {
  static const char* const names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", nullptr};
  const int n = env_int(names);
  return n > 0 ? n : 1;
}

int launched_local_rank() {
  static const char* const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", nullptr};
  return env_int(names);
}

int launched_rank() {
  static const char* const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", nullptr};
  return env_int(names);
}

std::shared_ptr<Communicator> world() {
  std::shared_ptr<Communicator>& w = world_slot();
  if (w) return w;
  const int launched = launched_world_size();
#ifdef ENGINE_WITH_MPI
  static const char* const launchers[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", nullptr};
  if (env_int(launchers) > 0 || std::getenv("PMIX_RANK")) {
    w = mpi_world();
    return w;
  }
#else
  if (launched > 1)
    throw std::runtime_error("launched as one of " + std::to_string(launched) +
                             " MPI ranks, but this build has no MPI (configure with -DENGINE_MPI=ON and an MPI "
                             "installed, e.g. Debian's libopenmpi-dev); every rank would train alone");
#endif
  (void)launched;
  w = self_communicator();
  return w;
}

void finalize() {
#ifdef ENGINE_WITH_MPI
  if (world_slot() && world_slot()->backend() == "mpi") {
    world_slot().reset();
    mpi_finalize();
  }
#endif
}

void abort_all(int code) {
#ifdef ENGINE_WITH_MPI
  if (world_slot() && world_slot()->backend() == "mpi") mpi_abort(code);
#endif
  std::exit(code);
}

}  // namespace engine::dist
