// Tests for datasets/pca.h against answers derived by hand: points on a line
// in 3-D (one component, the line's direction), a 2-D cloud whose covariance
// has eigenvectors (1, 1) and (1, -1); and, on random images, the properties
// that define PCA checked by brute force (orthonormal rows, projections
// uncorrelated with variances equal to the reported ones, in decreasing
// order). Also BatchLoader on features, the error messages, and that
// evaluation and PGD do not clip balls around features to [0, 1].
#include <doctest/doctest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "datasets/pca.h"
#include "engine/ops.h"
#include "relaxations/relaxations.h"
#include "train/networks.h"
#include "train/pgd.h"
#include "train/trainer.h"

namespace {

using cte::Dataset;

// A data set of 1 x 1 x width "images" with the given bytes, all of class 0.
Dataset tiny_images(int width, const std::vector<std::vector<int>>& pixels) {
  Dataset d = cte::numbered_classes_dataset("tiny", 1, 1, width, 2);
  for (const auto& image : pixels) {
    for (int v : image) d.images.push_back(uint8_t(v));
    d.labels.push_back(0);
  }
  return d;
}

double dot_row(const cte::PcaBasis& b, int64_t i, int64_t j) {
  double s = 0;
  for (int64_t k = 0; k < b.input_size; ++k)
    s += double(b.components[size_t(i * b.input_size + k)]) * double(b.components[size_t(j * b.input_size + k)]);
  return s;
}

}  // namespace

TEST_CASE("pca: points on a line in 3-D have the line's direction as their one component") {
  // x_t = (10, 20, 30) + t (1, 2, 2), t = 0..4, in bytes: the direction (1, 2, 2) / 3 carries all the variance.
  std::vector<std::vector<int>> pixels;
  for (int t = 0; t <= 4; ++t) pixels.push_back({10 + t, 20 + 2 * t, 30 + 2 * t});
  const Dataset data = tiny_images(3, pixels);
  const cte::PcaBasis b = cte::fit_pca(data, 1);
  REQUIRE(b.count() == 1);
  CHECK(b.fitted_on == 5);
  // |entries| 1/3, 2/3, 2/3: the largest (first on the tie) is made positive.
  CHECK(b.components[0] == doctest::Approx(1.0 / 3).epsilon(1e-6));
  CHECK(b.components[1] == doctest::Approx(2.0 / 3).epsilon(1e-6));
  CHECK(b.components[2] == doctest::Approx(2.0 / 3).epsilon(1e-6));
  CHECK(b.mean[0] == doctest::Approx(12.0 / 255).epsilon(1e-6));
  CHECK(b.mean[1] == doctest::Approx(24.0 / 255).epsilon(1e-6));
  CHECK(b.mean[2] == doctest::Approx(34.0 / 255).epsilon(1e-6));
  // var(t) over 0..4 with n - 1 is 2.5, times |(1, 2, 2)|^2 = 9, in (1/255)^2.
  CHECK(b.variances[0] == doctest::Approx(2.5 * 9 / (255.0 * 255.0)).epsilon(1e-9));
  CHECK(b.total_variance == doctest::Approx(2.5 * 9 / (255.0 * 255.0)).epsilon(1e-9));
  // The coordinate of x_t is (t - 2) * 3 / 255.
  const Dataset projected = cte::project_pca(data, b);
  REQUIRE(projected.has_features());
  CHECK(projected.channels == 1);
  CHECK(projected.height == 1);
  CHECK(projected.width == 1);
  CHECK(projected.images.empty());
  // Within 1e-7 absolute (coordinates of about 0.02; the float mean and basis err by ~1e-8).
  for (int t = 0; t <= 4; ++t) CHECK(std::fabs(projected.features[size_t(t)] - (t - 2) * 3.0 / 255) < 1e-7);
  // All three components: orthonormal, the other two with no variance.
  const cte::PcaBasis all = cte::fit_pca(data, 3);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) CHECK(dot_row(all, i, j) == doctest::Approx(i == j ? 1.0 : 0.0).scale(1.0).epsilon(1e-6));
  }
  CHECK(std::fabs(all.variances[1]) < 1e-12);
  CHECK(std::fabs(all.variances[2]) < 1e-12);
}

