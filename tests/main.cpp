// The test runner. Before any test: new tensors are filled with NaN (so an
// element a kernel forgets to write fails its comparison), and the emulated
// CUDA device is made visible (emulator builds only; on a real-CUDA build the
// GPU is used where present, and CTE_TEST_GPU=1 makes its absence an error).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "engine/device.h"
#include "engine/tensor.h"
#include "kernels/gpu_runtime.h"

int main(int argc, char** argv) {
  cte::set_poison_new_tensors(true);
  cte::gpu::enable_emulator();
  const bool gpu_required = std::getenv("CTE_TEST_GPU") && std::string(std::getenv("CTE_TEST_GPU")) == "1";
  if (cte::cuda_available()) {
    std::printf("[tests] %s\n", cte::device_banner(cte::Device::cuda).c_str());
  } else if (gpu_required) {
    std::fprintf(stderr, "[tests] CTE_TEST_GPU=1 but no CUDA device is available\n");
    return 1;
  } else {
    std::printf("[tests] no CUDA device: CUDA-backend tests are skipped\n");
  }
  doctest::Context context(argc, argv);
  return context.run();
}
