// The patches path of the intermediate bounds (relaxations/backsub_patches.cpp):
// a conv layer's outputs bounded with per-position windows instead of dense
// rows. The dense walk (PatchChoice::never) is the independent reference: on
// random conv nets with strides, paddings, several channels and up to three
// convs under one ReLU, both paths give the same bounds and the same
// gradients (1e-5 relative) for every backsubstitution relaxation, on the
// dense and the sparse intermediate paths, whole or chunked under a small
// memory cap; on the CUDA backend too (the emulator here). Also with
// BatchNorm (evaluation and training mode, gamma negative in places) and a
// normalize between the convs, where sampled points of the box must also
// lie within the patches path's bounds. (Soundness by sampling is otherwise
// the dense path's tests' business.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

// Three convs (padding 1, stride 2, a 2x2 kernel without padding), then dense layers.
Network three_convs(Rng& rng) {
  return Network(Shape{2, 7, 7}, {make_conv(2, 3, 3, 1, 1, rng), make_relu(), make_conv(3, 4, 3, 2, 1, rng),
                                  make_relu(), make_conv(4, 3, 2, 1, 0, rng), make_relu(), make_flatten(),
                                  make_linear(27, 5, rng), make_relu(), make_linear(5, 3, rng)});
}

// A leading normalize (folded into the input box), a 4x4 stride-2 conv, and a
// conv whose padding 2 makes windows reach far outside the level.
Network padded_convs(Rng& rng) {
  return Network(Shape{3, 8, 8}, {make_normalize({0.3f, 0.4f, 0.5f}, {0.7f, 0.8f, 0.9f}), make_conv(3, 4, 4, 2, 0, rng),
                                  make_relu(), make_conv(4, 5, 3, 1, 2, rng), make_relu(), make_flatten(),
                                  make_linear(125, 4, rng)});
}

// BatchNorm over `channels` with random gamma (channel 0's negative), beta and
// running averages far from the identity's (mean 0, variance 1).
Layer random_batch_norm(int64_t channels, Rng& rng) {
  Layer bn = make_batch_norm(channels);
  std::vector<float> gamma = random_values(channels, rng, 0.5f, 1.5f);
  for (int64_t c = 0; c < channels; c += 2) gamma[size_t(c)] = -gamma[size_t(c)];
  bn.weight = Tensor::from_vector(gamma, Shape{channels}, Device::cpu);
  bn.bias = random_tensor(Shape{channels}, rng);
  bn.running_mean = random_tensor(Shape{channels}, rng);
  bn.running_var = random_tensor(Shape{channels}, rng, Device::cpu, 0.2f, 3.0f);
  return bn;
}

// three_convs with a BatchNorm after each conv (CNN7's conv, BatchNorm, ReLU).
Network batch_norm_convs(Rng& rng) {
  return Network(Shape{2, 7, 7}, {make_conv(2, 3, 3, 1, 1, rng), random_batch_norm(3, rng), make_relu(),
                                  make_conv(3, 4, 3, 2, 1, rng), random_batch_norm(4, rng), make_relu(),
                                  make_conv(4, 3, 2, 1, 0, rng), random_batch_norm(3, rng), make_relu(), make_flatten(),
                                  make_linear(27, 5, rng), make_relu(), make_linear(5, 3, rng)});
}

// Elementwise layers elsewhere: a BatchNorm after a ReLU (right under a
// padded conv, where the windows are still shared), a normalize and a
// BatchNorm stacked between a conv and its ReLU, a leading BatchNorm folded
// into the input box.
Network elementwise_between_convs(Rng& rng) {
  return Network(Shape{2, 6, 6}, {random_batch_norm(2, rng), make_conv(2, 3, 3, 1, 1, rng), make_relu(),
                                  random_batch_norm(3, rng), make_conv(3, 4, 3, 2, 1, rng),
                                  make_normalize({0.2f, -0.3f, 0.1f, 0.4f}, {0.5f, 1.5f, 0.8f, 1.2f}),
                                  random_batch_norm(4, rng), make_relu(), make_conv(4, 2, 3, 1, 1, rng), make_relu(),
                                  make_flatten(), make_linear(18, 3, rng)});
}

