// moe-train: trains a MoE transformer from a YAML config.
//
//   moe-train --config FILE [--set key.path=value ...] [--out DIR] [--resume PATH|latest]
//             [--init-from DENSE.h5 [--upcycle-noise STD]]
//
// Under mpirun (README, "Training on several processes") every rank runs this program; rank 0
// prints progress and writes the run folder, and a failure on any rank ends them all.
//
// Exit status: 0 finished; 2 bad flags or config, or data that does not fit the config (found
// before step 1); 1 any other error (output folder in use by another run, bad checkpoint, NaN
// stop, a file that cannot be written: the message names it, the system's reason and how to
// resume; any other error during training saves a checkpoint first and names it, in one
// process; with several ranks it names its rank and ends them all, the last checkpoint stays);
// 130 / 143 stopped by SIGINT / SIGTERM (during training after saving a checkpoint; before
// training at once, saying that nothing was trained or saved).
#include <pthread.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>

#include "engine/dist/world.h"
#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/train/launch.h"
#include "tools/lib/train/start_run.h"

namespace po = boost::program_options;

namespace {
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

// What the program is doing, for the signal handler (train::StartPhase). Before training there
// is nothing to save, so a signal ends the program at once and says what it interrupted; during
// training it asks the loop to finish its step and save.
const char* const kPhaseText[] = {"reading the config",
                                  "locking the output folder",
                                  "looking for the latest checkpoint",
                                  "building the model and checking the data",
                                  "loading the checkpoint",
                                  "training",
                                  "leaving"};
volatile std::sig_atomic_t g_phase = static_cast<int>(train::StartPhase::config);

void say(const char* text) {  // write(2) is async-signal-safe, iostreams are not
  const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void on_signal(int sig) {
  const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  if (g_phase == static_cast<int>(train::StartPhase::leaving)) std::_Exit(128 + sig);  // nothing more to say
  if (g_phase != static_cast<int>(train::StartPhase::training)) {
    say("moe-train: stopped by ");
    say(name);
    say(" while ");
    say(kPhaseText[g_phase]);
    say("; nothing was trained or saved\n");
    std::_Exit(128 + sig);
  }
  if (g_stop.load()) {  // a second signal: the user insists, leave at once
    say("moe-train: second ");
    say(name);
    say(": leaving at once, without the checkpoint of this step\n");
    std::_Exit(128 + sig);
  }
  g_signal = sig;
  g_stop.store(true);
}

}  // namespace

int main(int argc, char** argv) {
  train::prepare_process(argv);  // under mpirun: threads that sleep, and a share of the cores
  std::string config_path, out_dir, resume, init_from;
  double upcycle_noise = 0.0;
  std::vector<std::string> overrides;
  po::options_description opts("moe-train: train a MoE transformer from a YAML config (keys: configs/README.md)");
  opts.add_options()("help,h", "show this help")("config", po::value<std::string>(&config_path)->required(),
                                                 "YAML run configuration")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key: --set moe.top_k=1")(
      "out", po::value<std::string>(&out_dir), "output folder (default: logging.out_dir)")(
      "resume", po::value<std::string>(&resume),
      "continue from a checkpoint file, or 'latest' for the newest good one in the output folder")(
      "init-from", po::value<std::string>(&init_from),
      "start from the checkpoint of this model trained dense (moe.enabled: false): every expert a copy of its "
      "layer's FFN, routers and optimizer fresh (sparse upcycling)")(
      "upcycle-noise", po::value<double>(&upcycle_noise),
      "with --init-from: add Gaussian noise of this std to each expert's copy (default 0)");
  po::variables_map vm;
  {
    // Every rank reads the same flags: one rank says what is wrong with them.
    std::streambuf* err = std::cerr.rdbuf();
    std::streambuf* out = std::cout.rdbuf();
    if (engine::dist::launched_rank() != 0) {
      std::cerr.rdbuf(nullptr);
      std::cout.rdbuf(nullptr);
    }
    const std::optional<int> status = tools::parse_flags(argc, argv, "moe-train", opts, vm);
    std::cerr.rdbuf(err);
    std::cout.rdbuf(out);
    std::cerr.clear();
    std::cout.clear();
    if (status) return *status;
  }
  // SIGINT and SIGTERM are taken by one thread of their own (sigwait), before anything slow
  // (reading checkpoints, loading data) so that no signal goes unsaid, and blocked in every other
  // thread (the mask is inherited by the threads OpenMP, oneDNN and MPI start later): a signal
  // that interrupted OpenMPI's copies between processes corrupted the heap in about one stop in
  // ten (OpenMPI 4.1.4), wherever the handler ran.
  static sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::thread([] {
    for (;;) {
      int sig = 0;
      if (sigwait(&stop_signals, &sig) == 0) on_signal(sig);
    }
  }).detach();
  // Rank 0 of several: progress that cannot wait once a stop is asked for (train::StopAwareOutput).
  std::streambuf* const plain_out = std::cout.rdbuf();
  std::unique_ptr<train::StopAwareOutput> stop_aware;
  if (engine::dist::launched_world_size() > 1 && engine::dist::launched_rank() == 0) {
    stop_aware = std::make_unique<train::StopAwareOutput>(&g_stop);
    std::cout.rdbuf(stop_aware.get());
  }
  train::StartedRun run =
      train::start_run({config_path, overrides, out_dir, resume, init_from, upcycle_noise}, std::cout, std::cerr,
                       [](train::StartPhase p) { g_phase = static_cast<int>(p); });
  int status = run.exit_code;
  if (status == 0) {
    g_phase = static_cast<int>(train::StartPhase::training);
    status = train::train_to_end(
        run, &g_stop, [] { return static_cast<int>(g_signal); }, std::cout, std::cerr);
    g_phase = static_cast<int>(train::StartPhase::leaving);
  }
  run.trainer.reset();  // the trainer, the lock and the process groups go before MPI does
  run = train::StartedRun();
  engine::dist::finalize();
  std::cout.flush();
  std::cout.rdbuf(plain_out);
  return status;
}
