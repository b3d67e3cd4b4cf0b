// BoundOptions::sparse_intermediate (relaxations/backsub.cpp, hbox.cpp): the
// backsubstitution relaxations and hBox bound only the neurons that cheap
// interval bounds leave unstable. Checked against the dense path (sparse_intermediate
// false), which backsubstitutes every neuron, on random nets and on a net
// briefly trained with Box (most ReLUs stable there):
//  - where both classify every ReLU alike, the same bounds and the same
//    gradients (1e-6 relative);
//  - where the cheap bounds prove a neuron stable that the dense
//    backsubstitution does not (interval bounds are not always looser), the
//    sparse path relaxes it exactly: its bounds are then no looser than the
//    dense ones on these nets (exactness at a neuron does not guarantee that
//    in general: later adaptive slopes can move), and sound on sampled points.
// The early stops (BoundOptions::sparse_early_stops: the interval
// classification refined by walks down to the ReLU outputs below) are held to
// the same properties, take rows only away, and do take some on the random
// FC nets (their third ReLU layer has a stop).
// Every ReLU layer's input bounds are also checked directly on sampled inputs
// (dense, sparse, early stops; fast and sound): a stable pair's kept bounds
// can be wrong without changing the output (a dead neuron's upper bound set
// too low), which the output tests cannot see.
// Whether the classifications agree is read from relu_layer_stats: the
// sparse path's stable set contains the dense one's layer by layer as long as
// they agreed below, so equal unstable counts at every layer mean agreement.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/dispatch.h"
#include "engine/nn.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/tape.h"
#include "kernels/gpu_runtime.h"
#include "relaxations/layers/bound_rules.h"
#include "relaxations/relax_ops.h"
#include "relaxations/relaxations.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

const Relaxation kSparseRelaxations[] = {Relaxation::crown, Relaxation::crown0, Relaxation::deepz, Relaxation::hbox,
                                         Relaxation::hbox_fresh};

// normalize, two convs (a stride and a padding), two dense layers.
Network conv_net(Rng& rng) {
  return Network(Shape{1, 6, 6}, {make_normalize({0.3f}, {0.7f}), make_conv(1, 3, 3, 1, 1, rng), make_relu(),
                                  make_conv(3, 4, 3, 2, 1, rng), make_relu(), make_flatten(),
                                  make_linear(36, 12, rng), make_relu(), make_linear(12, 4, rng)});
}

struct Outcome {
  std::vector<float> lower, upper;
  std::vector<std::vector<float>> grads;  // per parameter, of sum(upper) - sum(lower)
  std::vector<ReluLayerStats> stats;
};

Outcome bound(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec, Relaxation r,
              bool sparse, bool sound, bool early_stops = false) {
  BoundOptions options;
  options.sparse_intermediate = sparse;
  options.sparse_early_stops = early_stops;
  options.sparse_crown0 = true;  // its disagreements are many, but the same properties must hold
  options.sound = sound;
  for (const Tensor& p : net.parameters()) Tensor(p).zero_grad();
  reset_relu_layer_stats();
  const Bounds b = compute_bounds(net, lower0, upper0, spec, r, options);
  Outcome out;
  out.stats = relu_layer_stats();
  out.lower = b.lower.to_vector();
  out.upper = b.upper.to_vector();
  if (!sound) {
    backward(ops::sub(ops::sum(b.upper), ops::sum(b.lower)));
    for (const Tensor& p : net.parameters()) out.grads.push_back(p.grad().to_vector());
  }
  return out;
}

bool same_classification(const Outcome& a, const Outcome& b) {
  if (a.stats.size() != b.stats.size()) return false;
  for (size_t i = 0; i < a.stats.size(); ++i)
    if (a.stats[i].unstable != b.stats[i].unstable) return false;
  return true;
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what,
                 double tolerance = 1e-6) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) / (1.0 + std::fabs(double(want[i]))));
  CHECK_MESSAGE(worst <= tolerance, what << ": largest relative difference " << worst);
}