TEST_CASE("pca: a 2-D cloud with covariance eigenvectors (1, 1) and (1, -1)") {
  // Centred at (100, 100): +-(3, 3) along (1, 1) and +-(1, -1) along (1, -1).
  const Dataset data = tiny_images(2, {{103, 103}, {97, 97}, {101, 99}, {99, 101}});
  const cte::PcaBasis b = cte::fit_pca(data, 2);
  const double r = 1.0 / std::sqrt(2.0);
  CHECK(b.components[0] == doctest::Approx(r).epsilon(1e-6));
  CHECK(b.components[1] == doctest::Approx(r).epsilon(1e-6));
  CHECK(b.components[2] == doctest::Approx(r).epsilon(1e-6));  // a tie of |entries|: the first is positive
  CHECK(b.components[3] == doctest::Approx(-r).epsilon(1e-6));
  // Along (1, 1)/sqrt 2 the projections are +-3 sqrt 2 / 255 and 0, 0: 36 / 255^2 over n - 1 = 3.
  const double unit = 1.0 / (255.0 * 255.0);
  CHECK(b.variances[0] == doctest::Approx(12 * unit).epsilon(1e-9));
  CHECK(b.variances[1] == doctest::Approx(4.0 / 3 * unit).epsilon(1e-9));
  CHECK(b.total_variance == doctest::Approx(40.0 / 3 * unit).epsilon(1e-9));
  const Dataset p = cte::project_pca(data, b);
  const double coords[4][2] = {{3 * std::sqrt(2.0), 0}, {-3 * std::sqrt(2.0), 0}, {0, std::sqrt(2.0)}, {0, -std::sqrt(2.0)}};
  for (int i = 0; i < 4; ++i)
    for (int k = 0; k < 2; ++k)
      CHECK(std::fabs(p.features[size_t(i * 2 + k)] - coords[i][k] / 255) < 1e-7);
}

TEST_CASE("pca: on random images the rows are orthonormal and the projections uncorrelated, variances decreasing") {
  Dataset data = cte::numbered_classes_dataset("random", 1, 4, 4, 10);
  uint32_t state = 12345;
  const int n = 60, k = 6;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 16; ++j) {
      state = state * 1664525u + 1013904223u;
      // Correlated pixels: a shared random level plus per-pixel noise, so the spectrum is not flat.
      const int base = int((i * 37) % 200);
      data.images.push_back(uint8_t(std::min(255, base + int(state >> 27) * (1 + j % 3))));
    }
    data.labels.push_back(uint8_t(i % 10));
  }
  const cte::PcaBasis b = cte::fit_pca(data, k);
  REQUIRE(b.count() == k);
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) CHECK(dot_row(b, i, j) == doctest::Approx(i == j ? 1.0 : 0.0).scale(1.0).epsilon(2e-6));
  for (int i = 1; i < k; ++i) CHECK(b.variances[size_t(i)] <= b.variances[size_t(i - 1)]);
  // Brute force: the covariance of the projected coordinates (float features,
  // from the float basis) is diagonal with the reported variances on it.
  const Dataset p = cte::project_pca(data, b);
  std::vector<double> mean(k, 0.0);
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < k; ++c) mean[size_t(c)] += p.features[size_t(i * k + c)] / double(n);
  for (int a = 0; a < k; ++a) {
    CHECK(std::fabs(mean[size_t(a)]) < 1e-6);  // the mean image projects to 0
    for (int c = 0; c < k; ++c) {
      double cov = 0;
      for (int i = 0; i < n; ++i)
        cov += (p.features[size_t(i * k + a)] - mean[size_t(a)]) * (p.features[size_t(i * k + c)] - mean[size_t(c)]);
      cov /= double(n - 1);
      const double expected = a == c ? b.variances[size_t(a)] : 0.0;
      CHECK(cov == doctest::Approx(expected).scale(b.variances[0]).epsilon(1e-5));
    }
  }
  // Labels and classes carry over.
  CHECK(p.labels == data.labels);
  CHECK(p.num_classes == 10);
}

