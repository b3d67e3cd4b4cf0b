// Principal component analysis of a data set's images, for low-dimensional
// inputs (the paradox paper's table 14: a 16-D PCA of 1,024 MNIST images,
// appendix K.3): the basis is fitted on pixels (byte / 255) of the given
// images only, and project_pca turns any split into PCA coordinates, which
// the network then takes as its input and in which the eps ball lives.
//
// The coordinates are raw (not whitened): y = V (x - mean) with V's rows
// orthonormal, so a step in PCA space has the same L2 length as the pixel
// step it stands for, and an eps means what it means on [0, 1] pixels
// (sklearn's PCA default). They are not confined to any interval, so balls
// around them are not clipped.
#pragma once
#include <cstdint>
#include <vector>

#include "datasets/dataset.h"

namespace cte {

struct PcaBasis {
  int64_t input_size = 0;  // pixels per image (C*H*W)
  int64_t fitted_on = 0;   // images the basis was fitted on
  // Stored as float (what checkpoints hold), so that a projection recomputed
  // from a checkpoint gives the training run's inputs bit for bit.
  std::vector<float> mean;        // input_size: the mean image (byte / 255)
  std::vector<float> components;  // count() x input_size, row-major; rows orthonormal, by decreasing variance
  std::vector<double> variances;  // count(): the sample variance (n - 1) of the images along each row
  double total_variance = 0;      // over all pixels: sum of the covariance's diagonal
  int64_t count() const { return input_size ? int64_t(components.size()) / input_size : 0; }
};

// The `components` leading eigenvectors of the images' covariance matrix,
// computed in double (LAPACK dsyevd from OpenBLAS). Each row's sign is fixed
// so that its entry of largest magnitude (the first, on a tie) is positive.
// Throws std::invalid_argument "[pca] ..." for fewer than 2 images, a data set
// of features, or components outside [1, pixels per image].
PcaBasis fit_pca(const Dataset& data, int components);

// The data set in PCA coordinates: features of shape 1 x 1 x count() (each
// computed in double from the float basis), the same labels and classes, no pixels.
// Throws std::invalid_argument when the images do not have basis.input_size pixels.
Dataset project_pca(const Dataset& data, const PcaBasis& basis);

}  // namespace cte
