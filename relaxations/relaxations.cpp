// The public entry points of relaxations.h: relaxation names, compute_bounds
// (argument and network checks, then dispatch to box.cpp, hbox.cpp or
// backsub.cpp), the margin specification, the input box of an L-inf ball,
// the certification test and the worst-case logits of the certified loss.
#include "relaxations/relaxations.h"

#include <cmath>
#include <limits>
#include <string>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/lp.h"
#include "relaxations/relax_ops.h"

namespace cte {
namespace {

[[noreturn]] void fail_layer(const Network& net, size_t index, const std::string& what) {
  fail("bounds", relax::layer_label(net, index) + ": " + what);
}

// True when every element of t is finite (a NaN or inf poisons sum(t * 0)).
bool all_finite(const Tensor& t) {
  if (t.numel() == 0) return true;
  NoGrad no_grad;
  if (t.device() == Device::cpu) {
    const float* p = t.data();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i])) return false;
    return true;
  }
  return std::isfinite(ops::sum(ops::scale(t, 0.0f)).item());
}

// A tensor whose finiteness check_network checks, with what to call it.
struct FiniteCheck {
  size_t layer;
  std::string what;
  const Tensor* tensor;
};

// Every checked tensor is finite. On a GPU one combined sum(t * 0) over all of
// them costs a single device-to-host copy per bound computation (one per
// tensor would stall a training step on every parameter); only when it is not
// finite does the per-tensor search for the culprit run.
void check_finite(const Network& net, const std::vector<FiniteCheck>& checks, Device device) {
  if (device != Device::cpu) {
    NoGrad no_grad;
    Tensor poison;
    for (const FiniteCheck& c : checks) {
      if (c.tensor->numel() == 0) continue;
      const Tensor term = ops::sum(ops::scale(*c.tensor, 0.0f));
      poison = poison.defined() ? ops::add(poison, term) : term;
    }
    if (!poison.defined() || std::isfinite(poison.item())) return;
  }
  for (const FiniteCheck& c : checks)
    if (!all_finite(*c.tensor)) fail_layer(net, c.layer, c.what + " contains NaN or infinite values");
}

void check_parameter(const Network& net, size_t index, const char* what, const Tensor& t, const Shape& expected,
                     Device device, std::vector<FiniteCheck>& finite) {
  if (!t.defined()) fail_layer(net, index, std::string(what) + " is undefined");
  if (t.shape() != expected)
    fail_layer(net, index, std::string(what) + " is " + t.shape().str() + ", expected " + expected.str());
  if (t.device() != device)
    fail_layer(net, index, std::string(what) + " is on " + device_name(t.device()) + " but the input box is on " +
                               device_name(device));
  finite.push_back({index, what, &t});
}

