// Every engine op, checked three ways from one table of cases:
//  - gradcheck: the tape's gradient against central finite differences of
//    L = sum(w * op(inputs)) computed in double on the host (an independent
//    reference: it never calls a backward rule), on every device;
//  - parity: forward values and gradients on the CUDA backend (emulated in CI)
//    against the CPU backend;
//  - the op table walk (test_op_table.cpp) requires a case here for every op.
// Inputs are drawn away from kinks (relu, abs, clamp, min/max ties) where the
// derivative is undefined, so finite differences are meaningful.
#include "tests/test_ops_cases.h"

#include <algorithm>
#include <map>

#include "engine/ops.h"
#include "engine/tape.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

using kern::BinaryOp;

// Values in [lo, hi] but at least `gap` away from every point in `avoid`.
Tensor values_avoiding(const Shape& shape, Rng& rng, float lo, float hi, std::vector<float> avoid, float gap) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (float& x : v) {
    bool ok;
    do {
      x = rng.uniform(lo, hi);
      ok = true;
      for (float a : avoid) ok = ok && std::fabs(x - a) > gap;
    } while (!ok);
  }
  return Tensor::from_vector(v, shape, Device::cpu);
}

}  // namespace

std::vector<OpCase> op_cases() {
  Rng rng(1234);
  auto R = [&rng](Shape s, float lo = -1.0f, float hi = 1.0f) { return random_tensor(s, rng, Device::cpu, lo, hi); };
  std::vector<OpCase> cases;
  auto add_case = [&cases](std::string op, std::string variant, std::vector<Tensor> inputs, OpFn fn,
                           std::vector<bool> differentiable = {}) {
    if (differentiable.empty()) differentiable.assign(inputs.size(), true);
    cases.push_back(OpCase{std::move(op), std::move(variant), std::move(inputs), std::move(differentiable), std::move(fn)});
  };
  using V = const std::vector<Tensor>&;
  add_case("add", "broadcast (2,3,4)+(3,1)", {R({2, 3, 4}), R({3, 1})}, [](V x) { return ops::add(x[0], x[1]); });
  add_case("add", "same shape", {R({5, 7}), R({5, 7})}, [](V x) { return ops::add(x[0], x[1]); });
  // A bias over (N, C, H, W): its gradient sums H and W in one pass, then N (sum_to_shape's runs).
  add_case("add", "broadcast (2,3,4,5)+(3,1,1)", {R({2, 3, 4, 5}), R({3, 1, 1})},
           [](V x) { return ops::add(x[0], x[1]); });
  add_case("sub", "broadcast (2,3)-(2,1)", {R({2, 3}), R({2, 1})}, [](V x) { return ops::sub(x[0], x[1]); });
  add_case("mul", "broadcast (2,3,4)*(4)", {R({2, 3, 4}), R({4})}, [](V x) { return ops::mul(x[0], x[1]); });
  add_case("div", "same shape", {R({3, 4}), R({3, 4}, 0.5f, 2.0f)}, [](V x) { return ops::div(x[0], x[1]); });
  add_case("div", "scalar divisor", {R({3, 4}), R({1}, 0.5f, 2.0f)}, [](V x) { return ops::div(x[0], x[1]); });
  {
    // Operands at least 0.05 apart so no tie is within the finite-difference step.
    Tensor a = R({3, 5}, -1.0f, 1.0f);
    std::vector<float> av = a.to_vector(), bv(5);
    for (size_t j = 0; j < 5; ++j) bv[j] = av[j] + (j % 2 ? 0.3f : -0.3f);
    Tensor b = Tensor::from_vector(bv, Shape{5}, Device::cpu);
    add_case("minimum", "broadcast (3,5),(5)", {a, b}, [](V x) { return ops::minimum(x[0], x[1]); });
    add_case("maximum", "broadcast (3,5),(5)", {a, b}, [](V x) { return ops::maximum(x[0], x[1]); });
  }
  add_case("compare", "gt with broadcast", {R({4, 3}), R({3})},
           [](V x) { return ops::compare(x[0], x[1], BinaryOp::gt); }, {false, false});
  {
    Tensor mask = ops::compare(R({4, 5}), Tensor::scalar(0.0f, Device::cpu), BinaryOp::gt);
    add_case("select", "mask (4,5)", {mask, R({4, 5}), R({4, 5})},
             [](V x) { return ops::select(x[0], x[1], x[2]); }, {false, true, true});
  }
  add_case("scale", "x2.5", {R({3, 4})}, [](V x) { return ops::scale(x[0], 2.5f); });
  add_case("add_scalar", "+0.75", {R({3, 4})}, [](V x) { return ops::add_scalar(x[0], 0.75f); });
  add_case("neg", "(6)", {R({6})}, [](V x) { return ops::neg(x[0]); });
  add_case("abs", "away from 0", {values_avoiding({4, 5}, rng, -1, 1, {0.0f}, 0.05f)}, [](V x) { return ops::abs(x[0]); });
  add_case("sum_abs", "away from 0", {values_avoiding({4, 5}, rng, -1, 1, {0.0f}, 0.05f)}, [](V x) { return ops::sum_abs(x[0]); });
  add_case("relu", "away from 0", {values_avoiding({2, 3, 2, 2}, rng, -1, 1, {0.0f}, 0.05f)}, [](V x) { return ops::relu(x[0]); });
  add_case("clamp", "[-0.5, 0.5]", {values_avoiding({4, 5}, rng, -1, 1, {-0.5f, 0.5f}, 0.05f)},
           [](V x) { return ops::clamp(x[0], -0.5f, 0.5f); });
  add_case("exp", "(3,4)", {R({3, 4})}, [](V x) { return ops::exp(x[0]); });
  add_case("log", "positive", {R({3, 4}, 0.5f, 2.0f)}, [](V x) { return ops::log(x[0]); });
  add_case("sqrt", "positive", {R({3, 4}, 0.5f, 2.0f)}, [](V x) { return ops::sqrt(x[0]); });
  add_case("sum", "all of (2,3,4)", {R({2, 3, 4})}, [](V x) { return ops::sum(x[0]); });
  add_case("sum_axis", "axis 1 of (2,3,4)", {R({2, 3, 4})}, [](V x) { return ops::sum_axis(x[0], 1); });
  add_case("sum_axis", "axis 0 keepdim", {R({3, 4})}, [](V x) { return ops::sum_axis(x[0], 0, true); });
  add_case("mean", "all of (3,5)", {R({3, 5})}, [](V x) { return ops::mean(x[0]); });
  add_case("mean_axis", "last axis", {R({2, 3, 4})}, [](V x) { return ops::mean_axis(x[0], -1); });
  add_case("reshape", "(2,6)->(3,4)", {R({2, 6})}, [](V x) { return ops::reshape(x[0], Shape{3, 4}); });
  add_case("flatten", "(2,3,2,2)", {R({2, 3, 2, 2})}, [](V x) { return ops::flatten(x[0]); });
  add_case("transpose", "(2,3,5)", {R({2, 3, 5})}, [](V x) { return ops::transpose(x[0]); });
  add_case("transpose", "(33,40)", {R({33, 40})}, [](V x) { return ops::transpose(x[0]); });
  add_case("slice_batch", "rows 1..4 of (5,3)", {R({5, 3})}, [](V x) { return ops::slice_batch(x[0], 1, 4); });
  add_case("concat_batch", "(2,3)+(3,3)", {R({2, 3}), R({3, 3})}, [](V x) { return ops::concat_batch({x[0], x[1]}); });
  add_case("matmul", "(3,4)x(4,5)", {R({3, 4}), R({4, 5})}, [](V x) { return ops::matmul(x[0], x[1]); });
  add_case("matmul", "(2,3,4)x(4,5) shared", {R({2, 3, 4}), R({4, 5})}, [](V x) { return ops::matmul(x[0], x[1]); });
  add_case("matmul", "(2,3,4)x(5,4)^T shared", {R({2, 3, 4}), R({5, 4})}, [](V x) { return ops::matmul(x[0], x[1], false, true); });
  add_case("matmul", "(2,4,3)^T x(2,4,5) batched", {R({2, 4, 3}), R({2, 4, 5})}, [](V x) { return ops::matmul(x[0], x[1], true, false); });
  add_case("matmul", "(2,3,4)x(2,5,4)^T batched", {R({2, 3, 4}), R({2, 5, 4})}, [](V x) { return ops::matmul(x[0], x[1], false, true); });
  add_case("matmul", "(4,3)^T x (5,4)^T", {R({4, 3}), R({5, 4})}, [](V x) { return ops::matmul(x[0], x[1], true, true); });
  add_case("linear", "(4,6)->(3)", {R({4, 6}), R({3, 6}), R({3})}, [](V x) { return ops::linear(x[0], x[1], x[2]); });
  add_case("conv2d", "stride 2 pad 1", {R({2, 2, 7, 6}), R({3, 2, 3, 3}), R({3})},
           [](V x) { return ops::conv2d(x[0], x[1], x[2], 2, 1); });
  add_case("conv2d", "1->4 4x4 stride 2 pad 1 on 8x8", {R({2, 1, 8, 8}), R({4, 1, 4, 4}), R({4})},
           [](V x) { return ops::conv2d(x[0], x[1], x[2], 2, 1); });
  add_case("conv2d", "3x3 kernel wider than a 2x1 input, padding 1", {R({1, 1, 2, 1}), R({2, 1, 3, 3}), R({2})},
           [](V x) { return ops::conv2d(x[0], x[1], x[2], 1, 1); });
  add_case("conv2d_transpose", "adjoint of stride 2 pad 1", {R({2, 3, 4, 3}), R({3, 2, 3, 3})},
           [](V x) { return ops::conv2d_transpose(x[0], x[1], 2, 1, 7, 6); });
  {
    // Statistics away from zero variance, so the finite differences stay smooth.
    const Tensor mean = R({3}), var = R({3}, 0.5f, 2.0f);
    add_case("batch_norm", "eval (4,3,2,2)", {R({4, 3, 2, 2}), R({3}, 0.5f, 1.5f), R({3}), mean, var},
             [](V x) { return ops::batch_norm(x[0], x[1], x[2], x[3], x[4], 1e-5f); }, {true, true, true, false, false});
    add_case("batch_norm", "eval (5,4) features", {R({5, 4}), R({4}, -1.5f, -0.5f), R({4}), R({4}), R({4}, 0.5f, 2.0f)},
             [](V x) { return ops::batch_norm(x[0], x[1], x[2], x[3], x[4], 1e-5f); }, {true, true, true, false, false});
    // Each output of the training op on its own (the others' gradients undefined).
    add_case("batch_norm_train", "y of (4,3,2,2)", {R({4, 3, 2, 2}), R({3}, 0.5f, 1.5f), R({3})},
             [](V x) { return ops::batch_norm_train(x[0], x[1], x[2], 1e-5f).y; });
    add_case("batch_norm_train", "y of (6,4) features", {R({6, 4}), R({4}, -1.5f, 1.5f), R({4})},
             [](V x) { return ops::batch_norm_train(x[0], x[1], x[2], 1e-5f).y; });
    add_case("batch_norm_train", "mean of (4,3,2,2)", {R({4, 3, 2, 2}), R({3}, 0.5f, 1.5f), R({3})},
             [](V x) { return ops::batch_norm_train(x[0], x[1], x[2], 1e-5f).mean; });
    add_case("batch_norm_train", "var of (4,3,2,2)", {R({4, 3, 2, 2}), R({3}, 0.5f, 1.5f), R({3})},
             [](V x) { return ops::batch_norm_train(x[0], x[1], x[2], 1e-5f).var; });
  }
  add_case("log_softmax", "(3,5)", {R({3, 5}, -3, 3)}, [](V x) { return ops::log_softmax(x[0]); });
  add_case("logsumexp", "(3,5)", {R({3, 5}, -3, 3)}, [](V x) { return ops::logsumexp(x[0]); });
  add_case("softmax_cross_entropy", "(4,5)",
           {R({4, 5}, -3, 3), Tensor::from_vector({0, 4, 2, 2}, Shape{4}, Device::cpu)},
           [](V x) { return ops::softmax_cross_entropy(x[0], x[1]); }, {true, false});
  add_case("margin_spec", "4 labels, 5 classes", {Tensor::from_vector({0, 4, 2, 2}, Shape{4}, Device::cpu)},
           [](V x) { return ops::margin_spec(x[0], 5); }, {false});
  {
    // A tie between classes 1 and 3 in row 2 (the first wins) and a NaN in row 3.
    const Tensor logits = Tensor::from_vector({0, 1, 2, 3, 4,  9, 1, 0, 0, 0,  0, 7, 0, 7, 0,  NAN, 1, 5, 0, 0},
                                              Shape{4, 5}, Device::cpu);
    add_case("count_correct", "ties and NaN", {logits, Tensor::from_vector({4, 0, 3, 2}, Shape{4}, Device::cpu)},
             [](V x) { return ops::count_correct(x[0], x[1]); }, {false, false});
    // Row 0 correct, row 1 broken by a strict win, row 2 by a tie with the label's class, row 3 by a NaN.
    add_case("misclassified", "ties and NaN", {logits, Tensor::from_vector({4, 1, 3, 2}, Shape{4}, Device::cpu)},
             [](V x) { return ops::misclassified(x[0], x[1]); }, {false, false});
  }
  return cases;
}

