// One training run per output folder. Two processes writing the same folder tear each other's
// metrics lines and mix their checkpoints, so moe-train holds OUT/.lock for its whole life.
//
// Contract: RunLock takes an exclusive flock(2) on DIR/.lock (creating DIR and the file as
// needed) without waiting, and writes the holder's PID and host into the file. When another
// process holds it, the constructor throws RunLockError naming the folder and that PID. The
// lock belongs to the open file, so the kernel releases it however the process ends (SIGKILL
// included) and a stale .lock file never blocks the next run; the file itself is left in place
// (deleting it could let two runs lock two different files of the same name).
#pragma once
#include <stdexcept>
#include <string>

namespace train {

class RunLockError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RunLock {
 public:
  explicit RunLock(const std::string& dir);
  ~RunLock();  // releases the lock
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace train
