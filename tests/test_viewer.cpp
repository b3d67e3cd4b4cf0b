// The relaxation viewer's engine side (tools/lib/viewer.h): the section 4.1
// curves it writes into the page, against the paper's closed forms; the page
// assembly; and the LP relaxations' one-neuron half-planes that the page and
// relaxations/lp.cpp share (kernels/common/relu_relaxation.h), by hand.
// The page itself is tested in headless Chromium (tests/cli/viewer_browser.sh).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "kernels/common/relu_relaxation.h"
#include "tools/lib/viewer.h"

namespace cte::test {

TEST_CASE("viewer: the section 4.1 curves follow the paper's closed forms") {
  const std::vector<double> w{-0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.5};
  const tools::ToyCurves curves =
      tools::section_4_1_curves({Relaxation::crown, Relaxation::hbox, Relaxation::deepz, Relaxation::triangle}, w);
  REQUIRE(curves.lower.size() == 4);
  for (size_t k = 0; k < w.size(); ++k) {
    CAPTURE(w[k]);
    const double crown = curves.lower[0][0][k], hbox = curves.lower[1][1][k];
    const double deepz = curves.lower[2][0][k], triangle = curves.lower[3][0][k];
    // CROWN l31: 1 while -l >= u (w <= 0), w once the lower slope is 1; x22 = x12 from w = 1.
    CHECK(crown == doctest::Approx(w[k] <= 0 ? 1.0 : w[k]).epsilon(1e-6));
    // hBox l32: -1 - w while both ReLUs are unstable, 0 once they are the identity (w >= 1).
    CHECK(hbox == doctest::Approx(w[k] < 1 ? -1.0 - w[k] : 0.0).epsilon(1e-6));
    // DeepZ l31 = (1 + w^2) / 2 while unstable (tests/test_landscape.cpp), w from w = 1.
    CHECK(deepz == doctest::Approx(w[k] < 1 ? (1.0 + w[k] * w[k]) / 2.0 : w[k]).epsilon(1e-6));
    // Triangle l31: x22 >= max(0, x12) with x12 down to w - 1: 1 + max(0, w - 1).
    CHECK(triangle == doctest::Approx(w[k] < 1 ? 1.0 : w[k]).epsilon(1e-6));
  }
}

TEST_CASE("viewer: the page is the template with every part filled in") {
  const tools::ViewerAssets assets{"<style>@@CTE_STYLE@@</style><script>@@CTE_SCRIPT@@</script>"
                                   "<data>@@CTE_DATA@@</data><wasm>@@CTE_WASM@@</wasm>",
                                   "run();", "p{}", "AGFzbQ=="};
  const tools::ToyCurves curves = tools::section_4_1_curves({Relaxation::box}, {0.0, 1.0});
  const std::string page = tools::viewer_page(assets, curves);
  CHECK(page.find("@@CTE_") == std::string::npos);
  CHECK(page.find("<script>run();</script>") != std::string::npos);
  CHECK(page.find("<wasm>AGFzbQ==</wasm>") != std::string::npos);
  CHECK(page.find("\"w\":[0.0,1.0]") != std::string::npos);
  // Box at w = 0: x22 in [0, 1], l31 = 1, l32 = 0 - 1 = -1; at w = 1: x2 in [0, 2], l31 = 1, l32 = -2.
  CHECK(page.find("{\"lower\":[[1.0,1.0],[-1.0,-2.0]],\"name\":\"box\"}") != std::string::npos);
  const tools::ViewerAssets broken{"no markers", "", "", ""};
  CHECK_THROWS_WITH_AS(tools::viewer_page(broken, curves), doctest::Contains("@@CTE_DATA@@ exactly once"), std::logic_error);
}

TEST_CASE("relu rules: the LP relaxations' half-planes for one neuron, by hand") {
  using kern::LpReluRule;
  // l = -1, u = 3: Triangle y >= 0, y >= x, y <= 3/4 (x + 1); Parallelogram y <= 3, y <= x + 1.
  const kern::ReluHalfPlanes<double> t = kern::lp_relu_half_planes(LpReluRule::triangle, -1.0, 3.0);
  REQUIRE(t.lower_count == 2);
  REQUIRE(t.upper_count == 1);
  CHECK(t.lower[0].slope == 0.0);
  CHECK(t.lower[0].intercept == 0.0);
  CHECK(t.lower[1].slope == 1.0);
  CHECK(t.lower[1].intercept == 0.0);
  CHECK(t.upper[0].slope == 0.75);
  CHECK(t.upper[0].intercept == 0.75);
  const kern::ReluHalfPlanes<double> p = kern::lp_relu_half_planes(LpReluRule::parallelogram, -1.0, 3.0);
  REQUIRE(p.upper_count == 2);
  CHECK(p.upper[0].slope == 0.0);
  CHECK(p.upper[0].intercept == 3.0);
  CHECK(p.upper[1].slope == 1.0);
  CHECK(p.upper[1].intercept == 1.0);
  // Stable: y = x (l >= 0, also l = u = 0) and y = 0 (u <= 0), one line each side.
  for (LpReluRule rule : {LpReluRule::triangle, LpReluRule::parallelogram}) {
    const kern::ReluHalfPlanes<float> id = kern::lp_relu_half_planes(rule, 0.0f, 0.0f);
    CHECK(id.lower_count == 1);
    CHECK(id.upper_count == 1);
    CHECK(id.lower[0].slope == 1.0f);
    CHECK(id.upper[0].slope == 1.0f);
    const kern::ReluHalfPlanes<float> dead = kern::lp_relu_half_planes(rule, -2.0f, -0.5f);
    CHECK(dead.lower[0].slope == 0.0f);
    CHECK(dead.upper[0].slope == 0.0f);
    CHECK(dead.upper[0].intercept == 0.0f);
  }
}

}  // namespace cte::test
