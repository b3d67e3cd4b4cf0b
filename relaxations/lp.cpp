// Triangle and Parallelogram as linear programs over every neuron, solved
// with GLPK and turned into sound bounds through the dual (see lp.h).
#include "relaxations/lp.h"

#include <glpk.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/relu_relaxation.h"
#include "relaxations/layers/bound_rules.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

thread_local int64_t failed_solves = 0;
thread_local int first_try_iteration_limit = 0;

using Terms = LpTerms;
using AffineMap = LpAffineMap;  // each layer's lp_rows (relaxations/layers/<kind>.cpp)

// The LP of one sample, grown layer by layer. GLPK indices are 1-based; ours 0-based.
class Program {
 public:
  Program() : lp_(glp_create_prob()) {
    glp_init_smcp(&options_);
    options_.msg_lev = GLP_MSG_OFF;
    options_.meth = GLP_PRIMAL;  // a new objective keeps the basis primal feasible: warm start
  }
  ~Program() { glp_delete_prob(lp_); }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  int add_variable(double lo, double hi) {
    const int j = glp_add_cols(lp_, 1);
    lo_.push_back(lo);
    hi_.push_back(hi);
    set_column_bounds(j, lo, hi);
    return j - 1;
  }

  void tighten(int var, double lo, double hi) {
    if (lo > lo_[size_t(var)]) lo_[size_t(var)] = lo;
    if (hi < hi_[size_t(var)]) hi_[size_t(var)] = hi;
    if (lo_[size_t(var)] > hi_[size_t(var)]) lo_[size_t(var)] = hi_[size_t(var)] = 0.5 * (lo_[size_t(var)] + hi_[size_t(var)]);
    set_column_bounds(var + 1, lo_[size_t(var)], hi_[size_t(var)]);
  }

  double lower(int var) const { return lo_[size_t(var)]; }
  double upper(int var) const { return hi_[size_t(var)]; }

  // lo <= sum of terms <= hi (either may be infinite; equal for an equality).
  void add_row(const Terms& terms, double lo, double hi) {
    const int i = glp_add_rows(lp_, 1);
    std::vector<int> index{0};
    std::vector<double> value{0.0};
    for (const auto& [var, coef] : terms) {
      index.push_back(var + 1);
      value.push_back(coef);
    }
    glp_set_mat_row(lp_, i, int(terms.size()), index.data(), value.data());
    const int type = lo == hi ? GLP_FX : std::isinf(lo) ? GLP_UP : std::isinf(hi) ? GLP_LO : GLP_DB;
    glp_set_row_bnds(lp_, i, type, std::isinf(lo) ? 0.0 : lo, std::isinf(hi) ? 0.0 : hi);
    rows_.push_back({terms, lo, hi});
  }

  // A sound upper bound of max objective^T x over the program (see lp.h).
  // `what` names the neuron or spec row in the failure report.
  double maximize(const Terms& objective, const std::string& what) {
    for (int j : objective_vars_) glp_set_obj_coef(lp_, j + 1, 0.0);
    objective_vars_.clear();
    glp_set_obj_dir(lp_, GLP_MAX);
    for (const auto& [var, coef] : objective) {
      glp_set_obj_coef(lp_, var + 1, coef);
      objective_vars_.push_back(var);
    }
    options_.it_lim = first_try_iteration_limit > 0 ? first_try_iteration_limit : std::numeric_limits<int>::max();
    int code = glp_simplex(lp_, &options_);
    if (code != 0 || glp_get_status(lp_) != GLP_OPT) {
      // The warm start went wrong (a singular or ill-conditioned basis, a
      // limit): start again from Bixby's basis of the scaled problem with
      // the dual simplex (falling back to the primal when it must).
      glp_smcp retry = options_;
      retry.it_lim = std::numeric_limits<int>::max();
      retry.meth = GLP_DUALP;
      glp_scale_prob(lp_, GLP_SF_AUTO);
      glp_adv_basis(lp_, 0);
      code = glp_simplex(lp_, &retry);
    }
    const int status = glp_get_status(lp_);
    const double with_duals = dual_bound(objective, true);
    if (code == 0 && status == GLP_OPT) return with_duals;
    // Any y gives a sound bound: keep the better of the solver's last one and y = 0.
    ++failed_solves;
    std::fprintf(stderr, "[lp] warning: %s: glp_simplex failed twice (return code %d, status %d); bound from the solver's last dual point or interval arithmetic\n",
                 what.c_str(), code, status);
    return std::min(with_duals, dual_bound(objective, false));
  }

