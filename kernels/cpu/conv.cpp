// CPU twins of the convolution kernels, two paths:
//  - lanes (batches of at least 16 images of modest size: the training
//    layers of CONV and CONV+, and backsubstitution, which runs the
//    transposed convolution over N*K coefficient "images", hundreds of
//    thousands at a time): 16 images in the lanes of one vector, each
//    convolution a direct loop over the geometry's taps (see "lanes" below);
//  - im2col + sgemm (larger images, and batches of fewer than 16), a block of
//    images at a time: im2col of the images into a [c_in*kh*kw,
//    images*h_out*w_out] column block, one gemm_cpu, col2im for the data
//    gradient. A block of one image (large images) uses the NCHW image itself
//    as the GEMM operand; several small images are gathered side by side first.
// Threads split the blocks; sgemm called inside a parallel region runs on the
// calling thread. set_cpu_conv_path forces a path for tests and benchmarks.
// The CUDA twins (kernels/cuda/conv.cu) use cuDNN with the same NCHW semantics.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
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
bool same_taps(const ConvGeometry& a, const ConvGeometry& b) {  // n and c_out do not change the tables
  return a.c_in == b.c_in && a.h_in == b.h_in && a.w_in == b.w_in && a.kh == b.kh && a.kw == b.kw &&
         a.stride == b.stride && a.padding == b.padding && a.h_out == b.h_out && a.w_out == b.w_out;
}
// The table of the last geometry the calling thread used: a training step
// calls the same few convolutions every step, so the table is built once, not
// allocated per call (the callers read it inside their parallel regions).
const std::vector<int32_t>& cached_column_sources(const ConvGeometry& g) {
  thread_local ConvGeometry last{};
  thread_local std::vector<int32_t> table;
  if (table.empty() || !same_taps(last, g)) {
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

// Images per GEMM. One sgemm per tiny image (CONV+'s patch windows: 3x10x10,
// 16 output positions) is all call overhead (9 GFLOP/s on this CPU); a block
// of images side by side gives each GEMM >= kMinColumns columns, as long as
// the column block stays within kMaxBlockFloats (L2). Large images keep one
// image per block. (Batches of many small images now take the lanes path;
// this blocking serves the batches of fewer than 16 and a forced gemm path.)
constexpr int64_t kMinColumns = 512;
constexpr int64_t kMaxBlockFloats = int64_t(1) << 16;
int64_t images_per_block(const ConvGeometry& g) {
  const int64_t spatial = std::max<int64_t>(1, out_plane(g)), rows = std::max<int64_t>(1, col_rows(g));
  const int64_t wanted = (kMinColumns + spatial - 1) / spatial;
  const int64_t fits = std::max<int64_t>(1, kMaxBlockFloats / (rows * spatial));
  return std::clamp<int64_t>(std::min(wanted, fits), 1, std::max(1, g.n));
}
int64_t block_count(const ConvGeometry& g, int64_t per_block) { return (g.n + per_block - 1) / per_block; }

// Each of the count images' [c_out, spatial] planes of y set to its channel's bias.
void fill_bias(const float* bias /*[c_out]*/, int64_t count, int64_t c_out, int64_t spatial, float* y) {
  for (int64_t j = 0; j < count; ++j)
    for (int64_t o = 0; o < c_out; ++o) std::fill_n(y + (j * c_out + o) * spatial, spatial, bias[o]);
}

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
// The GEMM path uses kColumns, kPartials and kGemmOutput; the lanes path
// kPartials and its own three.
enum Scratch { kColumns, kPartials, kGemmOutput, kLanesIn, kLanesOut, kLanesFilter, kScratchCount };
std::vector<float>& scratch(int which) {
  thread_local std::vector<float> buffers[kScratchCount];
  return buffers[which];
}
float* scratch_of_size(int which, int64_t size) {
  std::vector<float>& buffer = scratch(which);
  if (int64_t(buffer.size()) < size) buffer.resize(size_t(size));
  return buffer.data();
}

// ---------------------------------------------------------------- lanes
// Backsubstitution's patch windows are hundreds of thousands of images of a
// few hundred floats (CONV+: 16x4x4 <-> 3x10x10). Blocked into one sgemm,
// their inner dimension is still c_out = 16 and im2col/col2im move more bytes
// than the GEMM multiplies (17-29 GFLOP/s). Here kLanes images are transposed
// into the lanes of one vector, [feature][lane], and each convolution is a
// direct loop over the geometry's taps: one vector multiply-add per (weight,
// tap) for kLanes images at once, no column buffer, accumulators in
// registers (tiles of them, see for_tiles).
// Lanes past the end of the batch hold zeros. Each output is summed in a
// fixed order (deterministic); GCC's vector extension compiles to the widest
// vectors -march allows, and to plain SSE2 elsewhere (the sanitizer builds).
constexpr int64_t kLanes = 16;
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));
// Lanes never cross a call boundary out of this file (the helpers are
// inlined), so GCC's note that builds without AVX-512 pass 64-byte vectors
// differently does not apply; silenced down to this section's end.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
[[gnu::always_inline]] inline Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
[[gnu::always_inline]] inline void store_lanes(float* p, const Lanes& v) { std::memcpy(p, &v, sizeof v); }

