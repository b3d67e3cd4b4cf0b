// SVHN .mat reader (our header checks, then libmatio) on one fuzzed file.
#include <exception>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = cte::fuzz::write_scratch("train_32x32.mat", data, size);
  try {
    const cte::Dataset ds = cte::read_svhn_mat(path);
    if (ds.images.size() != ds.size() * ds.image_numel()) std::abort();
  } catch (const std::exception&) {
  }
  return 0;
}
