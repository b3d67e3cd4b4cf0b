// The MILP reference (see milp.h).
#include "verify/milp.h"

#include <algorithm>
#include <cmath>
#include <glpk.h>
#include <limits>

namespace cte::verify {
namespace {

// One GLPK problem; columns and rows added as the network is encoded.
class Mip {
 public:
  Mip() : lp_(glp_create_prob()) {}
  ~Mip() { glp_delete_prob(lp_); }
  Mip(const Mip&) = delete;
  Mip& operator=(const Mip&) = delete;

  int column(double lo, double hi, bool binary = false) {
    const int j = glp_add_cols(lp_, 1);
    if (std::isinf(lo) && std::isinf(hi)) glp_set_col_bnds(lp_, j, GLP_FR, 0.0, 0.0);
    else glp_set_col_bnds(lp_, j, lo == hi ? GLP_FX : GLP_DB, lo, hi);
    if (binary) glp_set_col_kind(lp_, j, GLP_BV);
    return j;
  }
  // sum terms <= hi (upper), >= lo (lower) or = (both equal).
  void row(const std::vector<std::pair<int, double>>& terms, int type, double lo, double hi) {
    const int i = glp_add_rows(lp_, 1);
    std::vector<int> index{0};
    std::vector<double> value{0.0};
    for (const auto& [j, c] : terms) {
      if (c == 0.0) continue;
      index.push_back(j);
      value.push_back(c);
    }
    glp_set_mat_row(lp_, i, int(index.size()) - 1, index.data(), value.data());
    glp_set_row_bnds(lp_, i, type, lo, hi);
  }
  glp_prob* lp_;
};

}  // namespace

MilpResult milp_verify(const Network& net, const Property& property, double time_limit_s,
                       const std::vector<int8_t>* phases) {
  const size_t n0 = property.lower.size();
  if (int64_t(n0) != net.input_shape().numel())
    fail("milp", "the property has " + std::to_string(n0) + " inputs, the network takes " + net.input_shape().str());
  glp_term_out(GLP_OFF);
  MilpResult best;
  best.objective = std::numeric_limits<double>::infinity();
  for (const Conjunction& disjunct : property.disjuncts) {
    Mip mip;
    std::vector<int> vars;
    std::vector<double> lo = property.lower, hi = property.upper;
    for (size_t i = 0; i < n0; ++i) vars.push_back(mip.column(lo[i], hi[i]));
    const std::vector<int> inputs = vars;
    size_t relu_index = 0;
    for (size_t li = 0; li < net.layers().size(); ++li) {
      const Layer& layer = net.layers()[li];
      std::vector<int> next;
      std::vector<double> nlo, nhi;
      if (layer.kind == LayerKind::linear || layer.kind == LayerKind::normalize) {
        // z_o = sum_i w_oi a_i + b_o, as one equality row per output.
        const size_t n_in = vars.size();
        const size_t n_out = size_t(layer.out_shape.numel());
        std::vector<float> w, b, mean, inv;
        if (layer.kind == LayerKind::linear) {
          w = layer.weight.to_vector();
          if (layer.bias.defined()) b = layer.bias.to_vector();
        } else {
          mean = layer.mean.to_vector();
          inv = layer.inv_std.to_vector();
        }
        for (size_t o = 0; o < n_out; ++o) {
          std::vector<std::pair<int, double>> terms;
          double c = 0.0, zlo = 0.0, zhi = 0.0;
          auto add = [&](size_t i, double coef) {
            terms.push_back({vars[i], coef});
            zlo += coef > 0 ? coef * lo[i] : coef * hi[i];
            zhi += coef > 0 ? coef * hi[i] : coef * lo[i];
          };
          if (layer.kind == LayerKind::linear) {
            for (size_t i = 0; i < n_in; ++i) add(i, double(w[o * n_in + i]));
            c = b.empty() ? 0.0 : double(b[o]);
          } else {
            const size_t ch = mean.size() == 1 ? 0 : o / (n_out / mean.size());
            add(o, double(inv[ch]));
            c = -double(mean[ch]) * double(inv[ch]);
          }
          // Slightly widened so that rounding of the interval sums never cuts off a feasible point.
          const double slack = 1e-9 * (1.0 + std::fabs(zlo) + std::fabs(zhi));
          const int z = mip.column(zlo + c - slack, zhi + c + slack);
          terms.push_back({z, -1.0});
          mip.row(terms, GLP_FX, -c, -c);
          next.push_back(z);
          nlo.push_back(zlo + c - slack);
          nhi.push_back(zhi + c + slack);
        }
      } else if (layer.kind == LayerKind::relu) {
        for (size_t j = 0; j < vars.size(); ++j, ++relu_index) {
          double l = lo[j], u = hi[j];
          const int8_t phase = phases && relu_index < phases->size() ? (*phases)[relu_index] : 0;
          if (phase > 0) {  // z >= 0: then a = z
            mip.row({{vars[j], 1.0}}, GLP_LO, 0.0, 0.0);
            l = std::max(l, 0.0);
          } else if (phase < 0) {  // z <= 0: then a = 0
            mip.row({{vars[j], 1.0}}, GLP_UP, 0.0, 0.0);
            u = std::min(u, 0.0);
          }
          if (l > u) return MilpResult{true, std::numeric_limits<double>::infinity(), {}};  // empty: nothing violates
          if (l >= 0) {
            next.push_back(vars[j]);
            nlo.push_back(l);
            nhi.push_back(u);
            continue;
          }
          if (u <= 0) {
            next.push_back(mip.column(0.0, 0.0));
            nlo.push_back(0.0);
            nhi.push_back(0.0);
            continue;
          }
          const int a = mip.column(0.0, u), d = mip.column(0.0, 1.0, true);
          mip.row({{a, 1.0}, {vars[j], -1.0}}, GLP_LO, 0.0, 0.0);             // a >= z
          mip.row({{a, 1.0}, {vars[j], -1.0}, {d, -l}}, GLP_UP, 0.0, -l);     // a <= z - l (1 - d)
          mip.row({{a, 1.0}, {d, -u}}, GLP_UP, 0.0, 0.0);                     // a <= u d
          next.push_back(a);
          nlo.push_back(0.0);
          nhi.push_back(u);
        }
      } else if (layer.kind == LayerKind::flatten) {
        continue;
      } else {
        fail("milp", "layer " + std::to_string(li) + " (" + layer_kind_name(layer.kind) +
                         ") is not supported by the MILP reference (linear, relu, flatten, normalize)");
      }
      vars = next;
      lo = nlo;
      hi = nhi;
    }
    if (int(vars.size()) != property.num_outputs)
      fail("milp", "the network has " + std::to_string(vars.size()) + " outputs, the property " +
                       std::to_string(property.num_outputs));
    const int t = mip.column(-std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
    for (const LinearInequality& q : disjunct) {
      std::vector<std::pair<int, double>> terms{{t, -1.0}};
      for (size_t k = 0; k < vars.size(); ++k) terms.push_back({vars[k], q.coeffs[k]});
      mip.row(terms, GLP_UP, 0.0, q.rhs);  // coeffs . y - t <= rhs
    }
    glp_set_obj_dir(mip.lp_, GLP_MIN);
    glp_set_obj_coef(mip.lp_, t, 1.0);
    glp_iocp options;
    glp_init_iocp(&options);
    options.presolve = GLP_ON;
    options.msg_lev = GLP_MSG_OFF;
    options.tm_lim = int(std::min(time_limit_s, 1e6) * 1000.0);
    const int rc = glp_intopt(mip.lp_, &options);
    // No feasible point (phases that contradict each other): nothing violates this disjunct.
    if (rc == GLP_ENOPFS || (rc == 0 && glp_mip_status(mip.lp_) == GLP_NOFEAS)) continue;
    if (rc != 0 || glp_mip_status(mip.lp_) != GLP_OPT) return MilpResult{};
    const double value = glp_mip_obj_val(mip.lp_);
    if (value < best.objective) {
      best.objective = value;
      best.x.resize(n0);
      // GLPK may overshoot a bound by its feasibility tolerance.
      for (size_t i = 0; i < n0; ++i)
        best.x[i] = std::clamp(glp_mip_col_val(mip.lp_, inputs[i]), property.lower[i], property.upper[i]);
    }
  }
  best.solved = true;
  return best;
}

}  // namespace cte::verify