int64_t in_features(const ConvGeometry& g) { return int64_t(g.c_in) * in_plane(g); }
int64_t out_features(const ConvGeometry& g) { return int64_t(g.c_out) * out_plane(g); }

thread_local CpuConvPath g_conv_path = CpuConvPath::by_size;
// Lanes where a batch has at least one full block and a block (inputs,
// outputs and their zero rows, x kLanes; the filter gradient's per-lane dw
// comes on top) fits in 1 MiB of L2. On the 2-core AVX-512 EPYC, 1 thread
// (`bench_engine`'s convolution lines), lanes run CONV+'s patch windows and
// FC rows and both CONV layers 1.3-3.1x faster than im2col + sgemm; a
// 3x32x32 -> 32 3x3 layer (2.3 MiB) runs its data gradient 1.4x slower.
constexpr int64_t kMaxLaneBlockFloats = int64_t(1) << 18;
bool lanes_by_size(const ConvGeometry& g) {
  return g.n >= kLanes && (in_features(g) + out_features(g) + 1) * kLanes <= kMaxLaneBlockFloats;
}
bool use_lanes(const ConvGeometry& g) {
  return g_conv_path == CpuConvPath::by_size ? lanes_by_size(g) : g_conv_path == CpuConvPath::lanes;
}

// taps[s * rows + row]: the input feature that column entry (row, s) reads
// (column_sources transposed), or in_features(g) where it reads padding: the
// lane block's extra zero row (a sink the data gradient discards).
const std::vector<int32_t>& cached_lane_taps(const ConvGeometry& g) {
  thread_local ConvGeometry last{};
  thread_local std::vector<int32_t> taps;
  if (taps.empty() || !same_taps(last, g)) {
    const std::vector<int32_t> source = column_sources(g);
    const int64_t rows = col_rows(g), spatial = out_plane(g);
    taps.assign(source.size(), 0);
    for (int64_t row = 0; row < rows; ++row)
      for (int64_t s = 0; s < spatial; ++s) {
        const int32_t from = source[size_t(row * spatial + s)];
        taps[size_t(s * rows + row)] = from >= 0 ? from : int32_t(in_features(g));
      }
    last = g;
  }
  return taps;
}

// In-register transpose of a kLanes x kLanes tile: in stage b (1, 2, 4, 8)
// rows i and i + b (i without bit b) trade the entries whose column has bit b
// set in row i for those whose column has it clear in row i + b, which swaps
// bit b of the row and column indices; after the four stages every bit is
// swapped. 64 two-vector shuffles for 256 floats, where a scalar transpose
// costs 256 strided stores (as much time as the arithmetic on CONV+'s windows).
template <int B, size_t... J>
void trade(Lanes& low, Lanes& high, std::index_sequence<J...>) {
  const Lanes l = low, h = high;
  low = __builtin_shufflevector(l, h, ((J & B) ? int(kLanes + J - B) : int(J))...);
  high = __builtin_shufflevector(l, h, ((J & B) ? int(kLanes + J) : int(J + B))...);
}
template <int B>
void transpose_stage(Lanes (&rows)[kLanes]) {
  for (int i = 0; i < kLanes; ++i)
    if ((i & B) == 0) trade<B>(rows[i], rows[i + B], std::make_index_sequence<kLanes>{});
}
void transpose_tile(Lanes (&rows)[kLanes]) {
  transpose_stage<1>(rows);
  transpose_stage<2>(rows);
  transpose_stage<4>(rows);
  transpose_stage<8>(rows);
}

