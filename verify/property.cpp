// VNNLIB parsing and writing, and the float64 reference forward pass (see property.h).
#include "verify/property.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>

#include "engine/file_io.h"

namespace cte::verify {
namespace {

struct Sexp {
  bool atom = false;
  std::string text;
  std::vector<Sexp> items;
  int line = 0;
};

class Parser {
 public:
  Parser(const std::string& text, std::string source) : text_(text), source_(std::move(source)) {}

  std::vector<Sexp> parse_all() {
    std::vector<Sexp> out;
    for (skip(); pos_ < text_.size(); skip()) out.push_back(parse());
    return out;
  }
  [[noreturn]] void bad(int line, const std::string& what) const {
    fail("vnnlib", source_ + ":" + std::to_string(line) + ": " + what);
  }

 private:
  const std::string& text_;
  std::string source_;
  size_t pos_ = 0;
  int line_ = 1;
  int depth_ = 0;

  void skip() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ';') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else {
        return;
      }
    }
  }
  Sexp parse() {
    skip();
    Sexp s;
    s.line = line_;
    if (pos_ >= text_.size()) bad(line_, "unexpected end of file (unbalanced parentheses)");
    if (text_[pos_] == ')') bad(line_, "unexpected ')'");
    if (text_[pos_] == '(') {
      if (++depth_ > 200) bad(line_, "nesting deeper than 200");
      ++pos_;
      for (skip(); pos_ < text_.size() && text_[pos_] != ')'; skip()) s.items.push_back(parse());
      if (pos_ >= text_.size()) bad(s.line, "'(' never closed");
      ++pos_;
      --depth_;
      return s;
    }
    s.atom = true;
    while (pos_ < text_.size() && text_[pos_] != '(' && text_[pos_] != ')' && text_[pos_] != ';' &&
           !std::isspace(static_cast<unsigned char>(text_[pos_])))
      s.text += text_[pos_++];
    return s;
  }
};

// A linear term: sum of coefficient * variable plus a constant; variables
// are X_i as i >= 0 and Y_j as -(j + 1).
struct Linear {
  std::map<long, double> coeffs;
  double constant = 0.0;
};

class Builder {
 public:
  Builder(const Parser& parser) : parser_(parser) {}

  Property build(const std::vector<Sexp>& commands) {
    for (const Sexp& c : commands) {
      if (c.atom || c.items.empty() || !c.items[0].atom) parser_.bad(c.line, "expected a command like (assert ...)");
      const std::string& head = c.items[0].text;
      if (head == "declare-const") declare(c);
      else if (head == "assert") {
        if (c.items.size() != 2) parser_.bad(c.line, "assert takes one formula");
        assert_formula(c.items[1]);
      } else {
        parser_.bad(c.line, "unsupported command '" + head + "'");
      }
    }
    if (num_inputs_ == 0) parser_.bad(1, "no input variables X_i declared");
    if (num_outputs_ == 0) parser_.bad(1, "no output variables Y_j declared");
    Property p;
    p.num_outputs = num_outputs_;
    p.lower.assign(size_t(num_inputs_), -std::numeric_limits<double>::infinity());
    p.upper.assign(size_t(num_inputs_), std::numeric_limits<double>::infinity());
    for (const auto& [index, value] : lower_) p.lower[size_t(index)] = value;
    for (const auto& [index, value] : upper_) p.upper[size_t(index)] = value;
    for (int i = 0; i < num_inputs_; ++i) {
      if (!std::isfinite(p.lower[size_t(i)]) || !std::isfinite(p.upper[size_t(i)]))
        parser_.bad(1, "X_" + std::to_string(i) + " is not bounded on both sides");
      if (p.lower[size_t(i)] > p.upper[size_t(i)])
        parser_.bad(1, "X_" + std::to_string(i) + " has an empty range [" + std::to_string(p.lower[size_t(i)]) + ", " +
                           std::to_string(p.upper[size_t(i)]) + "]");
    }
    if (!have_output_) parser_.bad(1, "no output constraint");
    for (const std::vector<Linear>& conj : dnf_) {
      Conjunction c;
      for (const Linear& l : conj) {
        LinearInequality ineq;
        ineq.coeffs.assign(size_t(num_outputs_), 0.0);
        for (const auto& [var, coeff] : l.coeffs) ineq.coeffs[size_t(-var - 1)] += coeff;
        ineq.rhs = -l.constant;
        c.push_back(ineq);
      }
      p.disjuncts.push_back(c);
    }
    return p;
  }

