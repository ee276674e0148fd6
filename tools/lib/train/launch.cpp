#include "tools/lib/train/launch.h"

#include <fcntl.h>
#include <omp.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/dist/world.h"

namespace train {

namespace {

int usable_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace

StopAwareOutput::StopAwareOutput(const std::atomic<bool>* stop) : stop_(stop) {
  const int flags = fcntl(STDOUT_FILENO, F_GETFL);
  if (flags >= 0) fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK);
  setp(buffer_, buffer_ + sizeof buffer_);
}

StopAwareOutput::~StopAwareOutput() { drain(); }

bool StopAwareOutput::drain() {
  const char* p = pbase();
  while (p < pptr()) {
    const ssize_t n = ::write(STDOUT_FILENO, p, static_cast<size_t>(pptr() - p));
    if (n > 0) {
      p += n;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) break;  // gone: drop
    if (stop_ && stop_->load()) break;  // a stop was asked for: saving matters more than the line
    pollfd out{STDOUT_FILENO, POLLOUT, 0};
    ::poll(&out, 1, 100);
  }
  const bool all = p >= pptr();
  setp(buffer_, buffer_ + sizeof buffer_);
  return all;
}

int StopAwareOutput::overflow(int c) {
  drain();
  if (c != traits_type::eof()) {
    *pptr() = static_cast<char>(c);
    pbump(1);
  }
  return traits_type::not_eof(c);
}

int StopAwareOutput::sync() {
  drain();
  return 0;
}

void prepare_process(char** argv) {
  const int local = engine::dist::launched_local_size();
  if (engine::dist::launched_world_size() <= 1) return;
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned hardware = std::thread::hardware_concurrency();
    int share = hardware > 0 ? static_cast<int>(hardware) / local : 1;
    share = std::max(1, std::min(share, usable_cpus()));
    setenv("OMP_NUM_THREADS", std::to_string(share).c_str(), 1);
    omp_set_num_threads(share);
  }
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    // The program's own path, not /proc/self/exe, so that ps and pkill still see its name.
    char path[4096];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
      path[n] = '\0';
      execv(path, argv);  // returns only on failure: go on with the threads set above
    }
  }
}

int agree(engine::dist::Communicator& world, int code, const std::string& message, std::string* report) {
  const std::vector<int64_t> codes = world.all_gather(std::vector<int64_t>{code});
  int first = -1, failed = 0;
  for (size_t q = 0; q < codes.size(); ++q)
    if (codes[q] != 0) {
      ++failed;
      if (first < 0) first = static_cast<int>(q);
    }
  if (first < 0) return 0;
  const std::string text = world.broadcast(message, first);
  // The same failure everywhere (a bad config) is reported once, as one process would report it.
  bool same = failed == world.size();
  if (same) {
    std::vector<int64_t> matches = {message == text ? 1 : 0};
    world.all_reduce_sum(matches);
    same = matches[0] == world.size();
  }
  if (report) *report = same || world.size() == 1 ? text : "rank " + std::to_string(first) + ": " + text;
  return static_cast<int>(codes[first]);
}

}  // namespace train
