// Helpers for tests that run the moe-train program itself: exit status and output, in the
// foreground or as a child the test can signal.
#pragma once
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace runtest {

namespace fs = std::filesystem;

inline std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh folder under the system temp dir, unique to this process.
inline fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("moe_run_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir;
}

// moe-train on configs/collapse.yaml shrunk to run in a blink, writing into `out`; `extra` are
// more arguments (--set ..., --resume ...).
inline std::vector<std::string> train_args(const fs::path& out, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> a = {MOE_TRAIN_BINARY,
                                "--config",
                                std::string(ENGINE_SOURCE_DIR) + "/configs/collapse.yaml",
                                "--set",
                                "model.d_model=16",
                                "--set",
                                "model.n_heads=2",
                                "--set",
                                "training.seq_len=16",
                                "--set",
                                "training.batch_size=2",
                                "--set",
                                "logging.every=1",
                                "--out",
                                out.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// Starts a program with stdout and stderr going to `log`; returns its PID.
inline pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// The exit status as a shell reports it: the code, or 128 + the signal that ended it.
inline int wait_for(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Result {
  int status;
  std::string output;  // stdout and stderr together
};

inline Result run(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = spawn(args, log);
  if (pid < 0) return {-1, "could not start " + args.at(0)};
  const int status = wait_for(pid);
  return {status, read_text(log)};
}

// Polls `done` every 50 ms for up to `seconds`; true once it holds.
template <class F>
bool wait_until(F done, double seconds = 120) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace runtest
