// PGD and branch and bound over ReLU splits (see bab.h).
#include "verify/bab.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/relax_ops.h"
#include "train/pgd.h"
#include "verify/milp.h"

namespace cte::verify {
namespace {

using Clock = std::chrono::steady_clock;

// A fully split subdomain counts as verified when its LP optimum exceeds this
// (GLPK's tolerances are about 1e-7 relative; this keeps clear of them).
constexpr double kExactMargin = 1e-6;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The float32 box that contains the property's box.
std::pair<std::vector<float>, std::vector<float>> float_box(const Property& p) {
  std::vector<float> lo(p.lower.size()), hi(p.upper.size());
  for (size_t i = 0; i < lo.size(); ++i) {
    lo[i] = float(p.lower[i]);
    if (double(lo[i]) > p.lower[i]) lo[i] = std::nextafter(lo[i], -std::numeric_limits<float>::infinity());
    hi[i] = float(p.upper[i]);
    if (double(hi[i]) < p.upper[i]) hi[i] = std::nextafter(hi[i], std::numeric_limits<float>::infinity());
  }
  return {lo, hi};
}

Shape batch_shape(const Network& net, int64_t n) {
  std::vector<int64_t> dims{n};
  for (int64_t d : net.input_shape().dims()) dims.push_back(d);
  return Shape(dims);
}

// A subdomain: the phase of each ReLU neuron (0 free, +1 active, -1 inactive),
// flat over all ReLU layers, and what its last bounding found.
struct Domain {
  std::vector<int8_t> split;
  std::vector<float> lower, upper;  // the ReLU inputs' bounds of its last bounding, flat (empty: none yet)
  double worst = -std::numeric_limits<double>::infinity();  // min over disjuncts of its best row's margin
  int64_t branch = -1;  // the neuron to split next (flat index), -1: none unstable
  int depth = 0;
};

class BranchAndBound {
 public:
  BranchAndBound(const Network& net, const Property& property, const VerifyOptions& options)
      : net_(net), property_(property), options_(options) {
    const auto [lo, hi] = float_box(property);
    lower0_ = lo;
    upper0_ = hi;
    for (size_t i = 0; i < net.layers().size(); ++i)
      if (net.layers()[i].kind == LayerKind::relu) {
        relu_layers_.push_back(i);
        relu_offset_.push_back(total_neurons_);
        total_neurons_ += net.layers()[i].in_shape.numel();
      }
    // Rows of the spec: every inequality of every disjunct, as -coeffs so that
    // the upper bound of a row is -(a lower bound of coeffs . y).
    for (const Conjunction& c : property.disjuncts) {
      std::vector<int> rows;
      for (const LinearInequality& q : c) {
        rows.push_back(int(rhs_.size()));
        rhs_.push_back(q.rhs);
        for (double a : q.coeffs) neg_spec_.push_back(float(-a));
      }
      disjunct_rows_.push_back(rows);
    }
  }

