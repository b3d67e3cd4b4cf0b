// The SIMT emulator's cuDNN stand-ins: handles, the tensor, filter and
// convolution descriptors, and the three 2-D convolutions (forward, backward
// data, backward filter) in NCHW float with cross-correlation, padding, stride
// and dilation. The loops are the emulator's definition of the operations:
// direct sums in double, then out = alpha * sum + beta * out rounded once to
// float; beta == 0 never reads out. Shapes that do not agree give
// CUDNN_STATUS_BAD_PARAM; operands outside cudaMalloc memory give
// CUDNN_STATUS_EXECUTION_FAILED (a GPU would fault) with a note on stderr.
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernels/emu/emu_cuda.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};

struct cudnnTensorStruct {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
};

struct cudnnFilterStruct {
  bool set = false;
  int k = 0, c = 0, h = 0, w = 0;
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

constexpr size_t kCudnnVersion = 91900;  // 9.19.0, the cuDNN this project builds with

// Everything one convolution needs, resolved from its descriptors.
struct ConvShape {
  int64_t n, c, h, w;      // input
  int64_t k, r, s;         // filters: k x c x r x s
  int64_t oh, ow;          // output
  int64_t pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;

  int64_t x_index(int64_t ni, int64_t ci, int64_t hi, int64_t wi) const { return ((ni * c + ci) * h + hi) * w + wi; }
  int64_t w_index(int64_t ki, int64_t ci, int64_t ri, int64_t si) const { return ((ki * c + ci) * r + ri) * s + si; }
  int64_t y_index(int64_t ni, int64_t ki, int64_t hi, int64_t wi) const { return ((ni * k + ki) * oh + hi) * ow + wi; }
  int64_t x_elements() const { return n * c * h * w; }
  int64_t w_elements() const { return k * c * r * s; }
  int64_t y_elements() const { return n * k * oh * ow; }
};

// Output extent along one axis, or 0 when the (dilated) filter does not fit.
int64_t output_extent(int64_t in, int64_t filter, int64_t pad, int64_t stride, int64_t dilation) {
  const int64_t span = in + 2 * pad - ((filter - 1) * dilation + 1);
  return span < 0 ? 0 : span / stride + 1;
}

cudnnStatus_t resolve(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                      ConvShape* shape) {
  if (x == nullptr || w == nullptr || conv == nullptr) return CUDNN_STATUS_BAD_PARAM;
  if (!x->set || !w->set || !conv->set) return CUDNN_STATUS_BAD_PARAM;
  if (x->c != w->c) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  s.n = x->n, s.c = x->c, s.h = x->h, s.w = x->w;
  s.k = w->k, s.r = w->h, s.s = w->w;
  s.pad_h = conv->pad_h, s.pad_w = conv->pad_w;
  s.stride_h = conv->stride_h, s.stride_w = conv->stride_w;
  s.dil_h = conv->dilation_h, s.dil_w = conv->dilation_w;
  s.oh = output_extent(s.h, s.r, s.pad_h, s.stride_h, s.dil_h);
  s.ow = output_extent(s.w, s.s, s.pad_w, s.stride_w, s.dil_w);
  if (s.oh < 1 || s.ow < 1) return CUDNN_STATUS_BAD_PARAM;
  *shape = s;
  return CUDNN_STATUS_SUCCESS;
}

bool is_output_of(cudnnTensorDescriptor_t y, const ConvShape& s) {
  return y != nullptr && y->set && y->n == s.n && y->c == s.k && y->h == s.oh && y->w == s.ow;
}

bool valid_forward_algo(cudnnConvolutionFwdAlgo_t algo) {
  return algo >= CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM && algo <= CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool valid_backward_data_algo(cudnnConvolutionBwdDataAlgo_t algo) {
  return algo >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 && algo <= CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool valid_backward_filter_algo(cudnnConvolutionBwdFilterAlgo_t algo) {
  switch (algo) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0:
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT:
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED:
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING:
      return true;
  }
  return false;
}

bool operand_in_device(const char* function, const char* operand, const void* ptr, int64_t elements) {
  const size_t bytes = size_t(elements) * sizeof(float);
  if (emu::detail::is_device_range(ptr, bytes)) return true;
  std::fprintf(stderr, "emu: %s: operand %s %s\n", function, operand,
               emu::detail::describe_range_problem(ptr, bytes).c_str());
  return false;
}

// out = alpha * sum + beta * out, rounded once; beta == 0 does not read out.
void blend(float* out, double sum, float alpha, float beta) {
  double result = double(alpha) * sum;
  if (beta != 0.0f) result += double(beta) * double(*out);
  *out = float(result);
}

// Input coordinate that filter tap t of output coordinate o reads.
int64_t input_coordinate(int64_t o, int64_t t, int64_t stride, int64_t pad, int64_t dilation) {
  return o * stride - pad + t * dilation;
}

void forward(const ConvShape& s, float alpha, const float* x, const float* w, float beta, float* y) {
  for (int64_t ni = 0; ni < s.n; ++ni)
    for (int64_t ki = 0; ki < s.k; ++ki)
      for (int64_t oy = 0; oy < s.oh; ++oy)
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          double sum = 0.0;
          for (int64_t ci = 0; ci < s.c; ++ci)
            for (int64_t ri = 0; ri < s.r; ++ri) {
              const int64_t iy = input_coordinate(oy, ri, s.stride_h, s.pad_h, s.dil_h);
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t si = 0; si < s.s; ++si) {
                const int64_t ix = input_coordinate(ox, si, s.stride_w, s.pad_w, s.dil_w);
                if (ix < 0 || ix >= s.w) continue;
                sum += double(x[s.x_index(ni, ci, iy, ix)]) * double(w[s.w_index(ki, ci, ri, si)]);
              }
            }
          blend(&y[s.y_index(ni, ki, oy, ox)], sum, alpha, beta);
        }
}

