// moe-train: trains a MoE transformer from a YAML config.
//
//   moe-train --config FILE [--set key.path=value ...] [--out DIR] [--resume PATH|latest]
//
// Exit status: 0 finished; 2 bad flags or config, or data that does not fit the config (found
// before step 1); 1 any other error (output folder in use by another run, bad checkpoint, NaN
// stop, a file that cannot be written: the message names it, the system's reason and how to
// resume; any other error during training saves a checkpoint first and names it);
// 130 / 143 stopped by SIGINT / SIGTERM (during training after saving a checkpoint; before
// training at once, saying that nothing was trained or saved).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <cstring>
#include <iostream>

#include "engine/engine.h"
#include "tools/cli.h"
#include "tools/lib/train/run_lock.h"
#include "tools/lib/train/trainer.h"

namespace po = boost::program_options;

namespace {
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

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
}
}  // namespace

int main(int argc, char** argv) {
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
  if (auto status = tools::parse_flags(argc, argv, "moe-train", opts, vm)) return *status;
  // Installed before anything slow (reading checkpoints, loading data), so no signal goes unsaid.
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    if (!out_dir.empty()) overrides.push_back("logging.out_dir=" + out_dir);
    runconfig::RunConfig config = runconfig::load_run_config(
        config_path, overrides, [](std::string* why) { return engine::cuda_available(why); });
    // Held until the program ends: nothing below may read or write the folder without it.
    g_phase = kLocking;
    const train::RunLock lock(config.logging.out_dir);
    std::string resume_path = resume;
    if (resume == "latest") {
      g_phase = kFindingLatest;
      std::vector<std::string> skipped;
      resume_path = train::latest_checkpoint(config.logging.out_dir, &skipped);
      for (const std::string& why : skipped) std::cout << "moe-train: skipping " << why << "\n";
    }
    g_phase = kBuilding;
    train::Trainer trainer(config, std::cout);
    g_phase = kLoading;
    if (!resume_path.empty()) trainer.resume(resume_path);
    g_phase = kTraining;
    if (trainer.run(&g_stop) == train::RunEnd::stopped) {
      const int sig = g_signal;
      std::cout << "moe-train: stopped by " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " after step "
                << trainer.steps_done() << "; continue with --resume latest" << std::endl;
      return 128 + sig;
    }
  } catch (const runconfig::ConfigError& e) {
    std::cout.flush();  // progress first, then the error, in a log that holds both
    std::cerr << "moe-train: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "moe-train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
