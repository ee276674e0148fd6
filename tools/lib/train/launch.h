// What a program started by mpirun does before and around training, so that every rank starts
// the same way and bad input ends every rank with one message instead of a hang.
#pragma once
#include <atomic>
#include <streambuf>
#include <string>

#include "engine/dist/communicator.h"

namespace train {

// Call first in main. Under an MPI launcher with several ranks on this machine: makes OpenMP
// threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE unless the user set
// it; the OpenMP runtime reads it only at start-up, so the program re-executes itself once), and
// gives each rank its share of the cores (OMP_NUM_THREADS, when unset: the CPUs this process may
// use / ranks on this machine, at least 1). Spinning threads of ranks that outnumber the cores
// take the cores from the ranks doing work: a run slows down 10-30x.
void prepare_process(char** argv);

// Standard output for rank 0 of an mpirun: waits while the output is full, as usual, except once
// *stop is set. OpenMPI's mpirun, once signalled, stops reading the ranks' output and kills them
// a second later; a rank blocked writing a progress line would never reach its save. Makes fd 1
// non-blocking: use it for everything written to standard output.
class StopAwareOutput : public std::streambuf {
 public:
  explicit StopAwareOutput(const std::atomic<bool>* stop);
  ~StopAwareOutput() override;

 protected:
  int overflow(int c) override;
  int sync() override;

 private:
  bool drain();  // false: dropped what was pending (stop requested and the output full)
  const std::atomic<bool>* stop_;
  char buffer_[4096];
};

// Start-up agreement: every rank reports how its last phase went (code 0: fine) and learns
// about the others. Returns 0 when every rank is fine, else the first failing rank's code;
// *report is then (on every rank) that rank's message, naming the rank when not all ranks
// failed the same way.
int agree(engine::dist::Communicator& world, int code, const std::string& message, std::string* report);

}  // namespace train
