// The `certify bounds` inputs file (X.json), in memory.
#include <exception>
#include <string>

#include "tests/fuzz/fuzz_util.h"
#include "tools/certify/bounds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)cte::tools::bounds_inputs_from_json(std::string(reinterpret_cast<const char*>(data), size), "x.json");
  } catch (const std::exception&) {
  }
  return 0;
}
