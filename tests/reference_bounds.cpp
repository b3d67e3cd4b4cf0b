// The double-precision reference relaxations (see reference_bounds.h):
// reading an engine network out as doubles, expanding it to dense layers,
// and the three bounding procedures (interval arithmetic, hybrid zonotope,
// backsubstitution with a per-neuron ReLU rule), one sample at a time.
#include "tests/reference_bounds.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace cte::ref {

Matrix Matrix::identity(int64_t n) {
  Matrix m(n, n);
  for (int64_t i = 0; i < n; ++i) m(i, i) = 1.0;
  return m;
}

Matrix matmul(const Matrix& a, const Matrix& b) {
  if (a.cols != b.rows) throw std::invalid_argument("[ref] matmul: inner extents differ");
  Matrix c(a.rows, b.cols);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t k = 0; k < a.cols; ++k) {
      const double aik = a(i, k);
      if (aik == 0.0) continue;
      for (int64_t j = 0; j < b.cols; ++j) c(i, j) += aik * b(k, j);
    }
  return c;
}

void CaseTrace::note(double lower, double upper) {
  closest_to_switch =
      std::min({closest_to_switch, std::fabs(lower), std::fabs(upper), std::fabs(lower + upper)});
  if (upper <= 0.0 && lower < 0.0)
    cases.push_back(0);
  else if (lower >= 0.0)
    cases.push_back(1);
  else
    cases.push_back(-lower >= upper ? 2 : 3);
}

// ------------------------------------------------------------ network readout

namespace {

std::vector<double> as_doubles(const Tensor& t) {
  const std::vector<float> f = t.to_vector();
  return {f.begin(), f.end()};
}

int64_t product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

}  // namespace

std::vector<std::vector<double>*> NetworkSpec::parameters() {
  std::vector<std::vector<double>*> params;
  for (SpecLayer& layer : layers) {
    if (layer.kind != LayerKind::linear && layer.kind != LayerKind::conv) continue;
    params.push_back(&layer.weight);
    if (layer.has_bias) params.push_back(&layer.bias);
  }
  return params;
}

NetworkSpec describe_network(const Network& net) {
  NetworkSpec spec;
  spec.input_shape = net.input_shape().dims();
  for (const Layer& layer : net.layers()) {
    SpecLayer s;
    s.kind = layer.kind;
    s.in_shape = layer.in_shape.dims();
    s.out_shape = layer.out_shape.dims();
    if (layer.kind == LayerKind::linear || layer.kind == LayerKind::conv) {
      s.weight = as_doubles(layer.weight);
      s.weight_shape = layer.weight.shape().dims();
      s.has_bias = layer.bias.defined();
      s.bias = s.has_bias ? as_doubles(layer.bias) : std::vector<double>(size_t(s.weight_shape[0]), 0.0);
      s.stride = layer.stride;
      s.padding = layer.padding;
    } else if (layer.kind == LayerKind::batch_norm) {
      // Evaluation mode, in double: (x - mean) / sqrt(var + eps) * gamma + beta.
      s.weight = as_doubles(layer.weight);
      s.bias = as_doubles(layer.bias);
      s.mean = as_doubles(layer.running_mean);
      for (double v : as_doubles(layer.running_var)) s.inv_std.push_back(1.0 / std::sqrt(v + double(layer.eps)));
    } else if (layer.kind == LayerKind::normalize) {
      // The engine multiplies by its stored float 1/std, so the reference does too.
      s.mean = as_doubles(layer.mean);
      s.inv_std = as_doubles(layer.inv_std);
    }
    spec.layers.push_back(std::move(s));
  }
  return spec;
}

// ------------------------------------------------------------ densification

