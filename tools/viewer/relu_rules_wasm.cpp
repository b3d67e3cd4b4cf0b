// The relaxation viewer's one-ReLU geometry, compiled to WebAssembly
// (clang --target=wasm32, freestanding: no libc, see the Makefile's viewer
// rules) so that the page draws with the engine's own per-neuron rules from
// kernels/common/relu_relaxation.h: no second copy of them in JavaScript.
//
// relu_region(relaxation, l, u) describes the region each relaxation allows
// for y = relu(x), x in [l, u], as half-planes y >= lower lines, y <= upper
// lines, and as the convex polygon they cut out of the strip l <= x <= u,
// with its area (the paper's tightness for one neuron). The result is a
// static array of doubles the page reads from the module's memory:
//   [0] ReluCase (0 dead, 1 identity, 2 unstable)
//   [1] number of lower lines n, [2] number of upper lines m (1 or 2 each)
//   [3..10]  up to 4 (slope, intercept) pairs: the n lower lines, then the m upper lines
//   [11] area, [12] lowest y, [13] highest y (the neuron's output bounds)
//   [14] number of polygon vertices k, [15..] k (x, y) pairs
#include "kernels/common/relu_relaxation.h"

namespace {

using cte::kern::ReluLine;
using Line = ReluLine<double>;

// The relaxations the viewer draws, in the order of relaxation_label. The
// single-ReLU panel shows crown0-unstable (lower slope 0 on unstable ReLUs):
// the paper's crown0 differs from it only on stable active ReLUs, whose region
// the page's identity case draws exactly, and the page's reference check
// (certify bounds on a probe network) carries x through identity ReLUs, which
// the paper's crown0 loosens; the network table shows both.
enum Relaxation : int { box, hbox, deepz, crown, crown0, triangle, parallelogram, relaxation_count };
const char* const kLabels[relaxation_count] = {"box",    "hbox",     "deepz",        "crown",
                                                "crown0-unstable", "triangle", "parallelogram"};

constexpr int kMaxVertices = 16;  // 4 corners + at most 2 per clip by the 4 lines
double g_result[15 + 2 * kMaxVertices];

struct Polygon {
  int count = 0;
  double x[kMaxVertices], y[kMaxVertices];
};

// Sutherland-Hodgman: the part of `in` where side * (y - slope x - intercept) >= 0.
Polygon clip(const Polygon& in, Line line, double side) {
  Polygon out;
  auto value = [&](int i) { return side * (in.y[i] - line.slope * in.x[i] - line.intercept); };
  for (int i = 0; i < in.count; ++i) {
    const int j = (i + 1) % in.count;
    const double vi = value(i), vj = value(j);
    if (vi >= 0 && out.count < kMaxVertices) {
      out.x[out.count] = in.x[i];
      out.y[out.count++] = in.y[i];
    }
    if ((vi > 0 && vj < 0) || (vi < 0 && vj > 0)) {
      const double t = vi / (vi - vj);
      if (out.count < kMaxVertices) {
        out.x[out.count] = in.x[i] + t * (in.x[j] - in.x[i]);
        out.y[out.count++] = in.y[i] + t * (in.y[j] - in.y[i]);
      }
    }
  }
  return out;
}

double magnitude(double v) { return v < 0 ? -v : v; }

}  // namespace

// Exported under these names; the page calls them (tools/viewer/viewer.js).
#define VIEWER_EXPORT(name) __attribute__((export_name(#name)))