// The output coordinate whose filter tap t reads input coordinate i, or -1.
int64_t output_coordinate(int64_t i, int64_t t, int64_t extent, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t shifted = i + pad - t * dilation;
  if (shifted < 0 || shifted % stride != 0) return -1;
  const int64_t o = shifted / stride;
  return o < extent ? o : -1;
}

void backward_data(const ConvShape& s, float alpha, const float* w, const float* dy, float beta, float* dx) {
  for (int64_t ni = 0; ni < s.n; ++ni)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t iy = 0; iy < s.h; ++iy)
        for (int64_t ix = 0; ix < s.w; ++ix) {
          double sum = 0.0;
          for (int64_t ki = 0; ki < s.k; ++ki)
            for (int64_t ri = 0; ri < s.r; ++ri) {
              const int64_t oy = output_coordinate(iy, ri, s.oh, s.stride_h, s.pad_h, s.dil_h);
              if (oy < 0) continue;
              for (int64_t si = 0; si < s.s; ++si) {
                const int64_t ox = output_coordinate(ix, si, s.ow, s.stride_w, s.pad_w, s.dil_w);
                if (ox < 0) continue;
                sum += double(dy[s.y_index(ni, ki, oy, ox)]) * double(w[s.w_index(ki, ci, ri, si)]);
              }
            }
          blend(&dx[s.x_index(ni, ci, iy, ix)], sum, alpha, beta);
        }
}

void backward_filter(const ConvShape& s, float alpha, const float* x, const float* dy, float beta, float* dw) {
  for (int64_t ki = 0; ki < s.k; ++ki)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t ri = 0; ri < s.r; ++ri)
        for (int64_t si = 0; si < s.s; ++si) {
          double sum = 0.0;
          for (int64_t ni = 0; ni < s.n; ++ni)
            for (int64_t oy = 0; oy < s.oh; ++oy) {
              const int64_t iy = input_coordinate(oy, ri, s.stride_h, s.pad_h, s.dil_h);
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t ox = 0; ox < s.ow; ++ox) {
                const int64_t ix = input_coordinate(ox, si, s.stride_w, s.pad_w, s.dil_w);
                if (ix < 0 || ix >= s.w) continue;
                sum += double(x[s.x_index(ni, ci, iy, ix)]) * double(dy[s.y_index(ni, ki, oy, ox)]);
              }
            }
          blend(&dw[s.w_index(ki, ci, ri, si)], sum, alpha, beta);
        }
}

