// The training schedule as pure functions of the position in training,
// t = epoch + batch / batches_per_epoch (epochs counted from 0), so every
// value changes per batch and a resumed run sees exactly the same values:
//
//   t < N_w                warm-up: natural training (eps 0, kappa 1, beta 1)
//   N_w <= t < N_w + N_r   ramp-up, r = (t - N_w) / N_r in [0, 1):
//                            eps   = eps_start + r (eps_train - eps_start)
//                            kappa = kappa_start + r (kappa_end - kappa_start)
//                            beta  = 1 - r   (crown-ibp: beta CROWN-IBP(R) + (1-beta) Box)
//   t >= N_w + N_r         eps_train, kappa_end, beta 0
// --eps-schedule smoothed puts r through smoothed_ramp for eps (kappa and beta
// stay linear); --kappa-schedule zero-after-warmup: kappa 0 from N_w on.
//
// Learning rate: milestones (x --lr-decay-factor at each milestone epoch) or steps (x0.5
// every --lr-step-every epochs counted from the end of the ramp-up).
#pragma once
#include <cstdint>

#include "train/config.h"

namespace cte::train {

// t = epoch + batch / batches_per_epoch.
double schedule_time(int epoch, int64_t batch, int64_t batches_per_epoch);
// 0 until the end of the warm-up, then linear to 1 at the end of the ramp-up, then 1.
double ramp_fraction(const TrainConfig& config, double t);
bool in_warmup(const TrainConfig& config, double t);
// The smoothed ramp of Gowal et al.'s IBP code (auto_LiRPA's SmoothedScheduler, used by
// CROWN-IBP and SABR): r in [0, 1] -> [0, 1], alpha r^beta up to r = mid, then the straight
// line to (1, 1) whose slope matches the curve's at mid (C^1). mid 0.25, beta 4 by default.
double smoothed_ramp(double r, double mid = 0.25, double beta = 4.0);
float schedule_eps(const TrainConfig& config, double t);
float schedule_kappa(const TrainConfig& config, double t);
float schedule_beta(const TrainConfig& config, double t);
float schedule_lr(const TrainConfig& config, double t);

struct ScheduleValues {
  double t = 0;
  float eps = 0, kappa = 1, beta = 1, lr = 0;
  bool warmup = false;
};
ScheduleValues schedule_at(const TrainConfig& config, int epoch, int64_t batch, int64_t batches_per_epoch);

}  // namespace cte::train