 private:
  struct Row {
    Terms terms;
    double lo, hi;
  };
  // sum_i max(y_i r_i over row i's range) + sum_j max(d_j x_j over [l_j, u_j]),
  // d = c - A^T y, with y the solver's row duals (or 0: interval arithmetic).
  double dual_bound(const Terms& objective, bool use_duals) const {
    std::vector<double> reduced(lo_.size(), 0.0);
    for (const auto& [var, coef] : objective) reduced[size_t(var)] += coef;
    double bound = 0.0;
    for (size_t i = 0; use_duals && i < rows_.size(); ++i) {
      double y = glp_get_row_dual(lp_, int(i) + 1);
      const Row& row = rows_[i];
      if ((y > 0 && std::isinf(row.hi)) || (y < 0 && std::isinf(row.lo)) || !std::isfinite(y)) y = 0.0;
      if (y == 0.0) continue;
      bound += y > 0 ? y * row.hi : y * row.lo;
      for (const auto& [var, coef] : row.terms) reduced[size_t(var)] -= y * coef;
    }
    for (size_t j = 0; j < reduced.size(); ++j)
      bound += reduced[j] > 0 ? reduced[j] * hi_[j] : reduced[j] * lo_[j];
    return bound;
  }

  void set_column_bounds(int j, double lo, double hi) {
    glp_set_col_bnds(lp_, j, lo == hi ? GLP_FX : GLP_DB, lo, hi);
  }

  glp_prob* lp_;
  glp_smcp options_;
  std::vector<double> lo_, hi_;
  std::vector<Row> rows_;
  std::vector<int> objective_vars_;
};

// Interval bounds of constant + terms over the variables' current bounds.
std::pair<double, double> interval_of(const Program& p, const Terms& terms, double constant) {
  double lo = constant, hi = constant;
  for (const auto& [var, coef] : terms) {
    lo += coef > 0 ? coef * p.lower(var) : coef * p.upper(var);
    hi += coef > 0 ? coef * p.upper(var) : coef * p.lower(var);
  }
  return {lo, hi};
}

Terms negated(Terms terms) {
  for (auto& term : terms) term.second = -term.second;
  return terms;
}

// The float nearest to v on the safe side (below for a lower bound).
float round_down(double v) {
  float f = float(v);
  if (double(f) > v) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}
