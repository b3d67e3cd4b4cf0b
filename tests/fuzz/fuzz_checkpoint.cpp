// Checkpoint reader as certify uses it: network_from_checkpoint reads the
// binary container (magic, sizes, CRC), parses the metadata JSON and rebuilds
// the network from the tensors. The fuzzer would rarely get a CRC right, so
// the harness recomputes the last 4 bytes as the CRC of the rest when the
// first input byte is odd (and leaves them alone when it is even).
#include <zlib.h>

#include <cstring>
#include <exception>
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "train/trainer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((data[0] & 1) && bytes.size() >= 4) {
    const uint32_t crc = uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size() - 4)));
    std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
  }
  const std::string path = cte::fuzz::write_scratch("checkpoint.ckpt", bytes);
  try {
    nlohmann::json meta;
    (void)cte::train::network_from_checkpoint(path, &meta);
  } catch (const std::exception&) {
  }
  return 0;
}
