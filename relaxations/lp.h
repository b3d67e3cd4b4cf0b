// Triangle and Parallelogram: LP relaxations (paper section 5.2, appendix
// K.1), for certification and analysis. They are not differentiable layers
// here (the paper trains them through implicit layers), so compute_bounds
// refuses them while gradients are recorded.
//
// Every neuron is an LP variable. An affine layer adds equality rows; a ReLU
// with input bounds [l, u] adds, when unstable,
//   Triangle       y >= 0, y >= x, y <= u (x - l) / (u - l)  (the convex hull)
//   Parallelogram  y >= 0, y >= x, y <= u, y <= x - l
// and y = 0 (u <= 0) or y = x (l >= 0) when stable. Layer by layer, each
// neuron's l and u are the minimum and maximum of the LP over everything
// before it (the multi-level optimisation of equation 5), and the output's
// bounds are the LP's optimum for each row of C.
//
// Soundness does not rest on the LP solver (GLPK's simplex, in floating
// point): from its dual values y we form the bound
//   max c^T x <= sum_i max(y_i r_i over row i's range) + sum_j max(d_j x_j over [l_j, u_j]),
//   d = c - A^T y,
// which holds for every y (weak duality, Neumaier and Shcherbina 2004) and is
// evaluated in double precision. A solver failure only costs tightness: the
// solve is retried from a fresh basis on the scaled problem with the dual
// simplex, and if that fails too the bound takes the better of the solver's
// last dual point and y = 0 (interval arithmetic); such solves are counted
// and reported on stderr, naming the sample and the neuron or spec row.
//
// Sound mode (float32 forward pass): instead of widening the LP's bounds
// afterwards by a worst-case forward error grown through |W| layer after
// layer, every affine row z = W a + b becomes the range
//   |z - W a - b| <= gamma_{n+1} (|W| M + |b|),   M = max(|lower(a)|, |upper(a)|),
// the float32 pass's rounding at that layer (relaxations/sound.cpp, point 1)
// with M from the LP's own bounds of a. The LP then bounds every network of
// the perturbed family at once (the real one and the float32 pass among
// them), and its dual prices each layer's error as CROWN's sound walker does.
#pragma once
#include "engine/nn.h"
#include "engine/tensor.h"
#include "relaxations/relaxations.h"

namespace cte::relax {

// Bounds of C z (spec (N, K, L)) or of z (spec undefined), per sample, on the
// CPU in double precision (returned as float tensors on lower0's device,
// rounded outwards so the float bounds stay sound). need_lower false skips
// the lower bounds' LPs (Bounds::lower undefined). sound: the float32 forward
// pass's rounding as ranged affine rows (above).
Bounds lp_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec, kern::LpReluRule rule,
                 bool need_lower = true, bool sound = false);

// LP solves of the calling thread whose simplex failed twice (the first try and
// the retry from a fresh basis) since the program started; their bounds fell
// back as lp.h says. For tests and reports.
int64_t lp_failed_solves();

// Tests only: the first try's simplex iteration limit (0: GLPK's, unlimited),
// to exercise the retry; returns the previous value.
int lp_set_first_try_iteration_limit(int limit);

}  // namespace cte::relax
