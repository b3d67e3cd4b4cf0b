// CUDA twins of the 2-D convolution kernels (forward, backward data, backward
// filter; NCHW activations, OIHW filters, cross-correlation) on cuDNN. Each
// geometry gets its descriptors and workspace sizes built once and cached.
// Algorithms are fixed rather than searched, so results are deterministic and
// reproducible: forward IMPLICIT_PRECOMP_GEMM (IMPLICIT_GEMM where that is not
// supported), backward data ALGO_1, backward filter ALGO_1 (ALGO_0 and ALGO_3
// use atomics and are not deterministic). Math is FP32 FMA only, no tensor cores.
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/handles.cuh"
#include "kernels/kernels.h"

namespace cte::kern {
namespace {

using GeometryKey = std::array<int, 11>;

GeometryKey key_of(const ConvGeometry& g) {
  return {g.n, g.c_in, g.h_in, g.w_in, g.c_out, g.kh, g.kw, g.stride, g.padding, g.h_out, g.w_out};
}

// The descriptors of one geometry. Workspace sizes are asked for lazily, per
// direction, because a network's first layer never runs backward data.
struct ConvPlan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  std::optional<cudnnConvolutionFwdAlgo_t> forward_algo;
  size_t forward_workspace = 0;
  std::optional<size_t> backward_data_workspace, backward_filter_workspace;

  explicit ConvPlan(const ConvGeometry& g) {
    CTE_CUDA_CHECK(cudnnCreateTensorDescriptor(&x));
    CTE_CUDA_CHECK(cudnnCreateTensorDescriptor(&y));
    CTE_CUDA_CHECK(cudnnCreateFilterDescriptor(&w));
    CTE_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    CTE_CUDA_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n, g.c_in,
                                              g.h_in, g.w_in));
    CTE_CUDA_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.n,
                                              g.c_out, g.h_out, g.w_out));
    CTE_CUDA_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.c_out,
                                              g.c_in, g.kh, g.kw));
    CTE_CUDA_CHECK(cudnnSetConvolution2dDescriptor(conv, g.padding, g.padding, g.stride, g.stride,
                                                   1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    // FP32 FMA only: a certified bound must not depend on TF32 / reduced-precision
    // tensor-core arithmetic, which cuDNN may otherwise pick for FP32 on Ampere+.
    CTE_CUDA_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH));
  }
  ConvPlan(const ConvPlan&) = delete;
  ConvPlan& operator=(const ConvPlan&) = delete;
  ~ConvPlan() {  // host-only bookkeeping; destroy errors at exit are not worth reporting
    (void)cudnnDestroyConvolutionDescriptor(conv);
    (void)cudnnDestroyFilterDescriptor(w);
    (void)cudnnDestroyTensorDescriptor(y);
    (void)cudnnDestroyTensorDescriptor(x);
  }
};

void check_geometry(const ConvGeometry& g) {
  const bool sane = g.n >= 0 && g.c_in >= 0 && g.c_out >= 0 && g.h_in >= 0 && g.w_in >= 0 &&
                    g.kh > 0 && g.kw > 0 && g.stride > 0 && g.padding >= 0 &&
                    g.h_out == conv_output_extent(g.h_in, g.kh, g.stride, g.padding) &&
                    g.w_out == conv_output_extent(g.w_in, g.kw, g.stride, g.padding) && g.h_out > 0 &&
                    g.w_out > 0;
  if (!sane)
    throw std::runtime_error(
        "conv2d (cuda): inconsistent geometry n=" + std::to_string(g.n) + " c_in=" +
        std::to_string(g.c_in) + " " + std::to_string(g.h_in) + "x" + std::to_string(g.w_in) +
        " c_out=" + std::to_string(g.c_out) + " kernel " + std::to_string(g.kh) + "x" +
        std::to_string(g.kw) + " stride " + std::to_string(g.stride) + " padding " +
        std::to_string(g.padding) + " -> " + std::to_string(g.h_out) + "x" +
        std::to_string(g.w_out));
}

// The cached plan of g. Plans live as long as the process (a network has few geometries).
ConvPlan& plan_for(const ConvGeometry& g) {
  static std::mutex mutex;
  static std::map<GeometryKey, std::unique_ptr<ConvPlan>> plans;
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<ConvPlan>& plan = plans[key_of(g)];
  if (!plan) plan = std::make_unique<ConvPlan>(g);
  return *plan;
}

