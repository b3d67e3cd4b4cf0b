// Per-element rules of the label kernels (margin_spec, argmax_hits in
// kernels/kernels.h), shared by the CPU twins (kernels/cpu/softmax.cpp) and the
// CUDA kernels (kernels/cuda/softmax.cu). Labels are class indices stored as
// floats, exact below 2^24.
#pragma once
#include <math.h>
#include <stdint.h>

#include "kernels/common/hd.h"

namespace cte::kern {

// The class a label names, or -1 when it names none (NaN, negative, not an
// integer, too large): callers turn that into NaN, never into a stray read.
CTE_HD inline int64_t label_class(float label, int64_t classes) {
  return label >= 0.0f && label < float(classes) && label == floorf(label) ? int64_t(label) : -1;
}

// Entry (row, col) of a sample's margin specification C (classes-1, classes):
// row r is e_o - e_y for o the r-th class other than the label y, so C z holds
// z_o - z_y, which a certified sample has below 0 for every o.
CTE_HD inline float margin_spec_entry(float label, int64_t row, int64_t col, int64_t classes) {
  const int64_t y = label_class(label, classes);
  if (y < 0) return NAN;
  const int64_t other = row < y ? row : row + 1;
  return col == other ? 1.0f : col == y ? -1.0f : 0.0f;
}

// 1 when the first largest entry of row (cols) sits at the label's class: the
// argmax rule of std::max_element (a NaN never replaces the running best).
CTE_HD inline float argmax_hit(const float* row, int64_t cols, float label) {
  int64_t best = 0;
  for (int64_t j = 1; j < cols; ++j)
    if (row[best] < row[j]) best = j;
  return cols > 0 && best == label_class(label, cols) ? 1.0f : 0.0f;
}

// 1 when a class other than the label's has a logit at or above the label's,
// a NaN anywhere in the comparison included (such a sample is not safely
// classified), or when the label names no class; else 0. The rule of
// train/pgd.h's misclassified(), which PGD uses to leave broken samples be.
CTE_HD inline float misclassified_row(const float* row, int64_t cols, float label) {
  const int64_t y = label_class(label, cols);
  if (y < 0) return 1.0f;
  for (int64_t j = 0; j < cols; ++j)
    if (j != y && !(row[j] < row[y])) return 1.0f;
  return 0.0f;
}

}  // namespace cte::kern
