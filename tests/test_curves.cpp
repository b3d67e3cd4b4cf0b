// CR curves and CR-AUC (tools/lib/curves.h): the radii grid, the trapezoidal
// area against values computed by hand, and the CSV / gnuplot files.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tools/lib/curves.h"

namespace cte::test {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("curves: linspace includes both ends and is evenly spaced") {
  const std::vector<double> x = tools::linspace(0.0, 0.07, 8);
  REQUIRE(x.size() == 8);
  CHECK(x.front() == 0.0);
  CHECK(x.back() == 0.07);
  for (size_t i = 1; i < x.size(); ++i) CHECK(x[i] - x[i - 1] == doctest::Approx(0.01).epsilon(1e-12));
  CHECK(tools::linspace(1.0, 2.0, 2) == std::vector<double>{1.0, 2.0});
  CHECK_THROWS_WITH_AS(tools::linspace(0.0, 1.0, 1), doctest::Contains("at least 2 points"), std::invalid_argument);
}

TEST_CASE("curves: the trapezoidal area matches hand-computed values") {
  // A network certified everywhere: 100% over [0, 0.07] has the largest area, 7.
  const std::vector<double> eps = tools::linspace(0.0, 0.07, 101);
  CHECK(tools::trapezoid_area(eps, std::vector<double>(eps.size(), 100.0)) == doctest::Approx(7.0).epsilon(1e-12));
  // A straight line from 100% to 0%: a triangle, 3.5 (the rule is exact on lines).
  std::vector<double> line;
  for (double e : eps) line.push_back(100.0 * (1.0 - e / 0.07));
  CHECK(tools::trapezoid_area(eps, line) == doctest::Approx(3.5).epsilon(1e-12));
  // Uneven spacing by hand: (0,10), (1,30), (3,0): (10+30)/2*1 + (30+0)/2*2 = 50.
  CHECK(tools::trapezoid_area({0.0, 1.0, 3.0}, {10.0, 30.0, 0.0}) == doctest::Approx(50.0));
  // The rule on a curve (y = x^2 on [0, 1], 3 points): 0.5*(0+0.25)*0.5 + 0.5*(0.25+1)*0.5 = 0.375.
  CHECK(tools::trapezoid_area({0.0, 0.5, 1.0}, {0.0, 0.25, 1.0}) == doctest::Approx(0.375));
  CHECK(tools::trapezoid_area({0.5}, {42.0}) == 0.0);
  CHECK_THROWS_WITH_AS(tools::trapezoid_area({0.0, 1.0}, {1.0}), doctest::Contains("2 x values but 1 y values"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(tools::trapezoid_area({0.0, 1.0, 0.5}, {1.0, 1.0, 1.0}), doctest::Contains("increasing"),
                       std::invalid_argument);
}

TEST_CASE("curves: the CSV and the gnuplot script name every curve") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "cte_test_curves";
  std::filesystem::create_directories(dir);
  tools::CrCurves curves;
  curves.eps = {0.0, 0.05, 0.1};
  curves.names = {"box", "crown"};
  curves.percent = {{90.0, 50.0, 12.5}, {90.0, 70.25, 40.0}};
  const std::string csv = (dir / "cr_curve.csv").string();
  tools::write_curves_csv(csv, curves);
  CHECK(read_all(csv) ==
        "eps,box,crown\n"
        "0,90.0000,90.0000\n"
        "0.05,50.0000,70.2500\n"
        "0.1,12.5000,40.0000\n");
  CHECK_FALSE(std::filesystem::exists(csv + ".tmp"));
  tools::PlotLabels labels;
  labels.title = "it's a test\nsubtitle";
  labels.xlabel = "eps";
  labels.ylabel = "certified accuracy (%)";
  labels.percent = true;
  labels.legend = {"box (CR-AUC 1)", "crown (CR-AUC 2)"};
  labels.x_max = 0.1;
  labels.y_offsets = {0.5};
  const std::string script = tools::write_lines_gnuplot(csv, (dir / "cr_curve.png").string(), curves.names, labels);
  CHECK(script == (dir / "cr_curve.gp").string());
  const std::string text = read_all(script);
  // Files by name only: the script re-plots from its own folder.
  CHECK(text.find("set output 'cr_curve.png'") != std::string::npos);
  CHECK(text.find("'cr_curve.csv' using 1:($2 - (0.5)) with lines") != std::string::npos);
  CHECK(text.find("'cr_curve.csv' using 1:3 with lines") != std::string::npos);
  CHECK(text.find(dir.string()) == std::string::npos);
  CHECK(text.find("title 'box (CR-AUC 1)'") != std::string::npos);
  CHECK(text.find("title 'crown (CR-AUC 2)'") != std::string::npos);
  // Two curves: two dash patterns, two marker shapes.
  CHECK(text.find("dashtype 1") != std::string::npos);
  CHECK(text.find("dashtype 2") != std::string::npos);
  CHECK(text.find("pointtype 7") != std::string::npos);
  CHECK(text.find("pointtype 5") != std::string::npos);
  CHECK(text.find("'it''s a test'") != std::string::npos);  // gnuplot's quote escaping
  CHECK(text.find("'subtitle'") != std::string::npos);
  CHECK(text.find("set yrange [0:100]") != std::string::npos);
  CHECK(text.find("set xrange [0:0.1]") != std::string::npos);
  CHECK(text.find("set key below") != std::string::npos);
  CHECK_THROWS_WITH_AS(tools::write_curves_csv((dir / "no-such-dir" / "x.csv").string(), curves),
                       doctest::Contains("cannot create: No such file or directory"), std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("curves: a long subtitle wraps after ' -> ' within the width") {
  const std::string text = tools::gnuplot_title("main\naaaa -> bbbb -> cccc -> dddd", 16);
  // "aaaa -> bbbb ->" is 15 characters: the break comes after its arrow.
  CHECK(text.find("set label 101 'main'") != std::string::npos);
  CHECK(text.find("set label 102 'aaaa -> bbbb ->'") != std::string::npos);
  CHECK(text.find("set label 103 'cccc -> dddd'") != std::string::npos);
  CHECK(text.find("set label 104") == std::string::npos);
  CHECK(tools::gnuplot_title("just a title").find("set label 102") == std::string::npos);
}

}  // namespace cte::test
