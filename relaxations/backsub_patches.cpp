// Backsubstitution in patches form (auto_LiRPA's "patches" mode, written
// from its description): the intermediate bounds of a conv layer's outputs
// without a dense coefficient matrix.
//
// Row (c, y, x) of a conv layer's output depends only on a window of the
// level below (its receptive field), and it stays so through ReLUs (diagonal)
// and further convolutions (the window grows to (k - 1) s + k' per conv).
// All rows at one output position (y, x) share their window, so a "sample"
// of the existing fused ops becomes a (sample, position) pair:
//   coefficients (N * P, K, win)  over the window of each position,
// P = H' W' positions of the top level, K channels (rows) per position and
// win = C kh kw the window at the current level. Then
//   ReLU  backsub_relu with the bounds gathered over each window (unfold),
//         (N * P, win), exactly the dense step's per-neuron rule;
//   conv  backsub_conv on each window as a small image: (C, kh, kw) ->
//         (C', (kh - 1) s + k', ...) with padding 0 (the layer's padding
//         moves the window's origin: one more unfold offset, below);
//   input lower = q + A c0 - |A| r0 with c0, r0 gathered per window
//         (backsub_input).
// Window positions outside the level (the convolutions' zero padding) hold
// no neuron: the gathered bounds, centre and radius are zero there, and after
// each ReLU step the coefficients there are masked to zero (l = u = 0 is the
// identity case of every rule, so the step alone would keep them).
// Same numbers as the dense walk: the same products, summed in another order.
//
// Elementwise layers (normalize, evaluation- or training-mode BatchNorm:
// y = s x + t per neuron, bound_rules' role `elementwise`) keep the window
// structure: under the top conv each window's coefficients are multiplied by
// s gathered over the window (zero on the padding, which holds no neuron and
// so also masks there) and the window's dot product with t joins the
// intercept sums, the dense step's q += A t, A = A s per window. Between the
// top conv and level `top` (conv, BatchNorm, ReLU: the ReLU's input is the
// BatchNorm's output) they are applied to the conv's bounds afterwards:
// [l, u] -> [s+ l + s- u + t, s+ u + s- l + t] and |s| g for a generator
// norm. That is the dense walk's number too: the rows of s x + t are s times
// the conv's, and a negative s swaps which relaxation (lower or upper) each
// ReLU contributes, exactly as it swaps l and u.
//
// Where it applies: sound mode off, and from the top down to the input only
// conv, ReLU and elementwise layers, with a conv under the elementwise
// layers right below the top and at least one ReLU under that conv (a
// leading normalize or BatchNorm folded into the box is fine); otherwise the
// dense path runs. The work runs on the existing
// fused ops (conv2d, backsub_relu, backsub_conv, backsub_input), so every
// device has it; the gathers are convolutions with an identity kernel.
#include <string>

#include "engine/ops.h"
#include "engine/tape.h"
#include "relaxations/layers/bound_rules.h"

namespace cte::relax {
namespace {

// The window of one level seen from the top positions: channels x kh x kw,
// its origin at position (y, x) being (y stride - padding, x stride - padding).
struct Window {
  int64_t channels = 0, kh = 0, kw = 0;
  int stride = 1, padding = 0;
  int64_t size() const { return channels * kh * kw; }
};

// The window of the top conv's rows over its input, and the window one conv
// lower: each (C, kh, kw) window is that conv's output over (C', (kh - 1) s + k', ...).
Window top_window(const Layer& conv) {
  const Shape ws = conv.weight.shape();  // (O, C, k, k)
  return Window{ws[1], ws[2], ws[3], conv.stride, conv.padding};
}
Window window_below(const Window& w, const Layer& conv) {
  const Shape ws = conv.weight.shape();
  return Window{ws[1], (w.kh - 1) * conv.stride + ws[2], (w.kw - 1) * conv.stride + ws[3], w.stride * conv.stride,
                w.padding * conv.stride + conv.padding};
}

// The gather of one level's windows: a conv with the identity kernel
// (kh * kw, 1, kh, kw), built once per level (on a GPU kept across calls:
// constant_tensor) and applied to the bounds, the padding mask, the centre and radius.
struct Unfold {
  Window w;
  int64_t positions;
  Tensor kernel;  // (kh * kw, 1, kh, kw)
  Unfold(const Window& window, int64_t top_positions, Device device) : w(window), positions(top_positions) {
    const int64_t taps = w.kh * w.kw;
    kernel = constant_tensor(
        "identity kernel " + std::to_string(w.kh) + "x" + std::to_string(w.kw), Shape{taps, 1, w.kh, w.kw},
        [&](std::vector<float>& eye) {
          for (int64_t t = 0; t < taps; ++t) eye[size_t(t * taps + t)] = 1.0f;
        },
        device);
  }

