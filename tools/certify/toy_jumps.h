// The paper's figure 3 (section 4.1): on a three-layer toy network with one
// parameter w, CROWN's lower bound of x31 jumps at w = 0 (where -l = u, its
// lower slope switches from 0 to 1) and hBox's lower bound of x32 jumps at
// w = 1 (where both ReLUs turn stable). `certify toy-jumps` sweeps w over
// [-1, 2] and writes the two bounds (CSV), the jumps it finds (JSON) and the
// figure (gnuplot PNG and SVG).
#pragma once
#include <string>
#include <vector>

#include "engine/nn.h"

namespace cte::tools {

// x0 in [-1, 1]; x11 = x12 = x0 + w; x2 = relu(x1); x31 = x22 + 1, x32 = x22 - x21.
Network section_4_1_network(float w);

// A jump of one series between two neighbouring samples w[i] < w[i + 1]:
// the value changes by more than the continuous pieces can (their slopes are
// at most 1 in absolute value) plus 0.5.
struct ToyJump {
  std::string series;  // "crown_lower_x31" or "hbox_lower_x32"
  double from_w = 0, to_w = 0, before = 0, after = 0;
};

struct ToyJumps {
  std::vector<double> w;          // increasing, over [-1, 2]
  std::vector<double> crown_l31;  // CROWN's lower bound of x31 at each w
  std::vector<double> hbox_l32;   // hBox's lower bound of x32 at each w
  std::vector<ToyJump> jumps;     // in increasing w per series, CROWN's first
  int crown_tie_slope = 0;
};

// `points` evenly spaced w over [-1, 2] (points >= 2), with w = 0 and w = 1
// and their neighbours at distance `near` added so that each jump is located
// to within `near` of where the paper puts it. Fast bounds (as training sees them).
ToyJumps toy_jumps(int points, double near, int crown_tie_slope);

}  // namespace cte::tools