// lower0, upper0 and the samples x in it: z = C f(x) within [lower, upper].
void check_sound_by_sampling(const Network& net, const std::vector<float>& lower0, const std::vector<float>& upper0,
                             const std::vector<float>& spec, int64_t batch, int64_t rows, const Outcome& o,
                             Rng& rng, const std::string& what) {
  std::vector<float> x(lower0.size());
  int violations = 0;
  for (int trial = 0; trial < 50; ++trial) {
    for (size_t k = 0; k < x.size(); ++k)
      x[k] = trial == 0 ? lower0[k] : trial == 1 ? upper0[k] : rng.uniform(lower0[k], upper0[k]);
    const std::vector<float> z = net.forward(Tensor::from_vector(x, with_batch(net.input_shape(), batch), Device::cpu)).to_vector();
    const int64_t logits = int64_t(z.size()) / batch;
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t k = 0; k < rows; ++k) {
        double value = 0;
        for (int64_t j = 0; j < logits; ++j)
          value += double(spec[size_t((s * rows + k) * logits + j)]) * double(z[size_t(s * logits + j)]);
        const size_t at = size_t(s * rows + k);
        const double slack = 1e-5 * (1.0 + std::fabs(value));
        violations += value < o.lower[at] - slack || value > o.upper[at] + slack;
      }
  }
  CHECK_MESSAGE(violations == 0, what << ": " << violations << " sampled values outside the bounds");
}

// Boxes of half-width eps around random centres in [0, 1] (unclipped), as values and as
// (N, input...) tensors.
struct RandomBox {
  std::vector<float> lo, hi;
  Tensor lower0, upper0;
};
RandomBox random_box(const Network& net, int64_t batch, float eps, Rng& rng) {
  const std::vector<float> centre = random_values(batch * net.input_shape().numel(), rng, 0.0f, 1.0f);
  RandomBox box{centre, centre, {}, {}};
  for (size_t k = 0; k < centre.size(); ++k) box.lo[k] -= eps, box.hi[k] += eps;
  box.lower0 = Tensor::from_vector(box.lo, with_batch(net.input_shape(), batch), Device::cpu);
  box.upper0 = Tensor::from_vector(box.hi, with_batch(net.input_shape(), batch), Device::cpu);
  return box;
}

// Rows of the last ReLU layer that early stops took off the interval classification's, over all calls.
int64_t early_stop_rows_saved = 0;