namespace {

DenseLayer dense_linear(const SpecLayer& s) {
  DenseLayer d;
  const int64_t out = s.weight_shape[0], in = s.weight_shape[1];
  d.weight = Matrix(out, in);
  d.weight.values = s.weight;
  d.bias = s.bias;
  d.size = out;
  return d;
}

// Row (o, oy, ox) of the matrix sums kernel[o, c, ky, kx] * x[c, oy*s - p + ky, ox*s - p + kx]
// over the taps that land inside the input (outside is the zero padding).
DenseLayer dense_conv(const SpecLayer& s) {
  const int64_t out_channels = s.weight_shape[0], channels = s.weight_shape[1];
  const int64_t kh = s.weight_shape[2], kw = s.weight_shape[3];
  const int64_t height = s.in_shape[1], width = s.in_shape[2];
  const int64_t out_h = s.out_shape[1], out_w = s.out_shape[2];
  DenseLayer d;
  d.size = out_channels * out_h * out_w;
  d.weight = Matrix(d.size, channels * height * width);
  d.bias.assign(size_t(d.size), 0.0);
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const int64_t row = (o * out_h + oy) * out_w + ox;
        d.bias[size_t(row)] = s.bias[size_t(o)];
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t ky = 0; ky < kh; ++ky)
            for (int64_t kx = 0; kx < kw; ++kx) {
              const int64_t iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx;
              if (iy < 0 || iy >= height || ix < 0 || ix >= width) continue;
              d.weight(row, (c * height + iy) * width + ix) += s.weight[size_t(((o * channels + c) * kh + ky) * kw + kx)];
            }
      }
  return d;
}