extern "C" {

VIEWER_EXPORT(relaxation_total) int relaxation_total() { return relaxation_count; }

VIEWER_EXPORT(relaxation_label) const char* relaxation_label(int relaxation) {
  return relaxation >= 0 && relaxation < relaxation_count ? kLabels[relaxation] : "";
}

VIEWER_EXPORT(relu_region) const double* relu_region(int relaxation, float l, float u) {
  using namespace cte::kern;
  Line lower[2], upper[2];
  int lower_count = 1, upper_count = 1;
  switch (relaxation) {
    case box: {  // interval arithmetic: relu(l) <= y <= relu(u), on centre and radius as the engine runs it
      const CentreRadius out = box_relu(0.5f * (l + u), 0.5f * (u - l));
      lower[0] = {0.0, double(out.centre - out.radius)};
      upper[0] = {0.0, double(out.centre + out.radius)};
      break;
    }
    case hbox: {  // the hybrid zonotope x = c + r e: y = keep (x - c) + centre' +- box'
      const float c = 0.5f * (l + u), r = 0.5f * (u - l);
      const HboxNeuron out = hbox_relu(c, r, 0.0f);
      const float keep = relu_linear_bounds(ReluRule::hbox_symbolic, l, u).lower_slope;  // 1: symbolic part survives
      lower[0] = {double(keep), double(out.centre - out.box - keep * c)};
      upper[0] = {double(keep), double(out.centre + out.box - keep * c)};
      break;
    }
    case deepz:
    case crown:
    case crown0: {
      const ReluRule rule = relaxation == deepz ? ReluRule::deepz : relaxation == crown ? ReluRule::crown
                                                                                          : ReluRule::crown0_unstable;
      const ReluLinearBounds b = relu_linear_bounds(rule, l, u);
      lower[0] = {double(b.lower_slope), double(b.lower_intercept)};
      upper[0] = {double(b.upper_slope), double(b.upper_intercept)};
      break;
    }
    case triangle:
    case parallelogram: {
      const ReluHalfPlanes<double> planes = lp_relu_half_planes<double>(
          relaxation == triangle ? LpReluRule::triangle : LpReluRule::parallelogram, double(l), double(u));
      lower_count = planes.lower_count;
      upper_count = planes.upper_count;
      for (int k = 0; k < 2; ++k) {
        lower[k] = planes.lower[k];
        upper[k] = planes.upper[k];
      }
      break;
    }
    default: return nullptr;
  }
  double* out = g_result;
  for (double& v : g_result) v = 0;
  out[0] = double(int(relu_case(l, u)));
  out[1] = lower_count;
  out[2] = upper_count;
  double* lines = out + 3;
  for (int k = 0; k < lower_count; ++k, lines += 2) lines[0] = lower[k].slope, lines[1] = lower[k].intercept;
  for (int k = 0; k < upper_count; ++k, lines += 2) lines[0] = upper[k].slope, lines[1] = upper[k].intercept;

  // The strip l <= x <= u, cut to a rectangle tall enough to hold every line over it.
  const double x0 = l, x1 = u, reach = 4.0 * (magnitude(x0) + magnitude(x1)) + 1.0;
  Polygon p;
  p.count = 4;
  p.x[0] = x0, p.y[0] = -reach;
  p.x[1] = x1, p.y[1] = -reach;
  p.x[2] = x1, p.y[2] = reach;
  p.x[3] = x0, p.y[3] = reach;
  for (int k = 0; k < lower_count; ++k) p = clip(p, lower[k], 1.0);
  for (int k = 0; k < upper_count; ++k) p = clip(p, upper[k], -1.0);

  double twice_area = 0, lowest = p.count ? p.y[0] : 0, highest = lowest;
  for (int i = 0; i < p.count; ++i) {
    const int j = (i + 1) % p.count;
    twice_area += p.x[i] * p.y[j] - p.x[j] * p.y[i];
    lowest = p.y[i] < lowest ? p.y[i] : lowest;
    highest = p.y[i] > highest ? p.y[i] : highest;
  }
  out[11] = 0.5 * magnitude(twice_area);
  out[12] = lowest;
  out[13] = highest;
  out[14] = p.count;
  for (int i = 0; i < p.count; ++i) out[15 + 2 * i] = p.x[i], out[16 + 2 * i] = p.y[i];
  return out;
}

}  // extern "C"
