// CIFAR-10 binary batch reader on one fuzzed batch file.
#include <exception>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cte::fuzz::write_scratch("data_batch_1.bin", data, size);
  try {
    const cte::Dataset ds = cte::read_cifar10_bins({path});
    if (ds.images.size() != ds.size() * ds.image_numel()) std::abort();
  } catch (const std::exception&) {
  }
  return 0;
}