// Every layer's parameters fit its recorded shapes, live on `device` and are finite.
void check_network(const Network& net, Device device) {
  const std::vector<Layer>& layers = net.layers();
  std::vector<FiniteCheck> finite;
  Shape shape = net.input_shape();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    if (layer.in_shape != shape)
      fail_layer(net, i, "takes " + layer.in_shape.str() + " but the layer before gives " + shape.str());
    switch (layer.kind) {
      case LayerKind::linear: {
        if (layer.in_shape.ndim() != 1 || layer.out_shape.ndim() != 1)
          fail_layer(net, i, "input " + layer.in_shape.str() + " and output " + layer.out_shape.str() + " must be flat");
        check_parameter(net, i, "weight", layer.weight, Shape{layer.out_shape[0], layer.in_shape[0]}, device, finite);
        if (layer.bias.defined()) check_parameter(net, i, "bias", layer.bias, Shape{layer.out_shape[0]}, device, finite);
        break;
      }
      case LayerKind::conv: {
        if (layer.in_shape.ndim() != 3 || layer.out_shape.ndim() != 3 || !layer.weight.defined() ||
            layer.weight.ndim() != 4)
          fail_layer(net, i, "input " + layer.in_shape.str() + ", output " + layer.out_shape.str() + " and weight " +
                                 (layer.weight.defined() ? layer.weight.shape().str() : std::string("(undefined)")) +
                                 " must be (C,H,W), (O,H',W') and (O,C,kh,kw)");
        const Shape w = layer.weight.shape();
        check_parameter(net, i, "weight", layer.weight, Shape{layer.out_shape[0], layer.in_shape[0], w[2], w[3]}, device, finite);
        const int64_t h = (layer.in_shape[1] + 2 * layer.padding - w[2]) / layer.stride + 1;
        const int64_t wd = (layer.in_shape[2] + 2 * layer.padding - w[3]) / layer.stride + 1;
        if (h != layer.out_shape[1] || wd != layer.out_shape[2])
          fail_layer(net, i, "a " + w.str() + " kernel with stride " + std::to_string(layer.stride) + " and padding " +
                                 std::to_string(layer.padding) + " maps " + layer.in_shape.str() + " to (" +
                                 std::to_string(w[0]) + "," + std::to_string(h) + "," + std::to_string(wd) +
                                 "), not " + layer.out_shape.str());
        if (layer.bias.defined()) check_parameter(net, i, "bias", layer.bias, Shape{layer.out_shape[0]}, device, finite);
        break;
      }
      case LayerKind::normalize: {
        if (!layer.mean.defined() || !layer.inv_std.defined())
          fail_layer(net, i, "mean and inv_std must be defined");
        const int64_t channels = layer.in_shape.ndim() == 3 ? layer.in_shape[0] : 1;
        const int64_t given = layer.mean.numel();
        if ((given != channels && given != 1) || layer.inv_std.numel() != given)
          fail_layer(net, i, "statistics " + layer.mean.shape().str() + " and " + layer.inv_std.shape().str() +
                                 " do not fit input " + layer.in_shape.str());
        if (layer.mean.device() != device || layer.inv_std.device() != device)
          fail_layer(net, i, std::string("statistics are on ") + device_name(layer.mean.device()) +
                                 " but the input box is on " + device_name(device));
        finite.push_back({i, "statistics (mean)", &layer.mean});
        finite.push_back({i, "statistics (inv_std)", &layer.inv_std});
        if (layer.out_shape != layer.in_shape)
          fail_layer(net, i, "output " + layer.out_shape.str() + " differs from input " + layer.in_shape.str());
        break;
      }
      case LayerKind::relu:
        if (layer.out_shape != layer.in_shape)
          fail_layer(net, i, "output " + layer.out_shape.str() + " differs from input " + layer.in_shape.str());
        break;
      case LayerKind::flatten:
        if (layer.out_shape != Shape{layer.in_shape.numel()})
          fail_layer(net, i, "output " + layer.out_shape.str() + " is not the flattened input " + layer.in_shape.str());
        break;
      default: fail_layer(net, i, "unknown layer kind");
    }
    shape = layer.out_shape;
  }
  check_finite(net, finite, device);
}

std::string expected_input(const Network& net) {
  std::string s = "(N";
  for (int64_t d : net.input_shape().dims()) {
    s += ',';
    s += std::to_string(d);  // (appending piecewise dodges a g++ 12 -Wrestrict false positive)
  }
  s += ')';
  return s;
}

}  // namespace

namespace relax {
std::string layer_label(const Network& net, size_t index) {
  return "layer " + std::to_string(index) + " (" + layer_kind_name(net.layers()[index].kind) + ")";
}
}  // namespace relax

Relaxation parse_relaxation(const std::string& name) {
  if (name == "box" || name == "ibp") return Relaxation::box;
  if (name == "hbox") return Relaxation::hbox;
  if (name == "hbox-fresh" || name == "hbox_fresh") return Relaxation::hbox_fresh;
  if (name == "deepz") return Relaxation::deepz;
  if (name == "crown") return Relaxation::crown;
  if (name == "crown0") return Relaxation::crown0;
  if (name == "crown0-unstable" || name == "crown0_unstable") return Relaxation::crown0_unstable;
  if (name == "crown-ibp" || name == "crown_ibp" || name == "crown-ibp-r") return Relaxation::crown_ibp;
  if (name == "triangle") return Relaxation::triangle;
  if (name == "parallelogram") return Relaxation::parallelogram;
  fail("relaxation", "unknown relaxation '" + name +
                         "' (expected box, hbox, hbox-fresh, deepz, crown, crown0, crown0-unstable, crown-ibp, triangle, parallelogram)");
}

const char* relaxation_name(Relaxation r) {
  switch (r) {
    case Relaxation::box: return "box";
    case Relaxation::hbox: return "hbox";
    case Relaxation::hbox_fresh: return "hbox-fresh";
    case Relaxation::deepz: return "deepz";
    case Relaxation::crown: return "crown";
    case Relaxation::crown0: return "crown0";
    case Relaxation::crown0_unstable: return "crown0-unstable";
    case Relaxation::crown_ibp: return "crown-ibp";
    case Relaxation::triangle: return "triangle";
    case Relaxation::parallelogram: return "parallelogram";
  }
  return "?";
}

