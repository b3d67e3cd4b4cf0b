// Adam and SGD over fused kernels, and the learning-rate schedules.
#include "engine/optim.h"

#include <algorithm>
#include <cmath>

#include "engine/dispatch.h"

namespace cte {

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::set_l1_penalty(const std::vector<Tensor>& penalised, float lambda) {
  std::fill(l1_.begin(), l1_.end(), 0.0f);
  for (const Tensor& t : penalised) {
    const auto it = std::find_if(params_.begin(), params_.end(), [&](const Tensor& p) { return p.data() == t.data(); });
    if (it == params_.end())
      fail("optimizer", "an L1-penalised tensor of shape " + t.shape().str() + " is not one of its parameters");
    l1_[size_t(it - params_.begin())] = lambda;
  }
}

Tensor Optimizer::step_gradient(size_t i) const {
  const Tensor g = params_[i].grad();
  if (g.defined() || l1_[i] == 0.0f) return g;
  return Tensor::zeros(params_[i].shape(), params_[i].device());
}

Adam::Adam(std::vector<Tensor> params, float lr, float beta1, float beta2, float eps)
    : Optimizer(std::move(params), lr), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (const Tensor& p : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.device()));
  }
}

namespace {
// The skip flag's device pointer (null: never skip), checked against the parameters.
const float* skip_flag(const char* optimizer, const Tensor& skip, const std::vector<Tensor>& params) {
  if (!skip.defined()) return nullptr;
  if (skip.numel() != 1) fail(optimizer, "the skip flag has shape " + skip.shape().str() + ", expected one element");
  if (!params.empty() && skip.device() != params[0].device())
    fail(optimizer, std::string("the skip flag is on ") + device_name(skip.device()) + ", the parameters on " +
                        device_name(params[0].device()));
  return skip.data();
}
}  // namespace

namespace {
float bias_correction(float beta, int64_t step) { return 1.0f - std::pow(beta, float(step)); }
}  // namespace

std::vector<float> Adam::next_step_scalars() const {
  return {lr_, bias_correction(beta1_, step_ + 1), bias_correction(beta2_, step_ + 1)};
}

void Adam::step(const Tensor& skip) {
  const float* skip_if_nonzero = skip_flag("adam", skip, params_);
  ++step_;
  const float bc1 = bias_correction(beta1_, step_);
  const float bc2 = bias_correction(beta2_, step_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = step_gradient(i);
    if (!g.defined()) continue;  // a parameter the loss did not reach
    CTE_RUN(p.device(), adam_step, p.data(), g.data(), m_[i].data(), v_[i].data(), p.numel(), lr_,
            beta1_, beta2_, eps_, bc1, bc2, l1_[i], skip_if_nonzero);
  }
}

std::vector<std::pair<std::string, Tensor>> Adam::state() const {
  std::vector<std::pair<std::string, Tensor>> s;
  s.emplace_back("adam.step", Tensor::scalar(float(step_), Device::cpu));
  for (size_t i = 0; i < m_.size(); ++i) {
    s.emplace_back("adam.m." + std::to_string(i), m_[i]);
    s.emplace_back("adam.v." + std::to_string(i), v_[i]);
  }
  return s;
}

void Adam::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  size_t found = 0;
  for (const auto& [name, t] : state) {
    if (name == "adam.step") {
      step_ = int64_t(t.item());
      ++found;
      continue;
    }
    for (size_t i = 0; i < m_.size(); ++i) {
      Tensor* target = nullptr;
      if (name == "adam.m." + std::to_string(i)) target = &m_[i];
      if (name == "adam.v." + std::to_string(i)) target = &v_[i];
      if (!target) continue;
      if (t.shape() != target->shape())
        fail("adam", "checkpoint state " + name + " has shape " + t.shape().str() + ", expected " +
                         target->shape().str());
      target->copy_from(t);
      ++found;
    }
  }
  if (found != 1 + 2 * m_.size())
    fail("adam", "checkpoint holds " + std::to_string(found) + " of the " +
                     std::to_string(1 + 2 * m_.size()) + " optimizer state tensors");
}

Sgd::Sgd(std::vector<Tensor> params, float lr, float momentum)
    : Optimizer(std::move(params), lr), momentum_(momentum) {
  for (const Tensor& p : params_) buffers_.push_back(Tensor::zeros(p.shape(), p.device()));
}

void Sgd::step(const Tensor& skip) {
  const float* skip_if_nonzero = skip_flag("sgd", skip, params_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i];
    const Tensor g = step_gradient(i);
    if (!g.defined()) continue;
    CTE_RUN(p.device(), sgd_step, p.data(), g.data(), buffers_[i].data(), p.numel(), lr_, momentum_, l1_[i],
            skip_if_nonzero);
  }
}

std::vector<std::pair<std::string, Tensor>> Sgd::state() const {
  std::vector<std::pair<std::string, Tensor>> s;
  for (size_t i = 0; i < buffers_.size(); ++i) s.emplace_back("sgd.buf." + std::to_string(i), buffers_[i]);
  return s;
}

void Sgd::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  for (const auto& [name, t] : state)
    for (size_t i = 0; i < buffers_.size(); ++i)
      if (name == "sgd.buf." + std::to_string(i)) {
        if (t.shape() != buffers_[i].shape())
          fail("sgd", "checkpoint state " + name + " has shape " + t.shape().str());
        buffers_[i].copy_from(t);
      }
}

float lr_milestones(float base, double epoch, const std::vector<int>& milestones, float factor) {
  float lr = base;
  for (int m : milestones)
    if (epoch >= m) lr *= factor;
  return lr;
}

float lr_step(float base, double epoch, int start, int every, float factor) {
  if (every <= 0 || epoch < start) return base;
  const int halvings = int((epoch - start) / every);
  return base * std::pow(factor, float(halvings));
}

}  // namespace cte
