#include "tools/lib/train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace train {

namespace {

std::string system_error(const std::string& what, const std::string& path) {
  return "cannot " + what + " " + path + ": " + std::strerror(errno);
}

// The holder's line from the lock file ("pid 1234 on host h"), or a note when it is not
// written yet (the holder locks first, then writes).
std::string holder(int fd) {
  char buf[256] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string text = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  if (const size_t end = text.find('\n'); end != std::string::npos) text.resize(end);
  return text.empty() ? "a process that has not written its PID yet" : text;
}

}  // namespace

RunLock::RunLock(const std::string& dir) : path_((std::filesystem::path(dir) / ".lock").string()) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw RunLockError("cannot create the output folder " + dir + ": " + ec.message());
  // O_CLOEXEC: a program this process starts must not inherit (and keep) the lock.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunLockError(system_error("open the lock file", path_));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string who = err == EWOULDBLOCK ? holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) {
      errno = err;
      throw RunLockError(system_error("lock", path_));
    }
    throw RunLockError(dir + " is in use by another run (" + who + ", holding " + path_ +
                       "); wait for it to finish or stop it, or use another --out");
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
  const std::string line = "pid " + std::to_string(::getpid()) + " on host " + host + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
    const std::string why = system_error("write the lock file", path_);
    ::close(fd_);
    fd_ = -1;
    throw RunLockError(why);
  }
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the only descriptor releases the flock
}

}  // namespace train
