// Optimisers and learning-rate schedules. Adam runs one fused kernel per
// parameter tensor (kernels adam_step_cpu / adam_step_cuda); its moments live
// beside the parameters on the same device and are part of a checkpoint.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace cte {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Applies the accumulated gradients. skip: a one-element tensor on the
  // parameters' device, read by the kernels themselves; nonzero leaves every
  // parameter and moment as it is (the trainer's non-finite step), without the
  // host reading it. Adam's step count, which is host state, advances anyway.
  virtual void step(const Tensor& skip = Tensor()) = 0;
  void zero_grad();                            // clears every parameter's gradient
  void set_learning_rate(float lr) { lr_ = lr; }
  float learning_rate() const { return lr_; }
  const std::vector<Tensor>& parameters() const { return params_; }
  // An L1 penalty lambda * sum |p| on each of `penalised` (some of the
  // parameters; the others get none), folded into the step's kernel: it adds
  // lambda * sign(p) to the gradient there instead of two passes per weight on
  // the tape. The penalty's value is the caller's to report.
  void set_l1_penalty(const std::vector<Tensor>& penalised, float lambda);
  // State for checkpoints (moments, step count) as named tensors.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  // CUDA graphs: the host values the next step() passes to its kernels (a
  // captured step keeps them, so a replay is valid only while they are equal),
  // and the host-side step count (Adam's), advanced by hand for a replayed
  // step and restored after a capture that failed.
  virtual std::vector<float> next_step_scalars() const { return {lr_}; }
  virtual int64_t step_count() const { return 0; }
  virtual void set_step_count(int64_t) {}
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state) = 0;

 protected:
  Optimizer(std::vector<Tensor> params, float lr)
      : params_(std::move(params)), lr_(lr), l1_(params_.size(), 0.0f) {}
  // The gradient the step applies to parameter i: its own; zeros where the loss
  // did not reach it but an L1 penalty does; undefined (no step) otherwise.
  Tensor step_gradient(size_t i) const;
  std::vector<Tensor> params_;
  float lr_;
  std::vector<float> l1_;  // per parameter: its L1 penalty's lambda, 0 for none
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f);
  void step(const Tensor& skip = Tensor()) override;
  int64_t steps_taken() const { return step_; }
  // lr and the bias corrections 1 - beta^t, which reach exactly 1 in float
  // after some 17,000 steps (beta2 = 0.999), from when on a graph replays.
  std::vector<float> next_step_scalars() const override;
  int64_t step_count() const override { return step_; }
  void set_step_count(int64_t steps) override { step_ = steps; }
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

 private:
  float beta1_, beta2_, eps_;
  int64_t step_ = 0;
  std::vector<Tensor> m_, v_;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, float lr, float momentum = 0.0f);
  void step(const Tensor& skip = Tensor()) override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

 private:
  float momentum_;
  std::vector<Tensor> buffers_;
};

// Learning rate at a (fractional) epoch.
// milestones: base * factor^(number of milestones <= epoch), e.g. x0.1 at 130 and 190.
float lr_milestones(float base, double epoch, const std::vector<int>& milestones, float factor = 0.1f);
// step: halve every `every` epochs counted from `start` (the end of the ramp-up).
float lr_step(float base, double epoch, int start, int every, float factor = 0.5f);

}  // namespace cte
