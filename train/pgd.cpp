// PGD attack (see pgd.h).
#include "train/pgd.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tape.h"

namespace cte::train {
namespace {

constexpr uint64_t kStartTag = 0x50474453ull;  // "PGDS"

Tensor labels_tensor(const std::vector<int>& labels, Device device) {
  std::vector<float> v(labels.begin(), labels.end());
  return Tensor::from_vector(v, Shape{int64_t(labels.size())}, device);
}

// (N, 1, ...) so that it broadcasts over one sample's values.
Shape per_sample_shape(const Shape& x) {
  std::vector<int64_t> dims(size_t(x.ndim()), 1);
  dims[0] = x[0];
  return Shape(dims);
}

Tensor mask_tensor(const std::vector<bool>& flags, bool value, const Shape& shape, Device device) {
  std::vector<float> v(flags.size());
  for (size_t i = 0; i < flags.size(); ++i) v[i] = flags[i] == value ? 1.0f : 0.0f;
  return Tensor::from_vector(v, shape, device);
}

// Uniform in [lo, hi] elementwise.
Tensor uniform_between(const Tensor& lo, const Tensor& hi, Rng& rng) {
  std::vector<float> u(size_t(lo.numel()));
  for (float& v : u) v = float(rng.uniform());
  const Tensor t = Tensor::from_vector(u, lo.shape(), lo.device());
  return ops::minimum(ops::add(lo, ops::mul(t, ops::sub(hi, lo))), hi);
}

// where(take, a, b) per sample: take (N) on the host, a and b like x.
Tensor select_samples(const std::vector<bool>& take, const Tensor& a, const Tensor& b, const Shape& mask_shape) {
  const Device device = a.device();
  return ops::add(ops::mul(a, mask_tensor(take, true, mask_shape, device)),
                  ops::mul(b, mask_tensor(take, false, mask_shape, device)));
}

// keep_highest_loss (see pgd.h). Per iterate x_0..x_steps: a sample misclassified at
// x_i (or earlier) takes x_i; else it takes x_i when its cross-entropy beats every
// earlier iterate's; the final iterate is only checked for misclassification, as in
// the official code, so the last step's point is kept only if it breaks the sample.
PgdResult pgd_highest_loss(const Network& view, const Tensor& x, const std::vector<int>& labels, const PgdOptions& o,
                           const Tensor& lo, const Tensor& hi, Rng& rng) {
  const Device device = x.device();
  const size_t n = labels.size();
  const Shape mask_shape = per_sample_shape(x.shape());
  const Tensor y = labels_tensor(labels, device);
  const Tensor zero = Tensor::zeros(Shape{1}, device);
  Tensor xa;
  {
    NoGrad no_grad;
    xa = o.random_start ? uniform_between(lo, hi, rng) : x.detach().clone();
  }
  Tensor kept = xa;
  std::vector<float> best_loss(n, -std::numeric_limits<float>::infinity());
  PgdResult result;
  result.adversarial.assign(n, false);
  for (int step = 0;; ++step) {
    Tensor leaf = xa.detach();
    leaf.set_requires_grad(true);
    const Tensor logits = view.forward(leaf);
    const std::vector<bool> wrong = misclassified(logits, labels);
    std::vector<bool> take(n, false);
    for (size_t i = 0; i < n; ++i) take[i] = result.adversarial[i] = result.adversarial[i] || wrong[i];
    const bool all_found = std::all_of(result.adversarial.begin(), result.adversarial.end(), [](bool b) { return b; });
    if (step == o.steps || (o.stop_when_all_misclassified && all_found)) {
      tape_reset();
      NoGrad no_grad;
      kept = select_samples(take, xa, kept, mask_shape);
      break;
    }
    const Tensor losses = ops::softmax_cross_entropy(logits, y);  // (N)
    const std::vector<float> loss_values = losses.to_vector();
    for (size_t i = 0; i < n; ++i)
      if (loss_values[i] > best_loss[i]) {
        best_loss[i] = loss_values[i];
        take[i] = true;
      }
    backward(ops::sum(losses));
    NoGrad no_grad;
    kept = select_samples(take, xa, kept, mask_shape);
    const Tensor g = leaf.grad();
    const Tensor direction =
        ops::sub(ops::compare(g, zero, kern::BinaryOp::gt), ops::compare(g, zero, kern::BinaryOp::lt));
    xa = ops::minimum(ops::maximum(ops::add(xa, ops::scale(direction, pgd_step_size(o, step))), lo), hi);
  }
  result.x_adv = kept.detach();
  return result;
}

}  // namespace

float pgd_step_size(const PgdOptions& o, int step) {
  float size = o.step_size;
  for (double fraction : o.step_decay_at)
    if (step >= int(std::ceil(fraction * double(o.steps)))) size *= o.step_decay_factor;
  return size;
}

Network detached_view(const Network& net) {
  Network view = net;
  for (Layer& layer : view.layers()) {
    if (layer.weight.defined()) layer.weight = layer.weight.detach();
    if (layer.bias.defined()) layer.bias = layer.bias.detach();
  }
  return view;
}

std::vector<bool> misclassified(const Tensor& logits, const std::vector<int>& labels) {
  const int64_t n = logits.shape()[0], k = logits.shape()[1];
  const std::vector<float> z = logits.to_vector();
  std::vector<bool> out(size_t(n), false);
  for (int64_t i = 0; i < n; ++i) {
    const float* row = z.data() + i * k;
    const float zy = row[labels[size_t(i)]];
    for (int64_t j = 0; j < k; ++j)
      if (j != labels[size_t(i)] && !(row[j] < zy)) out[size_t(i)] = true;  // NaN counts as broken
  }
  return out;
}

PgdResult pgd_attack(const Network& net, const Tensor& x, const std::vector<int>& labels, const PgdOptions& o) {
  if (x.ndim() < 1 || x.shape()[0] != int64_t(labels.size()))
    fail("pgd", "input is " + x.shape().str() + " but " + std::to_string(labels.size()) + " labels were given");
  const Network view = detached_view(net);
  const Device device = x.device();
  const int64_t n = x.shape()[0];
  const Shape mask_shape = per_sample_shape(x.shape());
  const Tensor y = labels_tensor(labels, device);
  const Tensor zero = Tensor::zeros(Shape{1}, device);
  Tensor lo, hi;
  {
    NoGrad no_grad;
    const Tensor xd = x.detach();
    lo = ops::add_scalar(xd, -o.eps);
    hi = ops::add_scalar(xd, o.eps);
    if (o.clip) {
      lo = ops::clamp(lo, 0.0f, 1.0f);
      hi = ops::clamp(hi, 0.0f, 1.0f);
    }
  }
  Rng rng(mix_seed(o.seed, kStartTag));
  if (o.keep_highest_loss) return pgd_highest_loss(view, x, labels, o, lo, hi, rng);
  PgdResult result;
  result.adversarial.assign(size_t(n), false);
  Tensor best;  // the adversarial points found so far (where adversarial[i])
  for (int attempt = 0; attempt <= o.restarts; ++attempt) {
    if (o.track && o.stop_at_success && attempt > 0 &&
        std::all_of(result.adversarial.begin(), result.adversarial.end(), [](bool b) { return b; }))
      break;
    Tensor xa;
    {
      NoGrad no_grad;
      xa = (attempt > 0 || o.random_start) ? uniform_between(lo, hi, rng) : x.detach().clone();
      if (attempt > 0 && o.track && o.stop_at_success) {
        // Samples already broken start (and stay) at their adversarial point.
        const Tensor found = mask_tensor(result.adversarial, true, mask_shape, device);
        const Tensor open = mask_tensor(result.adversarial, false, mask_shape, device);
        xa = ops::add(ops::mul(best, found), ops::mul(xa, open));
      }
    }
    Tensor active = mask_tensor(result.adversarial, false, mask_shape, device);
    for (int step = 0; step <= o.steps; ++step) {
      if (step == o.steps) {
        if (o.track) {
          NoGrad no_grad;
          const std::vector<bool> wrong = misclassified(view.forward(xa), labels);
          for (size_t i = 0; i < wrong.size(); ++i)
            if (wrong[i] && !result.adversarial[i]) result.adversarial[i] = true;
        }
        break;
      }
      Tensor leaf = xa.detach();
      leaf.set_requires_grad(true);
      const Tensor logits = view.forward(leaf);
      if (o.track) {
        const std::vector<bool> wrong = misclassified(logits, labels);
        bool changed = false;
        for (size_t i = 0; i < wrong.size(); ++i)
          if (wrong[i] && !result.adversarial[i]) result.adversarial[i] = changed = true;
        if (o.stop_at_success && changed) {
          if (std::all_of(result.adversarial.begin(), result.adversarial.end(), [](bool b) { return b; })) {
            tape_reset();
            break;
          }
          active = mask_tensor(result.adversarial, false, mask_shape, device);
        }
      }
      if (!o.track && o.stop_when_all_misclassified) {
        const std::vector<bool> wrong = misclassified(logits, labels);
        if (std::all_of(wrong.begin(), wrong.end(), [](bool b) { return b; })) {
          tape_reset();
          break;
        }
      }
      backward(ops::sum(ops::softmax_cross_entropy(logits, y)));
      NoGrad no_grad;
      const Tensor g = leaf.grad();
      Tensor direction = ops::sub(ops::compare(g, zero, kern::BinaryOp::gt), ops::compare(g, zero, kern::BinaryOp::lt));
      if (o.track && o.stop_at_success) direction = ops::mul(direction, active);
      xa = ops::minimum(ops::maximum(ops::add(xa, ops::scale(direction, pgd_step_size(o, step))), lo), hi);
    }
    // Frozen samples (found earlier) kept their point, so the last iterate is the answer.
    best = xa;
  }
  result.x_adv = best.detach();
  return result;
}

}  // namespace cte::train
