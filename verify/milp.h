// The exact reference: a mixed-integer program (GLPK) for a property on a
// small network of linear, ReLU, flatten and normalize layers. Every ReLU
// with interval bounds l < 0 < u gets a binary indicator d (big-M form):
//   a >= 0, a >= z, a <= z - l (1 - d), a <= u d,
// stable ones are a = z or a = 0. For each disjunct it minimises
//   t  subject to  coeffs_r . y - rhs_r <= t  for every row r,
// so the property is violated exactly when the smallest optimum is <= 0.
// GLPK solves in floating point with its own tolerances: the verdict is
// exact up to those (tests keep clear of optima near 0).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/nn.h"
#include "verify/property.h"

namespace cte::verify {

struct MilpResult {
  bool solved = false;            // false: the time limit or a solver failure
  double objective = 0.0;         // min over disjuncts of min over inputs of the worst row's violation
  std::vector<double> x;          // an input attaining it
  bool violated() const { return solved && objective <= 0.0; }
};

// phases (optional, flat over the ReLU layers' inputs in order): +1 fixes a
// neuron active (z >= 0, a = z), -1 inactive (z <= 0, a = 0), 0 leaves it
// free; with every unstable neuron fixed the program is an LP (branch and
// bound decides its fully split subdomains this way).
MilpResult milp_verify(const Network& net, const Property& property, double time_limit_s = 60.0,
                       const std::vector<int8_t>* phases = nullptr);

}  // namespace cte::verify
