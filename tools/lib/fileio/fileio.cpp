#include "tools/lib/fileio/fileio.h"

#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace fileio {

std::string reason(int err) { return std::strerror(err); }

bool injected_failure(const std::string& path) {
  const char* match = std::getenv("MOE_ENGINE_FAIL_WRITES");
  if (!match || !*match || path.find(match) == std::string::npos) return false;
  errno = ENOSPC;
  return true;
}

TextFile::TextFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw WriteError(path + ": cannot create: " + reason(errno));
}

TextFile::~TextFile() {
  if (fd_ >= 0) ::close(fd_);
}

void TextFile::write(const std::string& text) {
  if (fd_ < 0) throw WriteError(path_ + ": cannot write: the file is closed");
  size_t done = 0;
  while (done < text.size()) {
    if (injected_failure(path_)) throw WriteError(path_ + ": cannot write: " + reason(errno));
    const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    // write() may take part of the text (a disk that just filled up); the next call says why.
    if (n < 0) throw WriteError(path_ + ": cannot write: " + reason(errno));
    done += static_cast<size_t>(n);
  }
}

void TextFile::close() {
  if (fd_ < 0) return;
  const int rc = ::close(fd_);
  fd_ = -1;
  // Network filesystems report some write failures only here. EINTR: the descriptor is closed.
  if (rc != 0 && errno != EINTR) throw WriteError(path_ + ": cannot write (at close): " + reason(errno));
}

void write_file(const std::string& path, const std::string& text) {
  TextFile f(path);
  f.write(text);
  f.close();
}

std::string unreadable_reason(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) return "no such file";
  if (std::filesystem::is_directory(status)) return "is a directory";
  if (std::filesystem::is_regular_file(status) && std::filesystem::file_size(path, ec) == 0 && !ec)
    return "is empty (0 bytes)";
  return "";
}

}  // namespace fileio
