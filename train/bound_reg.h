// Warm-up regularisers of Shi et al. 2021 ("Fast certified robust training
// with short warmup"), as the official SABR code computes them (its
// bound_reg, src/regularization.py), on the Box bounds of an input box.
// Per ReLU layer, from its pre-activation bounds [l, u] over the batch
// (c = (l + u) / 2, r = (u - l) / 2, means over every neuron of every sample):
//
//   tightness = relu(tau - mean(r_in) / mean(r)) / tau
//     r_in: the half-width of the input box after the normalisation layers;
//   relu      = (relu(tau - rho(m+, m-)) + relu(tau - rho(v+, v-))) / tau
//     m+ = mean(c [l > 0]), m- = -mean(c [u < 0]),
//     v+ = sum((c - mean c)^2 [l > 0]), v- = sum((c - mean c)^2 [u < 0]),
//     rho(a, b) = min(a / b, b / a), the balance of active and inactive ReLUs;
//     a layer whose pair is 0/0 adds no relu term (the official code skips
//     the NaN);
//
// with tau = 0.5, and the regulariser is (sum tightness + sum relu) / #ReLU
// layers. The official code's third term (the spread of the centres) is
// computed there but not added, so not here either. The trainer scales it by
// --bound-reg * (1 - eps / eps_train) while eps < eps_train.
#pragma once

#include "engine/nn.h"
#include "engine/tensor.h"

namespace cte::train {

// A scalar tensor differentiable in the network's parameters;
// 0 when the network has no ReLU. lower0 <= upper0: (N, input shape...).
Tensor bound_regulariser(const Network& net, const Tensor& lower0, const Tensor& upper0, float reference = 0.5f);

}  // namespace cte::train