std::vector<Relaxation> all_relaxations() {
  return {Relaxation::box,   Relaxation::hbox,   Relaxation::hbox_fresh,      Relaxation::deepz,
          Relaxation::crown, Relaxation::crown0, Relaxation::crown0_unstable, Relaxation::crown_ibp};
}

Bounds compute_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec,
                      Relaxation relaxation, const BoundOptions& options) {
  if (!lower0.defined() || !upper0.defined()) fail("bounds", "the input box (lower0, upper0) is undefined");
  const Shape input = net.input_shape();
  bool fits = lower0.ndim() == input.ndim() + 1 && lower0.shape() == upper0.shape();
  for (int d = 0; fits && d < input.ndim(); ++d) fits = lower0.size(d + 1) == input[d];
  if (!fits)
    fail("bounds", "input box lower0 " + lower0.shape().str() + ", upper0 " + upper0.shape().str() +
                       "; the network takes " + expected_input(net));
  const Device device = lower0.device();
  if (upper0.device() != device)
    fail("bounds", std::string("lower0 is on ") + device_name(device) + " but upper0 on " + device_name(upper0.device()));
  const int64_t batch = lower0.size(0);
  const int64_t logits = net.output_shape().numel();
  if (spec.defined()) {
    if (spec.ndim() != 3 || spec.size(0) != batch || spec.size(2) != logits)
      fail("bounds", "spec is " + spec.shape().str() + ", expected (" + std::to_string(batch) + ", K, " +
                         std::to_string(logits) + ") for " + std::to_string(batch) + " inputs and " +
                         std::to_string(logits) + " logits");
    if (spec.device() != device)
      fail("bounds", std::string("spec is on ") + device_name(spec.device()) + " but the input box is on " +
                         device_name(device));
  }
  if (!(options.crown_ibp_beta >= 0.0f && options.crown_ibp_beta <= 1.0f))
    fail("bounds", "crown_ibp_beta must lie in [0, 1], got " + std::to_string(options.crown_ibp_beta));
  if (options.crown_tie_slope != 0 && options.crown_tie_slope != 1)
    fail("bounds", "crown_tie_slope must be 0 or 1, got " + std::to_string(options.crown_tie_slope));
  check_network(net, device);
  Bounds bounds;
  switch (relaxation) {
    case Relaxation::box: bounds = relax::box_bounds(net, lower0, upper0, spec, options); break;
    case Relaxation::hbox: bounds = relax::hbox_bounds(net, lower0, upper0, spec, options); break;
    case Relaxation::hbox_fresh:
    case Relaxation::deepz:
    case Relaxation::crown:
    case Relaxation::crown0:
    case Relaxation::crown0_unstable:
    case Relaxation::crown_ibp: bounds = relax::backsub_bounds(net, lower0, upper0, spec, relaxation, options); break;
    case Relaxation::triangle:
    case Relaxation::parallelogram: {
      std::vector<Tensor> params = net.parameters();
      if (grad_recording_enabled() && should_record(params))
        fail("bounds", std::string(relaxation_name(relaxation)) +
                           " is an LP relaxation without gradients here; compute it under NoGrad (certification)");
      bounds = relax::lp_bounds(net, lower0, upper0, spec,
                                relaxation == Relaxation::triangle ? relax::LpRule::triangle : relax::LpRule::parallelogram,
                                options.need_lower);
      if (options.sound) {  // the LP is sound for the real network; add the float32 pass's distance from it
        NoGrad no_grad;
        const Tensor distance = relax::forward_rounding_bound(net, lower0, upper0);
        bounds = relax::widen(bounds, spec.defined() ? relax::abs_coeffs_times(spec, distance) : distance);
      }
      break;
    }
    default: fail("bounds", "unknown relaxation " + std::to_string(int(relaxation)));
  }
  if (!options.need_lower) bounds.lower = Tensor();  // one contract for every relaxation
  return bounds;
}

Tensor margin_spec(const std::vector<int>& labels, int num_classes, Device device) {
  if (num_classes < 2) fail("margin_spec", "needs at least 2 classes, got " + std::to_string(num_classes));
  const int64_t n = int64_t(labels.size()), rows = num_classes - 1;
  std::vector<float> values(size_t(n * rows * num_classes), 0.0f);
  for (int64_t s = 0; s < n; ++s) {
    const int y = labels[size_t(s)];
    if (y < 0 || y >= num_classes)
      fail("margin_spec", "label " + std::to_string(y) + " of sample " + std::to_string(s) + " is outside [0, " +
                              std::to_string(num_classes) + ")");
    int64_t row = 0;
    for (int other = 0; other < num_classes; ++other) {
      if (other == y) continue;
      float* r = values.data() + (s * rows + row) * num_classes;
      r[other] = 1.0f;
      r[y] = -1.0f;
      ++row;
    }
  }
  return Tensor::from_vector(values, Shape{n, rows, num_classes}, device);
}