// Runs compute(alpha, beta) on the handle's stream, or records it while that
// stream captures a graph. The host-side alpha and beta are read now, as cuDNN
// does (a captured graph keeps them).
template <class Compute>
cudnnStatus_t queue_on_stream(cudnnHandle_t handle, const void* alpha, const void* beta, Compute compute) {
  const float alpha_value = *static_cast<const float*>(alpha), beta_value = *static_cast<const float*>(beta);
  const bool queued = emu::detail::submit(handle->stream, [=] {
    emu::detail::DeviceWorkLock lock;
    compute(alpha_value, beta_value);
  });
  return queued ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

cudnnStatus_t check_call(cudnnHandle_t handle, const void* alpha, const void* beta) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (alpha == nullptr || beta == nullptr) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace

size_t cudnnGetVersion() { return kCudnnVersion; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_ALLOC_FAILED: return "CUDNN_STATUS_ALLOC_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *handle = nullptr;
  if (!emu::device_visible()) return CUDNN_STATUS_NOT_INITIALIZED;
  *handle = new cudnnContext;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (handle == nullptr) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  if (desc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t data_type, int n, int c, int h, int w) {
  if (desc == nullptr || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW || data_type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = cudnnTensorStruct{true, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  if (desc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t data_type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (desc == nullptr || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (format != CUDNN_TENSOR_NCHW || data_type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  *desc = cudnnFilterStruct{true, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  if (desc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h, int pad_w,
                                              int stride_h, int stride_w, int dilation_h, int dilation_w,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t compute_type) {
  if (desc == nullptr || pad_h < 0 || pad_w < 0 || stride_h <= 0 || stride_w <= 0 || dilation_h <= 0 ||
      dilation_w <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CROSS_CORRELATION || compute_type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  desc->set = true;
  desc->pad_h = pad_h, desc->pad_w = pad_w;
  desc->stride_h = stride_h, desc->stride_w = stride_w;
  desc->dilation_h = dilation_h, desc->dilation_w = dilation_w;
  return CUDNN_STATUS_SUCCESS;
}

// Recorded and ignored: the emulator always computes in full precision.
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc, cudnnMathType_t math) {
  if (desc == nullptr) return CUDNN_STATUS_BAD_PARAM;
  switch (math) {
    case CUDNN_DEFAULT_MATH:
    case CUDNN_TENSOR_OP_MATH:
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION:
    case CUDNN_FMA_MATH:
      desc->math = math;
      return CUDNN_STATUS_SUCCESS;
  }
  return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int* n, int* c, int* h,
                                                    int* width) {
  if (n == nullptr || c == nullptr || h == nullptr || width == nullptr) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(x, w, conv, &s); status != CUDNN_STATUS_SUCCESS) return status;
  *n = int(s.n), *c = int(s.k), *h = int(s.oh), *width = int(s.ow);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                      cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                                                      cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (bytes == nullptr || !valid_forward_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(x, w, conv, &s); status != CUDNN_STATUS_SUCCESS) return status;
  if (!is_output_of(y, s)) return CUDNN_STATUS_BAD_PARAM;
  *bytes = 0;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t handle, cudnnFilterDescriptor_t w,
                                                           cudnnTensorDescriptor_t dy,
                                                           cudnnConvolutionDescriptor_t conv,
                                                           cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (bytes == nullptr || !valid_backward_data_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(dx, w, conv, &s); status != CUDNN_STATUS_SUCCESS) return status;
  if (!is_output_of(dy, s)) return CUDNN_STATUS_BAD_PARAM;
  *bytes = 0;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t handle, cudnnTensorDescriptor_t x,
                                                             cudnnTensorDescriptor_t dy,
                                                             cudnnConvolutionDescriptor_t conv,
                                                             cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  if (handle == nullptr) return CUDNN_STATUS_NOT_INITIALIZED;
  if (bytes == nullptr || !valid_backward_filter_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(x, dw, conv, &s); status != CUDNN_STATUS_SUCCESS) return status;
  if (!is_output_of(dy, s)) return CUDNN_STATUS_BAD_PARAM;
  *bytes = 0;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t x_desc,
                                      const void* x, cudnnFilterDescriptor_t w_desc, const void* w,
                                      cudnnConvolutionDescriptor_t conv, cudnnConvolutionFwdAlgo_t algo, void*,
                                      size_t, const void* beta, cudnnTensorDescriptor_t y_desc, void* y) {
  if (const cudnnStatus_t status = check_call(handle, alpha, beta); status != CUDNN_STATUS_SUCCESS) return status;
  if (!valid_forward_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(x_desc, w_desc, conv, &s); status != CUDNN_STATUS_SUCCESS)
    return status;
  if (!is_output_of(y_desc, s)) return CUDNN_STATUS_BAD_PARAM;
  const char* fn = "cudnnConvolutionForward";
  if (!operand_in_device(fn, "x", x, s.x_elements()) || !operand_in_device(fn, "w", w, s.w_elements()) ||
      !operand_in_device(fn, "y", y, s.y_elements()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  return queue_on_stream(handle, alpha, beta, [=](float alpha_value, float beta_value) {
    forward(s, alpha_value, static_cast<const float*>(x), static_cast<const float*>(w), beta_value,
            static_cast<float*>(y));
  });
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha, cudnnFilterDescriptor_t w_desc,
                                           const void* w, cudnnTensorDescriptor_t dy_desc, const void* dy,
                                           cudnnConvolutionDescriptor_t conv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void*, size_t, const void* beta, cudnnTensorDescriptor_t dx_desc,
                                           void* dx) {
  if (const cudnnStatus_t status = check_call(handle, alpha, beta); status != CUDNN_STATUS_SUCCESS) return status;
  if (!valid_backward_data_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(dx_desc, w_desc, conv, &s); status != CUDNN_STATUS_SUCCESS)
    return status;
  if (!is_output_of(dy_desc, s)) return CUDNN_STATUS_BAD_PARAM;
  const char* fn = "cudnnConvolutionBackwardData";
  if (!operand_in_device(fn, "w", w, s.w_elements()) || !operand_in_device(fn, "dy", dy, s.y_elements()) ||
      !operand_in_device(fn, "dx", dx, s.x_elements()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  return queue_on_stream(handle, alpha, beta, [=](float alpha_value, float beta_value) {
    backward_data(s, alpha_value, static_cast<const float*>(w), static_cast<const float*>(dy), beta_value,
                  static_cast<float*>(dx));
  });
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha, cudnnTensorDescriptor_t x_desc,
                                             const void* x, cudnnTensorDescriptor_t dy_desc, const void* dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void*, size_t, const void* beta,
                                             cudnnFilterDescriptor_t dw_desc, void* dw) {
  if (const cudnnStatus_t status = check_call(handle, alpha, beta); status != CUDNN_STATUS_SUCCESS) return status;
  if (!valid_backward_filter_algo(algo)) return CUDNN_STATUS_BAD_PARAM;
  ConvShape s{};
  if (const cudnnStatus_t status = resolve(x_desc, dw_desc, conv, &s); status != CUDNN_STATUS_SUCCESS)
    return status;
  if (!is_output_of(dy_desc, s)) return CUDNN_STATUS_BAD_PARAM;
  const char* fn = "cudnnConvolutionBackwardFilter";
  if (!operand_in_device(fn, "x", x, s.x_elements()) || !operand_in_device(fn, "dy", dy, s.y_elements()) ||
      !operand_in_device(fn, "dw", dw, s.w_elements()))
    return CUDNN_STATUS_EXECUTION_FAILED;
  return queue_on_stream(handle, alpha, beta, [=](float alpha_value, float beta_value) {
    backward_filter(s, alpha_value, static_cast<const float*>(x), static_cast<const float*>(dy), beta_value,
                    static_cast<float*>(dw));
  });
}
