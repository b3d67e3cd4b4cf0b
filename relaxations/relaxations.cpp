// The public entry points of relaxations.h: relaxation names, compute_bounds
// (argument and network checks, then dispatch to box.cpp, hbox.cpp or
// backsub.cpp), the margin specification, the input box of an L-inf ball,
// the certification test and the worst-case logits of the certified loss.
#include "relaxations/relaxations.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>

#include "engine/layers/layer_rules.h"
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
    // An exponent of all ones is inf or NaN. An OR over the whole tensor, with
    // no early exit, vectorises (a float test with a branch did not: a check of
    // the FC net's weights took a fifth of a Box step in bench_bounds).
    const float* p = t.data();
    const int64_t n = t.numel();
    uint32_t non_finite = 0;
    for (int64_t i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, p + i, sizeof bits);
      non_finite |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);
    }
    return non_finite == 0;
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

// A tensor of layer `index` lives on `device`.
void check_device(const Network& net, size_t index, const char* what, const Tensor& t, Device device) {
  if (!t.defined()) fail_layer(net, index, std::string(what) + " is undefined");
  if (t.device() != device)
    fail_layer(net, index, std::string(what) + " is on " + device_name(t.device()) + " but the input box is on " +
                               device_name(device));
}

// The layers still fit the shapes Network's constructor recorded (layers()
// hands out the list for editing, so a weight may have been replaced since):
// the kind's shape rule, the one the constructor ran, is re-run; then every
// tensor the kind holds lives on `device` and is finite.
void check_network(const Network& net, Device device, bool check_weights_finite) {
  const std::vector<Layer>& layers = net.layers();
  std::vector<FiniteCheck> finite;
  Shape shape = net.input_shape();
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& layer = layers[i];
    if (layer.in_shape != shape)
      fail_layer(net, i, "takes " + layer.in_shape.str() + " but the layer before gives " + shape.str());
    // The kind's own shape rule (engine/layers/<kind>.cpp) checks its tensors' shapes.
    const Shape out = layer_output_shape(layer, shape, i);
    for (const LayerTensorView& t : layer_tensors(layer)) {
      check_device(net, i, t.name, t.tensor, device);
      finite.push_back({i, t.name, &t.tensor});
    }
    if (out != layer.out_shape)
      fail_layer(net, i, "gives " + out.str() + " for input " + shape.str() + " but the network recorded " +
                             layer.out_shape.str());
    shape = out;
  }
  if (check_weights_finite) check_finite(net, finite, device);
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
std::string layer_label(const Network& net, size_t index) { return cte::layer_label(net.layers()[index], index); }
}  // namespace relax

namespace {
constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < std::size(kRelaxationTable); ++i)
    if (size_t(kRelaxationTable[i].id) != i) return false;
  return true;
}
static_assert(table_in_enum_order(), "kRelaxationTable: rows must follow the enum order of CTE_RELAXATIONS");

// The comma-separated aliases of a row, one by one.
std::vector<std::string> split_aliases(const char* aliases) {
  std::vector<std::string> out;
  std::string current;
  for (const char* c = aliases; *c; ++c) {
    if (*c == ',') {
      out.push_back(current);
      current.clear();
    } else {
      current += *c;
    }
  }
  if (!current.empty()) out.push_back(current);
  return out;
}

const char* engine_text(BoundsEngine engine) {
  switch (engine) {
    case BoundsEngine::box: return "Box forward pass";
    case BoundsEngine::hbox: return "hybrid zonotope forward pass";
    case BoundsEngine::backsub: return "backsubstitution";
    case BoundsEngine::lp: return "LP (GLPK), sound through the dual";
    case BoundsEngine::optimised_slopes: return "backsubstitution, slopes optimised (Adam)";
  }
  return "?";
}

const char* intermediate_text(IntermediateBounds from) {
  switch (from) {
    case IntermediateBounds::box_pass: return "Box pass";
    case IntermediateBounds::hbox_pass: return "its own pass";
    case IntermediateBounds::backsub_pass: return "backsubstitution of every neuron, same rule";
    case IntermediateBounds::lp_pass: return "each neuron's LP";
    case IntermediateBounds::optimised_pass: return "each unstable neuron's backsubstitution, slopes optimised";
  }
  return "?";
}
}  // namespace

const RelaxationInfo& relaxation_info(Relaxation r) {
  const size_t index = size_t(r);
  if (index >= std::size(kRelaxationTable)) fail("relaxation", "unknown relaxation " + std::to_string(int(r)));
  return kRelaxationTable[index];
}

Relaxation parse_relaxation(const std::string& name) {
  for (const RelaxationInfo& row : kRelaxationTable) {
    if (name == row.name) return row.id;
    for (const std::string& alias : split_aliases(row.aliases))
      if (name == alias) return row.id;
  }
  fail("relaxation", "unknown relaxation '" + name + "' (expected " + relaxation_names_list() + ")");
}

const char* relaxation_name(Relaxation r) {
  return size_t(r) < std::size(kRelaxationTable) ? kRelaxationTable[size_t(r)].name : "?";
}

