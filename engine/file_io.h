// Whole-file reads, atomic writes and folder locks with errors that name the file and the
// cause (errno's text), shared by the network JSON, checkpoints, config.json
// and the tools' output files.
#pragma once
#include <string>

namespace cte {

// The bytes of `path`. A directory, a missing or unreadable file or a read
// error throws "[who] PATH: <why>" (e.g. "is a directory, expected a file").
std::string read_whole_file(const std::string& path, const std::string& who);

// Writes `bytes` to "<path>.tmp", flushes it to disk and renames it over
// `path`, so a crash leaves the old or the new file, never half of one. On
// failure (disk full, no permission, ...) the temp file is removed and the
// error "[who] PATH.tmp: write failed: No space left on device" names the
// cause.
void write_file_atomically(const std::string& path, const std::string& bytes, const std::string& who);

// Holds an exclusive flock on DIR/.lock for its lifetime, so that two
// processes cannot write the same output folder at once. The file keeps the
// holder's pid; a second locker fails with "[who] DIR is in use by process
// PID ...". The lock goes with the process, so a killed run leaves none.
class DirectoryLock {
 public:
  DirectoryLock(const std::string& dir, const std::string& who);
  ~DirectoryLock();
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace cte
