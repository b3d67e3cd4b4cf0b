// CPU twins of the convolution kernels, a block of images at a time: im2col of
// the images into a [c_in*kh*kw, images*h_out*w_out] column block, then one
// OpenBLAS sgemm, then col2im for the data gradient. A block of one image (large
// images) uses the NCHW image itself as the GEMM operand (an image's [c, h*w]
// block already is one); several small images are gathered side by side first.
// Threads split the blocks; each keeps its column block in L1/L2, and sgemm
// called inside the parallel region runs on the calling thread.
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

// One image into a column block of row stride ld (>= out_plane: the block
// holds several images side by side):
// col[(ci*kh+ky)*kw+kx, oy*w_out+ox] = x[ci, oy*s-p+ky, ox*s-p+kx] or 0.
void im2col(const float* x, float* col, int64_t ld, const ConvGeometry& g) {
  for (int64_t row = 0; row < col_rows(g); ++row) {
    const int ci = int(row / (g.kh * g.kw));
    const int ky = int(row / g.kw % g.kh);
    const int kx = int(row % g.kw);
    const float* plane = x + int64_t(ci) * in_plane(g);
    float* out = col + row * ld;
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
      if (g.stride == 1)  // contiguous: lets the compiler vectorise the copy
        std::copy(in + ox_begin, in + ox_end, line + ox_begin);
      else
        for (int ox = ox_begin; ox < ox_end; ++ox) line[ox] = in[ox * g.stride];
      std::fill(line + ox_end, line + g.w_out, 0.0f);
    }
  }
}

// One image, the adjoint of im2col (same ld): dx[ci, iy, ix] = sum of the col entries that read it.
void col2im(const float* col, int64_t ld, float* dx, const ConvGeometry& g) {
  std::fill(dx, dx + int64_t(g.c_in) * in_plane(g), 0.0f);
  for (int64_t row = 0; row < col_rows(g); ++row) {
    const int ci = int(row / (g.kh * g.kw));
    const int ky = int(row / g.kw % g.kh);
    const int kx = int(row % g.kw);
    float* plane = dx + int64_t(ci) * in_plane(g);
    const float* in = col + row * ld;
    const int ox_begin = std::clamp(-floor_div(kx - g.padding, g.stride), 0, g.w_out);
    const int ox_end = std::clamp(floor_div(g.w_in - 1 + g.padding - kx, g.stride) + 1, ox_begin, g.w_out);
    for (int oy = 0; oy < g.h_out; ++oy) {
      const int iy = oy * g.stride - g.padding + ky;
      if (iy < 0 || iy >= g.h_in) continue;
      float* line = plane + iy * g.w_in - g.padding + kx;  // line[ox * stride] = dx[iy, ix]
      const float* src = in + oy * g.w_out;
      if (g.stride == 1)
        for (int ox = ox_begin; ox < ox_end; ++ox) line[ox] += src[ox];
      else
        for (int ox = ox_begin; ox < ox_end; ++ox) line[ox * g.stride] += src[ox];
    }
  }
}

