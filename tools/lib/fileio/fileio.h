// Writing files so that no failure goes unnoticed: every write, flush and close is checked and
// a failure throws WriteError naming the file and the system's reason ("OUT/metrics.jsonl:
// cannot write: No space left on device"). std::ofstream only sets a flag that nobody reads,
// and loses errno: a full disk then leaves empty files and a run that seems fine.
//
// The checkpoint writer (HDF5) and the run's text files (config.yaml, metrics.jsonl/csv) go
// through here, or consult injected_failure() for the test hook below.
#pragma once
#include <stdexcept>
#include <string>

namespace fileio {

class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The system's reason for an errno value: std::strerror's text ("No space left on device").
std::string reason(int err);

// Test hook for machines where no small filesystem can be mounted: when the environment
// variable MOE_ENGINE_FAIL_WRITES is set and non-empty, every write into a file whose path
// contains its value fails with ENOSPC, as on a full disk. Returns true (errno set to ENOSPC)
// when the write into `path` must fail.
bool injected_failure(const std::string& path);

// A text file written through the system's write(2), no user-space buffer: what write()
// accepted is with the operating system, and any refusal is reported on the call that caused it.
class TextFile {
 public:
  explicit TextFile(const std::string& path);  // creates or truncates
  ~TextFile();                                 // closes; errors there were reported by close()
  TextFile(const TextFile&) = delete;
  TextFile& operator=(const TextFile&) = delete;

  const std::string& path() const { return path_; }
  void write(const std::string& text);  // all of it, or throws
  void close();                         // throws if the system reports a failed write at close

 private:
  std::string path_;
  int fd_ = -1;
};

// Why `path` cannot be read as a file, before any reader tries: "no such file", "is a directory",
// "is empty (0 bytes)"; empty when it is a file with content (or something else to open and see).
std::string unreadable_reason(const std::string& path);

// Creates or replaces `path` with `text`: open, write and close all checked.
void write_file(const std::string& path, const std::string& text);

}  // namespace fileio