// count (<= kLanes) images [count, features] -> block [features + 1, kLanes]:
// block[f, l] = images[l, f]; the lanes past count and the last row zero.
// Full blocks go kLanes features at a time through transpose_tile.
void to_lanes(const float* images, int64_t count, int64_t features, float* block) {
  std::fill(count < kLanes ? block : block + features * kLanes, block + (features + 1) * kLanes, 0.0f);
  int64_t f = 0;
  if (count == kLanes)
    for (; f + kLanes <= features; f += kLanes) {
      Lanes tile[kLanes];
      for (int l = 0; l < kLanes; ++l) tile[l] = load_lanes(images + l * features + f);
      transpose_tile(tile);
      for (int k = 0; k < kLanes; ++k) store_lanes(block + (f + k) * kLanes, tile[k]);
    }
  for (int64_t l = 0; l < count; ++l) {
    const float* from = images + l * features;
    for (int64_t g = f; g < features; ++g) block[g * kLanes + l] = from[g];
  }
}
void from_lanes(const float* block, int64_t count, int64_t features, float* images) {
  int64_t f = 0;
  if (count == kLanes)
    for (; f + kLanes <= features; f += kLanes) {
      Lanes tile[kLanes];
      for (int k = 0; k < kLanes; ++k) tile[k] = load_lanes(block + (f + k) * kLanes);
      transpose_tile(tile);
      for (int l = 0; l < kLanes; ++l) store_lanes(images + l * features + f, tile[l]);
    }
  for (int64_t l = 0; l < count; ++l) {
    float* to = images + l * features;
    for (int64_t g = f; g < features; ++g) to[g] = block[g * kLanes + l];
  }
}

int64_t lane_blocks(const ConvGeometry& g) { return (g.n + kLanes - 1) / kLanes; }

// Register tiles: tile<A, B>(a, b) covers [a, a + A) x [b, b + B) of an
// na x nb range, TA x TB where it fits and thinner at the two edges. A 4 x 4
// tile loads 4 + 4 vectors (or broadcast weights) for 16 multiply-adds: with
// fresh operands for every multiply-add the loads, not the arithmetic, would
// bound the loop. The data gradient's tiles are 8 x 1 (each of its sums ends
// in a load-add-store into the block, which wider tiles multiply), the filter
// gradient's 2 x 8; the shapes were chosen by timing bench_engine's CONV and
// CONV+ geometries on the AVX-512 EPYC.
template <int TA, int TB, class Tile>
void for_tiles(int64_t na, int64_t nb, Tile&& tile) {
  auto row_of_tiles = [&]<int A>(int64_t a) {
    int64_t b = 0;
    for (; b + TB <= nb; b += TB) tile.template operator()<A, TB>(a, b);
    for (; b < nb; ++b) tile.template operator()<A, 1>(a, b);
  };
  int64_t a = 0;
  for (; a + TA <= na; a += TA) row_of_tiles.template operator()<TA>(a);
  for (; a < na; ++a) row_of_tiles.template operator()<1>(a);
}

// What the three lane kernels share: the tap table, the sizes, and the walk
// over blocks of kLanes images (each thread takes its share of the blocks).
struct LaneWalk {
  const int32_t* taps;  // [spatial, rows]
  int64_t rows, spatial, fin, fout, blocks, n;
  explicit LaneWalk(const ConvGeometry& g)
      : taps(cached_lane_taps(g).data()), rows(col_rows(g)), spatial(out_plane(g)), fin(in_features(g)),
        fout(out_features(g)), blocks(lane_blocks(g)), n(g.n) {}
  // block(first, count) for images [first, first + count); inside a parallel region.
  template <class Block>
  void for_my_blocks(Block&& block) const {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) block(b * kLanes, std::min(kLanes, n - b * kLanes));
  }
};

