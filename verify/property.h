// Verification properties (VNN-COMP's VNNLIB) and the float64 reference
// forward pass that confirms counterexamples.
//
// A property is an input box and an output condition in disjunctive normal
// form: the property is violated ("sat") by an input x in the box whose
// outputs y = f(x) satisfy every inequality of some disjunct; it holds
// ("unsat") when no input in the box does.
#pragma once
#include <string>
#include <vector>

#include "engine/nn.h"

namespace cte::verify {

// coeffs . y <= rhs over the network's outputs y.
struct LinearInequality {
  std::vector<double> coeffs;
  double rhs = 0.0;
};
using Conjunction = std::vector<LinearInequality>;

struct Property {
  std::vector<double> lower, upper;       // the input box, one pair per input X_i
  std::vector<Conjunction> disjuncts;     // violated when one conjunction holds
  int num_outputs = 0;                    // Y_0 .. Y_{num_outputs-1}
};

// VNNLIB (SMT-LIB subset): (declare-const X_i Real), (declare-const Y_j Real),
// (assert ...) with <=, >=, <, > (strict read as non-strict), and, or over
// linear terms (+, -, * by a constant, numbers, variables). Input constraints
// must bound each X_i by constants (both sides); output constraints may be
// nested and/or, normalised to a disjunction of conjunctions. Errors name the
// source and the line: "[vnnlib] PATH:LINE: ...".
Property parse_vnnlib(const std::string& text, const std::string& source = "<vnnlib>");
Property load_vnnlib(const std::string& path);

// The local robustness property of one input x (flattened) with label `label`:
// the box [x - eps, x + eps] clipped to [clip_lower, clip_upper], violated when
// some other output is >= the label's (VNN-COMP's mnistfc form).
// robustness_property is the same property as the struct verify_property
// takes; robustness_vnnlib writes it as VNNLIB text.
Property robustness_property(const std::vector<float>& x, int label, int num_classes, double eps,
                             double clip_lower = 0.0, double clip_upper = 1.0);
std::string robustness_vnnlib(const std::vector<float>& x, int label, int num_classes, double eps,
                              double clip_lower = 0.0, double clip_upper = 1.0);

// The network in float64 on one flattened input: every weight widened
// exactly from float32, every operation in double. Returns the outputs.
std::vector<double> forward_f64(const Network& net, const std::vector<double>& x);

// max over the inequalities of a conjunction of (coeffs . y - rhs): <= 0
// exactly when y satisfies the conjunction.
double conjunction_violation(const Conjunction& conjunction, const std::vector<double>& y);

// True when x lies in the property's box and f(x) in float64 satisfies some disjunct.
bool confirms_counterexample(const Network& net, const Property& property, const std::vector<double>& x);

}  // namespace cte::verify