// Returns how many (relaxation, sound, early stops or not) cases had the dense path's classification.
// Early stops (BoundOptions::sparse_early_stops) are held to the same properties as the interval
// classification alone.
int compare_paths(const Network& net, int64_t batch, float eps, Rng& rng, const std::string& label) {
  const int64_t logits = net.layers().back().out_shape.numel();
  const auto [lo, hi, lower0, upper0] = random_box(net, batch, eps, rng);
  const std::vector<float> spec_values = random_values(batch * 3 * logits, rng);
  const Tensor spec = Tensor::from_vector(spec_values, Shape{batch, 3, logits}, Device::cpu);
  int agreeing = 0;
  for (Relaxation r : kSparseRelaxations)
    for (bool sound : {false, true}) {
      const Outcome dense = bound(net, lower0, upper0, spec, r, false, sound);
      const Outcome interval = bound(net, lower0, upper0, spec, r, true, sound);
      const Outcome stopped = bound(net, lower0, upper0, spec, r, true, sound, true);
      // Early stops take rows away from the interval classification (none in
      // sound mode or for hbox's generator norms, which skip them; hbox-fresh
      // bounds affine forms and takes them). Guaranteed at the first layer
      // they refine; above it a neuron relaxed exactly below may move the
      // interval bounds either way, so there it is a property of these nets.
      for (size_t i = 0; i < stopped.stats.size(); ++i) {
        CHECK(stopped.stats[i].backsubstituted <= interval.stats[i].backsubstituted);
        if (sound || r == Relaxation::hbox)
          CHECK(stopped.stats[i].backsubstituted == interval.stats[i].backsubstituted);
      }
      if (!interval.stats.empty())  // signed: a stopped run with more rows fails the check above, not a wrap
        early_stop_rows_saved += int64_t(interval.stats.back().backsubstituted) -
                                 int64_t(stopped.stats.back().backsubstituted);
      for (const Outcome* sparse_outcome : {&interval, &stopped}) {
      const Outcome& sparse = *sparse_outcome;
      const std::string what = label + " " + relaxation_name(r) + (sound ? " (sound)" : "") +
                               (sparse_outcome == &stopped ? " early stops" : "");
      REQUIRE(sparse.stats.size() == dense.stats.size());
      // hBox's interval lies inside Box's at every layer, so the Box bounds
      // never call a neuron stable that hBox leaves unstable: always the same.
      if (r == Relaxation::hbox) CHECK(same_classification(sparse, dense));
      // The sparse path backsubstitutes fewer rows (or as many) as the dense one.
      for (size_t i = 0; i < sparse.stats.size(); ++i)
        CHECK(sparse.stats[i].backsubstituted <= dense.stats[i].backsubstituted);
      check_sound_by_sampling(net, lo, hi, spec_values, batch, 3, sparse, rng, what);
      if (same_classification(sparse, dense) && !sound) {
        ++agreeing;
        check_close(sparse.lower, dense.lower, what + " lower");
        check_close(sparse.upper, dense.upper, what + " upper");
        for (size_t p = 0; p < dense.grads.size(); ++p)
          check_close(sparse.grads[p], dense.grads[p], what + " gradient of parameter " + std::to_string(p));
        continue;
      }
      // Sound mode: the stable neurons' (cheap) upper bounds enter the magnitude
      // bounds, so the slack may differ by a few roundoffs either way.
      const double tolerance = sound ? 1e-5 : 1e-6;
      int looser = 0;
      for (size_t k = 0; k < dense.lower.size(); ++k) {
        looser += sparse.lower[k] < dense.lower[k] - tolerance * (1.0 + std::fabs(dense.lower[k]));
        looser += sparse.upper[k] > dense.upper[k] + tolerance * (1.0 + std::fabs(dense.upper[k]));
      }
      CHECK_MESSAGE(looser == 0, what << ": " << looser << " bounds looser than the dense path's");
      }
    }
  return agreeing;
}

// A few Adam steps on the Box bound of the margins: most ReLUs become stable.
void box_train(Network& net, Rng& rng, int steps, float eps) {
  const int64_t batch = 16, n0 = net.input_shape().numel();
  const int classes = int(net.layers().back().out_shape.numel());
  net.set_requires_grad(true);
  Adam adam(net.parameters(), 0.01f);
  for (int step = 0; step < steps; ++step) {
    const std::vector<float> x = random_values(batch * n0, rng, 0.0f, 1.0f);
    std::vector<int> labels;
    for (int64_t s = 0; s < batch; ++s) labels.push_back(x[size_t(s * n0)] > 0.5f ? 1 : 0);
    const auto [lower0, upper0] = input_box(Tensor::from_vector(x, with_batch(net.input_shape(), batch), Device::cpu), eps);
    const Bounds b = compute_bounds(net, lower0, upper0, margin_spec(labels, classes, Device::cpu), Relaxation::box);
    std::vector<float> label_values(labels.begin(), labels.end());
    const Tensor loss = ops::mean(ops::softmax_cross_entropy(worst_case_logits(b, labels, classes),
                                                             Tensor::from_vector(label_values, Shape{batch}, Device::cpu)));
    adam.zero_grad();
    backward(loss);
    adam.step();
  }
}

