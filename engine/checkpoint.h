// Checkpoints: named float32 tensors plus a UTF-8 metadata string (JSON by
// convention: the network description, the trainer's configuration and
// position), in one little-endian binary file:
//
//   offset  size  field
//   0       8     magic "CTECKPT\0"
//   8       4     format version (uint32, currently 1)
//   12      4     number of tensors T (uint32)
//   16      8     metadata length M (uint64), then M bytes of metadata
//   then T records:
//           4     name length L (uint32), then L bytes of name
//           4     rank R (uint32, 0..4), then R extents (int64 each)
//           4*n   the values (float32, row-major, n = product of extents)
//   end     4     CRC-32 (zlib) of every byte before it
//
// save_checkpoint writes to "<path>.tmp", flushes it to disk and renames it
// over <path>, so a crash at any moment leaves either the old or the new
// checkpoint, never a half-written one. load_checkpoint checks the magic,
// version, sizes and CRC and names the file and the problem on failure.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace cte {

struct Checkpoint {
  std::vector<std::pair<std::string, Tensor>> tensors;  // CPU tensors when loaded
  std::string metadata;
  const Tensor* find(const std::string& name) const;
};

constexpr uint32_t kCheckpointVersion = 1;

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
Checkpoint load_checkpoint(const std::string& path);
// The reader on bytes already in memory; `path` names them in errors.
Checkpoint checkpoint_from_bytes(const std::string& bytes, const std::string& path);

}  // namespace cte
