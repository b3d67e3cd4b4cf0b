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

// What a line plot shows. Titles may hold several lines ("\n"): the first
// is the title, the rest a subtitle (long network descriptions wrap there).
struct PlotLabels {
  std::string title, xlabel, ylabel;
  bool percent = false;                  // y range [0, 100]
  std::vector<std::string> legend;       // one entry per column (default: the names)
  double x_min = 0, x_max = 0;           // the x range when x_max > x_min (default: gnuplot's)
  std::vector<double> y_offsets;         // per column: plotted as value - offset (default: none)
};

// A gnuplot script plotting the CSV's columns 2.. against column 1 into
// png_path. Each column gets its own colour, dash pattern and marker shape
// (markers staggered between columns), so curves that coincide stay
// visible; the legend sits below the plot, off the lines. The script names
// the CSV and the PNG by file name only, relative to its own folder (the
// CSV's): `cd DIR && gnuplot NAME.gp` re-plots, and run_gnuplot does just
// that. Returns the script's path (the CSV's with .gp for .csv).
std::string write_lines_gnuplot(const std::string& csv_path, const std::string& png_path,
                                const std::vector<std::string>& names, const PlotLabels& labels);

// The gnuplot lines that set a title with a smaller subtitle under it:
// `title`'s first line, then the rest (each line of the subtitle at most
// `width` characters, broken after " -> " or a space).
std::string gnuplot_title(const std::string& title, size_t width = 110);

// The style of curve c, shared by every figure: its colour, with its dash
// pattern and/or its marker shape.
std::string gnuplot_line_style(size_t c, bool dashed, bool marker);

// Writes text to path via path.tmp + rename; errors name the path.
void write_text_file(const std::string& path, const std::string& text);

// A gnuplot string literal: 'text' with '' for each quote.
std::string gnuplot_quoted(const std::string& text);

// Runs gnuplot on the script from the script's folder (its paths are
// relative to it); false (with the reason in *why) when gnuplot is not
// installed or fails. The CSV and the script stay either way.
bool run_gnuplot(const std::string& script_path, std::string* why);

}  // namespace cte::tools