void lanes_forward(const float* x /*[n,c_in,h_in,w_in]*/, const float* w /*[c_out,c_in,kh,kw]*/,
                   const float* bias /*[c_out] or null*/, float* y /*[n,c_out,h_out,w_out]*/,
                   const ConvGeometry& g) {
  const LaneWalk walk(g);
  const int32_t* taps = walk.taps;
  const int64_t rows = walk.rows, spatial = walk.spatial, fin = walk.fin, fout = walk.fout;
#pragma omp parallel if (worth_threads(g))
  {
    float* x_block = scratch_of_size(kLanesIn, (fin + 1) * kLanes);
    float* y_block = scratch_of_size(kLanesOut, fout * kLanes);
    // y_block[(o, s)] = bias[o] + sum over rows of w[o, row] * x_block[taps[s, row]]
    // (the bias starts the sums: no pass of its own over y)
    auto tile = [&]<int O, int S>(int64_t o, int64_t s) {
      Lanes acc[O][S];
      for (int i = 0; i < O; ++i)
        for (int j = 0; j < S; ++j) acc[i][j] = Lanes{} + (bias ? bias[o + i] : 0.0f);
      for (int64_t row = 0; row < rows; ++row) {
        Lanes in[S];
        for (int j = 0; j < S; ++j) in[j] = load_lanes(x_block + int64_t(taps[(s + j) * rows + row]) * kLanes);
        for (int i = 0; i < O; ++i) {
          const float weight = w[(o + i) * rows + row];
          for (int j = 0; j < S; ++j) acc[i][j] += in[j] * weight;
        }
      }
      for (int i = 0; i < O; ++i)
        for (int j = 0; j < S; ++j) store_lanes(y_block + ((o + i) * spatial + s + j) * kLanes, acc[i][j]);
    };
    walk.for_my_blocks([&](int64_t first, int64_t count) {
      to_lanes(x + first * fin, count, fin, x_block);
      for_tiles<4, 4>(g.c_out, spatial, tile);
      from_lanes(y_block, count, fout, y + first * fout);
    });
  }
}

void lanes_backward_data(const float* dy /*[n,c_out,h_out,w_out]*/, const float* w /*[c_out,c_in,kh,kw]*/,
                         float* dx /*[n,c_in,h_in,w_in]*/, const ConvGeometry& g) {
  const LaneWalk walk(g);
  const int32_t* taps = walk.taps;
  const int64_t rows = walk.rows, spatial = walk.spatial, fin = walk.fin, fout = walk.fout;
#pragma omp parallel if (worth_threads(g))
  {
    float* dy_block = scratch_of_size(kLanesIn, (fout + 1) * kLanes);
    float* dx_block = scratch_of_size(kLanesOut, (fin + 1) * kLanes);
    // dx_block[taps[s, row]] += sum over o of w[o, row] * dy_block[(o, s)]. Two
    // entries of a tile may read the same input (or the zero row, a sink the
    // result discards): each is added by its own load-add-store, in order.
    auto tile = [&]<int R, int S>(int64_t row, int64_t s) {
      Lanes acc[R][S] = {};
      for (int64_t o = 0; o < g.c_out; ++o) {
        Lanes grad[S];
        for (int j = 0; j < S; ++j) grad[j] = load_lanes(dy_block + (o * spatial + s + j) * kLanes);
        for (int i = 0; i < R; ++i) {
          const float weight = w[o * rows + row + i];
          for (int j = 0; j < S; ++j) acc[i][j] += grad[j] * weight;
        }
      }
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < S; ++j) {
          float* to = dx_block + int64_t(taps[(s + j) * rows + row + i]) * kLanes;
          store_lanes(to, load_lanes(to) + acc[i][j]);
        }
    };
    walk.for_my_blocks([&](int64_t first, int64_t count) {
      to_lanes(dy + first * fout, count, fout, dy_block);
      std::fill(dx_block, dx_block + (fin + 1) * kLanes, 0.0f);
      for_tiles<8, 1>(rows, spatial, tile);
      from_lanes(dx_block, count, fin, dx + first * fin);
    });
  }
}