struct Outcome {
  std::vector<float> lower, upper;
  std::vector<std::vector<float>> grads;  // per parameter, of sum(upper) - sum(lower)
  uint64_t patch_chunks = 0, checkpointed_chunks = 0;
};

Outcome bound(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec, Relaxation r,
              const BoundOptions& options, relax::PatchChoice choice) {
  relax::set_patch_choice(choice);
  relax::reset_backsub_chunk_stats();
  for (const Tensor& p : net.parameters()) Tensor(p).zero_grad();
  const Bounds b = compute_bounds(net, lower0, upper0, spec, r, options);
  Outcome out;
  out.patch_chunks = relax::backsub_chunk_stats().patch_chunks;
  out.checkpointed_chunks = relax::backsub_chunk_stats().checkpointed_chunks;
  out.lower = b.lower.to_vector();
  out.upper = b.upper.to_vector();
  backward(ops::sub(ops::sum(b.upper), ops::sum(b.lower)));
  for (const Tensor& p : net.parameters()) out.grads.push_back(p.grad().to_vector());
  relax::set_patch_choice(relax::PatchChoice::by_cost);
  return out;
}

double largest_relative_difference(const std::vector<float>& got, const std::vector<float>& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) / (1.0 + std::fabs(double(want[i]))));
  return worst;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  const double worst = largest_relative_difference(got, want);
  CHECK_MESSAGE(worst <= 1e-5, what << ": largest relative difference " << worst);
}

// Returns the number of patch chunks the compared runs took.
uint64_t compare_paths(const Network& net, int64_t batch, float eps, Rng& rng, const std::string& label) {
  const int64_t n0 = net.input_shape().numel();
  const int64_t logits = net.layers().back().out_shape.numel();
  std::vector<int64_t> dims{batch};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  const Tensor x = Tensor::from_vector(random_values(batch * n0, rng, 0.0f, 1.0f), Shape(dims), Device::cpu);
  const auto [lower0, upper0] = input_box(x, eps);
  const Tensor spec = Tensor::from_vector(random_values(batch * 3 * logits, rng), Shape{batch, 3, logits}, Device::cpu);
  uint64_t patch_chunks = 0;
  for (Relaxation r : {Relaxation::crown, Relaxation::crown0, Relaxation::deepz, Relaxation::hbox_fresh,
                       Relaxation::hbox, Relaxation::crown_ibp})
    for (bool sparse : {false, true})
      for (size_t cap : {size_t(1) << 30, size_t(2) << 10}) {  // whole, or one channel per chunk, checkpointed
        const bool stacked_or_norms = r == Relaxation::crown || r == Relaxation::hbox;
        if (cap < 4096 && (sparse || !stacked_or_norms)) continue;  // chunking: one stacked rule and hBox's norms
        const std::string what = label + " " + relaxation_name(r) + (sparse ? " sparse" : " dense") +
                                 (cap < 4096 ? " chunked" : "");
        BoundOptions options;
        options.sparse_intermediate = sparse;
        options.memory_cap_bytes = cap;
        const Outcome dense = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::never);
        const Outcome patches = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::always);
        CHECK(dense.patch_chunks == 0);
        if (cap < 4096 && patches.patch_chunks > 0) CHECK(patches.checkpointed_chunks > 0);
        patch_chunks += patches.patch_chunks;
        check_close(patches.lower, dense.lower, what + " lower");
        check_close(patches.upper, dense.upper, what + " upper");
        for (size_t p = 0; p < dense.grads.size(); ++p)
          check_close(patches.grads[p], dense.grads[p], what + " gradient of parameter " + std::to_string(p));
      }
  return patch_chunks;
}

// compare_paths on `net` with its parameters' gradients; the patches path must be taken somewhere.
void check_paths_agree(Network net, int64_t batch, float eps, Rng& rng, const std::string& label) {
  net.set_requires_grad(true);
  CHECK(compare_paths(net, batch, eps, rng, label) > 0);
}

TEST_CASE("patches: the dense walk's intermediate bounds and gradients on random conv nets") {
  Rng rng(19);
  check_paths_agree(three_convs(rng), 3, 0.05f, rng, "three convs");
  check_paths_agree(padded_convs(rng), 2, 0.1f, rng, "padded convs");
}

