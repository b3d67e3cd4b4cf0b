// CPU twin of transpose: y[b, c, r] = x[b, r, c], in cache-sized tiles.
#include <algorithm>

#include "kernels/kernels.h"

namespace cte::kern {

void transpose_cpu(const float* x, float* y, int64_t batch, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
#pragma omp parallel for collapse(3) schedule(static) if (batch * rows * cols > 32768)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t rt = 0; rt < row_tiles; ++rt)
      for (int64_t ct = 0; ct < col_tiles; ++ct) {
        const float* xb = x + b * rows * cols;
        float* yb = y + b * rows * cols;
        const int64_t r_end = std::min(rows, (rt + 1) * kTile);
        const int64_t c_end = std::min(cols, (ct + 1) * kTile);
        for (int64_t r = rt * kTile; r < r_end; ++r)
          for (int64_t c = ct * kTile; c < c_end; ++c) yb[c * rows + r] = xb[r * cols + c];
      }
}

}  // namespace cte::kern