float round_up(double v) {
  float f = float(v);
  if (double(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// The float32 forward pass's rounding error bound at one output of an affine
// layer: gamma (sum |coef| M + |constant|), M the input's magnitude bound.
double forward_rounding(const Program& p, const Terms& terms, double constant, double gamma) {
  double magnitude = std::fabs(constant);
  for (const auto& [var, coef] : terms)
    magnitude += std::fabs(coef) * std::max(std::fabs(p.lower(var)), std::fabs(p.upper(var)));
  return gamma * magnitude;
}

}  // namespace

int64_t lp_failed_solves() { return failed_solves; }

int lp_set_first_try_iteration_limit(int limit) {
  const int previous = first_try_iteration_limit;
  first_try_iteration_limit = limit;
  return previous;
}

Bounds lp_bounds(const Network& net, const Tensor& lower0, const Tensor& upper0, const Tensor& spec, kern::LpReluRule rule,
                 bool need_lower, bool sound) {
  glp_term_out(GLP_OFF);
  const std::vector<Layer>& layers = net.layers();
  std::vector<AffineMap> maps(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) maps[i] = bound_rules(layers[i]).lp_rows(layers[i]);
  const int64_t batch = lower0.size(0), n0 = net.input_shape().numel();
  const std::vector<double> lo0 = lp_values_of(lower0), hi0 = lp_values_of(upper0);
  const std::vector<double> c = spec.defined() ? lp_values_of(spec) : std::vector<double>();
  const int64_t logits = net.output_shape().numel();
  const int64_t rows = spec.defined() ? spec.size(1) : logits;
  std::vector<float> lower(size_t(batch * rows)), upper(size_t(batch * rows));

  for (int64_t s = 0; s < batch; ++s) {
    Program p;
    std::vector<int> current;  // the variables of the current layer's output
    for (int64_t j = 0; j < n0; ++j)
      current.push_back(p.add_variable(lo0[size_t(s * n0 + j)], hi0[size_t(s * n0 + j)]));
    bool box = true;  // the feasible set of `current` is exactly their box
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& layer = layers[i];
      const LayerRole role = bound_rules(layer).role;
      if (role == LayerRole::reshape) continue;
      if (role == LayerRole::activation) {  // the ReLU's rows: the relaxation's own rule
        std::vector<int> next;
        for (int x : current) {
          const double l = p.lower(x), u = p.upper(x);
          if (u <= 0) {
            next.push_back(p.add_variable(0.0, 0.0));
            continue;
          }
          const int y = p.add_variable(std::max(l, 0.0), u);
          next.push_back(y);
          if (l >= 0) {  // y = x
            p.add_row({{y, 1.0}, {x, -1.0}}, 0.0, 0.0);
            continue;
          }
          box = false;
          // The rule's half-planes (kernels/common/relu_relaxation.h) as rows
          // y - slope x >= or <= intercept, except y >= 0 and y <= u: the column bounds of y.
          const kern::ReluHalfPlanes<double> planes = kern::lp_relu_half_planes(rule, l, u);
          for (int k = 0; k < planes.lower_count; ++k) {
            const kern::ReluLine<double> line = planes.lower[k];
            if (line.slope == 0.0 && line.intercept == 0.0) continue;
            p.add_row({{y, 1.0}, {x, -line.slope}}, line.intercept, kInf);
          }
          for (int k = 0; k < planes.upper_count; ++k) {
            const kern::ReluLine<double> line = planes.upper[k];
            if (line.slope == 0.0 && line.intercept == u) continue;
            p.add_row({{y, 1.0}, {x, -line.slope}}, -kInf, line.intercept);
          }
        }
        current = std::move(next);
        continue;
      }
      // Affine: a new variable per output, tied by an equality row; bounded by
      // interval arithmetic, tightened by the LP when the inputs are not a box
      // and a ReLU will read the neuron.
      const AffineMap& map = maps[i];
      const bool feeds_relu = i + 1 < layers.size() && bound_rules(layers[i + 1]).role == LayerRole::activation;
      // Sound mode: the float32 pass's error at this layer (lp.h); the LP's
      // own double rounding of the constants lies far inside it.
      const double gamma = sound ? double(rounding_gamma(bound_rules(layer).dot_terms(layer) + 1)) : 0.0;
      std::vector<int> next;
      for (size_t k = 0; k < map.rows.size(); ++k) {
        Terms terms;
        for (const auto& [j, coef] : map.rows[k]) terms.emplace_back(current[size_t(j)], coef);
        const double error = forward_rounding(p, terms, map.constant[k], gamma);
        const auto [lo, hi] = interval_of(p, terms, map.constant[k]);
        const int z = p.add_variable(lo - error, hi + error);
        Terms row = negated(terms);  // z - terms = constant (+- the rounding error)
        row.emplace_back(z, 1.0);
        p.add_row(row, map.constant[k] - error, map.constant[k] + error);
        next.push_back(z);
      }
      // A neuron already stable by interval arithmetic keeps its exact ReLU
      // constraint whatever its bounds, and the interval bounds cut nothing
      // off the LP's feasible set, so only unstable neurons need the two LPs.
      if (!box && feeds_relu)
        for (size_t k = 0; k < next.size(); ++k) {
          const int z = next[k];
          if (p.lower(z) >= 0 || p.upper(z) <= 0) continue;
          const std::string what = "sample " + std::to_string(s) + ", layer " + std::to_string(i) + ", neuron " + std::to_string(k);
          const double hi = p.maximize({{z, 1.0}}, what + " (upper)");
          const double lo = hi > 0 ? -p.maximize({{z, -1.0}}, what + " (lower)") : p.lower(z);
          p.tighten(z, lo, hi);
        }
      box = box && map.diagonal;
      current = std::move(next);
    }
    for (int64_t k = 0; k < rows; ++k) {
      Terms objective;
      if (spec.defined()) {
        for (int64_t l = 0; l < logits; ++l) {
          const double coef = c[size_t((s * rows + k) * logits + l)];
          if (coef != 0.0) objective.emplace_back(current[size_t(l)], coef);
        }
      } else {
        objective.emplace_back(current[size_t(k)], 1.0);
      }
      const std::string what = "sample " + std::to_string(s) + ", output row " + std::to_string(k);
      upper[size_t(s * rows + k)] = round_up(p.maximize(objective, what + " (upper)"));
      if (need_lower) lower[size_t(s * rows + k)] = round_down(-p.maximize(negated(objective), what + " (lower)"));
    }
  }
  Bounds out;
  out.upper = Tensor::from_vector(upper, Shape{batch, rows}, lower0.device());
  if (need_lower) out.lower = Tensor::from_vector(lower, Shape{batch, rows}, lower0.device());
  return out;
}

}  // namespace cte::relax