std::vector<Relaxation> all_relaxations() {
  std::vector<Relaxation> out;
  for (const RelaxationInfo& row : kRelaxationTable)
    if (row.has_gradient() && row.engine != BoundsEngine::optimised_slopes) out.push_back(row.id);
  return out;
}

std::string relaxation_names_list(bool differentiable_only) {
  std::string out;
  for (const RelaxationInfo& row : kRelaxationTable) {
    if (differentiable_only && !row.has_gradient()) continue;
    if (!out.empty()) out += ", ";
    out += row.name;
  }
  return out;
}

std::string relaxation_table_markdown() {
  std::string out =
      "| relaxation | also accepted | bounds by | intermediate bounds | per-neuron rule (relu_relaxation.h) | "
      "gradient | what it is |\n| --- | --- | --- | --- | --- | --- | --- |\n";
  for (const RelaxationInfo& row : kRelaxationTable) {
    std::string aliases;
    for (const std::string& alias : split_aliases(row.aliases)) aliases += (aliases.empty() ? "`" : ", `") + alias + "`";
    out += std::string("| `") + row.name + "` | " + aliases + " | " + engine_text(row.engine) + " | " +
           intermediate_text(row.intermediate) + " | `" + row.neuron_rule + "` | " + (row.has_gradient() ? "yes" : "no") +
           " | " + row.summary + " |\n";
  }
  return out;
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
  if (options.alpha.steps < 0) fail("bounds", "alpha.steps must be >= 0, got " + std::to_string(options.alpha.steps));
  if (!(options.alpha.lr > 0.0f) || !std::isfinite(options.alpha.lr))
    fail("bounds", "alpha.lr must be a finite number > 0, got " + std::to_string(options.alpha.lr));
  if (options.alpha.memory_cap_bytes == 0) fail("bounds", "alpha.memory_cap_bytes must be > 0");
  if (!(options.box_shrink >= 0.0f && options.box_shrink < 1.0f))
    fail("bounds", "box_shrink must lie in [0, 1), got " + std::to_string(options.box_shrink));
  if (options.box_shrink > 0.0f && (options.sound || relaxation != Relaxation::box))
    fail("bounds", std::string("box_shrink (SABR's shrinking box) gives no bounds, only a training loss: it is for "
                               "the box relaxation in training, not ") +
                       (options.sound ? "sound mode" : relaxation_name(relaxation)));
  if (options.alpha.patience < 0)
    fail("bounds", "alpha.patience must be >= 0, got " + std::to_string(options.alpha.patience));
  check_network(net, device, options.check_finite_weights);
  Bounds bounds;
  const RelaxationInfo& info = relaxation_info(relaxation);
  switch (info.engine) {
    case BoundsEngine::box: bounds = relax::box_bounds(net, lower0, upper0, spec, options); break;
    case BoundsEngine::hbox: bounds = relax::hbox_bounds(net, lower0, upper0, spec, options); break;
    case BoundsEngine::backsub: bounds = relax::backsub_bounds(net, lower0, upper0, spec, relaxation, options); break;
    case BoundsEngine::optimised_slopes:
      bounds = relax::alpha_crown_bounds(net, lower0, upper0, spec, relaxation, options);
      break;
    case BoundsEngine::lp: {
      std::vector<Tensor> params = net.parameters();
      if (grad_recording_enabled() && should_record(params))
        fail("bounds", std::string(info.name) +
                           " is an LP relaxation without gradients here; compute it under NoGrad (certification)");
      // Sound mode: the float32 pass's rounding lives inside the LP as ranged
      // affine rows, and lp_bounds rounds its double bounds outwards to float (lp.h).
      bounds = relax::lp_bounds(net, lower0, upper0, spec, info.lp_rule, options.need_lower, options.sound);
      break;
    }
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
  return worst_case_logits(margin_bounds, margin_spec(labels, num_classes, upper.device()));
}

Tensor worst_case_logits(const Bounds& margin_bounds, const Tensor& spec) {
  const Tensor& upper = margin_bounds.upper;
  if (!spec.defined() || spec.ndim() != 3 || spec.size(2) != spec.size(1) + 1)
    fail("worst_case_logits", "the specification is " + (spec.defined() ? spec.shape().str() : std::string("undefined")) +
                                  ", expected a margin specification (N, K-1, K)");
  const int64_t n = spec.size(0), rows = spec.size(1), num_classes = spec.size(2);
  if (!upper.defined() || upper.ndim() != 2 || upper.size(0) != n || upper.size(1) != rows)
    fail("worst_case_logits", "margin bounds are " + (upper.defined() ? upper.shape().str() : std::string("undefined")) +
                                  ", expected (" + std::to_string(n) + ", " + std::to_string(rows) +
                                  ") for the specification " + spec.shape().str());
  // The spec's +1 entries scatter row k's bound to its class y' (0 at y):
  // relu(C)^T (N, K, K-1) times upper (N, K-1, 1); one nonzero term per output, so exact.
  Tensor scatter;
  {
    NoGrad no_grad;
    scatter = ops::relu(spec);
  }
  const Tensor worst = ops::matmul(scatter, ops::reshape(upper, Shape{n, rows, 1}), /*trans_a=*/true);
  return ops::reshape(worst, Shape{n, num_classes});
}

}  // namespace cte
