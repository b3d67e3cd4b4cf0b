// Reader for the SVHN "cropped digits" MATLAB files (train_32x32.mat,
// test_32x32.mat) through libmatio. X is a 32x32x3xN uint8 array stored
// column-major, so element X(h,w,c,n) sits at h + 32*(w + 32*(c + 3*n)); the
// reader transposes it into our C,H,W layout. y holds labels 1..10 where 10
// stands for the digit 0, so 10 becomes label 0. Shapes, classes, counts and
// label values are all checked, because a .mat file can hold anything; and
// since libmatio silently returns partly uninitialised data for a truncated or
// corrupt file, MAT v5 files are also checked here: every top-level element
// must fit in the file and every compressed one must inflate cleanly.
#include <matio.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace cte {
namespace {

constexpr int kSvhnSide = 32, kSvhnChannels = 3, kSvhnClasses = 10;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("[svhn] " + path + ": " + what);
}

struct MatCloser {
  void operator()(mat_t* m) const { Mat_Close(m); }
};
struct VarFreer {
  void operator()(matvar_t* v) const { Mat_VarFree(v); }
};
using MatFile = std::unique_ptr<mat_t, MatCloser>;
using MatVar = std::unique_ptr<matvar_t, VarFreer>;

std::string shape_of(const matvar_t* v) {
  std::string s;
  for (int d = 0; d < v->rank; ++d) {
    if (d) s += 'x';
    s += std::to_string(v->dims[d]);
  }
  return s.empty() ? "empty" : s;
}

const char* class_name(matio_classes c) {
  switch (c) {
    case MAT_C_DOUBLE:
      return "double";
    case MAT_C_SINGLE:
      return "single";
    case MAT_C_INT8:
      return "int8";
    case MAT_C_UINT8:
      return "uint8";
    case MAT_C_INT16:
      return "int16";
    case MAT_C_UINT16:
      return "uint16";
    case MAT_C_INT32:
      return "int32";
    case MAT_C_UINT32:
      return "uint32";
    case MAT_C_INT64:
      return "int64";
    case MAT_C_UINT64:
      return "uint64";
    case MAT_C_CELL:
      return "cell";
    case MAT_C_STRUCT:
      return "struct";
    case MAT_C_CHAR:
      return "char";
    case MAT_C_SPARSE:
      return "sparse";
    default:
      return "unsupported";
  }
}

size_t element_count(const matvar_t* v) {
  size_t n = 1;
  for (int d = 0; d < v->rank; ++d) n *= v->dims[d];
  return n;
}

// Reads one element of a real numeric variable as double, whatever its class.
template <typename T>
double element_as(const void* data, size_t i) {
  T value;
  std::memcpy(&value, static_cast<const char*>(data) + i * sizeof(T), sizeof(T));
  return double(value);
}

double numeric_element(const matvar_t* v, size_t i) {
  switch (v->class_type) {
    case MAT_C_DOUBLE:
      return element_as<double>(v->data, i);
    case MAT_C_SINGLE:
      return element_as<float>(v->data, i);
    case MAT_C_INT8:
      return element_as<int8_t>(v->data, i);
    case MAT_C_UINT8:
      return element_as<uint8_t>(v->data, i);
    case MAT_C_INT16:
      return element_as<int16_t>(v->data, i);
    case MAT_C_UINT16:
      return element_as<uint16_t>(v->data, i);
    case MAT_C_INT32:
      return element_as<int32_t>(v->data, i);
    case MAT_C_UINT32:
      return element_as<uint32_t>(v->data, i);
    case MAT_C_INT64:
      return double(element_as<int64_t>(v->data, i));
    case MAT_C_UINT64:
      return double(element_as<uint64_t>(v->data, i));
    default:
      return NAN;
  }
}