 private:
  const Parser& parser_;
  int num_inputs_ = 0, num_outputs_ = 0;
  std::map<long, double> lower_, upper_;
  bool have_output_ = false;
  std::vector<std::vector<Linear>> dnf_{{}};  // the output condition so far: true

  void declare(const Sexp& c) {
    if (c.items.size() != 3 || !c.items[1].atom || !c.items[2].atom || c.items[2].text != "Real")
      parser_.bad(c.line, "expected (declare-const NAME Real)");
    const long v = variable(c.items[1], false);
    if (v >= 0) {
      if (v != num_inputs_) parser_.bad(c.line, "inputs must be declared in order X_0, X_1, ...");
      ++num_inputs_;
    } else {
      if (-v - 1 != num_outputs_) parser_.bad(c.line, "outputs must be declared in order Y_0, Y_1, ...");
      ++num_outputs_;
    }
  }
  long variable(const Sexp& s, bool must_exist) const {
    const std::string& t = s.text;
    if (t.size() < 3 || (t[0] != 'X' && t[0] != 'Y') || t[1] != '_') parser_.bad(s.line, "unknown symbol '" + t + "'");
    long index = 0;
    for (size_t i = 2; i < t.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(t[i])) || index > 100000000) parser_.bad(s.line, "bad variable '" + t + "'");
      index = index * 10 + (t[i] - '0');
    }
    if (must_exist && index >= (t[0] == 'X' ? num_inputs_ : num_outputs_)) parser_.bad(s.line, "undeclared variable " + t);
    return t[0] == 'X' ? index : -index - 1;
  }
  Linear term(const Sexp& s) const {
    Linear l;
    if (s.atom) {
      if (!s.text.empty() && (std::isdigit(static_cast<unsigned char>(s.text[0])) || s.text[0] == '-' || s.text[0] == '.')) {
        char* end = nullptr;
        l.constant = std::strtod(s.text.c_str(), &end);
        if (end != s.text.c_str() + s.text.size() || !std::isfinite(l.constant)) parser_.bad(s.line, "bad number '" + s.text + "'");
      } else {
        l.coeffs[variable(s, true)] = 1.0;
      }
      return l;
    }
    if (s.items.size() < 2 || !s.items[0].atom) parser_.bad(s.line, "expected (+|-|* terms...)");
    const std::string& op = s.items[0].text;
    std::vector<Linear> args;
    for (size_t i = 1; i < s.items.size(); ++i) args.push_back(term(s.items[i]));
    auto add = [](Linear& into, const Linear& x, double factor) {
      for (const auto& [v, c] : x.coeffs) into.coeffs[v] += factor * c;
      into.constant += factor * x.constant;
    };
    if (op == "+") {
      for (const Linear& a : args) add(l, a, 1.0);
    } else if (op == "-") {
      if (args.size() == 1) add(l, args[0], -1.0);
      else {
        add(l, args[0], 1.0);
        for (size_t i = 1; i < args.size(); ++i) add(l, args[i], -1.0);
      }
    } else if (op == "*") {
      l.constant = 1.0;
      for (const Linear& a : args) {
        if (!a.coeffs.empty() && !l.coeffs.empty()) parser_.bad(s.line, "product of two variables (not linear)");
        Linear next;
        if (a.coeffs.empty()) add(next, l, a.constant);
        else add(next, a, l.constant);
        l = next;
      }
    } else {
      parser_.bad(s.line, "unsupported operator '" + op + "' in a term");
    }
    return l;
  }
  // (op a b) as a linear form L with the atom meaning L <= 0.
  Linear atom(const Sexp& s) const {
    const std::string& op = s.items[0].text;
    if (s.items.size() != 3) parser_.bad(s.line, "(" + op + " a b) takes two terms");
    Linear a = term(s.items[1]), b = term(s.items[2]);
    Linear out;
    const bool less = op == "<=" || op == "<";
    const Linear& hi = less ? b : a;
    const Linear& lo = less ? a : b;
    for (const auto& [v, c] : lo.coeffs) out.coeffs[v] += c;
    for (const auto& [v, c] : hi.coeffs) out.coeffs[v] -= c;
    out.constant = lo.constant - hi.constant;
    for (auto it = out.coeffs.begin(); it != out.coeffs.end();) it = it->second == 0.0 ? out.coeffs.erase(it) : std::next(it);
    return out;
  }
  static bool is_comparison(const Sexp& s) {
    if (s.atom || s.items.empty() || !s.items[0].atom) return false;
    const std::string& op = s.items[0].text;
    return op == "<=" || op == ">=" || op == "<" || op == ">";
  }
  // Inputs only, outputs only, or mixed, of a formula.
  void scan(const Sexp& s, bool& inputs, bool& outputs) const {
    if (s.atom) {
      if (s.text.size() > 2 && s.text[1] == '_' && s.text[0] == 'X') inputs = true;
      if (s.text.size() > 2 && s.text[1] == '_' && s.text[0] == 'Y') outputs = true;
      return;
    }
    for (const Sexp& k : s.items) scan(k, inputs, outputs);
  }
  void input_bound(const Sexp& s) {
    if (!s.atom && !s.items.empty() && s.items[0].atom && s.items[0].text == "and") {
      for (size_t i = 1; i < s.items.size(); ++i) input_bound(s.items[i]);
      return;
    }
    if (!is_comparison(s)) parser_.bad(s.line, "input constraints must be bounds (<= X_i c) / (>= X_i c); "
                                               "disjunctions over inputs are not supported");
    const Linear l = atom(s);
    if (l.coeffs.size() != 1) parser_.bad(s.line, "an input constraint must bound one variable by a constant");
    const auto [var, coeff] = *l.coeffs.begin();
    const double bound = -l.constant / coeff;  // coeff * x + constant <= 0
    if (coeff > 0) {
      auto it = upper_.find(var);
      upper_[var] = it == upper_.end() ? bound : std::min(it->second, bound);
    } else {
      auto it = lower_.find(var);
      lower_[var] = it == lower_.end() ? bound : std::max(it->second, bound);
    }
  }
  std::vector<std::vector<Linear>> to_dnf(const Sexp& s) const {
    if (is_comparison(s)) return {{atom(s)}};
    if (s.atom || s.items.size() < 2 || !s.items[0].atom) parser_.bad(s.line, "expected a comparison, (and ...) or (or ...)");
    const std::string& op = s.items[0].text;
    std::vector<std::vector<Linear>> out;
    if (op == "or") {
      for (size_t i = 1; i < s.items.size(); ++i)
        for (auto& c : to_dnf(s.items[i])) out.push_back(std::move(c));
    } else if (op == "and") {
      out = {{}};
      for (size_t i = 1; i < s.items.size(); ++i) out = conjoin(out, to_dnf(s.items[i]), s.line);
    } else {
      parser_.bad(s.line, "unsupported connective '" + op + "' (and, or and comparisons only)");
    }
    return out;
  }
  std::vector<std::vector<Linear>> conjoin(const std::vector<std::vector<Linear>>& a,
                                           const std::vector<std::vector<Linear>>& b, int line) const {
    if (a.size() * b.size() > 100000) parser_.bad(line, "the output condition has more than 100000 disjuncts");
    std::vector<std::vector<Linear>> out;
    for (const auto& x : a)
      for (const auto& y : b) {
        std::vector<Linear> c = x;
        c.insert(c.end(), y.begin(), y.end());
        out.push_back(std::move(c));
      }
    return out;
  }
  void assert_formula(const Sexp& s) {
    bool inputs = false, outputs = false;
    scan(s, inputs, outputs);
    if (inputs && outputs) parser_.bad(s.line, "a constraint mixing inputs and outputs is not supported");
    if (inputs) return input_bound(s);
    if (!outputs) parser_.bad(s.line, "a constraint without variables");
    dnf_ = conjoin(dnf_, to_dnf(s), s.line);
    have_output_ = true;
  }
};

}  // namespace

