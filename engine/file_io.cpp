// read_whole_file and write_file_atomically (see file_io.h), on POSIX calls so
// that every failure has an errno to report.
#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace cte {
namespace {

[[noreturn]] void fail_io(const std::string& who, const std::string& path, const std::string& what) {
  throw std::runtime_error("[" + who + "] " + path + ": " + what);
}

}  // namespace

std::string read_whole_file(const std::string& path, const std::string& who) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_io(who, path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info;
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    ::close(fd);
    fail_io(who, path, "is a directory, expected a file");
  }
  std::string bytes;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = std::strerror(errno);
      ::close(fd);
      fail_io(who, path, "read failed: " + why);
    }
    if (n == 0) break;
    bytes.append(buffer, size_t(n));
  }
  ::close(fd);
  return bytes;
}

void write_file_atomically(const std::string& path, const std::string& bytes, const std::string& who) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_io(who, tmp, std::string("cannot create: ") + std::strerror(errno));
  // Every failure below removes the temp file: a full disk must not also
  // collect half-written .tmp files.
  auto give_up = [&](const std::string& what) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    std::remove(tmp.c_str());
    fail_io(who, tmp, what + ": " + why);
  };
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      give_up("write failed");
    }
    written += size_t(n);
  }
  // /dev/full and friends accept fsync; EINVAL there means "nothing to sync".
  if (::fsync(fd) != 0 && errno != EINVAL) give_up("flush to disk failed");
  if (::close(fd) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    fail_io(who, tmp, "close failed: " + why);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    fail_io(who, path, "cannot rename " + tmp + " over it: " + why);
  }
}

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& who) {
  const std::string path = dir + "/.lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_io(who, path, std::string("cannot create the lock file: ") + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {0};
    const ssize_t n = ::pread(fd_, holder, sizeof holder - 1, 0);
    ::close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK) fail_io(who, path, std::string("cannot lock: ") + std::strerror(error));
    std::string pid = n > 0 ? std::string(holder, size_t(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    throw std::runtime_error("[" + who + "] " + dir + " is in use by another process (pid " + pid + ", per " + path +
                             "): two runs writing one folder would mix their files; wait for it to finish or "
                             "choose another output folder");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
    // The lock holds without the pid; only a rival's message gets poorer.
  }
}

DirectoryLock::~DirectoryLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace cte