  // x (N, C, H, W) gathered over every top position's window: (N * P, C * kh * kw),
  // zero where the window leaves the level; differentiable in x.
  Tensor operator()(const Tensor& x) const {
    const int64_t batch = x.size(0), channels = x.size(1), taps = kernel.size(0);
    const Tensor planes = ops::reshape(x, Shape{batch * channels, 1, x.size(2), x.size(3)});
    const Tensor cols = ops::conv2d(planes, kernel, Tensor(), w.stride, w.padding);  // (N C, taps, H', W')
    if (cols.size(2) * cols.size(3) != positions)
      fail("bounds", "patches: window " + std::to_string(w.kh) + "x" + std::to_string(w.kw) + " stride " +
                         std::to_string(w.stride) + " padding " + std::to_string(w.padding) + " over " +
                         x.shape().str() + " gives " + cols.shape().str() + ", expected " + std::to_string(positions) +
                         " positions");
    const Tensor per_sample = ops::reshape(cols, Shape{batch, channels * taps, positions});
    return ops::reshape(ops::transpose(per_sample), Shape{batch * positions, channels * taps});
  }
};

// A flat (N, n) level reshaped to its (N, C, H, W) image.
Tensor as_image(const Tensor& flat, const Shape& chw) {
  return ops::reshape(flat, Shape{flat.size(0), chw[0], chw[1], chw[2]});
}

// 1 inside the level, 0 on the padding, per position and window entry: (P, 1, win).
Tensor inside_mask(const Shape& chw, const Unfold& unfold, Device device) {
  NoGrad constant;
  const Tensor ones = Tensor::full(Shape{1, chw[0], chw[1], chw[2]}, 1.0f, device);
  return ops::reshape(unfold(ones), Shape{unfold.positions, 1, unfold.w.size()});
}

// Elementwise layers (y = s x + t per neuron), as the layer table says.
bool elementwise(const Layer& layer) { return bound_rules(layer).role == LayerRole::elementwise; }

// The conv the walk from level `top` starts from: layers[top - 1], or the
// first layer under the elementwise layers right below `top`; `top` when
// that is not a conv.
size_t top_conv(const BacksubContext& ctx, size_t top) {
  const std::vector<Layer>& layers = ctx.net->layers();
  size_t i = top;
  while (i > ctx.input_level && elementwise(layers[i - 1])) --i;
  return i > ctx.input_level && layers[i - 1].kind == LayerKind::conv ? i - 1 : top;
}

// A per-neuron vector v (n) of a (C, H, W) level gathered over every sample's
// and top position's window: (N * P, win), zero on the padding.
Tensor windows_of(const Tensor& v, const Shape& chw, int64_t batch, const Unfold& unfold) {
  const Tensor image = ops::reshape(v, Shape{1, chw[0], chw[1], chw[2]});
  return unfold(ops::mul(Tensor::full(Shape{batch, 1, 1, 1}, 1.0f, v.device()), image));
}

// Each window's dot product of coeffs (K, win) shared or (N * P, K, win) with
// values (N * P, win): (N * P, K).
Tensor window_dot(const Tensor& coeffs, const Tensor& values) {
  if (coeffs.ndim() == 2) return ops::matmul(values, coeffs, false, true);
  const int64_t windows = coeffs.size(0), rows = coeffs.size(1), win = coeffs.size(2);
  return ops::reshape(ops::matmul(coeffs, ops::reshape(values, Shape{windows, win, 1})), Shape{windows, rows});
}

// Bounds of neurons [first, first + count) of layers[conv]'s output, rows
// (count, N) ({lower, upper}, or {g_norm}), carried up through the
// elementwise layers above it to level `top` (the header's rule).
std::vector<Tensor> up_through_elementwise(const BacksubContext& ctx, size_t conv, size_t top, int64_t first,
                                           int64_t count, std::vector<Tensor> bounds) {
  for (size_t i = conv + 1; i < top; ++i) {
    auto rows_of = [&](const Tensor& v) {  // (n) -> (count, 1), broadcast over the samples
      return ops::reshape(ops::slice_batch(v, first, first + count), Shape{count, 1});
    };
    const Tensor scale = rows_of(ctx.norm_scale[i]);
    if (ctx.mode == BacksubMode::generator_norm) {
      bounds[0] = ops::mul(bounds[0], ops::abs(scale));
      continue;
    }
    const Tensor positive = ops::relu(scale), negative = ops::sub(scale, positive), shift = rows_of(ctx.norm_shift[i]);
    const Tensor lower = ops::add(ops::add(ops::mul(bounds[0], positive), ops::mul(bounds[1], negative)), shift);
    const Tensor upper = ops::add(ops::add(ops::mul(bounds[1], positive), ops::mul(bounds[0], negative)), shift);
    bounds = {lower, upper};
  }
  return bounds;
}

thread_local PatchChoice g_patch_choice = PatchChoice::by_cost;

}  // namespace

void set_patch_choice(PatchChoice choice) { g_patch_choice = choice; }
PatchChoice patch_choice() { return g_patch_choice; }

int64_t patch_window_sum(const BacksubContext& ctx, size_t top) {
  const size_t conv = top_conv(ctx, top);
  if (ctx.sound || conv == top) return 0;
  const std::vector<Layer>& layers = ctx.net->layers();
  int64_t sum = 0;  // the window sizes of the per-(sample, position) coefficients
  bool relu_crossed = false;
  Window w = top_window(layers[conv]);
  for (size_t i = conv; i-- > ctx.input_level;) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::relu) {
      if (!ctx.relu_lower[i].defined()) return 0;
      relu_crossed = true;
    } else if (layer.kind == LayerKind::conv) {
      w = window_below(w, layer);
    } else if (!elementwise(layer)) {
      return 0;
    }
    sum += w.size();
  }
  return relu_crossed ? sum : 0;  // without a ReLU the windows stay shared: the dense walk's case
}