// Small images (several per block) skip im2col's line arithmetic, which costs
// more than the copying there: the geometry's source offset of every column
// entry is tabulated once per call (-1: padding) and each image is one gather.
std::vector<int32_t> column_sources(const ConvGeometry& g) {
  const int64_t spatial = out_plane(g);
  std::vector<int32_t> source(size_t(col_rows(g) * spatial), -1);
  for (int64_t row = 0; row < col_rows(g); ++row) {
    const int ci = int(row / (g.kh * g.kw)), ky = int(row / g.kw % g.kh), kx = int(row % g.kw);
    for (int oy = 0; oy < g.h_out; ++oy)
      for (int ox = 0; ox < g.w_out; ++ox) {
        const int iy = oy * g.stride - g.padding + ky, ix = ox * g.stride - g.padding + kx;
        if (iy >= 0 && iy < g.h_in && ix >= 0 && ix < g.w_in)
          source[size_t(row * spatial + oy * g.w_out + ox)] = int32_t((int64_t(ci) * g.h_in + iy) * g.w_in + ix);
      }
  }
  return source;
}
// The table of the last geometry the calling thread used: a training step
// calls the same few convolutions every step, so the table is built once, not
// allocated per call (the callers read it inside their parallel regions).
const std::vector<int32_t>& cached_column_sources(const ConvGeometry& g) {
  thread_local ConvGeometry last{};
  thread_local std::vector<int32_t> table;
  const auto same = [](const ConvGeometry& a, const ConvGeometry& b) {  // n does not change the table
    return a.c_in == b.c_in && a.h_in == b.h_in && a.w_in == b.w_in && a.kh == b.kh && a.kw == b.kw &&
           a.stride == b.stride && a.padding == b.padding && a.h_out == b.h_out && a.w_out == b.w_out;
  };
  if (table.empty() || !same(last, g)) {
    table = column_sources(g);
    last = g;
  }
  return table;
}
// What im2col_block and col2im_scatter read: the table for blocks of small
// images, nothing (im2col's line walk) for one large image per block.
const std::vector<int32_t>& block_sources(const ConvGeometry& g, int64_t per_block) {
  static const std::vector<int32_t> none;
  return per_block > 1 ? cached_column_sources(g) : none;
}
void im2col_gather(const float* x, float* col, int64_t ld, const std::vector<int32_t>& source, int64_t spatial) {
  const int64_t rows = int64_t(source.size()) / spatial;
  for (int64_t row = 0; row < rows; ++row) {
    const int32_t* from = source.data() + row * spatial;
    float* out = col + row * ld;
    for (int64_t s = 0; s < spatial; ++s) out[s] = from[s] >= 0 ? x[std::max(from[s], 0)] : 0.0f;
  }
}
void col2im_scatter(const float* col, int64_t ld, float* dx, int64_t dx_size, const std::vector<int32_t>& source,
                    int64_t spatial) {
  std::fill(dx, dx + dx_size, 0.0f);
  const int64_t rows = int64_t(source.size()) / spatial;
  for (int64_t row = 0; row < rows; ++row) {
    const int32_t* to = source.data() + row * spatial;
    const float* in = col + row * ld;
    for (int64_t s = 0; s < spatial; ++s)
      if (to[s] >= 0) dx[to[s]] += in[s];
  }
}

// A block of `count` images side by side in col (row stride count * h_out * w_out);
// `source` is column_sources(g) for small images, empty for one large one.
void im2col_block(const float* images, int64_t count, float* col, const std::vector<int32_t>& source,
                  const ConvGeometry& g) {
  const int64_t spatial = out_plane(g), ld = count * spatial;
  for (int64_t j = 0; j < count; ++j) {
    const float* image = images + j * g.c_in * in_plane(g);
    if (!source.empty()) im2col_gather(image, col + j * spatial, ld, source, spatial);
    else im2col(image, col, ld, g);
  }
}

// Images per GEMM. Backsubstitution pushes hundreds of thousands of tiny
// "images" through a convolution (CONV+'s patches: 3x10x10 windows, 16 output
// positions), where one sgemm per image is all call overhead (9 GFLOP/s on
// this CPU); a block of images side by side gives each GEMM >= kMinColumns
// columns, as long as the column block stays within kMaxBlockFloats (L2).
// Large images keep one image per block, as before.
constexpr int64_t kMinColumns = 512;
constexpr int64_t kMaxBlockFloats = int64_t(1) << 16;
int64_t images_per_block(const ConvGeometry& g) {
  const int64_t spatial = std::max<int64_t>(1, out_plane(g)), rows = std::max<int64_t>(1, col_rows(g));
  const int64_t wanted = (kMinColumns + spatial - 1) / spatial;
  const int64_t fits = std::max<int64_t>(1, kMaxBlockFloats / (rows * spatial));
  return std::clamp<int64_t>(std::min(wanted, fits), 1, std::max(1, g.n));
}
int64_t block_count(const ConvGeometry& g, int64_t per_block) { return (g.n + per_block - 1) / per_block; }

