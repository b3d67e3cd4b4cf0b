// The softmax family over the last axis: log_softmax, logsumexp and the fused,
// numerically stable softmax cross-entropy (which saves the probabilities for
// its backward instead of recomputing them); beside it the label ops a training
// step and its attack run on the device (margin_spec, count_correct, misclassified).
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {
namespace {
struct Rows {
  int64_t rows, cols;
};
Rows rows_of(const char* op, const Tensor& x) {
  if (x.ndim() < 1) fail(op, "needs at least one axis, got shape " + x.shape().str());
  const int64_t cols = x.shape()[-1];
  return {cols == 0 ? 0 : x.numel() / cols, cols};
}
}  // namespace

Tensor log_softmax(const Tensor& x) {
  const Rows r = rows_of("log_softmax", x);
  Tensor y = Tensor::empty(x.shape(), x.device());
  CTE_RUN(x.device(), log_softmax, x.data(), y.data(), r.rows, r.cols);
  if (should_record({&x}))
    record("log_softmax", {x}, y, [x, y, r](const Tensor& g) {
      Tensor dx = Tensor::empty(x.shape(), x.device());
      CTE_RUN(x.device(), log_softmax_backward, g.data(), y.data(), dx.data(), r.rows, r.cols);
      accumulate_grad(x, dx);
    });
  return y;
}

Tensor logsumexp(const Tensor& x) {
  const Rows r = rows_of("logsumexp", x);
  std::vector<int64_t> dims = x.shape().dims();
  dims.pop_back();
  Tensor y = Tensor::empty(Shape(dims), x.device());
  CTE_RUN(x.device(), logsumexp, x.data(), y.data(), r.rows, r.cols);
  if (should_record({&x}))
    record("logsumexp", {x}, y, [x, y, r](const Tensor& g) {
      Tensor dx = Tensor::empty(x.shape(), x.device());
      CTE_RUN(x.device(), logsumexp_backward, g.data(), x.data(), y.data(), dx.data(), r.rows, r.cols);
      accumulate_grad(x, dx);
    });
  return y;
}

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  const Device device = common_device("softmax_cross_entropy", {&logits, &labels});
  if (logits.ndim() != 2 || labels.ndim() != 1 || labels.shape()[0] != logits.shape()[0])
    fail("softmax_cross_entropy", "logits are " + logits.shape().str() + " and labels " +
                                      labels.shape().str() + " (expects (N, K) and (N))");
  const int64_t rows = logits.shape()[0], cols = logits.shape()[1];
  // Labels are user data. On the CPU, check them here (free); on CUDA a
  // check would cost a device-to-host copy every step, so the kernel itself
  // gives a NaN loss for a label that is not a class index (never an
  // out-of-bounds read), and loaders validate labels when they read them.
  if (device == Device::cpu)
    for (const float* p = labels.data(); p != labels.data() + labels.numel(); ++p) {
      const float label = *p;
      if (!(label >= 0.0f && label < float(cols) && label == float(int64_t(label))))
        fail("softmax_cross_entropy", "label " + std::to_string(label) + " is not a class index in [0, " +
                                          std::to_string(cols) + ")");
    }
  Tensor loss = Tensor::empty(Shape{rows}, device);
  Tensor probs = Tensor::empty(logits.shape(), device);
  CTE_RUN(device, softmax_xent, logits.data(), labels.data(), loss.data(), probs.data(), rows, cols);
  if (should_record({&logits}))
    record("softmax_cross_entropy", {logits, labels}, loss, [logits, labels, probs, rows, cols](const Tensor& g) {
      Tensor dlogits = Tensor::empty(logits.shape(), logits.device());
      CTE_RUN(logits.device(), softmax_xent_backward, g.data(), probs.data(), labels.data(),
              dlogits.data(), rows, cols);
      accumulate_grad(logits, dlogits);
    });
  return loss;
}

Tensor margin_spec(const Tensor& labels, int64_t num_classes) {
  if (labels.ndim() != 1) fail("margin_spec", "labels are " + labels.shape().str() + ", expected (N)");
  if (num_classes < 2) fail("margin_spec", "needs at least 2 classes, got " + std::to_string(num_classes));
  const int64_t n = labels.shape()[0];
  Tensor spec = Tensor::empty(Shape{n, num_classes - 1, num_classes}, labels.device());
  CTE_RUN(labels.device(), margin_spec, labels.data(), spec.data(), n, num_classes);
  return spec;
}

namespace {
// The shared front of the per-row label ops: logits (N, K) and labels (N) on one device.
Device check_logits_and_labels(const char* op, const Tensor& logits, const Tensor& labels) {
  const Device device = common_device(op, {&logits, &labels});
  if (logits.ndim() != 2 || labels.ndim() != 1 || labels.shape()[0] != logits.shape()[0])
    fail(op, "logits are " + logits.shape().str() + " and labels " + labels.shape().str() + " (expects (N, K) and (N))");
  return device;
}
}  // namespace

Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  const Device device = check_logits_and_labels("count_correct", logits, labels);
  const int64_t rows = logits.shape()[0], cols = logits.shape()[1];
  Tensor hits = Tensor::empty(Shape{rows}, device);
  CTE_RUN(device, argmax_hits, logits.data(), labels.data(), hits.data(), rows, cols);
  NoGrad no_grad;
  return sum(hits);
}

Tensor misclassified(const Tensor& logits, const Tensor& labels) {
  const Device device = check_logits_and_labels("misclassified", logits, labels);
  const int64_t rows = logits.shape()[0], cols = logits.shape()[1];
  Tensor flags = Tensor::empty(Shape{rows}, device);
  CTE_RUN(device, misclassified_rows, logits.data(), labels.data(), flags.data(), rows, cols);
  return flags;
}

}  // namespace cte::ops
