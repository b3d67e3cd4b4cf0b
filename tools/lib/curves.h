// Certified-robustness (CR) curves and their area, CR-AUC: the paper's
// measure of a relaxation's tightness (section 3, appendix B, tables 1 and 4).
// A CR curve is the certified accuracy (in %) of one network under one
// relaxation at radii sampled evenly from 0 to eps_max; CR-AUC is its area by
// the trapezoidal rule (so it lies in [0, 100 * eps_max]: Box's 0.73 in table
// 1 is over [0, 0.07], at most 7). The files (CSV, gnuplot script, PNG) are
// what `certify curve` writes.
#pragma once
#include <string>
#include <vector>

namespace cte::tools {

// `points` evenly spaced values from lo to hi, both included (points >= 2).
std::vector<double> linspace(double lo, double hi, int points);

// The trapezoidal-rule area under y(x); x increasing, same length as y.
double trapezoid_area(const std::vector<double>& x, const std::vector<double>& y);

struct CrCurves {
  std::vector<double> eps;                  // the radii
  std::vector<std::string> names;           // one per curve (the relaxations)
  std::vector<std::vector<double>> percent; // percent[c][k]: curve c at eps[k]
};

// "eps,<name>,..." then one row per radius (percent with 4 decimals).
// Written to a temporary file and renamed; errors name the path.
void write_curves_csv(const std::string& path, const CrCurves& curves);

// "<x_name>,<name>,..." then one row per x (values with 9 significant digits).
void write_columns_csv(const std::string& path, const std::string& x_name, const std::vector<double>& x,
                       const std::vector<std::string>& names, const std::vector<std::vector<double>>& columns);

// Titles of a line plot; percent fixes the y range to [0, 100].
struct PlotLabels {
  std::string title, xlabel, ylabel;
  bool percent = false;
};

// A gnuplot script plotting the CSV's columns 2.. against column 1 (one line
// each, named by `names`) into png_path. Returns the script's path (the CSV's
// with .gp for .csv).
std::string write_lines_gnuplot(const std::string& csv_path, const std::string& png_path,
                                const std::vector<std::string>& names, const PlotLabels& labels);

// Writes text to path via path.tmp + rename; errors name the path.
void write_text_file(const std::string& path, const std::string& text);

// A gnuplot string literal: 'text' with '' for each quote.
std::string gnuplot_quoted(const std::string& text);

// Runs `gnuplot script`; false (with the reason in *why) when gnuplot is not
// installed or fails. The CSV and the script stay either way.
bool run_gnuplot(const std::string& script_path, std::string* why);

}  // namespace cte::tools
