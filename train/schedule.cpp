// Warm-up, ramp-up, beta and learning-rate schedules (see schedule.h).
#include "train/schedule.h"

#include <cmath>

#include "engine/optim.h"

namespace cte::train {

double schedule_time(int epoch, int64_t batch, int64_t batches_per_epoch) {
  if (batches_per_epoch <= 0) return double(epoch);
  return double(epoch) + double(batch) / double(batches_per_epoch);
}

bool in_warmup(const TrainConfig& c, double t) { return t < double(c.warmup); }

double ramp_fraction(const TrainConfig& c, double t) {
  const double start = double(c.warmup);
  if (t < start) return 0.0;
  if (c.rampup <= 0) return 1.0;
  const double r = (t - start) / double(c.rampup);
  return r >= 1.0 ? 1.0 : r;
}

double smoothed_ramp(double r, double mid, double beta) {
  if (r <= 0.0) return 0.0;
  if (r >= 1.0) return 1.0;
  // alpha beta mid^(beta-1) = (1 - alpha mid^beta) / (1 - mid): equal slopes at mid.
  const double alpha = 1.0 / (std::pow(mid, beta - 1.0) * (beta * (1.0 - mid) + mid));
  const double at_mid = alpha * std::pow(mid, beta);
  if (r < mid) return alpha * std::pow(r, beta);
  return at_mid + (1.0 - at_mid) * (r - mid) / (1.0 - mid);
}

float schedule_eps(const TrainConfig& c, double t) {
  if (in_warmup(c, t)) return 0.0f;
  double r = ramp_fraction(c, t);
  if (c.eps_schedule == "smoothed") r = smoothed_ramp(r);
  return float(c.eps_start + r * (c.eps_train - c.eps_start));
}

float schedule_kappa(const TrainConfig& c, double t) {
  if (in_warmup(c, t)) return 1.0f;
  if (c.kappa_schedule == "zero-after-warmup") return 0.0f;
  const double r = ramp_fraction(c, t);
  return float(c.kappa_start + r * (c.kappa_end - c.kappa_start));
}

float schedule_beta(const TrainConfig& c, double t) {
  if (train_method(c.method).beta == BetaSchedule::held_at_1) return 1.0f;
  return float(1.0 - ramp_fraction(c, t));
}

float schedule_lr(const TrainConfig& c, double t) {
  if (c.lr_schedule == "steps") {
    // Natural training has no ramp-up to wait for: its steps count from epoch 0.
    const int start = uses_eps_schedule(c.method) ? c.warmup + c.rampup : 0;
    return lr_step(float(c.lr), t, start, c.lr_step_every, 0.5f);
  }
  return lr_milestones(float(c.lr), t, c.milestones, float(c.lr_decay_factor));
}

ScheduleValues schedule_at(const TrainConfig& c, int epoch, int64_t batch, int64_t batches_per_epoch) {
  ScheduleValues v;
  v.t = schedule_time(epoch, batch, batches_per_epoch);
  v.warmup = in_warmup(c, v.t);
  v.eps = schedule_eps(c, v.t);
  v.kappa = schedule_kappa(c, v.t);
  v.beta = schedule_beta(c, v.t);
  v.lr = schedule_lr(c, v.t);
  return v;
}

}  // namespace cte::train