  // Bounds the domains in place (worst margin, branching choice); returns for
  // each whether it is verified.
  std::vector<bool> bound(std::vector<Domain>& domains) {
    using namespace relax;
    const int64_t n = int64_t(domains.size()), n0 = int64_t(lower0_.size());
    const int64_t rows = int64_t(rhs_.size()), outputs = property_.num_outputs;
    const Device device = net_.device();
    std::vector<float> lo(size_t(n * n0)), hi(size_t(n * n0)), spec(size_t(n * rows * outputs));
    for (int64_t s = 0; s < n; ++s) {
      std::copy(lower0_.begin(), lower0_.end(), lo.begin() + s * n0);
      std::copy(upper0_.begin(), upper0_.end(), hi.begin() + s * n0);
      std::copy(neg_spec_.begin(), neg_spec_.end(), spec.begin() + s * rows * outputs);
    }
    const Tensor lower0 = Tensor::from_vector(lo, batch_shape(net_, n), device);
    const Tensor upper0 = Tensor::from_vector(hi, batch_shape(net_, n), device);
    BacksubContext ctx = make_backsub_context(net_, lower0, upper0, ReluRule::crown, BacksubMode::bounds_stacked,
                                              size_t(1) << 30, /*sound=*/true);
    std::vector<bool> empty(size_t(n), false);
    std::vector<std::vector<float>> relu_l(relu_layers_.size()), relu_u(relu_layers_.size());
    std::vector<Tensor> leaves_l, leaves_u;
    for (size_t r = 0; r < relu_layers_.size(); ++r) {
      const size_t layer = relu_layers_[r];
      const int64_t width = net_.layers()[layer].in_shape.numel();
      bool inherited = true;
      for (const Domain& d : domains) inherited = inherited && !d.lower.empty();
      std::vector<float> l(size_t(n * width), -std::numeric_limits<float>::infinity());
      std::vector<float> u(size_t(n * width), std::numeric_limits<float>::infinity());
      if (options_.recompute_intermediate || !inherited) {
        BacksubResult b;
        {
          NoGrad no_grad;  // the gradient is wanted with respect to the clamped bounds only
          b = backsub_all_neurons(ctx, layer);
        }
        l = b.lower.to_vector();
        u = b.upper.to_vector();
      }
      for (int64_t s = 0; s < n; ++s)
        for (int64_t j = 0; j < width; ++j) {
          const Domain& d = domains[size_t(s)];
          const int8_t phase = d.split[size_t(relu_offset_[r] + j)];
          float& lj = l[size_t(s * width + j)];
          float& uj = u[size_t(s * width + j)];
          if (!d.lower.empty()) {  // the parent's bounds hold on the child too
            lj = std::max(lj, d.lower[size_t(relu_offset_[r] + j)]);
            uj = std::min(uj, d.upper[size_t(relu_offset_[r] + j)]);
          }
          if (phase > 0) lj = std::max(lj, 0.0f);
          if (phase < 0) uj = std::min(uj, 0.0f);
          if (lj > uj) empty[size_t(s)] = true;
        }
      for (int64_t s = 0; s < n; ++s)  // an empty domain's bounds are meaningless; keep them ordered
        if (empty[size_t(s)])
          for (int64_t j = 0; j < width; ++j) u[size_t(s * width + j)] = std::max(u[size_t(s * width + j)], l[size_t(s * width + j)]);
      leaves_l.push_back(Tensor::from_vector(l, Shape{n, width}, device));
      leaves_u.push_back(Tensor::from_vector(u, Shape{n, width}, device));
      leaves_l.back().set_requires_grad(true);
      leaves_u.back().set_requires_grad(true);
      ctx.relu_lower[layer] = leaves_l.back();
      ctx.relu_upper[layer] = leaves_u.back();
      extend_magnitudes(ctx);
      relu_l[r] = std::move(l);
      relu_u[r] = std::move(u);
    }
    for (int64_t s = 0; s < n; ++s) {  // kept for the children
      Domain& d = domains[size_t(s)];
      d.lower.resize(size_t(total_neurons_));
      d.upper.resize(size_t(total_neurons_));
      for (size_t r = 0; r < relu_layers_.size(); ++r) {
        const int64_t width = net_.layers()[relu_layers_[r]].in_shape.numel();
        std::copy(relu_l[r].begin() + s * width, relu_l[r].begin() + (s + 1) * width, d.lower.begin() + relu_offset_[r]);
        std::copy(relu_u[r].begin() + s * width, relu_u[r].begin() + (s + 1) * width, d.upper.begin() + relu_offset_[r]);
      }
    }
    const Tensor spec_t = Tensor::from_vector(spec, Shape{n, rows, outputs}, device);
    BacksubResult out;
    if (options_.alpha_slopes) {
      BoundOptions slopes;
      slopes.alpha = options_.alpha;
      out = optimised_walk(ctx, spec_t, /*need_lower=*/false, slopes);
    } else {
      out = backsub_spec(ctx, spec_t, /*elide=*/true, /*need_lower=*/false);
    }
    const std::vector<float> upper = out.upper.to_vector();
    // margin of row k: lower(coeffs . y) - rhs = -upper_k - rhs (> 0: the row is refuted).
    std::vector<bool> verified(static_cast<size_t>(n));
    std::vector<float> pick(size_t(n * rows), 0.0f);
    for (int64_t s = 0; s < n; ++s) {
      double worst = std::numeric_limits<double>::infinity();
      int worst_row = -1;
      for (const std::vector<int>& d : disjunct_rows_) {
        double best = -std::numeric_limits<double>::infinity();
        int best_row = -1;
        for (int k : d) {
          const double m = -double(upper[size_t(s * rows + k)]) - rhs_[size_t(k)];
          if (m > best) {
            best = m;
            best_row = k;
          }
        }
        if (best < worst) {
          worst = best;
          worst_row = best_row;
        }
      }
      domains[size_t(s)].worst = empty[size_t(s)] ? std::numeric_limits<double>::infinity() : worst;
      verified[size_t(s)] = empty[size_t(s)] || worst > 0.0;
      if (!verified[size_t(s)] && worst_row >= 0) pick[size_t(s * rows + worst_row)] = 1.0f;
    }
    // One backward pass: the gradient of every unverified domain's worst row
    // with respect to all clamped intermediate bounds.
    const Tensor loss = ops::sum(ops::mul(out.upper, Tensor::from_vector(pick, Shape{n, rows}, device)));
    backward(loss);
    for (int64_t s = 0; s < n; ++s) domains[size_t(s)].branch = -1;
    std::vector<double> best_score(size_t(n), -1.0);
    for (size_t r = 0; r < relu_layers_.size(); ++r) {
      const int64_t width = net_.layers()[relu_layers_[r]].in_shape.numel();
      const Tensor gl_t = leaves_l[r].grad(), gu_t = leaves_u[r].grad();
      const std::vector<float> gl = gl_t.defined() ? gl_t.to_vector() : std::vector<float>(size_t(n * width), 0.0f);
      const std::vector<float> gu = gu_t.defined() ? gu_t.to_vector() : std::vector<float>(size_t(n * width), 0.0f);
      for (int64_t s = 0; s < n; ++s) {
        if (verified[size_t(s)]) continue;
        for (int64_t j = 0; j < width; ++j) {
          const size_t at = size_t(s * width + j);
          const double l = relu_l[r][at], u = relu_u[r][at];
          if (!(l < 0.0 && u > 0.0)) continue;
          // upper() is minimised: moving l up by -l changes it by about gl * (-l).
          const double gain = std::max(0.0, double(gl[at]) * l) + std::max(0.0, double(gu[at]) * u);
          const double score = gain + 1e-12 * (-l * u / (u - l));
          if (score > best_score[size_t(s)]) {
            best_score[size_t(s)] = score;
            domains[size_t(s)].branch = relu_offset_[r] + j;
          }
        }
      }
    }
    return verified;
  }

