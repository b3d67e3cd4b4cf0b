// Bound landscapes (see landscape.h).
#include "tools/lib/landscape.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/layers/layer_rules.h"
#include "engine/ops.h"
#include "engine/tape.h"

namespace cte::tools {
namespace {

// A (1, K) tensor's entry k, as a double.
double entry(const Tensor& row, int64_t k) { return double(row.to_vector().at(size_t(k))); }

// sum(t * e_k) for t (1, K): the scalar z_k on the tape.
Tensor pick(const Tensor& row, int64_t k) {
  std::vector<float> onehot(size_t(row.numel()), 0.0f);
  onehot[size_t(k)] = 1.0f;
  return ops::sum(ops::mul(row, Tensor::from_vector(onehot, row.shape(), row.device())));
}

void check_neuron(const Network& net, int64_t neuron) {
  const int64_t outputs = net.output_shape().numel();
  if (neuron < 0 || neuron >= outputs)
    throw std::invalid_argument("[landscape] output neuron " + std::to_string(neuron) + " is outside [0, " +
                                std::to_string(outputs) + ")");
}

}  // namespace

size_t first_affine_layer(const Network& net) {
  const std::vector<Layer>& layers = net.layers();
  for (size_t i = 0; i < layers.size(); ++i)
    for (const LayerTensorView& t : layer_tensors(layers[i]))
      if (t.parameter) return i;  // the first layer with weights
  throw std::invalid_argument("[landscape] " + net.describe() + " has no linear or conv layer to move");
}

ParameterDirection gradient_direction(const Network& net, const Tensor& x, const Tensor& lower0, const Tensor& upper0,
                                      int64_t neuron, std::optional<Relaxation> relaxation) {
  check_neuron(net, neuron);
  Network probe = net;  // same tensors; only the first weight gets a fresh, gradient-tracking handle
  Layer& layer = probe.layers()[first_affine_layer(net)];
  layer.weight = layer.weight.detach();
  layer.weight.set_requires_grad(true);
  Tensor target;
  if (relaxation) {
    const Bounds b = compute_bounds(probe, lower0, upper0, Tensor(), *relaxation);
    target = pick(b.lower, neuron);
  } else {
    target = pick(probe.forward(x), neuron);
  }
  backward(target);
  const Tensor g = layer.weight.grad();
  NoGrad no_grad;
  const double norm = g.defined() ? std::sqrt(double(ops::sum(ops::mul(g, g)).item())) : 0.0;
  if (!(norm > 0.0) || !std::isfinite(norm))
    throw std::runtime_error("[landscape] the gradient of output " + std::to_string(neuron) +
                             " with respect to the first layer's weights is " +
                             (std::isfinite(norm) ? "zero" : "not finite") + ": no direction to follow");
  ParameterDirection d;
  d.weight = ops::scale(g, float(1.0 / norm));
  return d;
}

std::vector<std::vector<double>> bound_landscape(const Network& net, const Tensor& lower0, const Tensor& upper0,
                                                 int64_t neuron, const std::vector<Relaxation>& relaxations,
                                                 const std::vector<double>& deltas, const ParameterDirection& direction) {
  check_neuron(net, neuron);
  NoGrad no_grad;
  const size_t index = first_affine_layer(net);
  const Layer& original = net.layers()[index];
  std::vector<std::vector<double>> lower(relaxations.size());
  Network moved = net;
  for (double delta : deltas) {
    Layer& layer = moved.layers()[index];
    const float step = float(delta);
    layer.weight = direction.weight.defined() ? ops::add(original.weight, ops::scale(direction.weight, step))
                                              : original.weight;
    if (original.bias.defined())
      layer.bias = direction.bias.defined() ? ops::add(original.bias, ops::scale(direction.bias, step)) : original.bias;
    for (size_t r = 0; r < relaxations.size(); ++r)
      lower[r].push_back(entry(compute_bounds(moved, lower0, upper0, Tensor(), relaxations[r]).lower, neuron));
  }
  return lower;
}

ValueAndSlope bound_and_slope(const Network& net, const Tensor& lower0, const Tensor& upper0, int64_t neuron,
                              Relaxation relaxation, const ParameterDirection& direction, double delta) {
  check_neuron(net, neuron);
  Network moved = net;
  Layer& layer = moved.layers()[first_affine_layer(net)];
  {
    NoGrad constant;
    const float step = float(delta);
    if (direction.weight.defined()) layer.weight = ops::add(layer.weight, ops::scale(direction.weight, step));
    if (direction.bias.defined() && layer.bias.defined()) layer.bias = ops::add(layer.bias, ops::scale(direction.bias, step));
  }
  layer.weight = layer.weight.detach();
  layer.weight.set_requires_grad(true);
  if (layer.bias.defined()) {
    layer.bias = layer.bias.detach();
    layer.bias.set_requires_grad(true);
  }
  const Bounds b = compute_bounds(moved, lower0, upper0, Tensor(), relaxation);
  const Tensor target = pick(b.lower, neuron);
  ValueAndSlope out;
  out.value = double(target.item());
  backward(target);
  NoGrad no_grad;
  auto dot = [](const Tensor& grad, const Tensor& dir) {
    return grad.defined() && dir.defined() ? double(ops::sum(ops::mul(grad, dir)).item()) : 0.0;
  };
  out.slope = dot(layer.weight.grad(), direction.weight) + (layer.bias.defined() ? dot(layer.bias.grad(), direction.bias) : 0.0);
  return out;
}

std::vector<ValueAndSlope> ascend(const Network& net, const Tensor& lower0, const Tensor& upper0, int64_t neuron,
                                  Relaxation relaxation, const ParameterDirection& direction, double lr, double decay,
                                  int steps, std::vector<double>* deltas) {
  std::vector<ValueAndSlope> path;
  double delta = 0.0, rate = lr;
  for (int t = 0; t <= steps; ++t) {
    const ValueAndSlope at = bound_and_slope(net, lower0, upper0, neuron, relaxation, direction, delta);
    path.push_back(at);
    if (deltas) deltas->push_back(delta);
    delta += rate * at.slope;
    rate *= decay;
  }
  return path;
}

Network random_integer_network(Rng& rng, int hidden, int width, int outputs, int range) {
  auto integer = [&]() { return float(int64_t(rng.below(uint64_t(2 * range + 1))) - range); };
  auto dense = [&](int64_t in, int64_t out) {
    Layer layer;
    layer.kind = LayerKind::linear;
    std::vector<float> w(static_cast<size_t>(in * out)), b(static_cast<size_t>(out));
    for (float& v : w) v = integer();
    for (float& v : b) v = integer();
    layer.weight = Tensor::from_vector(w, Shape{out, in}, Device::cpu);
    layer.bias = Tensor::from_vector(b, Shape{out}, Device::cpu);
    return layer;
  };
  std::vector<Layer> layers;
  int64_t in = 1;
  for (int h = 0; h < hidden; ++h) {
    layers.push_back(dense(in, width));
    layers.push_back(make_relu());
    in = width;
  }
  layers.push_back(dense(in, outputs));
  return Network(Shape{1}, layers);
}

double largest_step_ratio(const std::vector<double>& y) {
  std::vector<double> steps;
  for (size_t k = 1; k < y.size(); ++k) steps.push_back(std::fabs(y[k] - y[k - 1]));
  if (steps.empty()) return 0.0;
  const double largest = *std::max_element(steps.begin(), steps.end());
  if (largest == 0.0) return 0.0;
  std::nth_element(steps.begin(), steps.begin() + long(steps.size() / 2), steps.end());
  const double median = steps[steps.size() / 2];
  return median > 0.0 ? largest / median : INFINITY;
}

}  // namespace cte::tools
