// certify toy-jumps (tools/certify/toy_jumps.h): the paper's figure 3 against
// the closed forms of section 4.1, and the jumps where the paper puts them.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "tools/certify/toy_jumps.h"

using namespace cte;
using namespace cte::tools;

namespace {

// Section 4.1 by hand. CROWN, x31 = x22 + 1: for w < 0 (and for dead ReLUs,
// w <= -1) the lower slope is 0, l31 = 1; for w > 0 it is 1 (or the ReLU is
// stable active), x22 >= x0 + w >= w - 1, l31 = w. At w = 0 (-l = u = 1) the
// tie rule decides: slope 0 gives 1, slope 1 gives 0.
double crown_l31(double w, int tie) {
  if (w == 0.0) return tie == 0 ? 1.0 : 0.0;
  return w < 0.0 ? 1.0 : w;
}
// hBox, x32 = x22 - x21: unstable ReLUs (w in (-1, 1)) become boxes [0, 1 + w],
// l32 = -1 - w; stable ones are exact (w >= 1: x22 - x21 = 0; w <= -1: both 0).
double hbox_l32(double w) { return (w > -1.0 && w < 1.0) ? -1.0 - w : 0.0; }

}  // namespace

TEST_CASE("toy-jumps: the bounds follow the paper's closed forms and jump exactly at w = 0 and w = 1") {
  for (int tie : {0, 1}) {
    CAPTURE(tie);
    const ToyJumps t = toy_jumps(31, 1e-3, tie);
    REQUIRE(t.w.size() == t.crown_l31.size());
    REQUIRE(t.w.size() == t.hbox_l32.size());
    CHECK(t.w.front() == -1.0);
    CHECK(t.w.back() == 2.0);
    CHECK(std::is_sorted(t.w.begin(), t.w.end()));
    for (double at : {-1e-3, 0.0, 1e-3, 1.0 - 1e-3, 1.0, 1.0 + 1e-3})
      CHECK(std::find(t.w.begin(), t.w.end(), at) != t.w.end());
    for (size_t i = 0; i < t.w.size(); ++i) {
      CAPTURE(t.w[i]);
      CHECK(t.crown_l31[i] == doctest::Approx(crown_l31(t.w[i], tie)).epsilon(1e-6).scale(1.0));
      CHECK(t.hbox_l32[i] == doctest::Approx(hbox_l32(t.w[i])).epsilon(1e-6).scale(1.0));
    }
    // Exactly two jumps: CROWN's next to w = 0 (on the side the tie rule puts w = 0 on), hBox's
    // ending at w = 1 (w = 1 itself is stable, exact, 0).
    REQUIRE(t.jumps.size() == 2);
    CHECK(t.jumps[0].series == "crown_lower_x31");
    CHECK(t.jumps[0].from_w == (tie == 0 ? 0.0 : -1e-3));
    CHECK(t.jumps[0].to_w == (tie == 0 ? 1e-3 : 0.0));
    CHECK(t.jumps[0].before == doctest::Approx(1.0));
    CHECK(t.jumps[1].series == "hbox_lower_x32");
    CHECK(t.jumps[1].from_w == 1.0 - 1e-3);
    CHECK(t.jumps[1].to_w == 1.0);
    CHECK(t.jumps[1].before == doctest::Approx(-2.0 + 1e-3).epsilon(1e-5));
    CHECK(t.jumps[1].after == 0.0);
  }
  CHECK_THROWS_WITH_AS(toy_jumps(1, 1e-3, 0), doctest::Contains("--points 1 must be at least 2"), std::invalid_argument);
}