// Between NCHW and a block's [c, images*spatial] matrix (image j at columns j*spatial...).
// The pieces are short (a few dozen floats), so the copies are plain loops:
// a memmove call per piece costs more than the piece.
void gather_block(const float* images, int64_t count, int64_t channels, int64_t spatial, float* block) {
  const int64_t ld = count * spatial;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < count; ++j) {
      const float* from = images + (j * channels + c) * spatial;
      float* to = block + c * ld + j * spatial;
#pragma omp simd
      for (int64_t s = 0; s < spatial; ++s) to[s] = from[s];
    }
}
void scatter_block(const float* block, int64_t count, int64_t channels, int64_t spatial, float* images) {
  const int64_t ld = count * spatial;
  for (int64_t j = 0; j < count; ++j)
    for (int64_t c = 0; c < channels; ++c) {
      const float* from = block + c * ld + j * spatial;
      float* to = images + (j * channels + c) * spatial;
#pragma omp simd
      for (int64_t s = 0; s < spatial; ++s) to[s] = from[s];
    }
}

// Enough images per thread to pay for waking the threads.
bool worth_threads(const ConvGeometry& g) { return int64_t(g.n) * col_rows(g) * out_plane(g) > (1 << 15); }

// Scratch buffers reused across calls: a training step must not hit the
// allocator for its temporaries (thread_local keeps concurrent callers apart).
std::vector<float>& scratch(int which) {
  thread_local std::vector<float> buffers[3];
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
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(0, rows * per_block * spatial);
    float* out = scratch_of_size(2, g.c_out * per_block * spatial);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      im2col_block(x + first * g.c_in * in_plane(g), count, col, source, g);
      float* y_block = y + first * g.c_out * spatial;
      // [c_out, ld] = w[c_out, rows] * col[rows, ld]; one image: straight into y
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.c_out, int(ld), int(rows), 1.0f, w, int(rows), col,
                  int(ld), 0.0f, count == 1 ? y_block : out, int(ld));
      if (count > 1) scatter_block(out, count, g.c_out, spatial, y_block);
    }
  }
}

void conv2d_backward_data_cpu(const float* dy, const float* w, float* dx, ConvGeometry g) {
  if (g.n == 0 || g.c_in == 0) return;
  const int64_t rows = col_rows(g), spatial = out_plane(g);
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(0, rows * per_block * spatial);
    float* grad = scratch_of_size(2, g.c_out * per_block * spatial);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      const float* dy_block = dy + first * g.c_out * spatial;
      if (count > 1) gather_block(dy_block, count, g.c_out, spatial, grad);
      // col[rows, ld] = w^T[rows, c_out] * dy[c_out, ld]
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(rows), int(ld), g.c_out, 1.0f, w, int(rows),
                  count == 1 ? dy_block : grad, int(ld), 0.0f, col, int(ld));
      for (int64_t j = 0; j < count; ++j) {
        float* image = dx + (first + j) * g.c_in * in_plane(g);
        if (!source.empty()) col2im_scatter(col + j * spatial, ld, image, g.c_in * in_plane(g), source, spatial);
        else col2im(col, ld, image, g);
      }
    }
  }
}

void conv2d_backward_filter_cpu(const float* x, const float* dy, float* dw, ConvGeometry g) {
  const int64_t rows = col_rows(g), spatial = out_plane(g), size = int64_t(g.c_out) * rows;
  std::fill(dw, dw + size, 0.0f);
  if (g.n == 0 || spatial == 0) return;
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
  // Each thread sums its blocks into its own dw; the partial sums are then
  // added in thread order (deterministic for a given thread count).
  const int threads = worth_threads(g) ? int(std::min<int64_t>(omp_get_max_threads(), blocks)) : 1;
  float* partial = scratch_of_size(1, threads * size);
  std::fill(partial, partial + threads * size, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* col = scratch_of_size(0, rows * per_block * spatial);
    float* grad = scratch_of_size(2, g.c_out * per_block * spatial);
    float* mine = partial + int64_t(omp_get_thread_num()) * size;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      im2col_block(x + first * g.c_in * in_plane(g), count, col, source, g);
      const float* dy_block = dy + first * g.c_out * spatial;
      if (count > 1) gather_block(dy_block, count, g.c_out, spatial, grad);
      // mine[c_out, rows] += dy[c_out, ld] * col^T[ld, rows]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.c_out, int(rows), int(ld), 1.0f,
                  count == 1 ? dy_block : grad, int(ld), col, int(ld), 1.0f, mine, int(rows));
    }
  }
  for (int t = 0; t < threads; ++t) {
    const float* part = partial + int64_t(t) * size;
    for (int64_t i = 0; i < size; ++i) dw[i] += part[i];
  }
}

}  // namespace cte::kern