void lanes_backward_filter(const float* x /*[n,c_in,h_in,w_in]*/, const float* dy /*[n,c_out,h_out,w_out]*/,
                           float* dw /*[c_out,c_in,kh,kw]*/, const ConvGeometry& g) {
  const LaneWalk walk(g);
  const int32_t* taps = walk.taps;
  const int64_t rows = walk.rows, spatial = walk.spatial, fin = walk.fin, fout = walk.fout;
  const int64_t size = int64_t(g.c_out) * rows, blocks = walk.blocks;
  // Each thread sums its blocks into its own dw per lane, then its 16 lanes
  // in order into partial[thread]; the partials are added in thread order
  // (deterministic for a given thread count), as in the GEMM path. OpenMP may
  // start fewer threads than asked (nested or dynamic teams): the slots of
  // those that never run stay zero.
  const int threads = worth_threads(g) ? int(std::min<int64_t>(omp_get_max_threads(), blocks)) : 1;
  float* partial = scratch_of_size(kPartials, threads * size);
  std::fill(partial, partial + threads * size, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* x_block = scratch_of_size(kLanesIn, (fin + 1) * kLanes);
    float* dy_block = scratch_of_size(kLanesOut, (fout + 1) * kLanes);
    float* dw_lanes = scratch_of_size(kLanesFilter, size * kLanes);  // [c_out * rows, kLanes]
    std::fill(dw_lanes, dw_lanes + size * kLanes, 0.0f);
    // dw_lanes[(o, row)] += sum over s of dy_block[(o, s)] * x_block[taps[s, row]]
    auto tile = [&]<int O, int R>(int64_t o, int64_t row) {
      Lanes acc[O][R];
      for (int i = 0; i < O; ++i)
        for (int j = 0; j < R; ++j) acc[i][j] = load_lanes(dw_lanes + ((o + i) * rows + row + j) * kLanes);
      for (int64_t s = 0; s < spatial; ++s) {
        Lanes in[R];
        for (int j = 0; j < R; ++j) in[j] = load_lanes(x_block + int64_t(taps[s * rows + row + j]) * kLanes);
        for (int i = 0; i < O; ++i) {
          const Lanes grad = load_lanes(dy_block + ((o + i) * spatial + s) * kLanes);
          for (int j = 0; j < R; ++j) acc[i][j] += grad * in[j];
        }
      }
      for (int i = 0; i < O; ++i)
        for (int j = 0; j < R; ++j) store_lanes(dw_lanes + ((o + i) * rows + row + j) * kLanes, acc[i][j]);
    };
    walk.for_my_blocks([&](int64_t first, int64_t count) {
      to_lanes(x + first * fin, count, fin, x_block);
      to_lanes(dy + first * fout, count, fout, dy_block);
      for_tiles<2, 8>(g.c_out, rows, tile);
    });
    float* mine = partial + int64_t(omp_get_thread_num()) * size;
    for (int64_t i = 0; i < size; ++i) {
      float sum = 0.0f;
      for (int64_t l = 0; l < kLanes; ++l) sum += dw_lanes[i * kLanes + l];
      mine[i] = sum;
    }
  }
  for (int t = 0; t < threads; ++t) {  // dw is zero (conv2d_backward_filter_cpu)
    const float* part = partial + int64_t(t) * size;
    for (int64_t i = 0; i < size; ++i) dw[i] += part[i];
  }
}
#pragma GCC diagnostic pop

}  // namespace

void set_cpu_conv_path(CpuConvPath path) { g_conv_path = path; }
bool cpu_conv_by_size_takes_lanes(const ConvGeometry& g) { return lanes_by_size(g); }

