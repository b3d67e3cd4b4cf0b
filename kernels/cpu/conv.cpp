// CPU twins of the convolution kernels, one image at a time: im2col of the
// image into a [c_in*kh*kw, h_out*w_out] column block, then one OpenBLAS sgemm
// against the NCHW image itself (an image's [c, h*w] block is already the GEMM
// operand, so no layout transposes are needed), then col2im for the data
// gradient. Threads split the images; each keeps its column block in L1/L2,
// and sgemm called inside the parallel region runs on the calling thread.
// This matters most for backsubstitution, which runs the transposed
// convolution over N*K coefficient "images" (thousands at a time).
// The CUDA twins (kernels/cuda/conv.cu) use cuDNN with the same NCHW semantics.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/kernels.h"

namespace cte::kern {
namespace {

int64_t col_rows(const ConvGeometry& g) { return int64_t(g.c_in) * g.kh * g.kw; }
int64_t out_plane(const ConvGeometry& g) { return int64_t(g.h_out) * g.w_out; }
int64_t in_plane(const ConvGeometry& g) { return int64_t(g.h_in) * g.w_in; }

// Rounds towards minus infinity (C++ division rounds towards zero).
int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// One image: col[(ci*kh+ky)*kw+kx, oy*w_out+ox] = x[ci, oy*s-p+ky, ox*s-p+kx] or 0.
void im2col(const float* x, float* col, const ConvGeometry& g) {
  const int64_t spatial = out_plane(g);
  for (int64_t row = 0; row < col_rows(g); ++row) {
    const int ci = int(row / (g.kh * g.kw));
    const int ky = int(row / g.kw % g.kh);
    const int kx = int(row % g.kw);
    const float* plane = x + int64_t(ci) * in_plane(g);
    float* out = col + row * spatial;
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

// One image, the adjoint of im2col: dx[ci, iy, ix] = sum of the col entries that read it.
void col2im(const float* col, float* dx, const ConvGeometry& g) {
  const int64_t spatial = out_plane(g);
  std::fill(dx, dx + int64_t(g.c_in) * in_plane(g), 0.0f);
  for (int64_t row = 0; row < col_rows(g); ++row) {
    const int ci = int(row / (g.kh * g.kw));
    const int ky = int(row / g.kw % g.kh);
    const int kx = int(row % g.kw);
    float* plane = dx + int64_t(ci) * in_plane(g);
    const float* in = col + row * spatial;
    const int ox_begin = std::clamp(-floor_div(kx - g.padding, g.stride), 0, g.w_out);
    const int ox_end = std::clamp(floor_div(g.w_in - 1 + g.padding - kx, g.stride) + 1, ox_begin, g.w_out);
    for (int oy = 0; oy < g.h_out; ++oy) {
      const int iy = oy * g.stride - g.padding + ky;
      if (iy < 0 || iy >= g.h_in) continue;
      float* line = plane + iy * g.w_in - g.padding + kx;  // line[ox * stride] = dx[iy, ix]
      const float* src = in + oy * g.w_out;
      for (int ox = ox_begin; ox < ox_end; ++ox) line[ox * g.stride] += src[ox];
    }
  }
}

// Enough images per thread to pay for waking the threads.
bool worth_threads(const ConvGeometry& g) { return int64_t(g.n) * col_rows(g) * out_plane(g) > (1 << 15); }

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
  const int64_t rows = col_rows(g), spatial = out_plane(g);
  if (rows == 0) {  // no input channels: BLAS may leave y untouched when K = 0
    std::fill(y, y + int64_t(g.n) * g.c_out * spatial, 0.0f);
    return;
  }
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(0, rows * spatial);
#pragma omp for schedule(static)
    for (int img = 0; img < g.n; ++img) {
      im2col(x + int64_t(img) * g.c_in * in_plane(g), col, g);
      // y_img[c_out, s] = w[c_out, rows] * col[rows, s]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.c_out, int(spatial), int(rows), 1.0f, w, int(rows),
                  col, int(spatial), 0.0f, y + int64_t(img) * g.c_out * spatial, int(spatial));
    }
  }
}

void conv2d_backward_data_cpu(const float* dy, const float* w, float* dx, ConvGeometry g) {
  if (g.n == 0 || g.c_in == 0) return;
  const int64_t rows = col_rows(g), spatial = out_plane(g);
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(0, rows * spatial);
#pragma omp for schedule(static)
    for (int img = 0; img < g.n; ++img) {
      // col[rows, s] = w^T[rows, c_out] * dy_img[c_out, s]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(rows), int(spatial), g.c_out, 1.0f, w, int(rows),
                  dy + int64_t(img) * g.c_out * spatial, int(spatial), 0.0f, col, int(spatial));
      col2im(col, dx + int64_t(img) * g.c_in * in_plane(g), g);
    }
  }
}

void conv2d_backward_filter_cpu(const float* x, const float* dy, float* dw, ConvGeometry g) {
  const int64_t rows = col_rows(g), spatial = out_plane(g), size = int64_t(g.c_out) * rows;
  std::fill(dw, dw + size, 0.0f);
  if (g.n == 0 || spatial == 0) return;
  // Each thread sums its images into its own dw; the partial sums are then
  // added in thread order (deterministic for a given thread count).
  const int threads = worth_threads(g) ? std::min(omp_get_max_threads(), g.n) : 1;
  float* partial = scratch_of_size(1, threads * size);
  std::fill(partial, partial + threads * size, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* col = scratch_of_size(0, rows * spatial);
    float* mine = partial + int64_t(omp_get_thread_num()) * size;
#pragma omp for schedule(static)
    for (int img = 0; img < g.n; ++img) {
      im2col(x + int64_t(img) * g.c_in * in_plane(g), col, g);
      // mine[c_out, rows] += dy_img[c_out, s] * col^T[s, rows]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.c_out, int(rows), int(spatial), 1.0f,
                  dy + int64_t(img) * g.c_out * spatial, int(spatial), col, int(spatial), 1.0f, mine, int(rows));
    }
  }
  for (int t = 0; t < threads; ++t) {
    const float* part = partial + int64_t(t) * size;
    for (int64_t i = 0; i < size; ++i) dw[i] += part[i];
  }
}

}  // namespace cte::kern
