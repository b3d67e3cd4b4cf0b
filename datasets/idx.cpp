// Reader for the IDX format of MNIST and FashionMNIST: an image file (magic
// 0x00000803, then big-endian N, rows, cols, then N*rows*cols bytes) paired with
// a label file (magic 0x00000801, then N, then N bytes). Files may be plain or
// gzip-compressed; gzip is recognised by its magic bytes, not by the name, and a
// path without ".gz" that is missing falls back to the ".gz" sibling. The reader
// checks magic, exact length (truncated or trailing bytes), counts and labels,
// and streams the file in chunks so that a lying header cannot make it allocate
// more than the file really holds.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace cte {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;
constexpr uint32_t kLabelsMagic = 0x00000801;
constexpr int kIdxClasses = 10;

[[noreturn]] void fail(const std::string& name, const std::string& path, const std::string& what) {
  throw std::runtime_error("[" + name + "] " + path + ": " + what);
}

// A byte stream over a plain or gzip file; gzip is used only when the file starts with 1f 8b.
class ByteStream {
 public:
  ByteStream(const std::string& name, const std::string& path) : name_(name), path_(path) {
    std::FILE* probe = std::fopen(path.c_str(), "rb");
    if (!probe) fail(name, path, std::string("cannot open: ") + std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    size_t got = std::fread(magic, 1, 2, probe);
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (gzip_) {
      std::fclose(probe);
      gz_ = gzopen(path.c_str(), "rb");
      if (!gz_) fail(name, path, "cannot open as gzip");
      gzbuffer(gz_, 1 << 17);
    } else {
      std::rewind(probe);
      plain_ = probe;
    }
  }
  ~ByteStream() {
    if (gz_) gzclose(gz_);
    if (plain_) std::fclose(plain_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  bool gzip() const { return gzip_; }

  // Reads up to n bytes; fewer only at end of file. Corrupt gzip data throws.
  size_t read(uint8_t* dst, size_t n) {
    size_t total = 0;
    while (total < n) {
      if (plain_) {
        size_t got = std::fread(dst + total, 1, n - total, plain_);
        total += got;
        if (got == 0) {
          if (std::ferror(plain_)) fail(name_, path_, "read error");
          break;
        }
      } else {
        unsigned chunk = unsigned(std::min<size_t>(n - total, 1u << 30));
        int got = gzread(gz_, dst + total, chunk);
        if (got < 0) gz_failure();
        if (got == 0) {
          int err = Z_OK;
          gzerror(gz_, &err);
          if (err != Z_OK) gz_failure();
          break;
        }
        total += size_t(got);
      }
    }
    return total;
  }

 private:
  [[noreturn]] void gz_failure() {
    int err = Z_OK;
    const char* msg = gzerror(gz_, &err);
    if (err == Z_BUF_ERROR) fail(name_, path_, "truncated gzip stream (the compressed file ends early)");
    std::string detail = msg ? msg : "unknown zlib error";
    // zlib prefixes its message with the path, which our message already starts with.
    if (detail.rfind(path_ + ": ", 0) == 0) detail.erase(0, path_.size() + 2);
    fail(name_, path_, "corrupt gzip data: " + detail);
  }

  std::string name_, path_;
  bool gzip_ = false;
  std::FILE* plain_ = nullptr;
  gzFile gz_ = nullptr;
};

uint32_t big_endian32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// The path to open: as given if it exists, else its ".gz" sibling if that exists.
std::string resolve_path(const std::string& name, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail(name, path, "is a directory, expected a file");
  if (fs::exists(path, ec)) return path;
  bool has_gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (!has_gz && fs::exists(path + ".gz", ec)) return path + ".gz";
  fail(name, path, has_gz ? "missing file" : "missing file (also tried " + path + ".gz)");
}

struct IdxFile {
  std::string path;
  std::vector<uint32_t> dims;  // N, then rows, cols for images
  std::vector<uint8_t> data;   // the payload after the header
};

// Reads a whole IDX file with `rank` dimensions and the given magic, insisting
// that the payload is exactly the size the header promises.
IdxFile read_idx(const std::string& name, const std::string& given_path, uint32_t magic, int rank,
                 const char* what) {
  IdxFile file;
  file.path = resolve_path(name, given_path);
  ByteStream in(name, file.path);
  const std::string after_decompression = in.gzip() ? " (after decompression)" : "";

  const size_t header_bytes = 4 + 4 * size_t(rank);
  uint8_t header[16];
  // The magic first: a wrong file type is a better diagnosis than "too short".
  size_t got = in.read(header, 4);
  if (got == 4) {
    uint32_t found_magic = big_endian32(header);
    if (found_magic != magic)
      fail(name, file.path,
           "wrong magic " + hex32(found_magic) + ", expected " + hex32(magic) + " for an IDX " + what +
               " file" + (found_magic == (magic ^ 0x2) ? " (images and labels swapped?)" : ""));
    got += in.read(header + 4, header_bytes - 4);
  }
  if (got < header_bytes)
    fail(name, file.path,
         "truncated: the file has " + std::to_string(got) + " bytes" + after_decompression +
             ", fewer than the " + std::to_string(header_bytes) + "-byte IDX " + what + " header");

  uint64_t payload = 1;
  for (int d = 0; d < rank; ++d) {
    file.dims.push_back(big_endian32(header + 4 + 4 * d));
    // Each factor is below 2^32; stop before the 64-bit product can overflow.
    if (file.dims.back() != 0 && payload > (uint64_t(1) << 62) / file.dims.back())
      fail(name, file.path, "header dimensions are absurdly large");
    payload *= file.dims.back();
  }
  if (file.dims[0] == 0) fail(name, file.path, std::string("header says the file holds no ") + what);
  if (payload == 0) fail(name, file.path, "header has a zero image dimension");

  auto describe = [&] {
    if (rank == 3)
      return "header says " + std::to_string(file.dims[0]) + " images of " + std::to_string(file.dims[1]) +
             "x" + std::to_string(file.dims[2]) + " (" + std::to_string(header_bytes + payload) + " bytes)";
    return "header says " + std::to_string(file.dims[0]) + " labels (" +
           std::to_string(header_bytes + payload) + " bytes)";
  };

  // Grow with the data actually read, so a header that lies about N costs nothing.
  constexpr size_t kChunk = size_t(4) << 20;
  while (file.data.size() < payload) {
    size_t old = file.data.size();
    size_t want = size_t(std::min<uint64_t>(kChunk, payload - old));
    file.data.resize(old + want);
    size_t n = in.read(file.data.data() + old, want);
    file.data.resize(old + n);
    if (n < want) break;
  }
  if (file.data.size() < payload)
    fail(name, file.path,
         "truncated: " + describe() + " but the file has " + std::to_string(header_bytes + file.data.size()) +
             " bytes" + after_decompression);

  uint64_t extra = 0;
  uint8_t scratch[1 << 14];
  while (size_t n = in.read(scratch, sizeof scratch)) extra += n;
  if (extra)
    fail(name, file.path,
         "corrupt: " + describe() + " but the file has " + std::to_string(header_bytes + payload + extra) +
             " bytes" + after_decompression + ", " + std::to_string(extra) + " more than that");
  return file;
}

}  // namespace

Dataset read_idx_pair(const std::string& images_path, const std::string& labels_path,
                      const std::string& name) {
  IdxFile images = read_idx(name, images_path, kImagesMagic, 3, "images");
  IdxFile labels = read_idx(name, labels_path, kLabelsMagic, 1, "labels");
  if (images.dims[0] != labels.dims[0])
    fail(name, images.path,
         "has " + std::to_string(images.dims[0]) + " images but " + labels.path + " has " +
             std::to_string(labels.dims[0]) + " labels");
  if (images.dims[1] > 65535 || images.dims[2] > 65535)
    fail(name, images.path,
         "image size " + std::to_string(images.dims[1]) + "x" + std::to_string(images.dims[2]) +
             " is too large");
  for (size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] >= kIdxClasses)
      fail(name, labels.path,
           "label " + std::to_string(labels.data[i]) + " of item " + std::to_string(i) +
               " is out of range (expected 0.." + std::to_string(kIdxClasses - 1) + ")");

  Dataset ds = numbered_classes_dataset(name, 1, int(images.dims[1]), int(images.dims[2]), kIdxClasses);
  ds.images = std::move(images.data);
  ds.labels = std::move(labels.data);
  return ds;
}

}  // namespace cte
