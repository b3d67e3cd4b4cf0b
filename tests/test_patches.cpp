// The patches path of the intermediate bounds (relaxations/backsub_patches.cpp):
// a conv layer's outputs bounded with per-position windows instead of dense
// rows. The dense walk (PatchChoice::never) is the independent reference: on
// random conv nets with strides, paddings, several channels and up to three
// convs under one ReLU, both paths give the same bounds and the same
// gradients (1e-5 relative) for every backsubstitution relaxation, on the
// dense and the sparse intermediate paths, whole or chunked under a small
// memory cap; on the CUDA backend too (the emulator here). (Soundness by
// sampling is the dense path's tests' business.)
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

void check_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) / (1.0 + std::fabs(double(want[i]))));
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

TEST_CASE("patches: the dense walk's intermediate bounds and gradients on random conv nets") {
  Rng rng(19);
  Network a = three_convs(rng);
  a.set_requires_grad(true);
  CHECK(compare_paths(a, 3, 0.05f, rng, "three convs") > 0);
  Network b = padded_convs(rng);
  b.set_requires_grad(true);
  CHECK(compare_paths(b, 2, 0.1f, rng, "padded convs") > 0);
}

TEST_CASE("patches: the CUDA backend (emulated without a GPU) runs the same path on its own kernels") {
  if (!cuda_available()) return;
  Rng rng(23);
  // Tiny (the emulator is slow): a padded conv, a strided padded conv, a dense layer.
  Network net(Shape{2, 5, 5}, {make_conv(2, 2, 3, 1, 1, rng), make_relu(), make_conv(2, 3, 3, 2, 1, rng), make_relu(),
                               make_flatten(), make_linear(27, 2, rng)});
  net.to(Device::cuda);
  net.set_requires_grad(true);
  const Tensor x = Tensor::from_vector(random_values(50, rng, 0.0f, 1.0f), Shape{1, 2, 5, 5}, Device::cuda);
  const auto [lower0, upper0] = input_box(x, 0.1f);
  const Tensor spec = Tensor::from_vector(random_values(2 * 2, rng), Shape{1, 2, 2}, Device::cuda);
  const Relaxation r = Relaxation::crown;
  BoundOptions options;
  const Outcome dense = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::never);
  const Outcome patches = bound(net, lower0, upper0, spec, r, options, relax::PatchChoice::always);
  CHECK(patches.patch_chunks > 0);
  const std::string what = std::string("cuda ") + relaxation_name(r);
  check_close(patches.lower, dense.lower, what + " lower");
  check_close(patches.upper, dense.upper, what + " upper");
  for (size_t p = 0; p < dense.grads.size(); ++p)
    check_close(patches.grads[p], dense.grads[p], what + " gradient of parameter " + std::to_string(p));
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
}

}  // namespace
}  // namespace cte::test