Property parse_vnnlib(const std::string& text, const std::string& source) {
  Parser parser(text, source);
  const std::vector<Sexp> commands = parser.parse_all();
  return Builder(parser).build(commands);
}

Property load_vnnlib(const std::string& path) { return parse_vnnlib(read_whole_file(path, "vnnlib"), path); }

Property robustness_property(const std::vector<float>& x, int label, int num_classes, double eps, double clip_lower,
                             double clip_upper) {
  if (label < 0 || label >= num_classes)
    fail("vnnlib", "label " + std::to_string(label) + " outside [0, " + std::to_string(num_classes) + ")");
  Property p;
  p.num_outputs = num_classes;
  for (float xi : x) {  // the real ball, clipped: the bounds are computed in double
    p.lower.push_back(std::max(clip_lower, double(xi) - eps));
    p.upper.push_back(std::min(clip_upper, double(xi) + eps));
  }
  for (int j = 0; j < num_classes; ++j) {
    if (j == label) continue;
    LinearInequality y_j_at_least_y_label;  // Y_label - Y_j <= 0
    y_j_at_least_y_label.coeffs.assign(size_t(num_classes), 0.0);
    y_j_at_least_y_label.coeffs[size_t(label)] = 1.0;
    y_j_at_least_y_label.coeffs[size_t(j)] = -1.0;
    p.disjuncts.push_back({y_j_at_least_y_label});
  }
  return p;
}