// Independent of the patches path: the net with every BatchNorm's scale made
// 1 (keeping its shift) or its shift made 0 (keeping its scale), the two
// ways of ignoring half of it.
enum class BatchNormPart { scale, shift };
Network without_batch_norm_part(const Network& net, BatchNormPart ignored) {
  std::vector<Layer> layers;
  for (const Layer& layer : net.layers()) {
    Layer copy = layer;
    if (layer.kind == LayerKind::batch_norm) {
      NoGrad no_grad;
      const ChannelAffine a = batch_norm_affine(layer);
      const int64_t channels = layer.weight.numel();
      // mean 0 and variance 1 - eps: inv_std 1 up to a rounding, so gamma, beta are the scale and shift.
      copy.running_mean = Tensor::zeros(Shape{channels}, Device::cpu);
      copy.running_var = Tensor::full(Shape{channels}, 1.0f - layer.eps, Device::cpu);
      copy.weight = ignored == BatchNormPart::scale ? Tensor::full(Shape{channels}, 1.0f, Device::cpu) : a.scale.clone();
      copy.bias = ignored == BatchNormPart::shift ? Tensor::zeros(Shape{channels}, Device::cpu) : a.shift.clone();
    }
    layers.push_back(copy);
  }
  return Network(net.input_shape(), std::move(layers));
}

TEST_CASE("patches: BatchNorm and normalize between the convs, the dense walk's bounds and gradients") {
  Rng rng(29);
  check_paths_agree(batch_norm_convs(rng), 3, 0.05f, rng, "batch_norm convs");
  check_paths_agree(elementwise_between_convs(rng), 2, 0.1f, rng, "elementwise between convs");
}

TEST_CASE("patches: BatchNorm between the convs, sound by sampling, and ignoring its scale or shift shows") {
  Rng rng(31);
  const Network net = batch_norm_convs(rng);
  const int64_t batch = 2, samples = 300;
  const Tensor x = random_tensor(Shape{batch, 2, 7, 7}, rng, Device::cpu, 0.0f, 1.0f);
  const auto [lower0, upper0] = input_box(x, 0.05f);
  const Tensor spec = random_tensor(Shape{batch, 3, 3}, rng);
  NoGrad no_grad;
  for (Relaxation r : {Relaxation::crown, Relaxation::deepz, Relaxation::crown0}) {
    const std::string name = relaxation_name(r);
    CAPTURE(name);
    relax::set_patch_choice(relax::PatchChoice::always);
    relax::reset_backsub_chunk_stats();
    const Bounds b = compute_bounds(net, lower0, upper0, spec, r);
    CHECK(relax::backsub_chunk_stats().patch_chunks > 0);
    // The bounds of the net with half of each BatchNorm ignored are far from these, over ten times
    // the 1e-5 of the comparison with the dense walk above, which would so catch a patches path
    // that ignored it (measured: 1e-3 to 6e-3).
    for (BatchNormPart part : {BatchNormPart::scale, BatchNormPart::shift}) {
      const Bounds ignored = compute_bounds(without_batch_norm_part(net, part), lower0, upper0, spec, r);
      CHECK(largest_relative_difference(ignored.lower.to_vector(), b.lower.to_vector()) > 1e-4);
      CHECK(largest_relative_difference(ignored.upper.to_vector(), b.upper.to_vector()) > 1e-4);
    }
    relax::set_patch_choice(relax::PatchChoice::by_cost);
    // Points of the box (corners half the time): C z within the bounds.
    const std::vector<float> lo = lower0.to_vector(), hi = upper0.to_vector(), c = spec.to_vector();
    const std::vector<float> lower = b.lower.to_vector(), upper = b.upper.to_vector();
    std::vector<float> points(lo.size());
    for (int64_t s = 0; s < samples; ++s) {
      for (size_t j = 0; j < lo.size(); ++j) {
        const float t = s % 2 == 0 ? float(rng.uniform(0.0f, 1.0f) < 0.5f) : rng.uniform(0.0f, 1.0f);
        points[j] = lo[j] + t * (hi[j] - lo[j]);
      }
      const std::vector<float> z = net.forward(Tensor::from_vector(points, x.shape(), Device::cpu)).to_vector();
      for (int64_t n = 0; n < batch; ++n)
        for (int64_t k = 0; k < 3; ++k) {
          double value = 0;
          for (int64_t l = 0; l < 3; ++l) value += double(c[size_t((n * 3 + k) * 3 + l)]) * z[size_t(n * 3 + l)];
          const size_t i = size_t(n * 3 + k);
          CHECK(value >= double(lower[i]) - 1e-4 * (1.0 + std::fabs(value)));
          CHECK(value <= double(upper[i]) + 1e-4 * (1.0 + std::fabs(value)));
        }
    }
  }
}