  VerifyResult run(Clock::time_point start) {
    VerifyResult result;
    std::vector<Domain> open;
    {
      std::vector<Domain> root(1);
      root[0].split.assign(size_t(total_neurons_), 0);
      const std::vector<bool> ok = bound(root);
      result.domains_bounded = 1;
      if (ok[0]) {
        result.verdict = Verdict::unsat;
        result.note = "verified at the root";
        return result;
      }
      open.push_back(std::move(root[0]));
    }
    bool exhausted = false;  // a domain with no unstable ReLU that could not be verified
    while (!open.empty()) {
      if (seconds_since(start) > options_.timeout_s) {
        result.verdict = Verdict::timeout;
        result.note = std::to_string(open.size()) + " subdomains open";
        return result;
      }
      if (int64_t(open.size()) > options_.max_domains) {
        result.verdict = Verdict::unknown;
        result.note = "more than " + std::to_string(options_.max_domains) + " open subdomains";
        return result;
      }
      // Worst bound first: the open domains sorted so the worst are at the back.
      std::sort(open.begin(), open.end(), [](const Domain& a, const Domain& b) { return a.worst > b.worst; });
      std::vector<Domain> children;
      while (!open.empty() && int(children.size()) + 2 <= std::max(2, options_.batch)) {
        if (seconds_since(start) > options_.timeout_s) break;  // the LPs below can take a while
        Domain d = std::move(open.back());
        open.pop_back();
        if (d.branch < 0) {  // every ReLU is decided: an LP settles the subdomain
          std::vector<int8_t> phases = d.split;
          for (size_t j = 0; j < phases.size(); ++j)
            if (phases[j] == 0) phases[j] = d.lower[j] >= 0.0f ? 1 : (d.upper[j] <= 0.0f ? -1 : 0);
          const double left = options_.timeout_s - seconds_since(start);
          MilpResult exact;
          try {
            exact = milp_verify(net_, property_, std::max(left, 0.1), &phases);
          } catch (const std::exception&) {  // a layer the LP cannot express (conv): the subdomain stays undecided
            exhausted = true;
            continue;
          }
          ++result.exact_solves;
          if (exact.solved && exact.objective > kExactMargin) continue;  // verified
          if (exact.violated() && confirms_counterexample(net_, property_, exact.x)) {
            result.verdict = Verdict::sat;
            result.counterexample = exact.x;
            result.note = "the LP of a fully split subdomain found a counterexample";
            return result;
          }
          exhausted = true;
          continue;
        }
        for (int8_t phase : {int8_t(1), int8_t(-1)}) {
          Domain c;
          c.split = d.split;
          c.lower = d.lower;
          c.upper = d.upper;
          c.split[size_t(d.branch)] = phase;
          c.depth = d.depth + 1;
          result.max_depth = std::max(result.max_depth, c.depth);
          children.push_back(std::move(c));
        }
      }
      if (children.empty()) continue;
      const std::vector<bool> ok = bound(children);
      result.domains_bounded += int64_t(children.size());
      for (size_t i = 0; i < children.size(); ++i)
        if (!ok[i]) open.push_back(std::move(children[i]));
    }
    result.verdict = exhausted ? Verdict::unknown : Verdict::unsat;
    result.note = exhausted ? "a fully split subdomain stayed undecided" : "every subdomain verified";
    return result;
  }

