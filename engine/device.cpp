// Device selection and the banner every binary prints at start-up.
#include "engine/device.h"

#include <cblas.h>
#include <omp.h>

#include <fstream>
#include <stdexcept>

#include "kernels/cpu/gemm_cpu.h"
#include "kernels/gpu_runtime.h"

namespace cte {
namespace {

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  return "unknown CPU";
}

}  // namespace

bool cuda_available() { return gpu::device_count() > 0; }

void set_thread_count(int threads, const std::string& flag) {
  if (threads < 0)
    throw std::invalid_argument(flag + " " + std::to_string(threads) + " must be >= 0 (0: OpenMP's default)");
  if (threads == 0) return;
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
}

void require_device(Device device) {
  if (device == Device::cuda && !cuda_available()) {
    const bool emulated = gpu::compiled_backend() == gpu::Backend::emulator;
    fail("device", std::string("CUDA was requested but no CUDA device is available") +
                       (emulated ? " (this binary was built without nvcc; its CUDA kernels run only "
                                   "on the SIMT emulator, enabled with CTE_EMULATE_CUDA=1)"
                                 : " (cudaGetDeviceCount found none)") +
                       "; use --device cpu");
  }
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda" || name == "gpu") {
    require_device(Device::cuda);
    return Device::cuda;
  }
  if (name == "auto" || name.empty()) return cuda_available() ? Device::cuda : Device::cpu;
  fail("device", "unknown device '" + name + "' (expected cpu, cuda or auto)");
}

std::string device_banner(Device device) {
  if (device == Device::cuda) return "backend: CUDA | " + gpu::describe_device();
  return "backend: CPU | " + cpu_model() + " | " + std::to_string(omp_get_max_threads()) +
         " OpenMP threads | " + kern::gemm_cpu_description();
}

}  // namespace cte