TEST_CASE("patches: training-mode BatchNorm (the clean batch's statistics), bounds and gradients as the dense walk") {
  Rng rng(37);
  Network net = batch_norm_convs(rng);
  net.set_requires_grad(true);
  net.set_training(true);
  const Tensor x = random_tensor(Shape{3, 2, 7, 7}, rng, Device::cpu, 0.0f, 1.0f);
  const auto [lower0, upper0] = input_box(x, 0.05f);
  const Tensor spec = random_tensor(Shape{3, 3, 3}, rng);
  for (Relaxation r : {Relaxation::crown, Relaxation::deepz, Relaxation::hbox})
    for (size_t cap : {size_t(1) << 30, size_t(2) << 10}) {
      const std::string what = std::string(relaxation_name(r)) + (cap < 4096 ? " chunked" : "");
      BoundOptions options;
      options.memory_cap_bytes = cap;
      net.forward(x);  // the clean pass: the statistics the bounds read
      const Outcome dense = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::never);
      net.forward(x);
      const Outcome patches = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::always);
      CHECK(patches.patch_chunks > 0);
      check_close(patches.lower, dense.lower, what + " lower");
      check_close(patches.upper, dense.upper, what + " upper");
      for (size_t p = 0; p < dense.grads.size(); ++p)
        check_close(patches.grads[p], dense.grads[p], what + " gradient of parameter " + std::to_string(p));
    }
  net.set_training(false);
}

TEST_CASE("patches: checkpointed chunks pass the gradient on to BatchNorm's gamma and beta") {
  // The chunks' recomputation in backward reads the elementwise layers' scale and shift from the
  // tape (they are not among the stand-ins), and gamma's and beta's share through the intermediate
  // bounds must still arrive. Reference: the same bounds with every chunk on the tape.
  Rng rng(41);
  Network net = batch_norm_convs(rng);
  net.set_requires_grad(true);
  const Tensor x = random_tensor(Shape{2, 2, 7, 7}, rng, Device::cpu, 0.0f, 1.0f);
  const auto [lower0, upper0] = input_box(x, 0.05f);
  const Tensor spec = random_tensor(Shape{2, 3, 3}, rng);
  for (bool training : {false, true})
    for (relax::PatchChoice choice : {relax::PatchChoice::never, relax::PatchChoice::always}) {
      CAPTURE(training);
      CAPTURE(int(choice));
      net.set_training(training);
      BoundOptions whole, chunked;
      chunked.memory_cap_bytes = size_t(2) << 10;
      net.forward(x);
      const Outcome on_tape = bound(net, lower0, upper0, spec, Relaxation::crown, whole, choice);
      net.forward(x);
      const Outcome checkpointed = bound(net, lower0, upper0, spec, Relaxation::crown, chunked, choice);
      CHECK(on_tape.checkpointed_chunks == 0);
      CHECK(checkpointed.checkpointed_chunks > 0);
      for (size_t p = 0; p < on_tape.grads.size(); ++p)
        check_close(checkpointed.grads[p], on_tape.grads[p], "gradient of parameter " + std::to_string(p));
    }
  net.set_training(false);
}