int64_t x_numel(const ConvGeometry& g) { return int64_t(g.n) * g.c_in * g.h_in * g.w_in; }
int64_t y_numel(const ConvGeometry& g) { return int64_t(g.n) * g.c_out * g.h_out * g.w_out; }
int64_t w_numel(const ConvGeometry& g) { return int64_t(g.c_out) * g.c_in * g.kh * g.kw; }

const float kOne = 1.0f, kZero = 0.0f;  // beta = 0: cuDNN overwrites the output without reading it

// y[i] = bias[channel of i]: the start that cuDNN's forward (beta = 1) adds the sums to.
// bias: [c_out], y: [n, c_out, spatial], total = n * c_out * spatial.
__global__ void fill_bias_kernel(const float* bias, float* y, int64_t c_out, int64_t spatial, int64_t total) {
  CTE_GRID_STRIDE_LOOP(i, total) { y[i] = bias[(i / spatial) % c_out]; }
}

}  // namespace

void conv2d_forward_cuda(const float* x, const float* w, const float* bias, float* y, ConvGeometry g) {
  check_geometry(g);
  if (y_numel(g) == 0) return;
  if (bias)
    gpu::launch_1d("conv2d_fill_bias", y_numel(g), fill_bias_kernel, bias, y, int64_t(g.c_out),
                   int64_t(g.h_out) * g.w_out, y_numel(g));
  if (x_numel(g) == 0 || w_numel(g) == 0) {  // empty sums
    if (!bias) fill_cuda(y, y_numel(g), 0.0f);
    return;
  }
  ConvPlan& plan = plan_for(g);
  cudnnHandle_t handle = gpu::cudnn_handle();
  if (!plan.forward_algo) {
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
    size_t bytes = 0;
    if (cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x, plan.w, plan.conv, plan.y, algo,
                                                &bytes) != CUDNN_STATUS_SUCCESS) {
      algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
      CTE_CUDA_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x, plan.w, plan.conv,
                                                             plan.y, algo, &bytes));
    }
    plan.forward_workspace = bytes;
    plan.forward_algo = algo;
  }
  void* scratch = gpu::workspace(plan.forward_workspace);
  CTE_CUDA_CHECK(cudnnConvolutionForward(handle, &kOne, plan.x, x, plan.w, w, plan.conv,
                                         *plan.forward_algo, scratch, plan.forward_workspace,
                                         bias ? &kOne : &kZero, plan.y, y));
}

void conv2d_backward_data_cuda(const float* dy, const float* w, float* dx, ConvGeometry g) {
  check_geometry(g);
  if (x_numel(g) == 0) return;
  if (y_numel(g) == 0 || w_numel(g) == 0) return fill_cuda(dx, x_numel(g), 0.0f);
  ConvPlan& plan = plan_for(g);
  cudnnHandle_t handle = gpu::cudnn_handle();
  constexpr cudnnConvolutionBwdDataAlgo_t algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  if (!plan.backward_data_workspace) {
    size_t bytes = 0;
    CTE_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan.w, plan.y, plan.conv,
                                                                plan.x, algo, &bytes));
    plan.backward_data_workspace = bytes;
  }
  void* scratch = gpu::workspace(*plan.backward_data_workspace);
  CTE_CUDA_CHECK(cudnnConvolutionBackwardData(handle, &kOne, plan.w, w, plan.y, dy, plan.conv,
                                              algo, scratch, *plan.backward_data_workspace,
                                              &kZero, plan.x, dx));
}

void conv2d_backward_filter_cuda(const float* x, const float* dy, float* dw, ConvGeometry g) {
  check_geometry(g);
  if (w_numel(g) == 0) return;
  if (x_numel(g) == 0 || y_numel(g) == 0) return fill_cuda(dw, w_numel(g), 0.0f);
  ConvPlan& plan = plan_for(g);
  cudnnHandle_t handle = gpu::cudnn_handle();
  constexpr cudnnConvolutionBwdFilterAlgo_t algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  if (!plan.backward_filter_workspace) {
    size_t bytes = 0;
    CTE_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        handle, plan.x, plan.y, plan.conv, plan.w, algo, &bytes));
    plan.backward_filter_workspace = bytes;
  }
  void* scratch = gpu::workspace(*plan.backward_filter_workspace);
  CTE_CUDA_CHECK(cudnnConvolutionBackwardFilter(handle, &kOne, plan.x, x, plan.y, dy, plan.conv,
                                                algo, scratch, *plan.backward_filter_workspace,
                                                &kZero, plan.w, dw));
}

}  // namespace cte::kern