size_t class_bytes(matio_classes c) {
  switch (c) {
    case MAT_C_DOUBLE:
    case MAT_C_INT64:
    case MAT_C_UINT64:
      return 8;
    case MAT_C_SINGLE:
    case MAT_C_INT32:
    case MAT_C_UINT32:
      return 4;
    case MAT_C_INT16:
    case MAT_C_UINT16:
      return 2;
    case MAT_C_INT8:
    case MAT_C_UINT8:
      return 1;
    default:
      return 0;
  }
}

uint32_t load_u32(const unsigned char* p, bool little_endian) {
  return little_endian ? uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24
                       : uint32_t(p[3]) | uint32_t(p[2]) << 8 | uint32_t(p[1]) << 16 | uint32_t(p[0]) << 24;
}

// Inflates `bytes` bytes of a zlib stream from f (positioned at its start)
// into a scratch buffer, only to learn whether it is complete and intact
// (zlib checks the Adler-32 sum at the end). Returns "" or what is wrong.
std::string verify_zlib_stream(std::FILE* f, uintmax_t bytes) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return "zlib cannot start";
  std::vector<unsigned char> in(1 << 20), out(1 << 20);
  int ret = Z_OK;
  while (bytes > 0 && ret == Z_OK) {
    const size_t want = size_t(std::min<uintmax_t>(bytes, in.size()));
    const size_t got = std::fread(in.data(), 1, want, f);
    if (got != want) {
      inflateEnd(&z);
      return "read error";
    }
    bytes -= got;
    z.next_in = in.data();
    z.avail_in = unsigned(got);
    do {
      z.next_out = out.data();
      z.avail_out = unsigned(out.size());
      ret = inflate(&z, Z_NO_FLUSH);
    } while (ret == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
    if (ret == Z_BUF_ERROR && z.avail_in == 0) ret = Z_OK;  // just needs more input
  }
  std::string why;
  if (ret == Z_STREAM_END) {
    if (z.avail_in > 0 || bytes > 0) why = "data after the end of its compressed stream";
  } else if (ret == Z_OK) {
    why = "its compressed stream ends early";
  } else {
    why = std::string("zlib: ") + (z.msg ? z.msg : "error " + std::to_string(ret));
  }
  inflateEnd(&z);
  return why;
}

struct CompressedElement {
  uintmax_t offset, bytes;  // where its tag starts, and its compressed length
};

// libmatio reads a cut-off variable without complaint and leaves the missing
// part of its buffer uninitialised, so for MAT v5 files we first walk the
// top-level data elements ourselves and insist that each one fits in the file.
// Returns the compressed elements, for verify_compressed_elements.
// (Other versions, e.g. 7.3 which is HDF5, are left to libmatio.)
std::vector<CompressedElement> check_mat5_layout(const std::string& path) {
  constexpr size_t kHeaderBytes = 128;
  constexpr uint32_t kMiMatrix = 14, kMiCompressed = 15;
  std::vector<CompressedElement> compressed;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(path, "cannot open");
  unsigned char header[kHeaderBytes];
  const size_t got = std::fread(header, 1, kHeaderBytes, f);
  const bool is_v5 = got == kHeaderBytes && std::memcmp(header, "MATLAB 5.0 MAT-file", 19) == 0;
  const bool little_endian = header[126] == 'I' && header[127] == 'M';
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (got < kHeaderBytes && got >= 6 && std::memcmp(header, "MATLAB", 6) == 0) {
    std::fclose(f);
    fail(path, "truncated: " + std::to_string(got) + " bytes, shorter than the 128-byte MAT header");
  }
  if (!is_v5 || ec) {
    std::fclose(f);
    return compressed;
  }
  uintmax_t offset = kHeaderBytes;
  while (size - offset >= 8) {
    unsigned char tag[8];
    if (std::fseek(f, long(offset), SEEK_SET) != 0 || std::fread(tag, 1, 8, f) != 8) break;
    const uint32_t type = load_u32(tag, little_endian);
    const uint32_t bytes = load_u32(tag + 4, little_endian);
    uintmax_t next;
    if (type >> 16)  // small data element: type and size share the first word
      next = offset + 8;
    else if (type == kMiCompressed)
      next = offset + 8 + bytes;
    else
      next = offset + 8 + ((uintmax_t(bytes) + 7) / 8) * 8;
    if (next > size) {
      std::fclose(f);
      fail(path, std::string("truncated: the ") +
                     (type == kMiMatrix || type == kMiCompressed ? "variable" : "data element") +
                     " at byte " + std::to_string(offset) + " needs " + std::to_string(next - offset) +
                     " bytes but only " + std::to_string(size - offset) + " are left in the file");
    }
    if (type == kMiCompressed) compressed.push_back({offset, bytes});
    offset = next;
  }
  std::fclose(f);
  return compressed;
}

