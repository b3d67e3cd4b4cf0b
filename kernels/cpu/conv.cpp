// CPU twins of the convolution kernels: im2col + one OpenBLAS sgemm over the
// whole batch. The column buffer holds [c_in*kh*kw, n*h_out*w_out], so one
// large GEMM replaces n small ones (the paper's convs have only 16-32 filters).
// The CUDA twins (kernels/cuda/conv.cu) use cuDNN with the same NCHW semantics.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "kernels/kernels.h"

namespace cte::kern {
namespace {

int64_t col_rows(const ConvGeometry& g) { return int64_t(g.c_in) * g.kh * g.kw; }
int64_t col_cols(const ConvGeometry& g) { return int64_t(g.n) * g.h_out * g.w_out; }

// Rounds towards minus infinity (C++ division rounds towards zero).
int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// col[(ci*kh+ky)*kw+kx, (img*h_out+oy)*w_out+ox] = x[img, ci, oy*s-p+ky, ox*s-p+kx] or 0.
void im2col(const float* x, float* col, const ConvGeometry& g) {
  const int64_t spatial = int64_t(g.h_out) * g.w_out;
  const int64_t cols = col_cols(g);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t row = 0; row < col_rows(g); ++row) {
    for (int img = 0; img < g.n; ++img) {
      const int ci = int(row / (g.kh * g.kw));
      const int ky = int(row / g.kw % g.kh);
      const int kx = int(row % g.kw);
      const float* plane = x + (int64_t(img) * g.c_in + ci) * g.h_in * g.w_in;
      float* out = col + row * cols + img * spatial;
      // Output columns whose input column lies inside the image: ox in [ox_begin, ox_end).
      const int ox_begin = std::clamp(-floor_div(kx - g.padding, g.stride), 0, g.w_out);
      const int ox_end = std::clamp(floor_div(g.w_in - 1 + g.padding - kx, g.stride) + 1, ox_begin, g.w_out);
      for (int oy = 0; oy < g.h_out; ++oy) {
        float* line = out + oy * g.w_out;
        const int iy = oy * g.stride - g.padding + ky;
        if (iy < 0 || iy >= g.h_in) {
          std::fill(line, line + g.w_out, 0.0f);
          continue;
        }
        const float* in = plane + iy * g.w_in - g.padding + kx;  // in[ox * stride] = x[iy, ix]
        std::fill(line, line + ox_begin, 0.0f);
        for (int ox = ox_begin; ox < ox_end; ++ox) line[ox] = in[ox * g.stride];
        std::fill(line + ox_end, line + g.w_out, 0.0f);
      }
    }
  }
}

// The adjoint of im2col: dx[img, ci, iy, ix] = sum of the col entries that read it.
// Parallel over (img, ci) planes so no two threads write the same element.
void col2im(const float* col, float* dx, const ConvGeometry& g) {
  const int64_t spatial = int64_t(g.h_out) * g.w_out;
  const int64_t cols = col_cols(g);
#pragma omp parallel for collapse(2) schedule(static)
  for (int img = 0; img < g.n; ++img) {
    for (int ci = 0; ci < g.c_in; ++ci) {
      float* plane = dx + (int64_t(img) * g.c_in + ci) * g.h_in * g.w_in;
      for (int64_t i = 0; i < int64_t(g.h_in) * g.w_in; ++i) plane[i] = 0.0f;
      for (int ky = 0; ky < g.kh; ++ky) {
        for (int kx = 0; kx < g.kw; ++kx) {
          const int64_t row = (int64_t(ci) * g.kh + ky) * g.kw + kx;
          const float* in = col + row * cols + img * spatial;
          for (int oy = 0; oy < g.h_out; ++oy) {
            const int iy = oy * g.stride - g.padding + ky;
            if (iy < 0 || iy >= g.h_in) continue;
            for (int ox = 0; ox < g.w_out; ++ox) {
              const int ix = ox * g.stride - g.padding + kx;
              if (ix >= 0 && ix < g.w_in) plane[iy * g.w_in + ix] += in[oy * g.w_out + ox];
            }
          }
        }
      }
    }
  }
}

// [c, n*s] (GEMM layout) <-> [n, c, s] (NCHW).
void channels_to_nchw(const float* src, float* dst, int64_t c, int64_t n, int64_t s) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t img = 0; img < n; ++img)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < s; ++i) dst[(img * c + ch) * s + i] = src[ch * n * s + img * s + i];
}
void nchw_to_channels(const float* src, float* dst, int64_t c, int64_t n, int64_t s) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t img = 0; img < n; ++img)
      for (int64_t i = 0; i < s; ++i) dst[ch * n * s + img * s + i] = src[(img * c + ch) * s + i];
}

// Scratch buffers reused across calls: a training step must not hit the
// allocator for its temporaries (thread_local keeps concurrent callers apart).
std::vector<float>& scratch(int which) {
  thread_local std::vector<float> buffers[2];
  return buffers[which];
}
float* scratch_of_size(int which, int64_t size) {
  std::vector<float>& buffer = scratch(which);
  if (int64_t(buffer.size()) < size) buffer.resize(size_t(size));
  return buffer.data();
}

}  // namespace

void conv2d_forward_cpu(const float* x, const float* w, float* y, ConvGeometry g) {
  if (g.n == 0 || g.c_out == 0) return;
  const int64_t rows = col_rows(g), cols = col_cols(g);
  float* col = scratch_of_size(0, rows * cols);
  float* out = scratch_of_size(1, int64_t(g.c_out) * cols);
  im2col(x, col, g);
  // out[c_out, n*s] = w[c_out, rows] * col[rows, n*s]
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.c_out, int(cols), int(rows), 1.0f, w,
              int(rows), col, int(cols), 0.0f, out, int(cols));
  channels_to_nchw(out, y, g.c_out, g.n, int64_t(g.h_out) * g.w_out);
}

void conv2d_backward_data_cpu(const float* dy, const float* w, float* dx, ConvGeometry g) {
  if (g.n == 0 || g.c_in == 0) return;
  const int64_t rows = col_rows(g), cols = col_cols(g);
  float* dy_channels = scratch_of_size(1, int64_t(g.c_out) * cols);
  float* col = scratch_of_size(0, rows * cols);
  nchw_to_channels(dy, dy_channels, g.c_out, g.n, int64_t(g.h_out) * g.w_out);
  // col[rows, n*s] = w^T[rows, c_out] * dy[c_out, n*s]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(rows), int(cols), g.c_out, 1.0f, w,
              int(rows), dy_channels, int(cols), 0.0f, col, int(cols));
  col2im(col, dx, g);
}

void conv2d_backward_filter_cpu(const float* x, const float* dy, float* dw, ConvGeometry g) {
  const int64_t rows = col_rows(g), cols = col_cols(g);
  if (g.n == 0 || cols == 0) {
    for (int64_t i = 0; i < int64_t(g.c_out) * rows; ++i) dw[i] = 0.0f;
    return;
  }
  float* col = scratch_of_size(0, rows * cols);
  float* dy_channels = scratch_of_size(1, int64_t(g.c_out) * cols);
  im2col(x, col, g);
  nchw_to_channels(dy, dy_channels, g.c_out, g.n, int64_t(g.h_out) * g.w_out);
  // dw[c_out, rows] = dy[c_out, n*s] * col^T[n*s, rows]
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.c_out, int(rows), int(cols), 1.0f,
              dy_channels, int(cols), col, int(cols), 0.0f, dw, int(rows));
}

}  // namespace cte::kern