TEST_CASE("sparse intermediate bounds: the dense path's bounds and gradients on random nets") {
  early_stop_rows_saved = 0;
  for (relax::RowPlanChoice choice : {relax::RowPlanChoice::shared, relax::RowPlanChoice::per_sample}) {
    const bool per_sample = choice == relax::RowPlanChoice::per_sample;
    CAPTURE(per_sample);
    relax::set_row_plan_choice(choice);
    relax::reset_backsub_chunk_stats();
    Rng rng(31);
    int agreeing = 0;
    for (int trial = 0; trial < 2; ++trial) {
      Network fc = dense_net({5, 16, 16, 12, 4}, rng);
      fc.set_requires_grad(true);
      agreeing += compare_paths(fc, 4, 0.05f, rng, "fc trial " + std::to_string(trial));
    }
    Network conv = conv_net(rng);
    conv.set_requires_grad(true);
    agreeing += compare_paths(conv, 3, 0.05f, rng, "conv");
    CHECK(agreeing >= 6);  // most cases agree: the equality checks above really ran
    const relax::BacksubChunkStats stats = relax::backsub_chunk_stats();
    CHECK((per_sample ? stats.sparse_per_sample_chunks : stats.sparse_shared_chunks) > 0);  // the plan ran
  }
  relax::set_row_plan_choice(relax::RowPlanChoice::by_cost);
  // The FC nets' third ReLU layer has a stop below the interval step's: the early stops prove
  // some of the interval classification's rows stable there.
  MESSAGE("random nets: early stops took " << early_stop_rows_saved << " rows of the last ReLU layer off");
  CHECK(early_stop_rows_saved > 0);
}

TEST_CASE("sparse intermediate bounds: a Box-trained net, most neurons stable, few rows backsubstituted") {
  Rng rng(5);
  Network net = dense_net({6, 16, 16, 16, 16, 16, 2}, rng);
  box_train(net, rng, 40, 0.02f);
  int agreeing = 0;
  for (float eps : {0.02f, 0.05f})
    agreeing += compare_paths(net, 16, eps, rng, "box-trained eps " + std::to_string(eps));
  CHECK(agreeing >= 2);
  // Stable ReLUs dominate, and the sparse path skips their rows.
  const int64_t batch = 8;
  const Tensor x = Tensor::from_vector(random_values(batch * 6, rng, 0.0f, 1.0f), Shape{batch, 6}, Device::cpu);
  const auto [lower0, upper0] = input_box(x, 0.02f);
  for (Relaxation r : {Relaxation::crown, Relaxation::hbox}) {
    CAPTURE(std::string(relaxation_name(r)));
    reset_relu_layer_stats();
    BoundOptions options;
    compute_bounds(net, lower0, upper0, Tensor(), r, options);
    uint64_t pairs = 0, backsubstituted = 0;
    for (const ReluLayerStats& s : relu_layer_stats()) pairs += s.pairs, backsubstituted += s.backsubstituted;
    MESSAGE("box-trained net, " << std::string(relaxation_name(r)) << ": " << backsubstituted << " of " << pairs
                                << " rows backsubstituted");
    CHECK(pairs == 5 * 16 * batch);
    CHECK(backsubstituted * 2 < pairs);
  }
}

