// NCCL for the gradients of CUDA tensors, bootstrapped through MPI (see
// distributed.h). Compiled with CTE_HAVE_NCCL only in real-CUDA builds that
// also have MPI and the NCCL the CUDA toolkit ships (the Makefile decides);
// the SIMT emulator has no NCCL, so the emulated tests stage through the host.
#include "train/distributed.h"

#ifdef CTE_HAVE_NCCL
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <stdexcept>
#include <string>

namespace cte::dist {

namespace {

ncclComm_t g_nccl = nullptr;

void check_nccl(ncclResult_t result, const char* what) {
  if (result != ncclSuccess)
    throw std::runtime_error(std::string("[nccl] ") + what + ": " + ncclGetErrorString(result));
}

void check_cuda(cudaError_t result, const char* what) {
  if (result != cudaSuccess) throw std::runtime_error(std::string("[nccl] ") + what + ": " + cudaGetErrorString(result));
}

}  // namespace

bool nccl_sum_gradients(const std::vector<Tensor>& grads, int rank, int size, void* mpi_comm) {
  if (!g_nccl) {
    ncclUniqueId id;
    if (rank == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, int(sizeof id), MPI_BYTE, 0, *static_cast<MPI_Comm*>(mpi_comm));
    check_nccl(ncclCommInitRank(&g_nccl, size, id, rank), "ncclCommInitRank");
  }
  // The engine's stream (gpu::work_stream) is a blocking stream, so this
  // reduction on the legacy stream is ordered after backward and before the
  // optimiser step.
  check_nccl(ncclGroupStart(), "ncclGroupStart");
  for (const Tensor& g : grads) {
    Tensor buffer = g;
    check_nccl(ncclAllReduce(buffer.data(), buffer.data(), size_t(g.numel()), ncclFloat, ncclSum, g_nccl, nullptr),
               "ncclAllReduce");
  }
  check_nccl(ncclGroupEnd(), "ncclGroupEnd");
  check_cuda(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize after ncclAllReduce");
  return true;
}

void nccl_select_gpu(int local_rank) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return;  // a CPU node
  check_cuda(cudaSetDevice(local_rank % count), "cudaSetDevice");
}

void nccl_finalize() {
  if (g_nccl) ncclCommDestroy(g_nccl);
  g_nccl = nullptr;
}

}  // namespace cte::dist

#else

namespace cte::dist {

bool nccl_sum_gradients(const std::vector<Tensor>&, int, int, void*) { return false; }
void nccl_select_gpu(int) {}
void nccl_finalize() {}

}  // namespace cte::dist

#endif