TEST_CASE("pca: BatchLoader serves features as they are and refuses to augment them") {
  const Dataset data = tiny_images(2, {{103, 103}, {97, 97}, {101, 99}, {99, 101}});
  const Dataset p = cte::project_pca(data, cte::fit_pca(data, 2));
  cte::BatchLoader loader(p, 3, 0, /*shuffle=*/false, cte::Augment{});
  std::vector<float> x;
  std::vector<int> y;
  REQUIRE(loader.next(x, y));
  REQUIRE(x.size() == 6);
  for (size_t i = 0; i < 6; ++i) CHECK(x[i] == p.features[i]);
  REQUIRE(loader.next(x, y));
  CHECK(x.size() == 2);
  CHECK(x[0] == p.features[6]);
  CHECK_FALSE(loader.next(x, y));
  CHECK_THROWS_WITH_AS(cte::BatchLoader(p, 2, 0, false, cte::Augment{2, false}),
                       doctest::Contains("cannot crop or flip features"), std::invalid_argument);
}

TEST_CASE("pca: bad inputs are refused with the numbers") {
  const Dataset one = tiny_images(2, {{1, 2}});
  CHECK_THROWS_WITH_AS(cte::fit_pca(one, 1), doctest::Contains("at least 2 images"), std::invalid_argument);
  const Dataset two = tiny_images(2, {{1, 2}, {3, 5}});
  CHECK_THROWS_WITH_AS(cte::fit_pca(two, 3), doctest::Contains("must lie in [1, 2]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(cte::fit_pca(two, 0), doctest::Contains("must lie in [1, 2]"), std::invalid_argument);
  const cte::PcaBasis b = cte::fit_pca(two, 1);
  CHECK_THROWS_WITH_AS(cte::fit_pca(cte::project_pca(two, b), 1), doctest::Contains("features already"),
                       std::invalid_argument);
  const Dataset wider = tiny_images(3, {{1, 2, 3}});
  CHECK_THROWS_WITH_AS(cte::project_pca(wider, b), doctest::Contains("3 pixels per image"), std::invalid_argument);
}

TEST_CASE("pca: evaluation and PGD leave balls around features unclipped") {
  // Coordinates far outside [0, 1]: clipping to it would empty the ball (lower > upper).
  Dataset data = cte::numbered_classes_dataset("features", 1, 1, 2, 2);
  data.features = {-3.0f, 5.0f, -2.5f, 4.0f, 2.0f, -4.0f, 3.0f, -1.5f};
  data.labels = {0, 0, 1, 1};
  const cte::Network net =
      cte::train::build_network("fc-2x20", cte::Shape{1, 1, 2}, 2, cte::train::Normalization{{0.0f}, {1.0f}}, 3);
  const float eps = 0.25f;
  cte::train::EvalOptions o;
  o.eps = {eps};
  o.relaxations = {cte::Relaxation::box, cte::Relaxation::crown};
  o.pgd = false;
  o.sound = false;
  const cte::train::EvalReport report = cte::train::evaluate(net, data, o);
  // Reference: the same bounds on [x - eps, x + eps] built here, and the clean predictions.
  const cte::Tensor x = cte::Tensor::from_vector(data.features, cte::Shape{4, 1, 1, 2}, cte::Device::cpu);
  const std::vector<int> labels(data.labels.begin(), data.labels.end());
  const std::vector<bool> wrong = cte::train::misclassified(net.forward(x), labels);
  const cte::Tensor lo = cte::ops::add_scalar(x, -eps), hi = cte::ops::add_scalar(x, eps);
  cte::BoundOptions bo;
  for (size_t k = 0; k < 2; ++k) {
    const std::vector<float> margins = cte::certified_margins(
        cte::compute_bounds(net, lo, hi, cte::margin_spec(labels, 2, cte::Device::cpu), o.relaxations[k], bo));
    int64_t expected = 0;
    for (size_t i = 0; i < 4; ++i) expected += !wrong[i] && margins[i] > 0.0f;
    CHECK(report.radii[0].certified[k].second == expected);
  }
  // PGD stays in the unclipped ball (and, as a control, in [0, 1] when asked to clip).
  cte::train::PgdOptions p;
  p.eps = eps;
  p.steps = 5;
  p.step_size = 0.1f;
  p.clip = false;
  const std::vector<float> adv = cte::train::pgd_attack(net, x, labels, p).x_adv.to_vector();
  for (size_t i = 0; i < adv.size(); ++i) {
    CHECK(adv[i] >= data.features[i] - eps - 1e-6f);
    CHECK(adv[i] <= data.features[i] + eps + 1e-6f);
  }
  p.clip = true;
  for (float v : cte::train::pgd_attack(net, x, labels, p).x_adv.to_vector()) CHECK((v >= 0.0f && v <= 1.0f));
}