// libmatio also ignores zlib errors inside compressed variables, keeping
// whatever came out, so each compressed variable is inflated once here as
// well. Returns "" or the error message.
std::string verify_compressed_elements(const std::string& path,
                                       const std::vector<CompressedElement>& elements) {
  if (elements.empty()) return "";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "[svhn] " + path + ": cannot open";
  std::string error;
  for (const CompressedElement& e : elements) {
    if (std::fseek(f, long(e.offset + 8), SEEK_SET) != 0) {
      error = "[svhn] " + path + ": cannot seek";
      break;
    }
    if (std::string why = verify_zlib_stream(f, e.bytes); !why.empty()) {
      error = "[svhn] " + path + ": corrupt: the compressed variable at byte " + std::to_string(e.offset) +
              " does not decompress: " + why;
      break;
    }
  }
  std::fclose(f);
  return error;
}

// libmatio allocates whatever a variable's dimensions claim before reading
// its data (found by tests/fuzz/fuzz_svhn: a header claiming 39 TB). So the
// header is read first and the claimed size checked against what the file
// can hold: zlib expands at most 1032:1, so a file of S bytes holds no
// variable larger than about 1032 S bytes.
void check_claimed_size(mat_t* mat, const std::string& path, const char* name) {
  MatVar info(Mat_VarReadInfo(mat, name));
  if (!info) return;  // Mat_VarRead below names the problem
  std::error_code ec;
  const uintmax_t file_bytes = std::filesystem::file_size(path, ec);
  if (ec) return;
  const uintmax_t limit = file_bytes * 1032 + 4096;
  uintmax_t claimed = std::max<size_t>(class_bytes(info->class_type), 1);
  for (int d = 0; d < info->rank; ++d) {
    if (info->dims[d] != 0 && claimed > limit / info->dims[d]) {
      claimed = limit + 1;
      break;
    }
    claimed *= info->dims[d];
  }
  if (claimed > limit)
    fail(path, std::string("variable ") + name + " claims shape " + shape_of(info.get()) + ", more than a file of " +
                   std::to_string(file_bytes) + " bytes can hold (corrupt header)");
}

MatVar read_variable(mat_t* mat, const std::string& path, const char* name) {
  check_claimed_size(mat, path, name);
  MatVar v(Mat_VarRead(mat, name));
  if (!v)
    fail(path,
         std::string("missing variable ") + name + " (or it cannot be read: truncated or corrupt file?)");
  if (v->isComplex) fail(path, std::string("variable ") + name + " is complex, expected real");
  if (v->class_type == MAT_C_SPARSE || class_bytes(v->class_type) == 0)
    fail(path, std::string("variable ") + name + " has class " + class_name(v->class_type) +
                   ", expected a numeric array");
  size_t numel = element_count(v.get());
  if (numel > 0 && (!v->data || v->nbytes != numel * class_bytes(v->class_type) ||
                    size_t(v->data_size) != class_bytes(v->class_type)))
    fail(path, std::string("variable ") + name + " (" + shape_of(v.get()) +
                   ") has inconsistent data: " + std::to_string(v->nbytes) + " bytes");
  return v;
}

