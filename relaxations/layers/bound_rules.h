// The relaxations' half of the layer table: how each layer kind of
// engine/nn.h is bounded, written once per kind in relaxations/layers/<kind>.cpp
// (the engine's half, shape rule and forward, is engine/layers/<kind>.cpp).
// Box, hBox, the backsubstitution walker, sound mode and the LPs ask
// bound_rules(kind) and never switch on the kind; tests/test_layer_table.cpp
// walks every row against brute force.
//
// A kind plays one role, which says which steps it has:
//   reshape      no arithmetic (flatten): every step passes its input on;
//   affine       y = W x + b with a dense or convolutional W (linear, conv);
//   elementwise  y = scale * x + shift per neuron (normalize, batch_norm);
//   activation   a nonlinearity bounded from its input's bounds (ReLU): the
//                walkers compute those bounds before stepping through it.
#pragma once
#include <vector>

#include "engine/layers/layer_rules.h"
#include "relaxations/relax_ops.h"

namespace cte::relax {

enum class LayerRole { reshape, affine, elementwise, activation };

// K linear functions of the neurons at one level, as the backsubstitution
// walker (backsub.cpp) carries them down:
//   lower = A x + bias + relu_lower,  upper = A x + bias + relu_upper
// (relu_upper only in symmetric mode). Undefined biases are zero.
struct LinearForm {
  Tensor coeffs;                  // (K, n) shared, or (N, K, n)
  Tensor bias;                    // (K) or (N, K): the affine layers' share
  Tensor relu_lower, relu_upper;  // (N, K): the activations' intercepts' share (and folded biases below them)
  Tensor slack;                   // (N, K), sound mode: sum over the steps so far of |A_k| s_k
  // Set by a ReLU step that folded the bias of the affine layer right under it
  // into its intercepts (backsub_relu's bias_below): that layer adds none.
  bool bias_below_folded = false;
  // Set by a ReLU step right above a layer that takes them (BoundRules::
  // takes_live_columns): the columns of its output coefficients whose gradient
  // it reads (backsub_relu_live), valid while coeffs is still that very tensor;
  // that layer's step clears them.
  Tensor live_columns, live_columns_of;
  bool shared() const { return coeffs.ndim() == 2; }
  // live_columns where coeffs is still the ReLU step's output, else undefined.
  Tensor live_columns_for_coeffs() const { return live_columns_of.same_as(coeffs) ? live_columns : Tensor(); }
};

// a + b with undefined meaning zero.
Tensor add_defined(const Tensor& a, const Tensor& b);

// hBox's forward state at one level: centre c and box radius b (undefined: zero).
struct HboxState {
  Tensor centre, box;
};

// A layer as an affine map in double precision over its flattened input, for
// the LPs: out_k = constant_k + sum over rows[k] of coefficient * x_variable.
using LpTerms = std::vector<std::pair<int, double>>;  // (variable, coefficient)
struct LpAffineMap {
  std::vector<LpTerms> rows;
  std::vector<double> constant;
  bool diagonal = false;  // maps a box onto a box (elementwise)
};

struct BoundRules {
  LayerRole role;
  // Last-layer elision and the backsubstitution's first step may start from
  // the layer's weight rows (a dense (out, in) matrix): linear only.
  bool dense_rows;

  // ---- Box: the centre/radius image of the layer's input box (c, r shaped
  // (N, in_shape...) or flat; either may be undefined and is then skipped).
  // Affine and elementwise: c' = layer(c), r' = |layer| r (no bias);
  // reshape: both reshaped; activation: the fused interval step.
  CentreRadiusPair (*box_step)(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch);

  // ---- backsubstitution: f, functions of the layer's output, becomes
  // functions of its input. Reads the layer's tensors through ctx (the
  // walker may run on checkpointing's stand-ins).
  void (*backsub_step)(const BacksubContext& ctx, size_t index, LinearForm& f);

  // ---- hybrid zonotope (hBox): the state after the layer. The activation
  // step reads its input's generator norms from ctx's walker and stores its
  // input bounds in ctx.
  HboxState (*hbox_step)(BacksubContext& ctx, size_t index, const HboxState& in);

  // ---- sound mode (relaxations/sound.cpp's argument): the number of terms
  // of one output's dot product (0: no rounding), and |layer| v (+ |bias|)
  // over flat (N, n_in) -> (N, n_out).
  int64_t (*dot_terms)(const Layer& layer);
  // The number of terms of one coefficient's dot product when a
  // backsubstitution steps down through the layer, A W: the output width for
  // linear, c_out x ceil(kh / s) x ceil(kw / s) for conv (cuDNN's backward-data
  // sums them in one accumulation); 1 for elementwise layers, 0 for the rest.
  // A walk's residual is within gamma of it, which can exceed dot_terms (a
  // conv from few channels to many).
  int64_t (*backsub_terms)(const Layer& layer);
  Tensor (*abs_image)(const Layer& layer, const Tensor& v, int64_t batch, bool with_bias);

  // ---- the LPs (Triangle, Parallelogram): the layer as an affine map, one
  // row per output (affine, elementwise); empty for reshape and activation,
  // whose LP rows the LP builder writes from the relaxation's own rule.
  LpAffineMap (*lp_rows)(const Layer& layer);

  // ---- elementwise kinds only (else nullptr): the layer as y = scale x + shift
  // per neuron of its flattened input (the walker's norm_scale/norm_shift;
  // a leading one is folded into the input box, its radius times |scale|).
  NormalizeExpansion (*scale_shift)(const Layer& layer, Device device);

  // ---- affine kinds only (else nullptr): the layer's bias per output neuron
  // (n_out) from ctx.bias[index], differentiable in it; undefined without a
  // bias. A ReLU right above folds it into its intercepts, which saves the
  // layer's own pass over the coefficients for A b.
  Tensor (*output_bias)(const BacksubContext& ctx, size_t index);

  // ---- whether the layer's backsub_step reads LinearForm::live_columns (linear
  // only): a ReLU step right above computes them only then.
  bool takes_live_columns = false;
};

const BoundRules& bound_rules(LayerKind kind);
inline const BoundRules& bound_rules(const Layer& layer) { return bound_rules(layer.kind); }

// The generic steps the rows share.
// Affine and elementwise Box step: c' = forward(c), r' = radius_image(r).
CentreRadiusPair affine_box_step(const Layer& layer, const Tensor& c, const Tensor& r, int64_t batch,
                                 Tensor (*radius_image)(const Layer& layer, const Tensor& r));
// hBox through a non-activation layer: Box's step on (c, b); the symbolic part needs nothing here.
HboxState hbox_box_step(BacksubContext& ctx, size_t index, const HboxState& in);
// Elementwise backsubstitution: q += A shift, A = A * scale (ctx.norm_shift/norm_scale).
void elementwise_backsub_step(const BacksubContext& ctx, size_t index, LinearForm& f);
// No rounding, no LP rows (reshape, activation).
int64_t no_dot_terms(const Layer& layer);
LpAffineMap no_lp_rows(const Layer& layer);
std::vector<double> lp_values_of(const Tensor& t);  // a tensor's values in double

#define CTE_DECLARE_BOUND_RULES(kind) extern const BoundRules kBoundRules_##kind;
CTE_LAYER_KINDS(CTE_DECLARE_BOUND_RULES)
#undef CTE_DECLARE_BOUND_RULES

}  // namespace cte::relax
