// moe-train: trains a MoE transformer from a YAML config.
//
//   moe-train --config FILE [--set key.path=value ...] [--out DIR] [--resume PATH|latest]
//
// Under mpirun (README, "Training on several processes") every rank runs this program; rank 0
// prints progress and writes the run folder, and a failure on any rank ends them all.
//
// Exit status: 0 finished; 2 bad flags or config, or data that does not fit the config (found
// before step 1); 1 any other error (output folder in use by another run, bad checkpoint, NaN
// stop, a file that cannot be written: the message names it, the system's reason and how to
// resume; any other error during training saves a checkpoint first and names it);
// 130 / 143 stopped by SIGINT / SIGTERM (during training after saving a checkpoint; before
// training at once, saying that nothing was trained or saved).
#include <fcntl.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <cstring>
#include <iostream>

#include "engine/dist/world.h"
#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/train/launch.h"
#include "tools/lib/train/run_lock.h"
#include "tools/lib/train/trainer.h"

namespace po = boost::program_options;

namespace {
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_several_ranks = 0;

// What the program is doing, for the signal handler. Before training there is nothing to save,
// so a signal ends the program at once and says what it interrupted; during training it asks
// the loop to finish its step and save.
enum Phase { kTraining, kConfig, kLocking, kFindingLatest, kBuilding, kLoading };
const char* const kPhaseText[] = {"training",
                                  "reading the config",
                                  "locking the output folder",
                                  "looking for the latest checkpoint",
                                  "building the model and checking the data",
                                  "loading the checkpoint"};
volatile std::sig_atomic_t g_phase = kConfig;

void say(const char* text) {  // write(2) is async-signal-safe, iostreams are not
  const ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void on_signal(int sig) {
  const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  if (g_phase != kTraining) {
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
  // Under mpirun the signal usually comes from mpirun, which stops reading the ranks' output
  // while it waits (1 s by default, odls_base_sigkill_timeout) before SIGKILL: a rank writing a
  // progress line would block until killed, before it could save. Output that cannot be written
  // now is dropped instead.
  if (g_several_ranks) {
    const int flags = fcntl(STDOUT_FILENO, F_GETFL);
    if (flags >= 0) fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK);
  }
}

// The part of main that runs once the flags are read: every rank of an mpirun goes through the
// same phases; up to training, a failure on any rank ends every rank with one message (train::agree),
// and during training an error on one rank names it and ends every rank (abort_all).
int run_program(const std::string& config_path, std::vector<std::string> overrides, const std::string& out_dir,
                const std::string& resume) {
  std::shared_ptr<engine::dist::Communicator> world;
  try {
    world = engine::dist::world();
  } catch (const std::exception& e) {
    std::cerr << "moe-train: " << e.what() << "\n";
    return 2;
  }
  const bool several = world->size() > 1;
  g_several_ranks = several ? 1 : 0;
  const bool speaks = world->rank() == 0;
  std::ostream quiet(nullptr);
  std::ostream& progress = speaks ? std::cout : quiet;
  // A start-up phase: its error, if any rank has one, ends every rank with the same status.
  std::string report;
  auto phase = [&](auto&& body) -> int {
    int code = 0;
    std::string message;
    try {
      body();
    } catch (const runconfig::ConfigError& e) {
      code = 2;
      message = e.what();
    } catch (const std::exception& e) {
      code = 1;
      message = e.what();
    }
    const int agreed = several ? train::agree(*world, code, message, &report) : code;
    if (!several) report = message;
    if (agreed != 0 && speaks) {
      std::cout.flush();
      std::cerr << "moe-train: " << report << "\n";
    }
    return agreed;
  };

  runconfig::RunConfig config;
  if (!out_dir.empty()) overrides.push_back("logging.out_dir=" + out_dir);
  if (int code = phase([&] {
        config = runconfig::load_run_config(config_path, overrides,
                                            [](std::string* why) { return engine::cuda_available(why); });
      }))
    return code;
  if (several) {  // every rank must train the same run: rank 0's config is the reference
    if (int code = phase([&] {
          const std::string reference = world->broadcast(runconfig::to_yaml(config), 0);
          if (reference == runconfig::to_yaml(config)) return;
          std::string keys;
          for (const std::string& k :
               runconfig::keys_differing(runconfig::parse_run_config(reference, "rank 0's config"), config))
            keys += (keys.empty() ? "" : ", ") + k;
          throw runconfig::ConfigError("the config differs from rank 0's in " + keys +
                                       "; every rank must read the same config and --set flags");
        }))
      return code;
  } else if (config.parallel.expert > 1) {
    std::cerr << "moe-train: parallel.expert = " << config.parallel.expert
              << " needs that many processes or a multiple: start with mpirun -np N (N a multiple of "
              << config.parallel.expert << ")"
              << (engine::dist::built_with_mpi() ? "" : "; this build has no MPI (install libopenmpi-dev, rebuild)")
              << "\n";
    return 2;
  }
  train::ProcessGroups groups;
  if (int code = phase([&] {
        groups =
            train::ProcessGroups::make(world, config.parallel.expert, config.device == runconfig::DeviceKind::cuda);
      }))
    return code;

  std::unique_ptr<train::RunLock> lock;  // held until the program ends, by the rank that writes
  std::string resume_path = resume;
  g_phase = kLocking;
  if (int code = phase([&] {
        if (speaks) lock = std::make_unique<train::RunLock>(config.logging.out_dir);
        if (resume == "latest" && speaks) {
          g_phase = kFindingLatest;
          std::vector<std::string> skipped;
          resume_path = train::latest_checkpoint(config.logging.out_dir, &skipped);
          for (const std::string& why : skipped) std::cout << "moe-train: skipping " << why << "\n";
        }
      }))
    return code;
  if (several && !resume_path.empty()) resume_path = world->broadcast(resume_path, 0);

  g_phase = kBuilding;
  std::unique_ptr<train::Trainer> trainer;
  if (int code = phase([&] { trainer = std::make_unique<train::Trainer>(config, progress, nullptr, groups); }))
    return code;
  g_phase = kLoading;
  if (int code = phase([&] {
        if (!resume_path.empty()) trainer->resume(resume_path);
      }))
    return code;
  g_phase = kTraining;
  try {
    if (trainer->run(&g_stop) == train::RunEnd::stopped) {
      const int sig = g_signal != 0 ? static_cast<int>(g_signal) : SIGTERM;  // another rank's signal
      progress << "moe-train: stopped by " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " after step "
               << trainer->steps_done() << "; continue with --resume latest" << std::endl;
      return 128 + sig;
    }
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "moe-train: " << (several ? "rank " + std::to_string(world->rank()) + ": " : "") << e.what() << "\n";
    const int code = dynamic_cast<const runconfig::ConfigError*>(&e) ? 2 : 1;
    if (several) engine::dist::abort_all(code);  // the other ranks wait in a collective: end them
    return code;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  train::prepare_process(argv);  // under mpirun: threads that sleep, and a share of the cores
  std::string config_path, out_dir, resume;
  std::vector<std::string> overrides;
  po::options_description opts("moe-train: train a MoE transformer from a YAML config (keys: configs/README.md)");
  opts.add_options()("help,h", "show this help")("config", po::value<std::string>(&config_path)->required(),
                                                 "YAML run configuration")(
      "set", po::value<std::vector<std::string>>(&overrides)->composing(), "override a key: --set moe.top_k=1")(
      "out", po::value<std::string>(&out_dir), "output folder (default: logging.out_dir)")(
      "resume", po::value<std::string>(&resume),
      "continue from a checkpoint file, or 'latest' for the newest good one in the output folder");
  po::variables_map vm;
  {
    // Every rank reads the same flags: one rank says what is wrong with them.
    std::streambuf* err = std::cerr.rdbuf();
    std::streambuf* out = std::cout.rdbuf();
    if (train::launched_rank() != 0) {
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
  // Installed before anything slow (reading checkpoints, loading data), so no signal goes unsaid.
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const int status = run_program(config_path, overrides, out_dir, resume);
  engine::dist::finalize();
  return status;
}