 private:
  const Network& net_;
  const Property& property_;
  const VerifyOptions& options_;
  std::vector<float> lower0_, upper0_, neg_spec_;
  std::vector<double> rhs_;
  std::vector<std::vector<int>> disjunct_rows_;
  std::vector<size_t> relu_layers_;
  std::vector<int64_t> relu_offset_;
  int64_t total_neurons_ = 0;
};

}  // namespace

const char* verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::unsat: return "unsat";
    case Verdict::sat: return "sat";
    case Verdict::timeout: return "timeout";
    case Verdict::unknown: return "unknown";
  }
  return "unknown";
}

std::vector<double> attack_property(const Network& net, const Property& property, const VerifyOptions& options) {
  const Clock::time_point start = Clock::now();
  const Network view = train::detached_view(net);
  const auto [lo, hi] = float_box(property);
  const int64_t n0 = int64_t(lo.size()), outputs = property.num_outputs;
  const int64_t disjuncts = int64_t(property.disjuncts.size());
  const int64_t restarts = std::max(1, options.pgd_restarts);
  const int64_t batch = disjuncts * restarts;
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<float> x(size_t(batch * n0));
  float widest = 0.0f;
  for (int64_t i = 0; i < n0; ++i) widest = std::max(widest, hi[size_t(i)] - lo[size_t(i)]);
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t i = 0; i < n0; ++i) {  // the first attempt per disjunct from the centre, the others at random
      const double t = s < disjuncts ? 0.5 : unit(rng);
      x[size_t(s * n0 + i)] = float(property.lower[size_t(i)] + t * (property.upper[size_t(i)] - property.lower[size_t(i)]));
    }
  auto in_box = [&](int64_t s) {
    std::vector<double> xd(static_cast<size_t>(n0));
    for (int64_t i = 0; i < n0; ++i)
      xd[size_t(i)] = std::clamp(double(x[size_t(s * n0 + i)]), property.lower[size_t(i)], property.upper[size_t(i)]);
    return xd;
  };
  for (int step = 0; step <= options.pgd_steps; ++step) {
    if (seconds_since(start) > options.timeout_s) break;  // the attack spends the same budget
    Tensor xt = Tensor::from_vector(x, batch_shape(net, batch), net.device());
    xt.set_requires_grad(true);
    const Tensor y = view.forward(xt);
    const std::vector<float> yv = y.to_vector();
    // Each sample pushes its disjunct's currently most violated row down.
    std::vector<float> direction(size_t(batch * outputs), 0.0f);
    for (int64_t s = 0; s < batch; ++s) {
      const Conjunction& c = property.disjuncts[size_t(s % disjuncts)];
      double worst = -std::numeric_limits<double>::infinity();
      const LinearInequality* row = nullptr;
      for (const LinearInequality& q : c) {
        double v = -q.rhs;
        for (int64_t k = 0; k < outputs; ++k) v += q.coeffs[size_t(k)] * double(yv[size_t(s * outputs + k)]);
        if (v > worst) {
          worst = v;
          row = &q;
        }
      }
      if (worst <= 0.0) {  // candidate: confirm in float64 inside the exact box
        std::vector<double> xd = in_box(s);
        if (confirms_counterexample(net, property, xd)) return xd;
      }
      if (row)
        for (int64_t k = 0; k < outputs; ++k) direction[size_t(s * outputs + k)] = float(row->coeffs[size_t(k)]);
    }
    if (step == options.pgd_steps) break;
    backward(ops::sum(ops::mul(y, Tensor::from_vector(direction, Shape{batch, outputs}, net.device()))));
    const std::vector<float> g = xt.grad().to_vector();
    // Step size decays linearly from a quarter of the widest side.
    const float step_size = widest * 0.25f * float(options.pgd_steps - step) / float(options.pgd_steps);
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t i = 0; i < n0; ++i) {
        float& v = x[size_t(s * n0 + i)];
        const float gi = g[size_t(s * n0 + i)];
        v -= step_size * float((gi > 0) - (gi < 0));
        v = std::clamp(v, lo[size_t(i)], hi[size_t(i)]);
      }
  }
  return {};
}

