// BatchNorm against independent references: a hand-written double-precision
// BatchNorm (forward, both modes), central finite differences of the
// double reference's loss for the tape's gradients (training mode through
// the batch statistics, and evaluation mode), the running averages after one
// step by hand, the fold into the preceding layer (forward and bounds), the
// training-mode bound rule (the clean batch's statistics), and CNN7's
// parameter count by hand.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "engine/netjson.h"
#include "engine/onnx_io.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"
#include "train/networks.h"
#include "verify/property.h"

namespace cte::test {
namespace {

// x (n, channels, plane) in double; batch statistics (biased variance) or the given ones.
std::vector<double> reference_batch_norm(const std::vector<double>& x, int64_t n, int64_t channels, int64_t plane,
                                         const std::vector<double>& gamma, const std::vector<double>& beta,
                                         const std::vector<double>* mean_given, const std::vector<double>* var_given,
                                         double eps) {
  std::vector<double> y(x.size());
  for (int64_t c = 0; c < channels; ++c) {
    double mean = 0, var = 0;
    if (mean_given) {
      mean = (*mean_given)[size_t(c)];
      var = (*var_given)[size_t(c)];
    } else {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t p = 0; p < plane; ++p) mean += x[size_t((i * channels + c) * plane + p)];
      mean /= double(n * plane);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t p = 0; p < plane; ++p) {
          const double d = x[size_t((i * channels + c) * plane + p)] - mean;
          var += d * d;
        }
      var /= double(n * plane);
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) {
        const size_t k = size_t((i * channels + c) * plane + p);
        y[k] = (x[k] - mean) / std::sqrt(var + eps) * gamma[size_t(c)] + beta[size_t(c)];
      }
  }
  return y;
}

std::vector<double> doubles(const Tensor& t) {
  const std::vector<float> v = t.to_vector();
  return {v.begin(), v.end()};
}

Layer batch_norm_layer(int64_t channels, Rng& rng) {
  Layer bn = make_batch_norm(channels);
  bn.weight = random_tensor(Shape{channels}, rng, Device::cpu, -1.5f, 1.5f);
  bn.bias = random_tensor(Shape{channels}, rng);
  bn.running_mean = random_tensor(Shape{channels}, rng);
  bn.running_var = random_tensor(Shape{channels}, rng, Device::cpu, 0.3f, 2.0f);
  return bn;
}

TEST_CASE("batch_norm: forward equals a double-precision BatchNorm, 2d and 1d, training and evaluation mode") {
  Rng rng(31);
  for (const Shape& in : {Shape{3, 2, 2}, Shape{5}}) {
    const int64_t n = 4, channels = in[0], plane = in.numel() / channels;
    for (bool training : {true, false}) {
      CAPTURE(in.str());
      CAPTURE(training);
      Network net(in, {batch_norm_layer(channels, rng)});
      net.set_training(training);
      std::vector<int64_t> dims{n};
      for (int64_t d : in.dims()) dims.push_back(d);
      const Tensor x = random_tensor(Shape(dims), rng, Device::cpu, -2.0f, 3.0f);
      const Layer& bn = net.layers()[0];
      const std::vector<double> mean = doubles(bn.running_mean), var = doubles(bn.running_var);
      const std::vector<double> want = reference_batch_norm(doubles(x), n, channels, plane, doubles(bn.weight),
                                                            doubles(bn.bias), training ? nullptr : &mean,
                                                            training ? nullptr : &var, 1e-5);
      const std::vector<float> got = net.forward(x).to_vector();
      for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5).scale(1.0));
    }
  }
}

