// Bound landscapes: how one output bound of a relaxation moves as the first
// affine layer's parameters move along a line, the paper's probe of
// continuity and sensitivity (section 4.3, figure 4, appendix E). The paper
// shifts "all first layer weights by delta in the gradient direction of that
// output neuron"; we take the gradient of the clean logit z_j(x) with respect
// to the first layer's weights (or, on request, of one relaxation's lower
// bound), scaled to unit Frobenius norm, so that one delta axis serves every
// relaxation. Discontinuous relaxations (CROWN, CROWN-IBP, hBox) show jumps
// along it; sensitive ones (DeepZ, CROWN) bend; Box is piecewise linear.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "engine/nn.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "relaxations/relaxations.h"

namespace cte::tools {

// A direction in the space of the first affine layer's parameters (shapes of
// its weight and bias; an undefined tensor is a zero component).
struct ParameterDirection {
  Tensor weight, bias;
};

// Index of the first linear or conv layer; throws naming the network if none.
size_t first_affine_layer(const Network& net);

// The gradient of z_j(x) (relaxation empty) or of the relaxation's lower bound
// of z_j over the box [lower0, upper0] with respect to the first affine layer's
// weights, scaled to unit Frobenius norm (bias component undefined). x,
// lower0, upper0: one sample, (1, input shape...). Throws when the gradient
// is zero (no direction to follow).
ParameterDirection gradient_direction(const Network& net, const Tensor& x, const Tensor& lower0, const Tensor& upper0,
                                      int64_t neuron, std::optional<Relaxation> relaxation);

// lower[r][k]: the lower bound of output `neuron` under relaxations[r] over
// the box [lower0, upper0] (one sample) when the first affine layer's
// parameters are theta + deltas[k] * direction. The network is not modified.
std::vector<std::vector<double>> bound_landscape(const Network& net, const Tensor& lower0, const Tensor& upper0,
                                                 int64_t neuron, const std::vector<Relaxation>& relaxations,
                                                 const std::vector<double>& deltas, const ParameterDirection& direction);

// The lower bound of output `neuron` at theta + delta * direction and its
// derivative with respect to delta (through the tape: the gradient with
// respect to the moved parameters, dotted with the direction).
struct ValueAndSlope {
  double value = 0, slope = 0;
};
ValueAndSlope bound_and_slope(const Network& net, const Tensor& lower0, const Tensor& upper0, int64_t neuron,
                              Relaxation relaxation, const ParameterDirection& direction, double delta);

// Gradient ascent on delta (the paper's section 4.4 experiment restricted to
// one line): delta_{t+1} = delta_t + lr_t * slope(delta_t), lr_t = lr * decay^t,
// from delta = 0. Returns the (delta, bound) of every step, steps + 1 points.
std::vector<ValueAndSlope> ascend(const Network& net, const Tensor& lower0, const Tensor& upper0, int64_t neuron,
                                  Relaxation relaxation, const ParameterDirection& direction, double lr, double decay,
                                  int steps, std::vector<double>* deltas);

// The paper's appendix F networks: 1-D input, `hidden` ReLU layers of `width`
// neurons, `outputs` outputs, every weight and bias an integer in [-range, range].
Network random_integer_network(Rng& rng, int hidden, int width, int outputs, int range);

// The largest |y[k+1] - y[k]| divided by the median of those steps (1 when
// the curve moves evenly; large at a jump). 0 for a flat or one-point curve.
double largest_step_ratio(const std::vector<double>& y);

}  // namespace cte::tools