// Reads X and y through libmatio, checks them and converts them to our layout.
Dataset read_with_matio(const std::string& path) {
  MatFile mat(Mat_Open(path.c_str(), MAT_ACC_RDONLY));
  if (!mat) fail(path, "cannot open as a MATLAB .mat file (corrupt or not a .mat file)");

  MatVar x = read_variable(mat.get(), path, "X");
  // MATLAB drops trailing singleton dimensions, so a single image is 32x32x3.
  if (x->rank != 4 && x->rank != 3)
    fail(path, "X has rank " + std::to_string(x->rank) + " (" + shape_of(x.get()) + "), expected 32x32x3xN");
  if (x->dims[0] != kSvhnSide || x->dims[1] != kSvhnSide || x->dims[2] != kSvhnChannels)
    fail(path, "X has shape " + shape_of(x.get()) + ", expected 32x32x3xN");
  if (x->class_type != MAT_C_UINT8)
    fail(path, std::string("X has class ") + class_name(x->class_type) + ", expected uint8");
  const size_t count = x->rank == 4 ? x->dims[3] : 1;
  if (count == 0) fail(path, "X holds no images (shape " + shape_of(x.get()) + ")");

  MatVar y = read_variable(mat.get(), path, "y");
  if (y->rank != 2 || (y->dims[0] != 1 && y->dims[1] != 1))
    fail(path, "y has shape " + shape_of(y.get()) + ", expected Nx1 or 1xN");
  const size_t label_count = element_count(y.get());
  if (label_count != count)
    fail(path,
         "X has " + std::to_string(count) + " images but y has " + std::to_string(label_count) + " labels");

  Dataset ds = numbered_classes_dataset("svhn", kSvhnChannels, kSvhnSide, kSvhnSide, kSvhnClasses);

  ds.labels.resize(count);
  for (size_t i = 0; i < count; ++i) {
    double label = numeric_element(y.get(), i);
    if (!(label >= 1 && label <= 10) || label != std::floor(label)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%g", label);
      fail(path,
           "label y(" + std::to_string(i + 1) + ") = " + buf + " is outside 1..10 (10 stands for digit 0)");
    }
    ds.labels[i] = uint8_t(int(label) % 10);
  }

  // Column-major X(h,w,c,n) -> row-major [n][c][h][w]: for fixed (n,c) the
  // source plane is w-major, so this is a 32x32 transpose per plane.
  const size_t plane = size_t(kSvhnSide) * kSvhnSide;
  ds.images.resize(count * kSvhnChannels * plane);
  const uint8_t* src = static_cast<const uint8_t*>(x->data);
  uint8_t* dst = ds.images.data();
#pragma omp parallel for schedule(static) if (count > 1024)
  for (size_t p = 0; p < count * kSvhnChannels; ++p) {
    const uint8_t* s = src + p * plane;
    uint8_t* d = dst + p * plane;
    for (int h = 0; h < kSvhnSide; ++h)
      for (int w = 0; w < kSvhnSide; ++w) d[h * kSvhnSide + w] = s[h + kSvhnSide * w];
  }
  return ds;
}

}  // namespace

Dataset read_svhn_mat(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path, "missing file");
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a directory, expected a .mat file");
  std::vector<CompressedElement> compressed = check_mat5_layout(path);
  if (compressed.empty()) return read_with_matio(path);

  // The zlib check reads the file a second time; on its own thread it adds
  // little wall time, since libmatio's read is single-threaded too.
  std::future<std::string> verified =
      std::async(std::launch::async, verify_compressed_elements, path, std::move(compressed));
  Dataset ds;
  try {
    ds = read_with_matio(path);
  } catch (const std::runtime_error&) {
    // A corrupt stream explains libmatio's failure better than libmatio does.
    if (std::string error = verified.get(); !error.empty()) throw std::runtime_error(error);
    throw;
  }
  if (std::string error = verified.get(); !error.empty()) throw std::runtime_error(error);
  return ds;
}

}  // namespace cte