TEST_CASE("batch_norm: gradients of x, gamma and beta equal finite differences of the double reference") {
  Rng rng(37);
  const int64_t n = 3, channels = 2, plane = 4;
  for (bool training : {true, false}) {
    CAPTURE(training);
    Network net(Shape{channels, 2, 2}, {batch_norm_layer(channels, rng)});
    net.set_training(training);
    const Layer& bn = net.layers()[0];
    Tensor x = random_tensor(Shape{n, channels, 2, 2}, rng, Device::cpu, -2.0f, 2.0f);
    x.set_requires_grad(true);
    net.set_requires_grad(true);
    const std::vector<double> w = doubles(random_tensor(Shape{n * channels * plane}, rng));
    const Tensor weights = Tensor::from_vector(std::vector<float>(w.begin(), w.end()), x.shape(), Device::cpu);
    backward(ops::sum(ops::mul(net.forward(x), weights)));

    const std::vector<double> mean = doubles(bn.running_mean), var = doubles(bn.running_var);
    std::vector<double> xv = doubles(x), gamma = doubles(bn.weight), beta = doubles(bn.bias);
    auto loss = [&]() {
      const std::vector<double> y = reference_batch_norm(xv, n, channels, plane, gamma, beta, training ? nullptr : &mean,
                                                         training ? nullptr : &var, 1e-5);
      double s = 0;
      for (size_t i = 0; i < y.size(); ++i) s += w[i] * y[i];
      return s;
    };
    auto check = [&](std::vector<double>& values, const Tensor& grad, const char* what) {
      const std::vector<float> g = grad.to_vector();
      REQUIRE(g.size() == values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        const double h = 1e-5, keep = values[i];
        values[i] = keep + h;
        const double plus = loss();
        values[i] = keep - h;
        const double minus = loss();
        values[i] = keep;
        CAPTURE(what);
        CAPTURE(i);
        CHECK(g[i] == doctest::Approx((plus - minus) / (2 * h)).epsilon(1e-3).scale(1.0));
      }
    };
    check(xv, x.grad(), "x");
    check(gamma, bn.weight.grad(), "gamma");
    check(beta, bn.bias.grad(), "beta");
  }
}

TEST_CASE("batch_norm: one training step updates the running averages as PyTorch (momentum 0.1, unbiased variance)") {
  // One channel of 1, 2, 3, 6: mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 = 14/3.
  Network net(Shape{1}, {make_batch_norm(1)});
  net.set_training(true);
  net.forward(Tensor::from_vector({1, 2, 3, 6}, Shape{4, 1}, Device::cpu));
  const Layer& bn = net.layers()[0];
  CHECK(bn.running_mean.item() == doctest::Approx(0.9 * 0.0 + 0.1 * 3.0).epsilon(1e-6));
  CHECK(bn.running_var.item() == doctest::Approx(0.9 * 1.0 + 0.1 * 14.0 / 3.0).epsilon(1e-6));
  // With track_running_stats off, training mode normalises 10, 20 by their own
  // mean 15 and biased variance 25 (-> -1, 1) and leaves the averages and the
  // bounds' statistics (the first batch's mean 3) alone.
  net.set_track_running_stats(false);
  const std::vector<float> y = net.forward(Tensor::from_vector({10, 20}, Shape{2, 1}, Device::cpu)).to_vector();
  CHECK(y[0] == doctest::Approx(-5.0 / std::sqrt(25.0 + 1e-5)).epsilon(1e-6));
  CHECK(y[1] == doctest::Approx(5.0 / std::sqrt(25.0 + 1e-5)).epsilon(1e-6));
  CHECK(bn.running_mean.item() == doctest::Approx(0.3).epsilon(1e-6));
  CHECK(bn.batch_stats->mean.item() == doctest::Approx(3.0).epsilon(1e-6));
  net.set_track_running_stats(true);
  // Evaluation mode leaves them alone.
  net.set_training(false);
  net.forward(Tensor::from_vector({10, 20}, Shape{2, 1}, Device::cpu));
  CHECK(bn.running_mean.item() == doctest::Approx(0.3).epsilon(1e-6));
}

// conv -> BN -> ReLU -> flatten -> linear -> BN1d -> ReLU -> linear, with random running averages.
Network small_bn_net(Rng& rng) {
  return Network(Shape{1, 4, 4}, {make_conv(1, 3, 3, 2, 1, rng), batch_norm_layer(3, rng), make_relu(), make_flatten(),
                                  make_linear(12, 6, rng), batch_norm_layer(6, rng), make_relu(), make_linear(6, 3, rng)});
}

// Box and CROWN bounds of two networks on one input box agree.
void check_same_bounds(const Network& a, const Network& b, const Tensor& lo, const Tensor& hi) {
  for (Relaxation r : {Relaxation::box, Relaxation::crown}) {
    const Bounds x = compute_bounds(a, lo, hi, Tensor(), r);
    const Bounds y = compute_bounds(b, lo, hi, Tensor(), r);
    CHECK_CLOSE_VEC(x.lower.to_vector(), y.lower.to_vector(), 1e-5, 1e-4);
    CHECK_CLOSE_VEC(x.upper.to_vector(), y.upper.to_vector(), 1e-5, 1e-4);
  }
}

