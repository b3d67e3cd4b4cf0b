// The checkpoint format described in checkpoint.h: writer and checked reader.
#include "engine/checkpoint.h"

#include <zlib.h>

#include <cstring>

#include "engine/file_io.h"

namespace cte {
namespace {

constexpr char kMagic[8] = {'C', 'T', 'E', 'C', 'K', 'P', 'T', '\0'};

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

class Reader {
 public:
  Reader(const std::string& bytes, const std::string& path) : bytes_(bytes), path_(path) {}
  template <typename T>
  T get(const char* what) {
    T value;
    need(sizeof(T), what);
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }
  std::string get_bytes(size_t n, const char* what) {
    need(n, what);
    std::string s = bytes_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  const char* here() const { return bytes_.data() + pos_; }
  void skip(size_t n, const char* what) {
    need(n, what);
    pos_ += n;
  }

 private:
  void need(size_t n, const char* what) {
    if (bytes_.size() - pos_ < n)
      fail("checkpoint", path_ + ": truncated while reading " + what + " (offset " +
                             std::to_string(pos_) + ", file has " + std::to_string(bytes_.size()) + " bytes)");
  }
  const std::string& bytes_;
  const std::string& path_;
  size_t pos_ = 0;
};

}  // namespace

const Tensor* Checkpoint::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  std::string out;
  out.append(kMagic, sizeof(kMagic));
  put<uint32_t>(out, kCheckpointVersion);
  put<uint32_t>(out, uint32_t(checkpoint.tensors.size()));
  put<uint64_t>(out, uint64_t(checkpoint.metadata.size()));
  out += checkpoint.metadata;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    put<uint32_t>(out, uint32_t(name.size()));
    out += name;
    put<uint32_t>(out, uint32_t(tensor.ndim()));
    for (int d = 0; d < tensor.ndim(); ++d) put<int64_t>(out, tensor.shape()[d]);
    const std::vector<float> values = tensor.to_vector();
    out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  put<uint32_t>(out, uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(out.data()), uInt(out.size()))));

  write_file_atomically(path, out, "checkpoint");
}

Checkpoint load_checkpoint(const std::string& path) {
  return checkpoint_from_bytes(read_whole_file(path, "checkpoint"), path);
}

Checkpoint checkpoint_from_bytes(const std::string& bytes, const std::string& path) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    fail("checkpoint", path + ": not a checkpoint (wrong magic; expected \"CTECKPT\")");
  if (bytes.size() < sizeof(kMagic) + 4 + 4)
    fail("checkpoint", path + ": truncated header");
  Reader r(bytes, path);
  r.skip(sizeof(kMagic), "magic");
  const uint32_t version = r.get<uint32_t>("version");
  if (version != kCheckpointVersion)
    fail("checkpoint", path + ": format version " + std::to_string(version) + ", this build reads version " +
                           std::to_string(kCheckpointVersion));
  uint32_t stored_crc;
  std::memcpy(&stored_crc, bytes.data() + bytes.size() - 4, 4);
  const uint32_t crc = uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size() - 4)));
  const uint32_t count = r.get<uint32_t>("tensor count");
  Checkpoint ck;
  const uint64_t meta_len = r.get<uint64_t>("metadata length");
  if (meta_len > bytes.size()) fail("checkpoint", path + ": truncated (metadata length " + std::to_string(meta_len) + ")");
  ck.metadata = r.get_bytes(size_t(meta_len), "metadata");
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t name_len = r.get<uint32_t>("tensor name length");
    if (name_len > bytes.size()) fail("checkpoint", path + ": truncated (tensor name length)");
    std::string name = r.get_bytes(name_len, "tensor name");
    const uint32_t rank = r.get<uint32_t>("tensor rank");
    if (rank > 4) fail("checkpoint", path + ": tensor '" + name + "' has rank " + std::to_string(rank) + " (at most 4)");
    std::vector<int64_t> dims;
    for (uint32_t d = 0; d < rank; ++d) {
      const int64_t extent = r.get<int64_t>("tensor extents");
      if (extent < 0 || extent > int64_t(bytes.size()))
        fail("checkpoint", path + ": tensor '" + name + "' has an impossible extent " + std::to_string(extent));
      dims.push_back(extent);
    }
    // The element count is checked against the file's size before anything
    // is allocated, with a product that cannot overflow (four extents each
    // up to the file size would).
    uint64_t count = 1;
    for (int64_t extent : dims) {
      if (extent != 0 && count > bytes.size() / uint64_t(extent))
        fail("checkpoint", path + ": tensor '" + name + "' has more values than the file has bytes");
      count *= uint64_t(extent);
    }
    const Shape shape(dims);
    const size_t value_bytes = size_t(count) * sizeof(float);
    if (value_bytes > bytes.size())
      fail("checkpoint", path + ": truncated in the values of tensor '" + name + "' " + shape.str());
    std::vector<float> values(static_cast<size_t>(count));
    const char* src = r.here();
    r.skip(value_bytes, ("values of tensor '" + name + "'").c_str());
    if (value_bytes) std::memcpy(values.data(), src, value_bytes);  // (an empty tensor has no storage)
    ck.tensors.emplace_back(std::move(name), Tensor::from_vector(values, shape, Device::cpu));
  }
  r.skip(4, "CRC");
  if (crc != stored_crc) fail("checkpoint", path + ": CRC mismatch (the file is corrupt)");
  return ck;
}

}  // namespace cte