// y = (x - mean[c]) * inv_std[c] as a diagonal affine layer; one statistic
// is broadcast over every channel (and is the only one for a flat input).
DenseLayer dense_normalize(const SpecLayer& s) {
  const int64_t n = product(s.in_shape);
  const int64_t per_channel = s.in_shape.size() == 3 ? s.in_shape[1] * s.in_shape[2] : n;
  DenseLayer d;
  d.size = n;
  d.weight = Matrix(n, n);
  d.bias.assign(size_t(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const size_t c = s.mean.size() == 1 ? 0 : size_t(i / per_channel);
    d.weight(i, i) = s.inv_std[c];
    d.bias[size_t(i)] = -s.mean[c] * s.inv_std[c];
  }
  return d;
}

// BatchNorm (evaluation mode) as a diagonal affine layer: scale gamma inv_std, shift beta - mean scale.
DenseLayer dense_batch_norm(const SpecLayer& s) {
  const int64_t n = product(s.in_shape);
  const int64_t per_channel = n / int64_t(s.mean.size());
  DenseLayer d;
  d.size = n;
  d.weight = Matrix(n, n);
  d.bias.assign(size_t(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const size_t c = size_t(i / per_channel);
    const double scale = s.weight[c] * s.inv_std[c];
    d.weight(i, i) = scale;
    d.bias[size_t(i)] = s.bias[c] - s.mean[c] * scale;
  }
  return d;
}

}  // namespace

DenseNetwork densify(const NetworkSpec& spec) {
  DenseNetwork net;
  net.input_size = product(spec.input_shape);
  for (const SpecLayer& s : spec.layers) {
    switch (s.kind) {
      case LayerKind::linear: net.layers.push_back(dense_linear(s)); break;
      case LayerKind::conv: net.layers.push_back(dense_conv(s)); break;
      case LayerKind::normalize: net.layers.push_back(dense_normalize(s)); break;
      case LayerKind::batch_norm: net.layers.push_back(dense_batch_norm(s)); break;
      case LayerKind::flatten: break;  // row-major (C, H, W) already is the flat order
      case LayerKind::relu: {
        DenseLayer d;
        d.is_relu = true;
        d.size = product(s.in_shape);
        net.layers.push_back(std::move(d));
        break;
      }
    }
  }
  return net;
}

std::vector<double> forward(const DenseNetwork& net, const std::vector<double>& x) {
  std::vector<double> h = x;
  for (const DenseLayer& layer : net.layers) {
    if (layer.is_relu) {
      for (double& v : h) v = std::max(v, 0.0);
      continue;
    }
    std::vector<double> next(layer.bias);
    for (int64_t i = 0; i < layer.weight.rows; ++i)
      for (int64_t j = 0; j < layer.weight.cols; ++j) next[size_t(i)] += layer.weight(i, j) * h[size_t(j)];
    h = std::move(next);
  }
  return h;
}

// ------------------------------------------------------------ relaxations

namespace {

using Layers = std::vector<DenseLayer>;

// Interval arithmetic for rows of coefficients: min / max of a.x over the box.
double interval_min(const Matrix& a, int64_t row, const std::vector<double>& lo, const std::vector<double>& hi,
                    CaseTrace* trace) {
  double s = 0.0;
  for (int64_t j = 0; j < a.cols; ++j) {
    const double c = a(row, j);
    if (trace && hi[size_t(j)] > lo[size_t(j)]) trace->note_sign(c);
    s += c >= 0.0 ? c * lo[size_t(j)] : c * hi[size_t(j)];
  }
  return s;
}

Interval apply_interval(const Matrix& a, const std::vector<double>& bias, const Interval& in, CaseTrace* trace) {
  Interval out;
  for (int64_t i = 0; i < a.rows; ++i) {
    const double b = bias.empty() ? 0.0 : bias[size_t(i)];
    out.lower.push_back(b + interval_min(a, i, in.lower, in.upper, trace));
    // max of a.x = -min of (-a).x, computed directly to keep it readable
    double s = 0.0;
    for (int64_t j = 0; j < a.cols; ++j) {
      const double c = a(i, j);
      s += c >= 0.0 ? c * in.upper[size_t(j)] : c * in.lower[size_t(j)];
    }
    out.upper.push_back(b + s);
  }
  return out;
}

// Box: [relu(l), relu(u)] at every ReLU. relu_inputs (optional) receives the
// bounds of every ReLU's input, indexed by layer.
Interval box_bounds(const Layers& layers, const Interval& input, std::vector<Interval>* relu_inputs,
                    CaseTrace* trace) {
  Interval x = input;
  if (relu_inputs) relu_inputs->assign(layers.size(), Interval{});
  for (size_t k = 0; k < layers.size(); ++k) {
    const DenseLayer& layer = layers[k];
    if (!layer.is_relu) {
      x = apply_interval(layer.weight, layer.bias, x, trace);
      continue;
    }
    if (relu_inputs) (*relu_inputs)[k] = x;
    for (size_t j = 0; j < x.lower.size(); ++j) {
      if (trace) trace->note(x.lower[j], x.upper[j]);
      x.lower[j] = std::max(x.lower[j], 0.0);
      x.upper[j] = std::max(x.upper[j], 0.0);
    }
  }
  return x;
}

// hBox: each neuron is centre + G e + [-b, b] with e in [-1, 1]^n0.
Interval hbox_bounds(const Layers& layers, const Interval& input, CaseTrace* trace) {
  const int64_t n0 = int64_t(input.lower.size());
  const size_t width0 = static_cast<size_t>(n0);
  std::vector<double> centre(width0), box(width0, 0.0);
  Matrix gen(n0, n0);
  for (int64_t i = 0; i < n0; ++i) {
    centre[size_t(i)] = 0.5 * (input.lower[size_t(i)] + input.upper[size_t(i)]);
    gen(i, i) = 0.5 * (input.upper[size_t(i)] - input.lower[size_t(i)]);
  }
  auto radius = [&](int64_t i) {
    double r = box[size_t(i)];
    for (int64_t e = 0; e < n0; ++e) {
      if (trace) trace->note_sign(gen(i, e));
      r += std::fabs(gen(i, e));
    }
    return r;
  };
  for (const DenseLayer& layer : layers) {
    if (!layer.is_relu) {
      const Matrix& w = layer.weight;
      std::vector<double> c2(layer.bias), b2(size_t(w.rows), 0.0);
      for (int64_t i = 0; i < w.rows; ++i)
        for (int64_t j = 0; j < w.cols; ++j) {
          c2[size_t(i)] += w(i, j) * centre[size_t(j)];
          if (trace && box[size_t(j)] > 0.0) trace->note_sign(w(i, j));
          b2[size_t(i)] += std::fabs(w(i, j)) * box[size_t(j)];
        }
      gen = matmul(w, gen);
      centre = std::move(c2);
      box = std::move(b2);
      continue;
    }
    for (int64_t i = 0; i < int64_t(centre.size()); ++i) {
      const double r = radius(i), l = centre[size_t(i)] - r, u = centre[size_t(i)] + r;
      if (trace) trace->note(l, u);
      if (u <= 0.0) {
        centre[size_t(i)] = 0.0;
        box[size_t(i)] = 0.0;
        for (int64_t e = 0; e < n0; ++e) gen(i, e) = 0.0;
      } else if (l < 0.0) {
        centre[size_t(i)] = 0.5 * u;
        box[size_t(i)] = 0.5 * u;
        for (int64_t e = 0; e < n0; ++e) gen(i, e) = 0.0;
      }  // l >= 0: the neuron passes unchanged
    }
  }
  Interval out;
  for (int64_t i = 0; i < int64_t(centre.size()); ++i) {
    out.lower.push_back(centre[size_t(i)] - radius(i));
    out.upper.push_back(centre[size_t(i)] + radius(i));
  }
  return out;
}

struct LinearBound {
  double slope = 0.0, intercept = 0.0;
};
struct ReluRelaxation {
  LinearBound lower, upper;
};

// The per-neuron rule (ARCHITECTURE.md, relaxations/ table). The identity
// test comes first so that l = u = 0 is the identity.
ReluRelaxation relax_relu(Relaxation rule, double l, double u) {
  if (l >= 0.0) return {{rule == Relaxation::crown0 ? 0.0 : 1.0, 0.0}, {1.0, 0.0}};  // CROWN-0: y >= 0 everywhere
  if (u <= 0.0) return {{0.0, 0.0}, {0.0, 0.0}};
  const double lambda = u / (u - l);
  const LinearBound chord{lambda, -lambda * l};
  switch (rule) {
    case Relaxation::deepz: return {{lambda, 0.0}, chord};
    case Relaxation::crown:
    case Relaxation::crown_ibp: return {{-l >= u ? 0.0 : 1.0, 0.0}, chord};
    case Relaxation::crown0:
    case Relaxation::crown0_unstable: return {{0.0, 0.0}, chord};
    case Relaxation::hbox_fresh: return {{0.0, 0.0}, {0.0, u}};
    default: throw std::invalid_argument("[ref] relax_relu: not a backsubstitution relaxation");
  }
}

// Lower bounds of rows . x_end + q, x_end the output of layers[0, end): walk
// back through the layers, replacing each ReLU by its lower linear bound
// where the coefficient is >= 0 and by its upper one where it is < 0, and
// finish with interval arithmetic on the input box.
std::vector<double> backsub_lower(const Layers& layers, size_t end, Matrix rows, std::vector<double> q,
                                  const std::vector<Interval>& relu_inputs, Relaxation rule, const Interval& input,
                                  CaseTrace* trace) {
  for (size_t k = end; k-- > 0;) {
    const DenseLayer& layer = layers[k];
    if (!layer.is_relu) {
      for (int64_t r = 0; r < rows.rows; ++r)
        for (int64_t j = 0; j < rows.cols; ++j) q[size_t(r)] += rows(r, j) * layer.bias[size_t(j)];
      rows = matmul(rows, layer.weight);
      continue;
    }
    const Interval& b = relu_inputs[k];
    for (int64_t j = 0; j < rows.cols; ++j) {
      const ReluRelaxation relax = relax_relu(rule, b.lower[size_t(j)], b.upper[size_t(j)]);
      const bool unstable = b.lower[size_t(j)] < 0.0 && b.upper[size_t(j)] > 0.0;
      for (int64_t r = 0; r < rows.rows; ++r) {
        const double a = rows(r, j);
        if (trace && unstable) trace->note_sign(a);
        const LinearBound& side = a >= 0.0 ? relax.lower : relax.upper;
        q[size_t(r)] += a * side.intercept;
        rows(r, j) = a * side.slope;
      }
    }
  }
  std::vector<double> out(size_t(rows.rows));
  for (int64_t r = 0; r < rows.rows; ++r)
    out[size_t(r)] = q[size_t(r)] + interval_min(rows, r, input.lower, input.upper, trace);
  return out;
}

Interval backsub_interval(const Layers& layers, size_t end, const std::vector<Interval>& relu_inputs, Relaxation rule,
                          const Interval& input, CaseTrace* trace) {
  const int64_t n = end == 0 ? int64_t(input.lower.size()) : layers[end - 1].size;
  Matrix rows = Matrix::identity(n);
  Interval out;
  out.lower = backsub_lower(layers, end, rows, std::vector<double>(size_t(n), 0.0), relu_inputs, rule, input, trace);
  // upper(x) = -lower(-x)
  for (double& v : rows.values) v = -v;
  out.upper = backsub_lower(layers, end, rows, std::vector<double>(size_t(n), 0.0), relu_inputs, rule, input, trace);
  for (double& v : out.upper) v = -v;
  return out;
}

Interval backsub_bounds(const Layers& layers, Relaxation rule, const Interval& input, CaseTrace* trace) {
  std::vector<Interval> relu_inputs(layers.size());
  if (rule == Relaxation::crown_ibp) {
    box_bounds(layers, input, &relu_inputs, trace);
  } else {
    for (size_t k = 0; k < layers.size(); ++k) {
      if (!layers[k].is_relu) continue;
      relu_inputs[k] = backsub_interval(layers, k, relu_inputs, rule, input, trace);
      if (trace)
        for (size_t j = 0; j < relu_inputs[k].lower.size(); ++j)
          trace->note(relu_inputs[k].lower[j], relu_inputs[k].upper[j]);
    }
  }
  return backsub_interval(layers, layers.size(), relu_inputs, rule, input, trace);
}

}  // namespace

Interval bounds(const DenseNetwork& net, const std::vector<double>& lower0, const std::vector<double>& upper0,
                const Matrix& spec, Relaxation relaxation, bool elide_last_layer, CaseTrace* trace) {
  if (int64_t(lower0.size()) != net.input_size || int64_t(upper0.size()) != net.input_size)
    throw std::invalid_argument("[ref] bounds: input box has the wrong size");
  if (!spec.empty() && spec.cols != net.output_size())
    throw std::invalid_argument("[ref] bounds: spec has " + std::to_string(spec.cols) + " columns for " +
                                std::to_string(net.output_size()) + " logits");
  Layers layers = net.layers;
  // Without elision every relaxation bounds the logits and applies C by interval arithmetic.
  const bool fold = !spec.empty() && elide_last_layer;
  if (fold) {
    if (layers.empty() || layers.back().is_relu)
      throw std::invalid_argument("[ref] bounds: elision needs a final affine layer");
    DenseLayer& last = layers.back();
    std::vector<double> folded_bias(size_t(spec.rows), 0.0);
    for (int64_t r = 0; r < spec.rows; ++r)
      for (int64_t j = 0; j < spec.cols; ++j) folded_bias[size_t(r)] += spec(r, j) * last.bias[size_t(j)];
    last.weight = matmul(spec, last.weight);
    last.bias = std::move(folded_bias);
    last.size = spec.rows;
  }
  const Interval input{lower0, upper0};
  Interval out;
  switch (relaxation) {
    case Relaxation::box: out = box_bounds(layers, input, nullptr, trace); break;
    case Relaxation::hbox: out = hbox_bounds(layers, input, trace); break;
    default: out = backsub_bounds(layers, relaxation, input, trace); break;
  }
  if (!spec.empty() && !fold) out = apply_interval(spec, {}, out, trace);
  return out;
}

}  // namespace cte::ref
