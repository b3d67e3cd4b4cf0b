// The fused relaxation ops (relax_ops.h): box_relu, hbox_relu and
// backsub_relu. Each front-end checks shapes, runs the forward kernel twin
// through CTE_RUN and records its backward rule, which runs the backward
// kernel twin, right beside it. These ops have several outputs: one tape node
// each (record_multi), whose backward calls the backward kernel once with
// every output's gradient.
#include "relaxations/relax_ops.h"

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/gpu_runtime.h"
#include "engine/tape.h"
#include "kernels/relax_kernels.h"

namespace cte::relax {
namespace {

const float* data_or_null(const Tensor& t) { return t.defined() ? t.data() : nullptr; }

// The defined tensors among `tensors` (a tape node lists real inputs only).
std::vector<Tensor> defined_only(std::initializer_list<Tensor> tensors) {
  std::vector<Tensor> out;
  for (const Tensor& t : tensors)
    if (t.defined()) out.push_back(t);
  return out;
}

Tensor or_zeros(const Tensor& t, const Shape& shape, Device device) {
  return t.defined() ? t : Tensor::zeros(shape, device);
}

// Row-major C (m, n) = op(A) op(B) + beta C for one matrix pair on `device`.
void gemm_one(Device device, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
              const float* b, float beta, float* c) {
  CTE_RUN(device, gemm, kern::dense_gemm(trans_a, trans_b, m, n, k), 1.0f, a, b, beta, c);
}

// Shape of coefficients over n neurons: (K, n) when shared, else (N, K, n).
Shape coeff_shape(const Tensor& like, int64_t n) {
  return like.ndim() == 2 ? Shape{like.size(0), n} : Shape{like.size(0), like.size(1), n};
}
// Shape of a per-row bias for coefficients `like`: (K) or (N, K).
Shape row_shape(const Tensor& like) {
  return like.ndim() == 2 ? Shape{like.size(0)} : Shape{like.size(0), like.size(1)};
}

void require_same_shape(const char* op, const char* a_name, const Tensor& a, const char* b_name,
                        const Tensor& b) {
  if (a.shape() != b.shape())
    fail(op, std::string(a_name) + " is " + a.shape().str() + " but " + b_name + " is " + b.shape().str() +
                 "; they must have one shape");
}

}  // namespace

CentreRadiusPair box_relu(const Tensor& centre, const Tensor& radius) {
  const Device device = common_device("box_relu", {&centre, &radius});
  require_same_shape("box_relu", "centre", centre, "radius", radius);
  const int64_t n = centre.numel();
  CentreRadiusPair out{Tensor::empty(centre.shape(), device), Tensor::empty(centre.shape(), device)};
  CTE_RUN(device, box_relu_forward, centre.data(), radius.data(), out.centre.data(), out.radius.data(), n);
  if (should_record({&centre, &radius}))
    record_multi("box_relu", {centre, radius}, {&out.centre, &out.radius},
                 [centre, radius, n, device](const std::vector<Tensor>& g) {
                   const Tensor dc_out = or_zeros(g[0], centre.shape(), device);
                   const Tensor dr_out = or_zeros(g[1], centre.shape(), device);
                   Tensor dc = Tensor::empty(centre.shape(), device), dr = Tensor::empty(centre.shape(), device);
                   CTE_RUN(device, box_relu_backward, centre.data(), radius.data(), dc_out.data(),
                                 dr_out.data(), dc.data(), dr.data(), n);
                   accumulate_grad(centre, dc);
                   accumulate_grad(radius, dr);
                 });
  return out;
}

HboxReluResult hbox_relu(const Tensor& centre, const Tensor& g_norm, const Tensor& box) {
  const Device device = common_device("hbox_relu", {&centre, &g_norm, &box});
  require_same_shape("hbox_relu", "centre", centre, "g_norm", g_norm);
  require_same_shape("hbox_relu", "centre", centre, "box", box);
  const Shape shape = centre.shape();
  const int64_t n = centre.numel();
  HboxReluResult out{Tensor::empty(shape, device), Tensor::empty(shape, device), Tensor::empty(shape, device),
                     Tensor::empty(shape, device)};
  CTE_RUN(device, hbox_relu_forward, centre.data(), g_norm.data(), box.data(), out.centre.data(),
                out.box.data(), out.lower.data(), out.upper.data(), n);
  if (should_record({&centre, &g_norm, &box}))
    record_multi("hbox_relu", {centre, g_norm, box}, {&out.centre, &out.box},
                 [centre, g_norm, box, shape, n, device](const std::vector<Tensor>& g) {
                   const Tensor dc_out = or_zeros(g[0], shape, device);
                   const Tensor db_out = or_zeros(g[1], shape, device);
                   Tensor dc = Tensor::empty(shape, device), dg = Tensor::empty(shape, device),
                          db = Tensor::empty(shape, device);
                   CTE_RUN(device, hbox_relu_backward, centre.data(), g_norm.data(), box.data(),
                                 dc_out.data(), db_out.data(), dc.data(), dg.data(), db.data(), n);
                   accumulate_grad(centre, dc);
                   accumulate_grad(g_norm, dg);
                   accumulate_grad(box, db);
                 });
  return out;
}

BacksubReluResult backsub_relu(ReluRule rule, const Tensor& coeffs, const Tensor& lower, const Tensor& upper,
                               bool want_bias_lower, bool want_bias_upper, const Tensor& bias_below) {
  const char* op = "backsub_relu";
  const Device device = common_device(op, {&coeffs, &lower, &upper, &bias_below});
  require_same_shape(op, "lower", lower, "upper", upper);
  if (lower.ndim() != 2)
    fail(op, "bounds are " + lower.shape().str() + ", expected (N, n)");
  const int64_t batch = lower.size(0), n = lower.size(1);
  const bool shared = coeffs.ndim() == 2;
  if (!((shared && coeffs.size(1) == n) || (coeffs.ndim() == 3 && coeffs.size(0) == batch && coeffs.size(2) == n)))
    fail(op, "coefficients are " + coeffs.shape().str() + " but the bounds are " + lower.shape().str() +
                 " (expects (N, K, n) or a shared (K, n))");
  if (want_bias_upper && !kern::relu_rule_symmetric(rule))
    fail(op, "an upper-bound bias needs a rule with equal lower and upper slopes (deepz, hbox_fresh, "
             "hbox_symbolic); stack [C; -C] for the others");
  if (bias_below.defined() && (bias_below.ndim() != 1 || bias_below.size(0) != n))
    fail(op, "bias_below is " + bias_below.shape().str() + ", expected (" + std::to_string(n) + ")");
  if (bias_below.defined() && !want_bias_lower && !want_bias_upper)
    fail(op, "bias_below is folded into the intercept sums: ask for at least one of them");
  const int64_t rows = coeffs.size(shared ? 0 : 1);
  BacksubReluResult out;
  out.coeffs = Tensor::empty(Shape{batch, rows, n}, device);
  if (want_bias_lower) out.bias_lower = Tensor::empty(Shape{batch, rows}, device);
  if (want_bias_upper) out.bias_upper = Tensor::empty(Shape{batch, rows}, device);
  CTE_RUN(device, backsub_relu_forward, rule, coeffs.data(), lower.data(), upper.data(), data_or_null(bias_below),
                out.coeffs.data(), want_bias_lower ? out.bias_lower.data() : nullptr,
                want_bias_upper ? out.bias_upper.data() : nullptr, kern::BacksubShape{batch, rows, n, shared});
  if (should_record({&coeffs, &lower, &upper, &bias_below})) {
    std::vector<Tensor*> outputs{&out.coeffs};
    if (want_bias_lower) outputs.push_back(&out.bias_lower);
    if (want_bias_upper) outputs.push_back(&out.bias_upper);
    record_multi(op, defined_only({coeffs, lower, upper, bias_below}), outputs,
                 [rule, coeffs, lower, upper, bias_below, want_bias_lower, want_bias_upper, batch, rows, n, shared,
                  device](const std::vector<Tensor>& g) {
                   const Tensor d_out = or_zeros(g[0], Shape{batch, rows, n}, device);
                   size_t next = 1;
                   const Tensor d_bias_lower = want_bias_lower ? g[next++] : Tensor();
                   const Tensor d_bias_upper = want_bias_upper ? g[next++] : Tensor();
                   Tensor d_coeffs = Tensor::empty(coeffs.shape(), device);
                   Tensor d_lower = Tensor::empty(lower.shape(), device), d_upper = Tensor::empty(upper.shape(), device);
                   const bool bias_grad = bias_below.defined() && bias_below.requires_grad();
                   Tensor d_bias_per_sample = bias_grad ? Tensor::empty(Shape{batch, n}, device) : Tensor();
                   CTE_RUN(device, backsub_relu_backward, rule, coeffs.data(), lower.data(), upper.data(),
                                 data_or_null(bias_below), d_out.data(), data_or_null(d_bias_lower),
                                 data_or_null(d_bias_upper), d_coeffs.data(), d_lower.data(), d_upper.data(),
                                 bias_grad ? d_bias_per_sample.data() : nullptr,
                                 kern::BacksubShape{batch, rows, n, shared});
                   accumulate_grad(coeffs, d_coeffs);
                   accumulate_grad(lower, d_lower);
                   accumulate_grad(upper, d_upper);
                   if (bias_grad) {  // the samples' shares, summed in order
                     Tensor d_bias = Tensor::empty(bias_below.shape(), device);
                     CTE_RUN(device, reduce_sum, d_bias_per_sample.data(), d_bias.data(), 1, batch, n, 1.0f);
                     accumulate_grad(bias_below, d_bias);
                   }
                 });
  }
  return out;
}

Tensor backsub_relu_live(ReluRule rule, const Tensor& lower, const Tensor& upper) {
  const char* op = "backsub_relu_live";
  const Device device = common_device(op, {&lower, &upper});
  require_same_shape(op, "lower", lower, "upper", upper);
  Tensor live = Tensor::empty(lower.shape(), device);
  CTE_RUN(device, backsub_relu_live, rule, lower.data(), upper.data(), live.data(), lower.numel());
  return live;
}

namespace {
thread_local bool live_columns_on = true;
}  // namespace

void set_backsub_live_columns(bool on) { live_columns_on = on; }
bool backsub_live_columns() { return live_columns_on; }

BacksubAffineResult backsub_linear(const Tensor& coeffs, const Tensor& weight, const Tensor& bias, bool want_bias,
                                   const Tensor& live) {
  const char* op = "backsub_linear";
  const Device device = common_device(op, {&coeffs, &weight, &bias, &live});
  if ((coeffs.ndim() != 2 && coeffs.ndim() != 3) || weight.ndim() != 2 || coeffs.size(-1) != weight.size(0))
    fail(op, "coefficients " + coeffs.shape().str() + " do not fit weight " + weight.shape().str() +
                 " (expects (K, out) or (N, K, out) and (out, in))");
  if (bias.defined() && (bias.ndim() != 1 || bias.size(0) != weight.size(0)))
    fail(op, "bias is " + bias.shape().str() + ", expected (" + std::to_string(weight.size(0)) + ")");
  if (live.defined() && (coeffs.ndim() != 3 || live.shape() != Shape{coeffs.size(0), coeffs.size(2)}))
    fail(op, "live columns " + live.shape().str() + " do not fit coefficients " + coeffs.shape().str() +
                 " (expects per-sample (N, K, out) and live (N, out))");
  const int64_t n_out = weight.size(0), n_in = weight.size(1);
  const int64_t rows = n_out == 0 ? 0 : coeffs.numel() / n_out;  // K, or N*K
  const bool use_bias = want_bias && bias.defined();
  BacksubAffineResult out;
  out.coeffs = Tensor::empty(coeff_shape(coeffs, n_in), device);
  // Under a ReLU step that reads only its live columns (kern::BacksubShape's n = n_out).
  const kern::BacksubShape live_shape{live.defined() ? coeffs.size(0) : 0, live.defined() ? coeffs.size(1) : 0, n_out,
                                      false};
  if (live.defined()) {
    Tensor scratch = Tensor::empty(coeffs.shape(), device);  // for a twin that masks the coefficients
    CTE_RUN(device, backsub_linear_live_forward, coeffs.data(), weight.data(), live.data(), out.coeffs.data(),
            scratch.data(), n_in, live_shape);
  } else
    gemm_one(device, false, false, rows, n_in, n_out, coeffs.data(), weight.data(), 0.0f, out.coeffs.data());
  if (use_bias) {
    out.bias_term = Tensor::empty(row_shape(coeffs), device);
    gemm_one(device, false, false, rows, 1, n_out, coeffs.data(), bias.data(), 0.0f, out.bias_term.data());
  }
  if (should_record({&coeffs, &weight, &bias})) {
    std::vector<Tensor*> outputs{&out.coeffs};
    if (use_bias) outputs.push_back(&out.bias_term);
    const Shape out_shape = out.coeffs.shape();
    record_multi(op, defined_only({coeffs, weight, bias}), outputs,
                 [coeffs, weight, bias, live, live_shape, use_bias, rows, n_in, n_out, out_shape, device](const std::vector<Tensor>& g) {
                   const Tensor d_out = or_zeros(g[0], out_shape, device);
                   const Tensor d_bias_term = use_bias ? g[1] : Tensor();
                   if (coeffs.requires_grad()) {  // dA = dA' W^T + dq b^T
                     Tensor d_coeffs = Tensor::empty(coeffs.shape(), device);
                     if (live.defined())
                       CTE_RUN(device, backsub_linear_live_grad, d_out.data(), weight.data(), live.data(), d_coeffs.data(),
                               n_in, live_shape);
                     else
                       gemm_one(device, false, true, rows, n_out, n_in, d_out.data(), weight.data(), 0.0f, d_coeffs.data());
                     if (d_bias_term.defined())
                       gemm_one(device, false, false, rows, n_out, 1, d_bias_term.data(), bias.data(), 1.0f, d_coeffs.data());
                     accumulate_grad(coeffs, d_coeffs);
                   }
                   if (weight.requires_grad()) {  // dW = A^T dA'
                     Tensor d_weight = Tensor::empty(weight.shape(), device);
                     if (live.defined()) {
                       Tensor scratch = Tensor::empty(coeffs.shape(), device);
                       CTE_RUN(device, backsub_linear_live_weight_grad, coeffs.data(), d_out.data(), live.data(),
                               d_weight.data(), scratch.data(), n_in, live_shape);
                     } else
                       gemm_one(device, true, false, n_out, n_in, rows, coeffs.data(), d_out.data(), 0.0f, d_weight.data());
                     accumulate_grad(weight, d_weight);
                   }
                   if (bias.defined() && bias.requires_grad() && d_bias_term.defined()) {  // db = A^T dq
                     Tensor d_bias = Tensor::empty(bias.shape(), device);
                     gemm_one(device, true, false, n_out, 1, rows, coeffs.data(), d_bias_term.data(), 0.0f, d_bias.data());
                     accumulate_grad(bias, d_bias);
                   }
                 });
  }
  return out;
}

Tensor conv_bias_per_neuron(const Tensor& bias, const Shape& out_shape) {
  const Tensor ones = Tensor::full(Shape{out_shape[0], out_shape[1] * out_shape[2]}, 1.0f, bias.device());
  return ops::reshape(ops::mul(ones, ops::reshape(bias, Shape{out_shape[0], 1})), Shape{out_shape.numel()});
}

BacksubAffineResult backsub_conv(const Tensor& coeffs, const Tensor& weight, const Tensor& bias, int stride,
                                 int padding, const Shape& in_shape, const Shape& out_shape, bool want_bias) {
  const char* op = "backsub_conv";
  const Device device = common_device(op, {&coeffs, &weight, &bias});
  if (in_shape.ndim() != 3 || out_shape.ndim() != 3 || weight.ndim() != 4 || (coeffs.ndim() != 2 && coeffs.ndim() != 3) ||
      coeffs.size(-1) != out_shape.numel())
    fail(op, "coefficients " + coeffs.shape().str() + ", weight " + weight.shape().str() + ", input " +
                 in_shape.str() + " and output " + out_shape.str() +
                 " do not fit (expects (K or N,K, O*H'*W'), (O,C,kh,kw), (C,H,W), (O,H',W'))");
  const int64_t out_numel = out_shape.numel(), in_numel = in_shape.numel();
  const int64_t rows = out_numel == 0 ? 0 : coeffs.numel() / out_numel;
  const kern::ConvGeometry g = ops::conv_geometry(Shape{rows, in_shape[0], in_shape[1], in_shape[2]}, weight.shape(),
                                                  stride, padding, op);
  if (g.c_out != out_shape[0] || g.h_out != out_shape[1] || g.w_out != out_shape[2])
    fail(op, "weight " + weight.shape().str() + " with stride " + std::to_string(stride) + " and padding " +
                 std::to_string(padding) + " does not map " + in_shape.str() + " to " + out_shape.str());
  if (bias.defined() && (bias.ndim() != 1 || bias.size(0) != g.c_out))
    fail(op, "bias is " + bias.shape().str() + ", expected (" + std::to_string(g.c_out) + ")");
  const bool use_bias = want_bias && bias.defined();
  BacksubAffineResult out;
  out.coeffs = Tensor::empty(coeff_shape(coeffs, in_numel), device);
  CTE_RUN(device, conv2d_backward_data, coeffs.data(), weight.data(), out.coeffs.data(), g);
  Tensor bias_full;  // b[o] repeated over each output channel's positions: (O*H'*W'), off the tape
  if (use_bias) {
    NoGrad constant;
    bias_full = conv_bias_per_neuron(bias.detach(), out_shape);
    out.bias_term = Tensor::empty(row_shape(coeffs), device);
    gemm_one(device, false, false, rows, 1, out_numel, coeffs.data(), bias_full.data(), 0.0f, out.bias_term.data());
  }
  if (should_record({&coeffs, &weight, &bias})) {
    std::vector<Tensor*> outputs{&out.coeffs};
    if (use_bias) outputs.push_back(&out.bias_term);
    const Shape in_coeff_shape = out.coeffs.shape();
    record_multi(op, defined_only({coeffs, weight, bias}), outputs,
                 [coeffs, weight, bias, bias_full, g, rows, out_numel, in_coeff_shape, device](const std::vector<Tensor>& grads) {
                   const Tensor d_out = or_zeros(grads[0], in_coeff_shape, device);
                   const Tensor d_bias_term = bias_full.defined() ? grads[1] : Tensor();
                   if (coeffs.requires_grad()) {  // dA = conv(dA') + dq b_full^T
                     Tensor d_coeffs = Tensor::empty(coeffs.shape(), device);
                     CTE_RUN(device, conv2d_forward, d_out.data(), weight.data(), nullptr, d_coeffs.data(), g);
                     if (d_bias_term.defined())
                       gemm_one(device, false, false, rows, out_numel, 1, d_bias_term.data(), bias_full.data(), 1.0f,
                                d_coeffs.data());
                     accumulate_grad(coeffs, d_coeffs);
                   }
                   if (weight.requires_grad()) {
                     Tensor d_weight = Tensor::empty(weight.shape(), device);
                     CTE_RUN(device, conv2d_backward_filter, d_out.data(), coeffs.data(), d_weight.data(), g);
                     accumulate_grad(weight, d_weight);
                   }
                   if (bias.defined() && bias.requires_grad() && d_bias_term.defined()) {
                     // db[o] = sum over rows and o's positions of A * dq.
                     Tensor d_full = Tensor::empty(Shape{out_numel}, device);
                     gemm_one(device, true, false, out_numel, 1, rows, coeffs.data(), d_bias_term.data(), 0.0f, d_full.data());
                     Tensor d_bias = Tensor::empty(bias.shape(), device);
                     CTE_RUN(device, reduce_sum, d_full.data(), d_bias.data(), g.c_out, int64_t(g.h_out) * g.w_out, 1, 1.0f);
                     accumulate_grad(bias, d_bias);
                   }
                 });
  }
  return out;
}

BacksubInputResult backsub_input(const Tensor& coeffs, const Tensor& centre, const Tensor& radius) {
  const char* op = "backsub_input";
  const Device device = common_device(op, {&coeffs, &centre, &radius});
  require_same_shape(op, "centre", centre, "radius", radius);
  if (coeffs.ndim() != 3 || centre.ndim() != 2 || coeffs.size(0) != centre.size(0) || coeffs.size(2) != centre.size(1))
    fail(op, "coefficients " + coeffs.shape().str() + " do not fit the input box " + centre.shape().str() +
                 " (expects (N, K, n0) and (N, n0))");
  const int64_t batch = coeffs.size(0), rows = coeffs.size(1), n = coeffs.size(2);
  BacksubInputResult out{Tensor::empty(Shape{batch, rows}, device), Tensor::empty(Shape{batch, rows}, device)};
  CTE_RUN(device, backsub_input_forward, coeffs.data(), centre.data(), radius.data(), out.centre_term.data(),
                out.spread.data(), batch, rows, n);
  if (should_record({&coeffs, &centre, &radius}))
    record_multi(op, {coeffs, centre, radius}, {&out.centre_term, &out.spread},
                 [coeffs, centre, radius, batch, rows, n, device](const std::vector<Tensor>& g) {
                   Tensor d_coeffs = Tensor::empty(coeffs.shape(), device);
                   Tensor d_centre = centre.requires_grad() ? Tensor::empty(centre.shape(), device) : Tensor();
                   Tensor d_radius = radius.requires_grad() ? Tensor::empty(radius.shape(), device) : Tensor();
                   CTE_RUN(device, backsub_input_backward, coeffs.data(), centre.data(), radius.data(),
                                 data_or_null(g[0]), data_or_null(g[1]), d_coeffs.data(),
                                 d_centre.defined() ? d_centre.data() : nullptr,
                                 d_radius.defined() ? d_radius.data() : nullptr, batch, rows, n);
                   accumulate_grad(coeffs, d_coeffs);
                   if (d_centre.defined()) accumulate_grad(centre, d_centre);
                   if (d_radius.defined()) accumulate_grad(radius, d_radius);
                 });
  return out;
}

namespace {
struct DeviceConstants {
  std::vector<std::pair<std::string, Tensor>> kept;  // few: a net's conv levels and chunk sizes
  DeviceConstantStats stats;
  bool told_of_budget = false;
};
thread_local DeviceConstants g_device_constants;
}  // namespace

Tensor constant_tensor(const std::string& key, const Shape& shape,
                       const std::function<void(std::vector<float>&)>& fill, Device device) {
  DeviceConstants& cache = g_device_constants;
  if (device == Device::cuda)
    for (const auto& [name, t] : cache.kept)
      if (name == key) return t;
  // A capture cannot upload (and a graph's pool would outlive no constant): the eager steps
  // before a capture make them, and one not made by then refuses the capture, saying why.
  if (device == Device::cuda && gpu::capturing())
    fail("bounds", "the constant '" + key + "' would be uploaded during a CUDA graph capture");
  std::vector<float> values(size_t(shape.numel()), 0.0f);
  fill(values);
  const Tensor t = Tensor::from_vector(values, shape, device);
  const size_t bytes = values.size() * sizeof(float);
  if (device != Device::cuda) return t;
  ++cache.stats.uploads;
  if (cache.stats.bytes + bytes <= kDeviceConstantBudget) {
    cache.kept.emplace_back(key, t);
    cache.stats.bytes += bytes;
    ++cache.stats.count;
  } else if (!cache.told_of_budget) {
    cache.told_of_budget = true;
    std::fprintf(stderr,
                 "[bounds] the constants kept on the GPU reached %zu MiB on this thread; '%s' and later ones are "
                 "uploaded on every call (a host round trip per step, and no CUDA graph)\n",
                 kDeviceConstantBudget >> 20, key.c_str());
  }
  return t;
}

DeviceConstantStats device_constant_stats() { return g_device_constants.stats; }
void clear_device_constants() { g_device_constants = DeviceConstants{}; }

}  // namespace cte::relax