std::vector<Tensor> patch_chunk_bounds_transposed(const BacksubContext& ctx, size_t top, int64_t first_channel,
                                                  int64_t channels) {
  const std::vector<Layer>& layers = ctx.net->layers();
  const bool stacked = ctx.mode == BacksubMode::bounds_stacked;
  const bool track_bias = ctx.mode != BacksubMode::generator_norm;
  const bool symmetric = ctx.mode == BacksubMode::bounds_symmetric;
  const size_t conv = top_conv(ctx, top);
  if (conv == top) fail("bounds", "patches: no conv under level " + std::to_string(top));
  const Layer& top_conv_layer = layers[conv];
  const Shape top_shape = top_conv_layer.out_shape;  // (O, H', W')
  const int64_t positions = top_shape[1] * top_shape[2];
  const int64_t batch = ctx.batch;
  const Device device = ctx.centre0.device();
  Window w = top_window(top_conv_layer);
  Unfold unfold(w, positions, device);  // the current level's gather, rebuilt at each conv
  // The rows: the chunk's kernels (K, win), shared by every (sample, position) until a ReLU; [W; -W] when stacked.
  Tensor coeffs = ops::reshape(ops::slice_batch(ctx.weight[conv], first_channel, first_channel + channels),
                               Shape{channels, w.size()});
  Tensor top_bias;  // (K)
  if (track_bias && ctx.bias[conv].defined())
    top_bias = ops::slice_batch(ctx.bias[conv], first_channel, first_channel + channels);
  if (stacked) {
    coeffs = ops::concat_batch({coeffs, ops::neg(coeffs)});
    if (top_bias.defined()) top_bias = ops::concat_batch({top_bias, ops::neg(top_bias)});
  }
  const int64_t rows = coeffs.size(0);
  Tensor sum_lower, sum_upper;  // (N * P, K): the intercepts and biases below the top layer
  for (size_t i = conv; i-- > ctx.input_level;) {
    const Layer& layer = layers[i];
    if (layer.kind == LayerKind::relu) {
      const Shape chw = layer.in_shape;
      const BacksubReluResult r =
          backsub_relu(ctx.rule, coeffs, unfold(as_image(ctx.relu_lower[i], chw)),
                       unfold(as_image(ctx.relu_upper[i], chw)), track_bias, symmetric);
      coeffs = r.coeffs;  // (N * P, K, win)
      if (w.padding > 0) {
        const Tensor by_position = ops::reshape(coeffs, Shape{batch, positions, rows, w.size()});
        coeffs = ops::reshape(ops::mul(by_position, inside_mask(chw, unfold, device)),
                              Shape{batch * positions, rows, w.size()});
      }
      sum_lower = add_defined(sum_lower, r.bias_lower);
      sum_upper = add_defined(sum_upper, r.bias_upper);
      continue;
    }
    if (elementwise(layer)) {
      // q += A t and A = A s per window; s and t are zero on the padding, so this masks it too.
      if (track_bias) {
        const Tensor bias_term = window_dot(coeffs, windows_of(ctx.norm_shift[i], layer.in_shape, batch, unfold));
        sum_lower = add_defined(sum_lower, bias_term);
        if (symmetric) sum_upper = add_defined(sum_upper, bias_term);
      }
      const Tensor scale = windows_of(ctx.norm_scale[i], layer.in_shape, batch, unfold);
      coeffs = ops::mul(coeffs, ops::reshape(scale, Shape{batch * positions, 1, w.size()}));  // (N * P, K, win)
      continue;
    }
    const Window below = window_below(w, layer);
    const BacksubAffineResult r =
        backsub_conv(coeffs, ctx.weight[i], ctx.bias[i], layer.stride, 0, Shape{below.channels, below.kh, below.kw},
                     Shape{w.channels, w.kh, w.kw}, track_bias);
    coeffs = r.coeffs;
    sum_lower = add_defined(sum_lower, r.bias_term);
    if (symmetric) sum_upper = add_defined(sum_upper, r.bias_term);
    w = below;
    unfold = Unfold(w, positions, device);
  }
  const Shape in_chw = layers[ctx.input_level].in_shape;
  const BacksubInputResult at_input =
      backsub_input(coeffs, unfold(as_image(ctx.centre0, in_chw)), unfold(as_image(ctx.radius0, in_chw)));
  // (N * P, K) -> (K * P, N), rows in the level's (channel, y, x) order.
  auto transposed = [&](const Tensor& t) {
    const Tensor by_channel = ops::transpose(ops::reshape(t, Shape{batch, positions, rows}));  // (N, K, P)
    return ops::transpose(ops::reshape(by_channel, Shape{batch, rows * positions}));
  };
  const int64_t first = first_channel * positions, half = channels * positions;  // the chunk's neurons
  if (ctx.mode == BacksubMode::generator_norm)
    return up_through_elementwise(ctx, conv, top, first, half, {transposed(at_input.spread)});
  Tensor centre = at_input.centre_term;
  if (top_bias.defined()) centre = ops::add(centre, top_bias);
  const Tensor lower = transposed(ops::sub(add_defined(centre, sum_lower), at_input.spread));
  if (stacked)
    return up_through_elementwise(ctx, conv, top, first, half,
                                  {ops::slice_batch(lower, 0, half), ops::neg(ops::slice_batch(lower, half, 2 * half))});
  return up_through_elementwise(ctx, conv, top, first, half,
                                {lower, transposed(ops::add(add_defined(centre, sum_upper), at_input.spread))});
}

}  // namespace cte::relax