TEST_CASE("batch_norm: folding evaluation-mode BatchNorm into the layer before it is exact (forward and bounds)") {
  Rng rng(41);
  const Network net = small_bn_net(rng);
  const Network folded = fold_batch_norm(net);
  REQUIRE(folded.layers().size() == net.layers().size() - 2);
  for (const Layer& layer : folded.layers()) CHECK(layer.kind != LayerKind::batch_norm);
  NoGrad no_grad;
  const Tensor x = random_tensor(Shape{5, 1, 4, 4}, rng, Device::cpu, 0.0f, 1.0f);
  CHECK_CLOSE_VEC(folded.forward(x).to_vector(), net.forward(x).to_vector(), 1e-6, 1e-5);
  const auto [lo, hi] = input_box(x, 0.05f);
  check_same_bounds(folded, net, lo, hi);
}

TEST_CASE("batch_norm: training-mode bounds use the clean batch's statistics (as eth-sri/SABR)") {
  Rng rng(43);
  Network train_net = small_bn_net(rng);
  // An evaluation-mode copy (own tensors) whose running averages become the batch's statistics.
  Network eval_net = network_from_json(network_to_json(train_net), "copy");
  const Tensor x = random_tensor(Shape{6, 1, 4, 4}, rng, Device::cpu, 0.0f, 1.0f);
  train_net.set_training(true);
  train_net.forward(x);  // the clean pass
  for (size_t i = 0; i < train_net.layers().size(); ++i) {
    const Layer& layer = train_net.layers()[i];
    if (layer.kind != LayerKind::batch_norm) continue;
    eval_net.layers()[i].running_mean.copy_from(layer.batch_stats->mean);
    eval_net.layers()[i].running_var.copy_from(layer.batch_stats->var);  // biased: what the pass normalised with
  }
  const auto [lo, hi] = input_box(x, 0.03f);
  check_same_bounds(train_net, eval_net, lo, hi);
  tape_reset();
  // Without a clean pass there are no statistics to bound with.
  train_net.set_training(true);
  CHECK_THROWS(compute_bounds(train_net, lo, hi, Tensor(), Relaxation::box));
}

TEST_CASE("batch_norm: ONNX export writes BatchNormalization; onnx.checker accepts it; the import folds it exactly") {
  Rng rng(47);
  const Network net = small_bn_net(rng);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("cte_bn_onnx_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bn.onnx").string();
  save_network_onnx(path, net);
  const std::string cmd = "/usr/bin/python3 -c \"import onnx,sys; m=onnx.load(sys.argv[1]); "
                          "onnx.checker.check_model(m, full_check=True); "
                          "assert sum(n.op_type == 'BatchNormalization' for n in m.graph.node) == 2\" " + path;
  CHECK(std::system(cmd.c_str()) == 0);
  const Network back = load_network_onnx(path);
  CHECK(back.describe() == fold_batch_norm(net).describe());
  std::vector<double> x(16);
  for (size_t i = 0; i < x.size(); ++i) x[i] = double(i % 5) / 5.0;
  const std::vector<double> a = verify::forward_f64(net, x), b = verify::forward_f64(back, x);
  for (size_t j = 0; j < a.size(); ++j) CHECK(b[j] == doctest::Approx(a[j]).epsilon(1e-5).scale(1.0));
  std::filesystem::remove_all(dir);
}

TEST_CASE("cnn7: builds for 28x28x1 and 32x32x3 with the hand-counted parameters") {
  // conv 3x3 weights + biases, BatchNorm gamma + beta per channel, by hand:
  //   1->64: 576+64+128; 64->64: 36864+64+128; 64->128: 73728+128+256; 128->128 twice: 147456+128+256;
  //   FC 128*14*14 (28x28, stride 2 once) -> 512: 12845056+512+1024; FC 512->10: 5120+10.
  CHECK(train::build_network("cnn7", Shape{1, 28, 28}, 10, {{0.5f}, {0.25f}}, 1).num_parameters() == 13259338);
  //   3->64: 1728+64+128; FC 128*16*16 -> 512: 16777216+512+1024.
  const Network cifar = train::build_network("cnn7", Shape{3, 32, 32}, 10, {{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}}, 1);
  CHECK(cifar.num_parameters() == 17192650);
  CHECK(cifar.describe().find("batch_norm(512)") != std::string::npos);
}

}  // namespace
}  // namespace cte::test
