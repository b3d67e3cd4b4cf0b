// A plain double-precision reference for every relaxation in relaxations/,
// written independently of the engine so the tests can compare the float32,
// tape-recording, chunked, fused implementation against something simple
// enough to check by eye. Networks become a list of dense affine layers and
// ReLUs (a convolution is expanded to its matrix, a normalisation to a
// diagonal affine map, a flatten disappears); bounds are computed one sample
// at a time with dense matrices: interval arithmetic for Box, a forward
// hybrid zonotope for hBox, and full backsubstitution to the input for the
// per-neuron rules of DeepZ, CROWN, CROWN-0, hbox-fresh and CROWN-IBP (R).
// Clarity over speed: it is only ever run on tiny networks.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/nn.h"
#include "relaxations/relaxations.h"

namespace cte::ref {

// Row-major dense matrix of doubles.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), values(static_cast<size_t>(r * c), 0.0) {}
  static Matrix identity(int64_t n);
  double& operator()(int64_t r, int64_t c) { return values[static_cast<size_t>(r * cols + c)]; }
  double operator()(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * cols + c)]; }
  bool empty() const { return rows == 0; }
};

Matrix matmul(const Matrix& a, const Matrix& b);

// The engine's network read out as doubles, layer by layer, before any
// expansion: the parameters live here in the engine's order, so a finite
// difference can perturb one conv kernel entry and re-expand.
struct SpecLayer {
  LayerKind kind = LayerKind::relu;
  std::vector<double> weight, bias;    // linear (out, in); conv (O, C, kh, kw); bias zero if absent
  std::vector<int64_t> weight_shape;
  bool has_bias = false;
  int stride = 1, padding = 0;         // conv
  std::vector<double> mean, inv_std;   // normalize: one per channel, or one for all
  std::vector<int64_t> in_shape, out_shape;  // per sample
};

struct NetworkSpec {
  std::vector<int64_t> input_shape;
  std::vector<SpecLayer> layers;
  // Pointers to the weight and bias vectors in the order of
  // cte::Network::parameters() (valid while this object is not moved or copied).
  std::vector<std::vector<double>*> parameters();
};

NetworkSpec describe_network(const Network& net);

// The network as the reference computes with it: affine layers and ReLUs.
struct DenseLayer {
  bool is_relu = false;
  Matrix weight;              // (out, in); empty for a ReLU
  std::vector<double> bias;   // (out)
  int64_t size = 0;           // output width (for a ReLU, its width)
};

struct DenseNetwork {
  int64_t input_size = 0;
  std::vector<DenseLayer> layers;
  int64_t output_size() const { return layers.empty() ? input_size : layers.back().size; }
};

// Expands convolutions (cross-correlation with zero padding, as the engine
// and PyTorch define it) and normalisations into dense affine layers.
DenseNetwork densify(const NetworkSpec& spec);
inline DenseNetwork to_dense(const Network& net) { return densify(describe_network(net)); }

std::vector<double> forward(const DenseNetwork& net, const std::vector<double>& x);

struct Interval {
  std::vector<double> lower, upper;
};

// Records every case decision a relaxation made, so tests can keep away from
// the places where it switches rule (its value or its gradient jumps there,
// so float32 and double may legitimately differ) and can tell whether a
// finite-difference step stayed on one smooth piece.
struct CaseTrace {
  // Smallest of |l|, |u|, |l + u| over every ReLU input bound computed.
  double closest_to_switch = std::numeric_limits<double>::infinity();
  // Per ReLU neuron, in order: 0 dead (u <= 0), 1 identity (l >= 0),
  // 2 unstable with -l >= u, 3 unstable with -l < u.
  std::vector<int> cases;
  // The signs (-1, 0, 1) of every coefficient whose sign picks a side: of
  // interval arithmetic over a non-degenerate interval, of a backsubstitution
  // row at an unstable ReLU and at the input, of |G| and |W| in hBox. The
  // bound has a kink wherever one of them crosses 0.
  std::vector<int> signs;
  void note(double lower, double upper);
  void note_sign(double coefficient) { signs.push_back(coefficient > 0.0 ? 1 : coefficient < 0.0 ? -1 : 0); }
  bool same_pieces(const CaseTrace& other) const { return cases == other.cases && signs == other.signs; }
};

// Bounds of C z over the input box [lower0, upper0] (z: the logits). An
// empty spec means C = identity. elide_last_layer folds C into the last
// affine layer (W' = C W, b' = C b); without it the logits are bounded first
// and C z is bounded from them by interval arithmetic.
Interval bounds(const DenseNetwork& net, const std::vector<double>& lower0, const std::vector<double>& upper0,
                const Matrix& spec, Relaxation relaxation, bool elide_last_layer, CaseTrace* trace = nullptr);

}  // namespace cte::ref