// The row plan is a performance choice (plan_rows: by cost, which differs between the CPU and
// a GPU), and the batch is whatever the loader drew: neither may change a sample's bounds.
TEST_CASE("sparse intermediate bounds: a sample's bounds depend neither on the row plan nor on its batch") {
  Rng rng(19);
  const int64_t batch = 6;
  std::vector<Network> nets;
  nets.push_back(dense_net({5, 16, 16, 12, 4}, rng));
  nets.push_back(conv_net(rng));
  for (const Network& net : nets) {
    const int64_t n0 = net.input_shape().numel();
    const Tensor x = Tensor::from_vector(random_values(batch * n0, rng, 0.0f, 1.0f), with_batch(net.input_shape(), batch),
                                         Device::cpu);
    const auto [lower0, upper0] = input_box(x, 0.05f);
    const Tensor first_lower = ops::slice_batch(lower0, 0, 1), first_upper = ops::slice_batch(upper0, 0, 1);
    for (Relaxation r : {Relaxation::crown, Relaxation::deepz, Relaxation::crown0}) {
      CAPTURE(std::string(relaxation_name(r)));
      BoundOptions options;
      options.sparse_crown0 = true;
      std::vector<std::vector<float>> lower, upper;  // shared plan, per-sample plan, the first sample alone
      for (int run = 0; run < 3; ++run) {
        relax::set_row_plan_choice(run == 1 ? relax::RowPlanChoice::per_sample : relax::RowPlanChoice::shared);
        const Bounds b = run < 2 ? compute_bounds(net, lower0, upper0, Tensor(), r, options)
                                 : compute_bounds(net, first_lower, first_upper, Tensor(), r, options);
        lower.push_back(b.lower.to_vector());
        upper.push_back(b.upper.to_vector());
      }
      relax::set_row_plan_choice(relax::RowPlanChoice::by_cost);
      check_close(lower[1], lower[0], "per-sample plan against shared, lower");
      check_close(upper[1], upper[0], "per-sample plan against shared, upper");
      const size_t logits = lower[2].size();
      check_close(lower[2], std::vector<float>(lower[0].begin(), lower[0].begin() + int64_t(logits)),
                  "the first sample alone against in its batch, lower");
      check_close(upper[2], std::vector<float>(upper[0].begin(), upper[0].begin() + int64_t(logits)),
                  "the first sample alone against in its batch, upper");
    }
  }
}

// Every ReLU layer's input bounds left in the context by backsub_intermediate_bounds, checked
// directly on sampled inputs (the box's corners and random points, each ReLU input computed by
// running the net's prefix up to that layer): the backsubstituted pairs' bounds, and the bounds
// the sparse path keeps for the pairs it proves stable without a walk (interval bounds, and
// with early stops the walks to the ReLU outputs below). The output-bound tests above see
// those only through what they change in the output.
int check_intermediate_by_sampling(const Network& net, int64_t batch, float eps, Rng& rng, const std::string& label) {
  const std::vector<Layer>& layers = net.layers();
  const Shape input_shape = with_batch(net.input_shape(), batch);
  const auto [lo, hi, lower0, upper0] = random_box(net, batch, eps, rng);
  // The sampled inputs, and each ReLU layer's inputs at them (flattened per sample).
  std::vector<std::vector<float>> samples;
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<float> x(lo.size());
    for (size_t k = 0; k < x.size(); ++k) x[k] = trial == 0 ? lo[k] : trial == 1 ? hi[k] : rng.uniform(lo[k], hi[k]);
    samples.push_back(std::move(x));
  }
  std::vector<std::vector<std::vector<float>>> relu_inputs(layers.size());  // [layer][trial]
  for (size_t i = 0; i < layers.size(); ++i) {
    if (relax::bound_rules(layers[i]).role != relax::LayerRole::activation) continue;
    const Network prefix(net.input_shape(), std::vector<Layer>(layers.begin(), layers.begin() + int64_t(i)));
    for (const std::vector<float>& x : samples)
      relu_inputs[i].push_back(prefix.forward(Tensor::from_vector(x, input_shape, Device::cpu)).to_vector());
  }
  int changed_by_stops = 0;  // pairs whose bounds the early stops changed (fast mode only: see backsub.cpp)
  for (Relaxation r : {Relaxation::crown, Relaxation::crown0, Relaxation::deepz})
    for (bool sound : {false, true}) {
      std::vector<std::vector<float>> sparse_bounds(layers.size());  // [layer]: l then u of the sparse path
      for (int path = 0; path < 3; ++path) {  // dense; sparse; sparse with early stops
        BoundOptions options;
        options.sound = sound;
        options.sparse_intermediate = path > 0;
        options.sparse_early_stops = path == 2;
        options.sparse_crown0 = true;
        const std::string what = label + " " + relaxation_name(r) + (sound ? " (sound)" : "") +
                                 (path == 0 ? " dense" : path == 1 ? " sparse" : " early stops");
        const kern::ReluRule rule = relaxation_info(r).relu_rule;
        NoGrad no_grad;
        relax::BacksubContext ctx = relax::make_backsub_context(
            net, lower0, upper0, rule,
            kern::relu_rule_symmetric(rule) ? relax::BacksubMode::bounds_symmetric : relax::BacksubMode::bounds_stacked,
            options.memory_cap_bytes, sound);
        relax::backsub_intermediate_bounds(ctx, lower0, upper0, options);
        int violations = 0;
        for (size_t i = 0; i < layers.size(); ++i) {
          if (relu_inputs[i].empty()) continue;
          const std::vector<float> l = ctx.relu_lower[i].to_vector(), u = ctx.relu_upper[i].to_vector();
          for (const std::vector<float>& z : relu_inputs[i]) {
            REQUIRE(z.size() == l.size());
            for (size_t k = 0; k < z.size(); ++k) {
              const double slack = 1e-5 * (1.0 + std::fabs(double(z[k])));  // the float forward's own rounding
              violations += double(z[k]) < double(l[k]) - slack || double(z[k]) > double(u[k]) + slack;
            }
          }
          std::vector<float>& sparse = sparse_bounds[i];
          if (path == 1) {
            sparse = l;
            sparse.insert(sparse.end(), u.begin(), u.end());
          } else if (path == 2) {
            for (size_t k = 0; k < l.size(); ++k) changed_by_stops += l[k] != sparse[k] || u[k] != sparse[l.size() + k];
          }
        }
        CHECK_MESSAGE(violations == 0, what << ": " << violations << " sampled ReLU inputs outside their bounds");
      }
    }
  return changed_by_stops;
}