std::pair<Tensor, Tensor> input_box(const Tensor& x, float eps, bool clip, bool round_outward) {
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    fail("input_box", "eps must be a finite number >= 0, got " + std::to_string(eps));
  Tensor lower = ops::add_scalar(x, -eps), upper = ops::add_scalar(x, eps);
  if (round_outward && eps > 0.0f) {
    // x -+ eps is within 2^-24 |x -+ eps| of its rounding; moving each end out
    // by 2^-22 of its magnitude (rounded to nearest itself) plus the smallest
    // normal float clears that, so the box contains the real ball.
    auto outward = [](const Tensor& end) { return ops::add_scalar(ops::scale(ops::abs(end), 0x1p-22f), 0x1p-126f); };
    lower = ops::sub(lower, outward(lower));
    upper = ops::add(upper, outward(upper));
  }
  if (clip) {
    lower = ops::clamp(lower, 0.0f, 1.0f);
    upper = ops::clamp(upper, 0.0f, 1.0f);
  }
  return {lower, upper};
}

std::vector<bool> certified(const Bounds& margin_bounds) {
  const Tensor& upper = margin_bounds.upper;
  if (!upper.defined() || upper.ndim() != 2) fail("certified", "margin bounds must be (N, K)");
  const std::vector<float> values = upper.to_vector();
  const int64_t n = upper.size(0), rows = upper.size(1);
  std::vector<bool> result(size_t(n), true);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t k = 0; k < rows; ++k)
      if (!(values[size_t(s * rows + k)] < 0.0f)) result[size_t(s)] = false;  // NaN never certifies
  return result;
}

std::vector<float> certified_margins(const Bounds& margin_bounds) {
  const Tensor& upper = margin_bounds.upper;
  if (!upper.defined() || upper.ndim() != 2) fail("certified_margins", "margin bounds must be (N, K)");
  const std::vector<float> values = upper.to_vector();
  const int64_t n = upper.size(0), rows = upper.size(1);
  std::vector<float> result(size_t(n), std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < n; ++s)
    for (int64_t k = 0; k < rows; ++k) {
      const float v = values[size_t(s * rows + k)];
      result[size_t(s)] = std::isnan(v) ? v : std::fmin(result[size_t(s)], -v);
      if (std::isnan(v)) break;
    }
  return result;
}

Tensor worst_case_logits(const Bounds& margin_bounds, const std::vector<int>& labels, int num_classes) {
  const Tensor& upper = margin_bounds.upper;
  const int64_t n = int64_t(labels.size()), rows = num_classes - 1;
  if (!upper.defined() || upper.ndim() != 2 || upper.size(0) != n || upper.size(1) != rows)
    fail("worst_case_logits", "margin bounds are " + (upper.defined() ? upper.shape().str() : std::string("undefined")) +
                                  ", expected (" + std::to_string(n) + ", " + std::to_string(rows) + ") for " +
                                  std::to_string(n) + " labels and " + std::to_string(num_classes) + " classes");
  // scatter[s, y', row(y')] = 1 for y' != y: (N, K, K-1) times upper (N, K-1, 1).
  std::vector<float> scatter(size_t(n * num_classes * rows), 0.0f);
  for (int64_t s = 0; s < n; ++s) {
    const int y = labels[size_t(s)];
    if (y < 0 || y >= num_classes)
      fail("worst_case_logits", "label " + std::to_string(y) + " of sample " + std::to_string(s) +
                                    " is outside [0, " + std::to_string(num_classes) + ")");
    int64_t row = 0;
    for (int other = 0; other < num_classes; ++other) {
      if (other == y) continue;
      scatter[size_t((s * num_classes + other) * rows + row)] = 1.0f;
      ++row;
    }
  }
  const Tensor scatter_t = Tensor::from_vector(scatter, Shape{n, num_classes, rows}, upper.device());
  const Tensor worst = ops::matmul(scatter_t, ops::reshape(upper, Shape{n, rows, 1}));
  return ops::reshape(worst, Shape{n, num_classes});
}

}  // namespace cte