TEST_CASE("patches: the CUDA backend (emulated without a GPU) runs the same path on its own kernels") {
  if (!cuda_available()) return;
  Rng rng(23);
  // Tiny (the emulator is slow): a padded conv, a strided padded conv, a dense layer; then with BatchNorms.
  Network plain(Shape{2, 5, 5}, {make_conv(2, 2, 3, 1, 1, rng), make_relu(), make_conv(2, 3, 3, 2, 1, rng),
                                 make_relu(), make_flatten(), make_linear(27, 2, rng)});
  Network batch_norm(Shape{2, 5, 5}, {make_conv(2, 2, 3, 1, 1, rng), random_batch_norm(2, rng), make_relu(),
                                      make_conv(2, 3, 3, 2, 1, rng), random_batch_norm(3, rng), make_relu(),
                                      make_flatten(), make_linear(27, 2, rng)});
  for (Network* net : {&plain, &batch_norm}) {
    net->to(Device::cuda);
    net->set_requires_grad(true);
    const Tensor x = Tensor::from_vector(random_values(50, rng, 0.0f, 1.0f), Shape{1, 2, 5, 5}, Device::cuda);
    const auto [lower0, upper0] = input_box(x, 0.1f);
    const Tensor spec = Tensor::from_vector(random_values(2 * 2, rng), Shape{1, 2, 2}, Device::cuda);
    const Relaxation r = Relaxation::crown;
    BoundOptions options;
    const Outcome dense = bound(*net, lower0, upper0, spec, r, options, relax::PatchChoice::never);
    const Outcome patches = bound(*net, lower0, upper0, spec, r, options, relax::PatchChoice::always);
    CHECK(patches.patch_chunks > 0);
    const std::string what = std::string("cuda ") + relaxation_name(r) + (net == &batch_norm ? " batch_norm" : "");
    check_close(patches.lower, dense.lower, what + " lower");
    check_close(patches.upper, dense.upper, what + " upper");
    for (size_t p = 0; p < dense.grads.size(); ++p)
      check_close(patches.grads[p], dense.grads[p], what + " gradient of parameter " + std::to_string(p));
  }
}

TEST_CASE("patches: taken by cost on a conv after conv + ReLU, not where dense layers lie below") {
  Rng rng(3);
  Network net = three_convs(rng);
  // Level 3 (conv 2's output): windows 3*3*3 after ReLU 1 and 2*5*5 at the input.
  const Tensor x = Tensor::from_vector(random_values(2 * 98, rng, 0.0f, 1.0f), Shape{2, 2, 7, 7}, Device::cpu);
  const auto [lower0, upper0] = input_box(x, 0.05f);
  relax::BacksubContext c = relax::make_backsub_context(net, lower0, upper0, kern::ReluRule::crown,
                                                        relax::BacksubMode::bounds_stacked, size_t(1) << 30);
  c.relu_lower[1] = c.relu_upper[1] = Tensor::zeros(Shape{2, 3 * 49}, Device::cpu);
  CHECK(relax::patch_window_sum(c, 3) == 3 * 3 * 3 + 2 * 5 * 5);
  CHECK(relax::patch_window_sum(c, 1) == 0);  // one conv: the forward pass's business
  CHECK(relax::patch_window_sum(c, 8) == 0);  // a linear layer below
  c.sound = true;
  CHECK(relax::patch_window_sum(c, 3) == 0);  // sound mode: the dense walk

  // With BatchNorm: level 5 (BatchNorm 2's output, over conv 2's): the same windows, and the
  // BatchNorm under ReLU 1 takes its own 3*3*3 coefficients.
  Network bn = batch_norm_convs(rng);
  relax::BacksubContext d = relax::make_backsub_context(bn, lower0, upper0, kern::ReluRule::crown,
                                                        relax::BacksubMode::bounds_stacked, size_t(1) << 30);
  d.relu_lower[2] = d.relu_upper[2] = Tensor::zeros(Shape{2, 3 * 49}, Device::cpu);
  CHECK(relax::patch_window_sum(d, 5) == 2 * 3 * 3 * 3 + 2 * 5 * 5);
  CHECK(relax::patch_window_sum(d, 4) == 2 * 3 * 3 * 3 + 2 * 5 * 5);  // conv 2's own output
  CHECK(relax::patch_window_sum(d, 2) == 0);                          // conv + BatchNorm: one affine map
}

}  // namespace
}  // namespace cte::test