TEST_CASE("intermediate bounds: every sampled ReLU input inside them, dense, sparse and with early stops") {
  Rng rng(77);
  int changed_by_stops = 0;
  for (int trial = 0; trial < 2; ++trial)
    changed_by_stops += check_intermediate_by_sampling(dense_net({5, 16, 16, 12, 4}, rng), 4, 0.05f, rng,
                                                       "fc trial " + std::to_string(trial));
  changed_by_stops += check_intermediate_by_sampling(conv_net(rng), 3, 0.05f, rng, "conv");
  Network trained = dense_net({6, 16, 16, 16, 16, 16, 2}, rng);
  box_train(trained, rng, 40, 0.02f);
  changed_by_stops += check_intermediate_by_sampling(trained, 16, 0.05f, rng, "box-trained");
  // The stops' own bounds were among those checked: they changed some pairs' bounds.
  MESSAGE("pairs whose bounds the early stops changed: " << changed_by_stops);
  CHECK(changed_by_stops > 0);
}

// backsub_linear's live columns (relax_ops.h): under a ReLU step an affine
// step sums and differentiates over the columns that step reads only. The
// bounds and every parameter's gradient must be the dense products' (live
// columns off), on a Box-trained net where most neurons are dead (the gathered
// products) and on random nets (most columns live: the masked dense ones),
// for every relaxation that walks through ReLUs. The kernel profile shows the
// live products really ran.
// The rule counted, written out here: unstable unless l >= 0 (identity) or u <= 0 (dead), so NaN is unstable.
uint64_t unstable_by_hand(const std::vector<float>& l, const std::vector<float>& u) {
  uint64_t n = 0;
  for (size_t k = 0; k < l.size(); ++k) n += !(l[k] >= 0.0f) && !(u[k] <= 0.0f);
  return n;
}