VerifyResult verify_property(const Network& net, const Property& property, const VerifyOptions& options) {
  const Clock::time_point start = Clock::now();
  // A private tape with recording on: the attack and the branching scores
  // need gradients even under the caller's NoGrad (certify eval's), and the
  // caller's tape is left as it was.
  TapeScope scope;
  if (int64_t(property.lower.size()) != net.input_shape().numel())
    fail("verify", "the property has " + std::to_string(property.lower.size()) + " inputs, the network takes " +
                       net.input_shape().str());
  if (net.output_shape() != Shape{property.num_outputs})
    fail("verify", "the property has " + std::to_string(property.num_outputs) + " outputs, the network gives " +
                       net.output_shape().str());
  VerifyResult result;
  if (options.attack) {
    result.counterexample = attack_property(net, property, options);
    if (!result.counterexample.empty()) {
      result.verdict = Verdict::sat;
      result.note = "PGD found a counterexample";
      result.seconds = seconds_since(start);
      return result;
    }
  }
  const double attack_seconds = seconds_since(start);
  result = BranchAndBound(net, property, options).run(start);
  result.seconds = seconds_since(start);
  char timing[96];
  std::snprintf(timing, sizeof timing, "; attack %.2f s, branch and bound %.2f s", attack_seconds, result.seconds - attack_seconds);
  result.note += timing;
  return result;
}

}  // namespace cte::verify
