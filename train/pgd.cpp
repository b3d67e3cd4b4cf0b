// PGD attack (see pgd.h).
#include "train/pgd.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/ops.h"
#include "engine/random.h"
#include "engine/staging.h"
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

std::vector<float> uniform_draws(Rng& rng, int64_t count) {
  std::vector<float> u(static_cast<size_t>(count));
  for (float& v : u) v = float(rng.uniform());
  return u;
}

// lo + u (hi - lo) elementwise for draws u (like lo) in [0, 1), at most hi.
Tensor between(const Tensor& lo, const Tensor& hi, const Tensor& u) {
  return ops::minimum(ops::add(lo, ops::mul(u, ops::sub(hi, lo))), hi);
}

// Uniform in [lo, hi] elementwise; the draws go up through `staging` when given
// (no host round trip), else by a plain copy.
Tensor uniform_between(const Tensor& lo, const Tensor& hi, Rng& rng, UploadStaging* staging = nullptr) {
  const std::vector<float> u = uniform_draws(rng, lo.numel());
  const Tensor t = staging != nullptr ? staging->upload(u, lo.shape(), lo.device())
                                      : Tensor::from_vector(u, lo.shape(), lo.device());
  return between(lo, hi, t);
}

// x where take (N, 0 or 1) is 1, else the other; exact for finite values (x * 1 + y * 0).
Tensor select_by_mask(const Tensor& take, const Tensor& a, const Tensor& b, const Shape& mask_shape) {
  const Tensor m = ops::reshape(take, mask_shape);
  return ops::add(ops::mul(a, m), ops::mul(b, ops::add_scalar(ops::neg(m), 1.0f)));
}

// The training attack (track off: --method pgd and sabr), with every decision
// on the device, so a training step makes no host round trip (issue 19):
//   found (N): misclassified at some iterate so far (ops::misclassified);
//   keep_highest_loss: per iterate x_0..x_steps, a sample found at x_i (or
//     earlier) takes x_i, else it takes x_i when its cross-entropy beats every
//     earlier iterate's; the final iterate is only checked for
//     misclassification, as in the official code (eth-sri/SABR adv_attack.py);
//   early stop: `done` turns 1 once every sample is found (keep_highest_loss)
//     or the current iterate misclassifies every sample (last-iterate mode),
//     and from then on x stays where it is, so later steps change nothing.
// The host learns of `done` through a ScalarReadback: at once on the CPU, one
// step late on a GPU, whose extra step changes nothing (everything is frozen)
// but keeps the device busy while the host waits for the flag.
PgdResult pgd_training(const Network& view, const Tensor& x, const Tensor& y, const PgdOptions& o, const Tensor& lo,
                       const Tensor& hi, Rng& rng) {
  const Device device = x.device();
  const int64_t n = x.shape()[0];
  const Shape mask_shape = per_sample_shape(x.shape());
  const bool early_stop = o.stop_when_all_misclassified;
  const Tensor zero = Tensor::zeros(Shape{1}, device);
  Tensor xa, kept, found, best_loss, done;
  {
    NoGrad no_grad;
    if (!o.random_start) xa = x.detach().clone();
    else if (o.start_draws.defined()) xa = between(lo, hi, o.start_draws);
    else xa = uniform_between(lo, hi, rng, o.staging);
    kept = xa;
    found = Tensor::zeros(Shape{n}, device);
    best_loss = Tensor::full(Shape{n}, -std::numeric_limits<float>::infinity(), device);
    done = Tensor::zeros(Shape{1}, device);
  }
  ScalarReadback local_flags(o.readback != nullptr ? 1 : 2);
  ScalarReadback& done_flags = o.readback != nullptr ? *o.readback : local_flags;
  done_flags.restart();
  const size_t lag = device == Device::cuda ? 1 : 0;
  for (int step = 0;; ++step) {
    float stopped = 0.0f;
    if (early_stop && o.read_early_stop && done_flags.value(lag, &stopped) && stopped != 0.0f) break;
    const bool final = step == o.steps;
    if (final && !o.keep_highest_loss) break;
    Tensor leaf = xa.detach();
    leaf.set_requires_grad(true);
    const Tensor logits = view.forward(leaf);
    Tensor wrong;
    if (o.keep_highest_loss || early_stop) {
      NoGrad no_grad;
      wrong = ops::misclassified(logits.detach(), y);
      found = ops::maximum(found, wrong);
    }
    if (final) {  // keep_highest_loss: the final iterate only where it breaks the sample
      tape_reset();
      NoGrad no_grad;
      kept = select_by_mask(found, xa, kept, mask_shape);
      break;
    }
    const Tensor losses = ops::softmax_cross_entropy(logits, y);  // (N)
    backward(ops::sum(losses));
    NoGrad no_grad;
    if (o.keep_highest_loss) {
      const Tensor loss = losses.detach();
      const Tensor improved = ops::compare(loss, best_loss, kern::BinaryOp::gt);
      best_loss = ops::select(improved, loss, best_loss);  // (not maximum: a NaN loss must not stick)
      kept = select_by_mask(ops::maximum(found, improved), xa, kept, mask_shape);
    }
    if (early_stop) {  // every sample found (or misclassified right now): sum of the 0/1 flags reaches n
      const Tensor all = ops::compare(ops::add_scalar(ops::sum(o.keep_highest_loss ? found : wrong), -float(n)),
                                      zero, kern::BinaryOp::ge);
      done = ops::maximum(done, all);
      if (o.read_early_stop) done_flags.queue(done);
    }
    const Tensor g = leaf.grad();
    const Tensor direction =
        ops::sub(ops::compare(g, zero, kern::BinaryOp::gt), ops::compare(g, zero, kern::BinaryOp::lt));
    const Tensor stepped =
        ops::minimum(ops::maximum(ops::add(xa, ops::scale(direction, pgd_step_size(o, step))), lo), hi);
    // After the early stop x stays, so every later iterate is the same point and nothing a step
    // takes from it changes the answer (in last-iterate mode x itself is the answer).
    xa = early_stop ? ops::add(ops::mul(stepped, ops::add_scalar(ops::neg(done), 1.0f)), ops::mul(xa, done)) : stepped;
  }
  PgdResult result;
  result.x_adv = (o.keep_highest_loss ? kept : xa).detach();
  result.broken = found;
  return result;
}

}  // namespace

