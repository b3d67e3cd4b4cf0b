// Reader for the CIFAR-10 binary version (data_batch_1.bin .. data_batch_5.bin,
// test_batch.bin). Each file is a plain sequence of 3073-byte records: one
// label byte (0..9) and 3072 pixel bytes holding the R, G and B planes of a
// 32x32 image in row-major order, which is already our C,H,W layout, so a
// record's pixels are copied as they are. A file whose size is not a whole
// number of records, or an empty one, is rejected rather than read short.
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

constexpr int kCifarSide = 32, kCifarChannels = 3, kCifarClasses = 10;
constexpr size_t kPixelBytes = size_t(kCifarChannels) * kCifarSide * kCifarSide;  // 3072
constexpr size_t kRecordBytes = 1 + kPixelBytes;                                  // 3073

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("[cifar10] " + path + ": " + what);
}

}  // namespace

Dataset read_cifar10_bins(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  if (paths.empty()) throw std::runtime_error("[cifar10] no batch files given");

  // Validate every file before allocating, so the buffers are sized exactly once.
  std::vector<size_t> records(paths.size());
  size_t total = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    std::error_code ec;
    if (!fs::exists(paths[f], ec)) fail(paths[f], "missing file");
    if (!fs::is_regular_file(paths[f], ec)) fail(paths[f], "not a regular file");
    uintmax_t bytes = fs::file_size(paths[f], ec);
    if (ec) fail(paths[f], "cannot get file size: " + ec.message());
    if (bytes == 0) fail(paths[f], "empty file");
    if (bytes % kRecordBytes != 0)
      fail(paths[f], "size " + std::to_string(bytes) + " bytes is not a multiple of the " +
                         std::to_string(kRecordBytes) + "-byte record (" +
                         std::to_string(bytes / kRecordBytes) + " whole records and " +
                         std::to_string(bytes % kRecordBytes) +
                         " bytes left over): truncated or not a CIFAR-10 binary batch");
    records[f] = size_t(bytes / kRecordBytes);
    total += records[f];
  }

  Dataset ds = numbered_classes_dataset("cifar10", kCifarChannels, kCifarSide, kCifarSide, kCifarClasses);
  ds.labels.resize(total);
  ds.images.resize(total * kPixelBytes);

  // Read a few thousand records at a time: one fread per record would be slow,
  // and one buffer for the whole file would double the peak memory.
  constexpr size_t kRecordsPerRead = 2048;
  const size_t most_records = *std::max_element(records.begin(), records.end());
  std::vector<uint8_t> buffer(std::min(kRecordsPerRead, most_records) * kRecordBytes);
  size_t item = 0;
  for (size_t f = 0; f < paths.size(); ++f) {
    std::FILE* in = std::fopen(paths[f].c_str(), "rb");
    if (!in) fail(paths[f], std::string("cannot open: ") + std::strerror(errno));
    for (size_t done = 0; done < records[f];) {
      size_t n = std::min(kRecordsPerRead, records[f] - done);
      size_t got = std::fread(buffer.data(), 1, n * kRecordBytes, in);
      if (got != n * kRecordBytes) {
        std::fclose(in);
        fail(paths[f], "read only " + std::to_string(done * kRecordBytes + got) + " of " +
                           std::to_string(records[f] * kRecordBytes) +
                           " bytes (file changed while reading?)");
      }
      for (size_t r = 0; r < n; ++r, ++item) {
        const uint8_t* rec = buffer.data() + r * kRecordBytes;
        if (rec[0] >= kCifarClasses) {
          std::fclose(in);
          fail(paths[f], "label " + std::to_string(rec[0]) + " of record " + std::to_string(done + r) +
                             " is out of range (expected 0..9)");
        }
        ds.labels[item] = rec[0];
        std::memcpy(ds.images.data() + item * kPixelBytes, rec + 1, kPixelBytes);
      }
      done += n;
    }
    std::fclose(in);
  }
  return ds;
}

}  // namespace cte