OpRun run_case(const OpCase& c, Device device, const std::vector<float>& weights) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    Tensor t = c.inputs[i].to(device);
    if (c.differentiable[i]) t.set_requires_grad(true);
    inputs.push_back(t);
  }
  OpRun run;
  Tensor out = c.fn(inputs);
  run.output = out.to_vector();
  run.recorded_ops.clear();
  for (const TapeNode& node : tape_nodes()) run.recorded_ops.push_back(node.op);
  if (out.requires_grad()) {
    const Tensor w = Tensor::from_vector(weights, out.shape(), device);
    backward(ops::sum(ops::mul(out, w)));
  } else {
    tape_reset();
  }
  for (size_t i = 0; i < inputs.size(); ++i)
    run.grads.push_back(c.differentiable[i] && inputs[i].grad().defined() ? inputs[i].grad().to_vector()
                                                                          : std::vector<float>{});
  return run;
}

namespace {

double weighted_loss(const OpCase& c, const std::vector<Tensor>& inputs, const std::vector<float>& w) {
  NoGrad no_grad;
  const std::vector<float> out = c.fn(inputs).to_vector();
  double loss = 0.0;
  for (size_t i = 0; i < out.size(); ++i) loss += double(out[i]) * w[i];
  return loss;
}

std::vector<float> weights_for(const OpCase& c) {
  NoGrad no_grad;
  const int64_t n = c.fn(c.inputs).numel();
  Rng rng(99);
  return random_values(n, rng, -1.0f, 1.0f);
}

}  // namespace