std::vector<float> pgd_start_draws(uint64_t seed, int64_t count) {
  Rng rng(mix_seed(seed, kStartTag));
  return uniform_draws(rng, count);
}

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
  const Tensor& given = o.labels_on_device;
  if (given.defined() && (given.ndim() != 1 || given.shape()[0] != n || given.device() != device))
    fail("pgd", "labels_on_device is " + given.shape().str() + " on " + device_name(given.device()) + " but the input is " +
                    x.shape().str() + " on " + device_name(device));
  const Tensor y = given.defined() ? given : labels_tensor(labels, device);
  const Tensor& draws = o.start_draws;
  if (draws.defined() && (draws.shape() != x.shape() || draws.device() != device))
    fail("pgd", "start_draws are " + draws.shape().str() + " on " + device_name(draws.device()) + " but the input is " +
                    x.shape().str() + " on " + device_name(device));
  if ((draws.defined() || !o.read_early_stop) && (o.track && !o.keep_highest_loss))
    fail("pgd", "start_draws and read_early_stop = false are for the training attack (track off)");
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
  if (!o.track || o.keep_highest_loss) {
    PgdResult result = pgd_training(view, x, y, o, lo, hi, rng);
    if (o.track) {  // asked for on the host: one read at the end
      const std::vector<float> broken = result.broken.to_vector();
      for (float flag : broken) result.adversarial.push_back(flag != 0.0f);
    }
    return result;
  }
  // Evaluation: per-sample bookkeeping on the host (restarts, samples frozen once broken).
  PgdResult result;
  result.adversarial.assign(size_t(n), false);
  Tensor best;  // the adversarial points found so far (where adversarial[i])
  for (int attempt = 0; attempt <= o.restarts; ++attempt) {
    if (o.stop_at_success && attempt > 0 &&
        std::all_of(result.adversarial.begin(), result.adversarial.end(), [](bool b) { return b; }))
      break;
    Tensor xa;
    {
      NoGrad no_grad;
      xa = (attempt > 0 || o.random_start) ? uniform_between(lo, hi, rng) : x.detach().clone();
      if (attempt > 0 && o.stop_at_success) {
        // Samples already broken start (and stay) at their adversarial point.
        const Tensor found = mask_tensor(result.adversarial, true, mask_shape, device);
        const Tensor open = mask_tensor(result.adversarial, false, mask_shape, device);
        xa = ops::add(ops::mul(best, found), ops::mul(xa, open));
      }
    }
    Tensor active = mask_tensor(result.adversarial, false, mask_shape, device);
    for (int step = 0; step <= o.steps; ++step) {
      if (step == o.steps) {
        NoGrad no_grad;
        const std::vector<bool> wrong = misclassified(view.forward(xa), labels);
        for (size_t i = 0; i < wrong.size(); ++i)
          if (wrong[i] && !result.adversarial[i]) result.adversarial[i] = true;
        break;
      }
      Tensor leaf = xa.detach();
      leaf.set_requires_grad(true);
      const Tensor logits = view.forward(leaf);
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
      backward(ops::sum(ops::softmax_cross_entropy(logits, y)));
      NoGrad no_grad;
      const Tensor g = leaf.grad();
      Tensor direction = ops::sub(ops::compare(g, zero, kern::BinaryOp::gt), ops::compare(g, zero, kern::BinaryOp::lt));
      if (o.stop_at_success) direction = ops::mul(direction, active);
      xa = ops::minimum(ops::maximum(ops::add(xa, ops::scale(direction, pgd_step_size(o, step))), lo), hi);
    }
    // Frozen samples (found earlier) kept their point, so the last iterate is the answer.
    best = xa;
  }
  result.x_adv = best.detach();
  return result;
}

}  // namespace cte::train
