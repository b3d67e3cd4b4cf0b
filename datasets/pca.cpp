// fit_pca: the covariance of the centred images by BLAS (dsyrk), its
// eigenvectors by LAPACK (dsyevd, both from the OpenBLAS we link), in double;
// project_pca: y = V (x - mean) per image, in double from the float basis.
#include "datasets/pca.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

// LAPACK's symmetric eigensolver (divide and conquer), Fortran calling
// convention; OpenBLAS exports it, and Debian ships no LAPACKE for it. The
// trailing lengths are the hidden lengths of the two character arguments.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t jobz_length,
                        size_t uplo_length);

namespace cte {

namespace {

[[noreturn]] void bad(const std::string& message) { throw std::invalid_argument("[pca] " + message); }

}  // namespace

PcaBasis fit_pca(const Dataset& data, int components) {
  const size_t n = data.size();
  const size_t d = data.image_numel();
  const std::string what = (data.name.empty() ? std::string("data set") : data.name);
  if (data.has_features()) bad(what + ": its inputs are features already, not pixels");
  if (n < 2) bad(what + ": needs at least 2 images for a covariance, got " + std::to_string(n));
  if (components < 1 || size_t(components) > d)
    bad(std::to_string(components) + " components of " + what + ": must lie in [1, " + std::to_string(d) +
        "] (pixels per image)");
  if (data.images.size() != n * d) bad(what + ": images hold " + std::to_string(data.images.size()) + " bytes, expected " +
                                       std::to_string(n) + " x " + std::to_string(d));

  std::vector<double> mean(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += data.images[i * d + j] / 255.0;
  for (double& m : mean) m /= double(n);
  std::vector<double> centred(n * d);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) centred[i * d + j] = data.images[i * d + j] / 255.0 - mean[j];

  // covariance = X^T X / (n - 1): row-major upper triangle, which is the
  // column-major lower triangle that dsyevd reads with uplo 'L'.
  std::vector<double> covariance(d * d, 0.0);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(d), int(n), 1.0 / double(n - 1), centred.data(), int(d), 0.0,
              covariance.data(), int(d));
  PcaBasis basis;
  basis.input_size = int64_t(d);
  basis.fitted_on = int64_t(n);
  for (size_t j = 0; j < d; ++j) basis.total_variance += covariance[j * d + j];

  const int dim = int(d);
  std::vector<double> eigenvalues(d);
  int info = 0, lwork = -1, liwork = -1, iwork_size = 0;
  double work_size = 0;
  dsyevd_("V", "L", &dim, covariance.data(), &dim, eigenvalues.data(), &work_size, &lwork, &iwork_size, &liwork,
          &info, 1, 1);
  if (info != 0) bad("dsyevd's workspace query failed (info " + std::to_string(info) + ")");
  lwork = int(work_size);
  liwork = iwork_size;
  std::vector<double> work(size_t(std::max(1, lwork)));
  std::vector<int> iwork(size_t(std::max(1, liwork)));
  dsyevd_("V", "L", &dim, covariance.data(), &dim, eigenvalues.data(), work.data(), &lwork, iwork.data(), &liwork,
          &info, 1, 1);
  if (info != 0) bad("dsyevd did not converge on the " + std::to_string(d) + "x" + std::to_string(d) +
                     " covariance of " + what + " (info " + std::to_string(info) + ")");

  // Eigenvalues come in ascending order; eigenvector k is column k (contiguous, column-major).
  basis.mean.assign(mean.begin(), mean.end());
  basis.components.resize(size_t(components) * d);
  for (int k = 0; k < components; ++k) {
    const size_t column = d - 1 - size_t(k);
    const double* v = covariance.data() + column * d;
    size_t largest = 0;
    for (size_t j = 1; j < d; ++j)
      if (std::fabs(v[j]) > std::fabs(v[largest])) largest = j;
    const double sign = v[largest] < 0 ? -1.0 : 1.0;
    for (size_t j = 0; j < d; ++j) basis.components[size_t(k) * d + j] = float(sign * v[j]);
    basis.variances.push_back(std::max(0.0, eigenvalues[column]));
  }
  return basis;
}

Dataset project_pca(const Dataset& data, const PcaBasis& basis) {
  const size_t d = data.image_numel();
  const std::string what = (data.name.empty() ? std::string("data set") : data.name);
  if (data.has_features()) bad(what + ": its inputs are features already, not pixels");
  if (int64_t(d) != basis.input_size)
    bad(what + " has " + std::to_string(d) + " pixels per image but the basis was fitted on images of " +
        std::to_string(basis.input_size));
  if (data.images.size() != data.size() * d)
    bad(what + ": images hold " + std::to_string(data.images.size()) + " bytes, expected " +
        std::to_string(data.size()) + " x " + std::to_string(d));
  const size_t k = size_t(basis.count());
  Dataset out;
  out.name = data.name;
  out.channels = 1;
  out.height = 1;
  out.width = int(k);
  out.num_classes = data.num_classes;
  out.class_names = data.class_names;
  out.labels = data.labels;
  out.features.resize(data.size() * k);
  std::vector<double> centred(d);
  for (size_t i = 0; i < data.size(); ++i) {
    for (size_t j = 0; j < d; ++j) centred[j] = data.images[i * d + j] / 255.0 - double(basis.mean[j]);
    for (size_t c = 0; c < k; ++c) {
      const float* row = basis.components.data() + c * d;
      double sum = 0;
      for (size_t j = 0; j < d; ++j) sum += double(row[j]) * centred[j];
      out.features[i * k + c] = float(sum);
    }
  }
  return out;
}

}  // namespace cte