TEST_CASE("gradcheck: every op against central finite differences, on every device") {
  for (Device device : devices()) {
    for (const OpCase& c : op_cases()) {
      CAPTURE(c.op);
      CAPTURE(c.variant);
      const std::string device_label = device_name(device);
      CAPTURE(device_label);
      const std::vector<float> w = weights_for(c);
      const OpRun run = run_case(c, device, w);
      bool recorded = false;
      for (const std::string& op : run.recorded_ops) recorded = recorded || op == c.op;
      const bool any_grad = std::find(c.differentiable.begin(), c.differentiable.end(), true) != c.differentiable.end();
      CHECK_MESSAGE(recorded == any_grad, "op " << c.op << " recorded: " << recorded);
      for (size_t i = 0; i < c.inputs.size(); ++i) {
        if (!c.differentiable[i]) continue;
        CAPTURE(i);
        REQUIRE(run.grads[i].size() == size_t(c.inputs[i].numel()));
        std::vector<float> base = c.inputs[i].to_vector();
        // The emulated GPU is slow: sample a few elements there (parity covers the rest).
        const size_t stride = device == Device::cpu ? 1 : std::max<size_t>(1, base.size() / 6);
        for (size_t j = 0; j < base.size(); j += stride) {
          const float h = 1e-2f;
          std::vector<Tensor> plus, minus;
          for (size_t k = 0; k < c.inputs.size(); ++k) {
            std::vector<float> vp = c.inputs[k].to_vector(), vm = vp;
            if (k == i) vp[j] = base[j] + h, vm[j] = base[j] - h;
            plus.push_back(Tensor::from_vector(vp, c.inputs[k].shape(), device));
            minus.push_back(Tensor::from_vector(vm, c.inputs[k].shape(), device));
          }
          const double numeric = (weighted_loss(c, plus, w) - weighted_loss(c, minus, w)) / (2.0 * h);
          const double analytic = run.grads[i][j];
          CHECK_MESSAGE(std::fabs(analytic - numeric) <= 2e-3 + 1e-2 * std::fabs(numeric),
                        "d/d input" << i << "[" << j << "]: tape " << analytic << " vs finite difference " << numeric);
        }
      }
    }
  }
}

TEST_CASE("parity: every op's forward and gradients on CUDA match the CPU") {
  if (!cuda_available()) {
    MESSAGE("no CUDA device (real or emulated): op parity skipped");
    return;
  }
  for (const OpCase& c : op_cases()) {
    CAPTURE(c.op);
    CAPTURE(c.variant);
    const std::vector<float> w = weights_for(c);
    const OpRun cpu = run_case(c, Device::cpu, w);
    const OpRun gpu = run_case(c, Device::cuda, w);
    CHECK_CLOSE_VEC(gpu.output, cpu.output, 1e-5, 1e-4);
    for (size_t i = 0; i < c.inputs.size(); ++i) CHECK_CLOSE_VEC(gpu.grads[i], cpu.grads[i], 1e-5, 1e-4);
  }
}

}  // namespace cte::test