TEST_CASE("relu statistics: GPU bounds counted on the device, without a round trip, as by hand and exact past 2^24") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  const size_t layer = 7;
  auto unstable_of_layer = [&] {
    for (const ReluLayerStats& s : relu_layer_stats())
      if (s.layer == layer) return s;
    return ReluLayerStats{};
  };
  // Every case: identity, dead, unstable, the ties l = u = 0 and -0, NaN in either bound.
  Rng rng(71);
  std::vector<float> l = random_values(997, rng, -1.0f, 1.0f), u(l.size());
  for (size_t k = 0; k < l.size(); ++k) u[k] = l[k] + rng.uniform(0.0f, 1.0f);
  l[0] = 0.0f, u[0] = 0.0f;
  l[1] = -0.0f, u[1] = 0.0f;
  l[2] = -1.0f, u[2] = 0.0f;
  l[3] = NAN, u[3] = 1.0f;
  l[4] = -1.0f, u[4] = NAN;
  l[5] = NAN, u[5] = -1.0f;
  const uint64_t want = unstable_by_hand(l, u);
  REQUIRE(want > 100);
  REQUIRE(want < l.size() - 100);
  for (Device device : devices()) {
    CAPTURE(device_name(device));
    reset_relu_layer_stats();
    relax::BacksubResult r;
    r.lower = Tensor::from_vector(l, Shape{1, int64_t(l.size())}, device);
    r.upper = Tensor::from_vector(u, Shape{1, int64_t(u.size())}, device);
    r.backsubstituted = 5;
    const gpu::HostSyncCounters before = gpu::host_sync_counters();
    relax::record_relu_layer(layer, r);
    relax::record_relu_layer(layer, r);
    const gpu::HostSyncCounters after = gpu::host_sync_counters();
    if (device == Device::cuda) {
      CHECK(after.device_to_host - before.device_to_host == 0);
      CHECK(after.synchronizes - before.synchronizes == 0);
    }
    const ReluLayerStats s = unstable_of_layer();
    CHECK(s.pairs == 2 * l.size());
    CHECK(s.unstable == 2 * want);
    CHECK(s.backsubstituted == 10);
  }
  // Past 2^24, where a float running sum would be off: 9 calls of 2^21 pairs, 3 of them stable.
  const int64_t n = int64_t(1) << 21;
  std::vector<float> big_lower(size_t(n), -1.0f), big_upper(size_t(n), 1.0f);
  big_lower[10] = big_lower[1000] = big_lower[n - 1] = 0.5f;
  relax::BacksubResult big;
  big.lower = Tensor::from_vector(big_lower, Shape{4, n / 4}, Device::cuda);
  big.upper = Tensor::from_vector(big_upper, Shape{4, n / 4}, Device::cuda);
  reset_relu_layer_stats();
  const uint64_t per_call = uint64_t(n) - 3, calls = 9;
  float float_sum = 0.0f;
  for (uint64_t c = 0; c < calls; ++c) {
    relax::record_relu_layer(layer, big);
    float_sum += float(per_call);
  }
  CHECK(uint64_t(float_sum) != calls * per_call);  // the test would not catch a plain float sum otherwise
  CHECK(unstable_of_layer().unstable == calls * per_call);
  CHECK(unstable_of_layer().pairs == calls * uint64_t(n));
  // A reset zeroes the device counters in place; a resumed epoch's counts come back as they were saved.
  reset_relu_layer_stats();
  CHECK(relu_layer_stats().empty());
  relax::record_relu_layer(layer, big);
  CHECK(unstable_of_layer().unstable == per_call);
  set_relu_layer_stats({ReluLayerStats{layer, 100, 40, 60}});
  const ReluLayerStats restored = unstable_of_layer();
  CHECK(restored.pairs == 100);
  CHECK(restored.unstable == 40);
  CHECK(restored.backsubstituted == 60);
  reset_relu_layer_stats();
}