std::string robustness_vnnlib(const std::vector<float>& x, int label, int num_classes, double eps, double clip_lower,
                              double clip_upper) {
  const Property p = robustness_property(x, label, num_classes, eps, clip_lower, clip_upper);
  std::string out = "; local robustness: label " + std::to_string(label) + ", eps " + std::to_string(eps) + "\n";
  char buf[160];
  for (size_t i = 0; i < x.size(); ++i) out += "(declare-const X_" + std::to_string(i) + " Real)\n";
  for (int j = 0; j < num_classes; ++j) out += "(declare-const Y_" + std::to_string(j) + " Real)\n";
  for (size_t i = 0; i < x.size(); ++i) {
    std::snprintf(buf, sizeof buf, "(assert (<= X_%zu %.17g))\n(assert (>= X_%zu %.17g))\n", i, p.upper[i], i, p.lower[i]);
    out += buf;
  }
  out += "(assert (or\n";
  for (int j = 0; j < num_classes; ++j)
    if (j != label) out += "    (and (>= Y_" + std::to_string(j) + " Y_" + std::to_string(label) + "))\n";
  return out + "))\n";
}

std::vector<double> forward_f64(const Network& net, const std::vector<double>& x) {
  if (int64_t(x.size()) != net.input_shape().numel())
    fail("verify", "input has " + std::to_string(x.size()) + " values, the network takes " + net.input_shape().str());
  std::vector<double> h = x;
  for (const Layer& layer : net.layers()) {
    const std::vector<int64_t> in = layer.in_shape.dims(), out = layer.out_shape.dims();
    std::vector<double> next(size_t(layer.out_shape.numel()), 0.0);
    switch (layer.kind) {
      case LayerKind::linear: {
        const std::vector<float> w = layer.weight.to_vector(), b = layer.bias.defined() ? layer.bias.to_vector() : std::vector<float>();
        const size_t n_in = h.size();
        for (size_t o = 0; o < next.size(); ++o) {
          double s = b.empty() ? 0.0 : double(b[o]);
          for (size_t i = 0; i < n_in; ++i) s += double(w[o * n_in + i]) * h[i];
          next[o] = s;
        }
        break;
      }
      case LayerKind::conv: {
        const std::vector<float> w = layer.weight.to_vector(), b = layer.bias.defined() ? layer.bias.to_vector() : std::vector<float>();
        const int64_t C = in[0], H = in[1], W = in[2], O = out[0], Ho = out[1], Wo = out[2];
        const int64_t kh = layer.weight.shape()[2], kw = layer.weight.shape()[3];
        for (int64_t o = 0; o < O; ++o)
          for (int64_t y = 0; y < Ho; ++y)
            for (int64_t xo = 0; xo < Wo; ++xo) {
              double s = b.empty() ? 0.0 : double(b[size_t(o)]);
              for (int64_t c = 0; c < C; ++c)
                for (int64_t i = 0; i < kh; ++i)
                  for (int64_t j = 0; j < kw; ++j) {
                    const int64_t yy = y * layer.stride - layer.padding + i, xx = xo * layer.stride - layer.padding + j;
                    if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                    s += double(w[size_t(((o * C + c) * kh + i) * kw + j)]) * h[size_t((c * H + yy) * W + xx)];
                  }
              next[size_t((o * Ho + y) * Wo + xo)] = s;
            }
        break;
      }
      case LayerKind::relu:
        for (size_t i = 0; i < h.size(); ++i) next[i] = h[i] > 0.0 ? h[i] : 0.0;
        break;
      case LayerKind::flatten: next = h; break;
      case LayerKind::batch_norm: {
        // Evaluation mode: (x - mean) / sqrt(var + eps) * gamma + beta per channel.
        const std::vector<float> mean = layer.running_mean.to_vector(), var = layer.running_var.to_vector();
        const std::vector<float> gamma = layer.weight.to_vector(), beta = layer.bias.to_vector();
        const size_t block = h.size() / mean.size();
        for (size_t i = 0; i < h.size(); ++i) {
          const size_t c = i / block;
          next[i] = (h[i] - double(mean[c])) / std::sqrt(double(var[c]) + double(layer.eps)) * double(gamma[c]) +
                    double(beta[c]);
        }
        break;
      }
      case LayerKind::normalize: {
        // The engine's network: (x - mean) * inv_std with its float32 inv_std.
        const std::vector<float> mean = layer.mean.to_vector(), inv = layer.inv_std.to_vector();
        const size_t channels = mean.size(), block = h.size() / (in.size() == 3 ? size_t(in[0]) : 1);
        for (size_t i = 0; i < h.size(); ++i) {
          const size_t c = channels == 1 ? 0 : i / block;
          next[i] = (h[i] - double(mean[c])) * double(inv[c]);
        }
        break;
      }
    }
    h = std::move(next);
  }
  return h;
}

double conjunction_violation(const Conjunction& conjunction, const std::vector<double>& y) {
  double worst = -std::numeric_limits<double>::infinity();
  for (const LinearInequality& ineq : conjunction) {
    double s = -ineq.rhs;
    for (size_t j = 0; j < y.size(); ++j) s += ineq.coeffs[j] * y[j];
    worst = std::max(worst, s);
  }
  return worst;
}

bool confirms_counterexample(const Network& net, const Property& property, const std::vector<double>& x) {
  if (x.size() != property.lower.size()) return false;
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] >= property.lower[i] && x[i] <= property.upper[i])) return false;
  const std::vector<double> y = forward_f64(net, x);
  for (const Conjunction& c : property.disjuncts)
    if (conjunction_violation(c, y) <= 0.0) return true;
  return false;
}

}  // namespace cte::verify
