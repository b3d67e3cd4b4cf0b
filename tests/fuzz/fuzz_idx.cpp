// IDX reader (MNIST/FashionMNIST, plain and gzip). The first input byte picks
// the mode: bit 0 gzip-compresses the rest before writing it (so the fuzzer
// explores the IDX structure behind zlib too; raw gzip seeds cover zlib's
// own framing), bit 1 makes the rest the label file instead of the image
// file. The other file of the pair is a valid one with the count the fuzzed
// header claims (at most 64), so the reader gets past the count check.
#include <zlib.h>

#include <algorithm>
#include <exception>
#include <string>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::string big_endian(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

std::string gzip(const std::string& raw) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&z, uLong(raw.size())) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = uInt(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  // The count the fuzzed header claims, so the partner file can agree.
  uint32_t count = 1;
  if (body.size() >= 8)
    count = (uint32_t(uint8_t(body[4])) << 24) | (uint32_t(uint8_t(body[5])) << 16) |
            (uint32_t(uint8_t(body[6])) << 8) | uint32_t(uint8_t(body[7]));
  count = std::clamp<uint32_t>(count, 1, 64);
  const bool fuzz_labels = mode & 2;
  const std::string fuzzed = cte::fuzz::write_scratch(fuzz_labels ? "labels" : "images", (mode & 1) ? gzip(body) : body);
  std::string partner;
  if (fuzz_labels)
    partner = big_endian(0x803) + big_endian(count) + big_endian(2) + big_endian(2) + std::string(size_t(count) * 4, '\x07');
  else
    partner = big_endian(0x801) + big_endian(count) + std::string(size_t(count), '\x03');
  const std::string other = cte::fuzz::write_scratch(fuzz_labels ? "images" : "labels", partner);
  try {
    const cte::Dataset ds = fuzz_labels ? cte::read_idx_pair(other, fuzzed, "mnist") : cte::read_idx_pair(fuzzed, other, "mnist");
    if (ds.images.size() != ds.size() * ds.image_numel()) std::abort();  // a reader must never return a short data set
  } catch (const std::exception&) {
  }
  return 0;
}
