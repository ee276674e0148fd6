// What moe-train does between reading its flags and exiting, on every rank of an mpirun (or
// alone): load and check the config, check that every rank reads the same one, make the process
// groups, lock the run folder, find the checkpoint to resume, build the trainer and restore it;
// then train to the end. Up to training, a failure on any rank ends every rank with one message
// from rank 0 and the same exit status (agree() in launch.h); during training an error names its
// rank and ends every rank (abort_all). Exit statuses: moe-train's (tools/moe_train.cpp).
#pragma once
#include <atomic>
#include <csignal>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "tools/lib/train/parallel.h"
#include "tools/lib/train/run_lock.h"
#include "tools/lib/train/trainer.h"

namespace train {

struct StartRequest {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value
  std::string out_dir;                 // --out (empty: the config's)
  std::string resume;                  // --resume: a file, "latest" or empty
  std::string init_from;               // --init-from: a dense checkpoint to upcycle (not with resume)
  double upcycle_noise = 0.0;          // --upcycle-noise: std of the noise added to each expert's copy
};

// The start-up phases, announced before each begins (a signal handler says which it cut short);
// leaving: the start failed (rank 0 has said why) or training ended; mpirun may now signal the
// ranks still on their way out, and there is nothing more to say.
enum class StartPhase { config, locking, finding_latest, building, loading, training, leaving };

struct StartedRun {
  int exit_code = 0;  // non-zero: the start failed on some rank (rank 0 has said why)
  std::shared_ptr<engine::dist::Communicator> world;
  ProcessGroups groups;
  std::unique_ptr<std::ostream> quiet;  // the progress stream of ranks other than 0
  std::unique_ptr<RunLock> lock;        // rank 0: held until the run ends
  std::unique_ptr<Trainer> trainer;
};

// Rank 0 prints progress to `out` and errors to `err`; other ranks print only their own errors.
StartedRun start_run(const StartRequest& request, std::ostream& out, std::ostream& err,
                     const std::function<void(StartPhase)>& on_phase);

// Trains to the end, or until *stop (a signal handler's flag, on any rank). signal_number() names
// the signal for the stop message (0: it reached another rank: SIGTERM is assumed). Returns the
// exit status; an error on one of several ranks ends them all from here.
int train_to_end(StartedRun& run, const std::atomic<bool>* stop, const std::function<int()>& signal_number,
                 std::ostream& out, std::ostream& err);

}  // namespace train