void conv2d_forward_cpu(const float* x, const float* w, const float* bias, float* y, ConvGeometry g) {
  if (g.n == 0 || g.c_out == 0) return;
  const int64_t rows = col_rows(g), spatial = out_plane(g);
  if (rows == 0) {  // no input channels: BLAS may leave y untouched when K = 0
    if (bias) fill_bias(bias, g.n, g.c_out, spatial, y);
    else std::fill(y, y + int64_t(g.n) * g.c_out * spatial, 0.0f);
    return;
  }
  if (use_lanes(g)) return lanes_forward(x, w, bias, y, g);
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(kColumns, rows * per_block * spatial);
    float* out = scratch_of_size(kGemmOutput, g.c_out * per_block * spatial);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      im2col_block(x + first * g.c_in * in_plane(g), count, col, source, g);
      float* y_block = y + first * g.c_out * spatial;
      // [c_out, ld] = bias + w[c_out, rows] * col[rows, ld]; one image: straight into y
      float* target = count == 1 ? y_block : out;
      if (bias) fill_bias(bias, 1, g.c_out, ld, target);
      gemm_cpu({false, false, g.c_out, ld, rows, rows, ld, ld, 0, 0, 0, 1}, 1.0f, w, col, bias ? 1.0f : 0.0f,
               target);
      if (count > 1) scatter_block(out, count, g.c_out, spatial, y_block);
    }
  }
}

void conv2d_backward_data_cpu(const float* dy, const float* w, float* dx, ConvGeometry g) {
  if (g.n == 0 || g.c_in == 0) return;
  if (use_lanes(g)) return lanes_backward_data(dy, w, dx, g);
  const int64_t rows = col_rows(g), spatial = out_plane(g);
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
#pragma omp parallel if (worth_threads(g))
  {
    float* col = scratch_of_size(kColumns, rows * per_block * spatial);
    float* grad = scratch_of_size(kGemmOutput, g.c_out * per_block * spatial);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      const float* dy_block = dy + first * g.c_out * spatial;
      if (count > 1) gather_block(dy_block, count, g.c_out, spatial, grad);
      // col[rows, ld] = w^T[rows, c_out] * dy[c_out, ld]
      gemm_cpu({true, false, rows, ld, g.c_out, rows, ld, ld, 0, 0, 0, 1}, 1.0f, w, count == 1 ? dy_block : grad,
               0.0f, col);
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
  if (use_lanes(g)) return lanes_backward_filter(x, dy, dw, g);
  const int64_t per_block = images_per_block(g), blocks = block_count(g, per_block);
  const std::vector<int32_t>& source = block_sources(g, per_block);
  // Each thread sums its blocks into its own dw; the partial sums are then
  // added in thread order (deterministic for a given thread count).
  const int threads = worth_threads(g) ? int(std::min<int64_t>(omp_get_max_threads(), blocks)) : 1;
  float* partial = scratch_of_size(kPartials, threads * size);
  std::fill(partial, partial + threads * size, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* col = scratch_of_size(kColumns, rows * per_block * spatial);
    float* grad = scratch_of_size(kGemmOutput, g.c_out * per_block * spatial);
    float* mine = partial + int64_t(omp_get_thread_num()) * size;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t first = b * per_block, count = std::min<int64_t>(per_block, g.n - first), ld = count * spatial;
      im2col_block(x + first * g.c_in * in_plane(g), count, col, source, g);
      const float* dy_block = dy + first * g.c_out * spatial;
      if (count > 1) gather_block(dy_block, count, g.c_out, spatial, grad);
      // mine[c_out, rows] += dy[c_out, ld] * col^T[ld, rows]
      gemm_cpu({false, true, g.c_out, rows, ld, ld, ld, rows, 0, 0, 0, 1}, 1.0f, count == 1 ? dy_block : grad, col,
               1.0f, mine);
    }
  }
  for (int t = 0; t < threads; ++t) {
    const float* part = partial + int64_t(t) * size;
    for (int64_t i = 0; i < size; ++i) dw[i] += part[i];
  }
}

}  // namespace cte::kern
