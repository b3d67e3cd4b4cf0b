// BatchNorm over the channel axis (axis 1) of x (N, C) or (N, C, H, W):
// batch_norm with given statistics (evaluation mode: an affine map per
// channel) and batch_norm_train, which computes the batch's mean and biased
// variance and returns them as outputs of the same node, so that whatever
// else reads them (the running averages, the bound propagation of certified
// training) passes its gradient back through the statistics into x.
// Kernels: batch_norm_{stats,apply,backward} (kernels/kernels.h).
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::ops {
namespace {

struct ChannelLayout {
  int64_t n, channels, plane;
};

ChannelLayout channel_layout(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta) {
  if (x.ndim() != 2 && x.ndim() != 4)
    fail(op, "x is " + x.shape().str() + "; expects (N, C) or (N, C, H, W)");
  const int64_t channels = x.shape()[1];
  for (const Tensor* t : {&gamma, &beta})
    if (!t->defined() || t->shape() != Shape{channels})
      fail(op, "x is " + x.shape().str() + " but gamma/beta are " + (t->defined() ? t->shape().str() : "undefined") +
                   "; expects (" + std::to_string(channels) + ")");
  return {x.shape()[0], channels, x.ndim() == 4 ? x.shape()[2] * x.shape()[3] : 1};
}

// The backward shared by both ops: dx, dgamma, dbeta from dy (zeros when undefined).
void batch_norm_grads(const Tensor& dy_or_none, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                      const Tensor& mean, const Tensor& var, const Tensor& dmean, const Tensor& dvar, float eps,
                      bool batch_stats, const ChannelLayout& l) {
  const Device device = x.device();
  const Tensor dy = dy_or_none.defined() ? dy_or_none : Tensor::zeros(x.shape(), device);
  Tensor dx = Tensor::empty(x.shape(), device);
  Tensor dgamma = Tensor::empty(gamma.shape(), device), dbeta = Tensor::empty(beta.shape(), device);
  CTE_RUN(device, batch_norm_backward, dy.data(), x.data(), mean.data(), var.data(), gamma.data(),
          dmean.defined() ? dmean.data() : nullptr, dvar.defined() ? dvar.data() : nullptr, dx.data(), dgamma.data(),
          dbeta.data(), l.n, l.channels, l.plane, eps, batch_stats ? 1 : 0);
  accumulate_grad(x, dx);
  accumulate_grad(gamma, dgamma);
  accumulate_grad(beta, dbeta);
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& var,
                  float eps) {
  const Device device = common_device("batch_norm", {&x, &gamma, &beta, &mean, &var});
  const ChannelLayout l = channel_layout("batch_norm", x, gamma, beta);
  if (mean.shape() != gamma.shape() || var.shape() != gamma.shape())
    fail("batch_norm", "statistics are " + mean.shape().str() + " and " + var.shape().str() + "; expects (" +
                           std::to_string(l.channels) + ")");
  Tensor y = Tensor::empty(x.shape(), device);
  CTE_RUN(device, batch_norm_apply, x.data(), mean.data(), var.data(), gamma.data(), beta.data(), y.data(), l.n,
          l.channels, l.plane, eps);
  // The statistics are constants here (running averages): no gradient to them.
  if (should_record({&x, &gamma, &beta}))
    record("batch_norm", {x, gamma, beta}, y, [x, gamma, beta, mean, var, eps, l](const Tensor& g) {
      batch_norm_grads(g, x, gamma, beta, mean, var, Tensor(), Tensor(), eps, false, l);
    });
  return y;
}

BatchNormTrainResult batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  const Device device = common_device("batch_norm_train", {&x, &gamma, &beta});
  const ChannelLayout l = channel_layout("batch_norm_train", x, gamma, beta);
  if (l.n * l.plane < 2)
    fail("batch_norm_train", "x is " + x.shape().str() + ": batch statistics need more than one value per channel");
  BatchNormTrainResult r;
  r.mean = Tensor::empty(gamma.shape(), device);
  r.var = Tensor::empty(gamma.shape(), device);
  r.y = Tensor::empty(x.shape(), device);
  CTE_RUN(device, batch_norm_stats, x.data(), r.mean.data(), r.var.data(), l.n, l.channels, l.plane);
  CTE_RUN(device, batch_norm_apply, x.data(), r.mean.data(), r.var.data(), gamma.data(), beta.data(), r.y.data(), l.n,
          l.channels, l.plane, eps);
  if (should_record({&x, &gamma, &beta})) {
    const Tensor mean = r.mean.detach(), var = r.var.detach();  // the saved values, without the node's outputs' history
    record_multi("batch_norm_train", {x, gamma, beta}, {&r.y, &r.mean, &r.var},
                 [x, gamma, beta, mean, var, eps, l](const std::vector<Tensor>& g) {
                   batch_norm_grads(g[0], x, gamma, beta, mean, var, g[1], g[2], eps, true, l);
                 });
  }
  return r;
}

}  // namespace cte::ops