TEST_CASE("relu statistics: on real GPU bounds the device's count is the host's, for every relaxation") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): skipped");
    return;
  }
  Rng rng(73);
  Network net = conv_net(rng);
  net.to(Device::cuda);
  const LabelledBox box = random_labelled_box(net, 3, 0.05f, rng, Device::cuda);
  const Tensor lower0 = ops::reshape(box.lower, with_batch(net.input_shape(), 3));
  const Tensor upper0 = ops::reshape(box.upper, with_batch(net.input_shape(), 3));
  for (Relaxation r : kSparseRelaxations) {
    CAPTURE(std::string(relaxation_name(r)));
    for (bool sparse : {false, true}) {
      CAPTURE(sparse);
      std::vector<std::vector<ReluLayerStats>> counted;
      for (bool on_device : {true, false}) {
        relax::set_relu_counts_on_device(on_device);
        BoundOptions options;
        options.sparse_intermediate = sparse;
        reset_relu_layer_stats();
        compute_bounds(net, lower0, upper0, box.spec, r, options);
        counted.push_back(relu_layer_stats());
      }
      relax::set_relu_counts_on_device(true);
      REQUIRE_FALSE(counted[1].empty());  // every one of them records its ReLU layers, on a GPU too
      REQUIRE(counted[0].size() == counted[1].size());
      uint64_t unstable = 0;
      for (size_t i = 0; i < counted[0].size(); ++i) {
        CHECK(counted[0][i].layer == counted[1][i].layer);
        CHECK(counted[0][i].pairs == counted[1][i].pairs);
        CHECK(counted[0][i].unstable == counted[1][i].unstable);
        unstable += counted[1][i].unstable;
      }
      CHECK(unstable > 0);  // the comparison counted something
    }
  }
  reset_relu_layer_stats();
}

TEST_CASE("live columns: the dense products' bounds and gradients") {
  Rng rng(12);
  Network trained = dense_net({6, 24, 24, 24, 3}, rng);
  box_train(trained, rng, 60, 0.05f);
  Network random_net = dense_net({6, 24, 24, 24, 3}, rng);
  random_net.set_requires_grad(true);
  const int64_t batch = 6;
  const Tensor x = Tensor::from_vector(random_values(batch * 6, rng, 0.0f, 1.0f), Shape{batch, 6}, Device::cpu);
  const std::vector<float> spec_values = random_values(batch * 2 * 3, rng);
  const Tensor spec = Tensor::from_vector(spec_values, Shape{batch, 2, 3}, Device::cpu);
  const Relaxation relaxations[] = {Relaxation::crown,  Relaxation::crown0,    Relaxation::crown0_unstable,
                                    Relaxation::deepz,  Relaxation::hbox,      Relaxation::hbox_fresh,
                                    Relaxation::crown_ibp};
  for (Network* net : {&trained, &random_net})
    for (float eps : {0.02f, 0.2f})
      for (Relaxation r : relaxations) {
        const std::string what = std::string(net == &trained ? "box-trained" : "random") + " eps " +
                                 std::to_string(eps) + " " + relaxation_name(r);
        CAPTURE(what);
        const auto [lower0, upper0] = input_box(x, eps);
        Outcome runs[2];
        int64_t live_products = 0;
        for (int live = 0; live < 2; ++live) {
          // On again however the run ends (a throw included), for the tests after this one.
          struct LiveColumnsSetting {
            explicit LiveColumnsSetting(bool on) { relax::set_backsub_live_columns(on); }
            ~LiveColumnsSetting() { relax::set_backsub_live_columns(true); }
          } setting(live == 1);
          KernelProfile profile;
          runs[live] = bound(*net, lower0, upper0, spec, r, true, false);
          for (const KernelProfile::Entry& e : profile.entries())
            if (e.stem.rfind("backsub_linear_live", 0) == 0) live_products += e.calls;
          if (live == 0) CHECK(live_products == 0);
        }
        CHECK(live_products > 0);
        // The products sum in other orders (per sample, over live columns): float32's roundoff apart.
        check_close(runs[1].lower, runs[0].lower, what + " lower", 1e-5);
        check_close(runs[1].upper, runs[0].upper, what + " upper", 1e-5);
        for (size_t p = 0; p < runs[0].grads.size(); ++p)
          check_close(runs[1].grads[p], runs[0].grads[p], what + " gradient of parameter " + std::to_string(p), 1e-5);
      }
}

}  // namespace
}  // namespace cte::test
