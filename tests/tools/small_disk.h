// A small filesystem for tests of a full disk: a size-limited tmpfs mounted at a fresh folder.
// Mounting needs root (CAP_SYS_ADMIN). Where it is refused, mounted() is false and why_not()
// says why; the tests then provoke the same failures with MOE_ENGINE_FAIL_WRITES, the fault
// hook of the file-writing layer (tools/lib/fileio/fileio.h).
#pragma once
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace testing_disk {

class SmallDisk {
 public:
  static constexpr uint64_t kPage = 4096;  // tmpfs allocates whole pages

  SmallDisk(const std::filesystem::path& dir, uint64_t bytes) : dir_(dir) {
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    if (::geteuid() != 0) {
      why_not_ = "not running as root";
      return;
    }
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, size_option(bytes).c_str()) != 0) {
      why_not_ = std::string("mount -t tmpfs: ") + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }
  const std::filesystem::path& dir() const { return dir_; }

  uint64_t free_bytes() const {
    struct statvfs s {};
    if (::statvfs(dir_.c_str(), &s) != 0) throw std::runtime_error(dir_.string() + ": statvfs failed");
    return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
  }

  // Takes all free space but `leave` bytes (whole pages) with a file of its own.
  void fill(uint64_t leave = 0) {
    const uint64_t free = free_bytes();
    if (free <= leave) return;
    const int fd = ::open((dir_ / "filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) throw std::runtime_error("cannot create the filler: " + std::string(std::strerror(errno)));
    const int rc = ::posix_fallocate(fd, filled_, static_cast<off_t>(free - leave));
    ::close(fd);
    if (rc != 0) throw std::runtime_error("cannot fill the disk: " + std::string(std::strerror(rc)));
    filled_ += static_cast<off_t>(free - leave);
  }
  void unfill() {
    std::filesystem::remove(dir_ / "filler");
    filled_ = 0;
  }
  // More room, as an operator would make it: the same files, a larger filesystem.
  void grow(uint64_t bytes) {
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV, size_option(bytes).c_str()) != 0)
      throw std::runtime_error("remount: " + std::string(std::strerror(errno)));
  }

 private:
  static std::string size_option(uint64_t bytes) {
    return "size=" + std::to_string((bytes + kPage - 1) / kPage * kPage);
  }

  std::filesystem::path dir_;
  bool mounted_ = false;
  std::string why_not_;
  off_t filled_ = 0;
};

// Sets an environment variable for one scope (the fault hook is read at every write).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

}  // namespace testing_disk
