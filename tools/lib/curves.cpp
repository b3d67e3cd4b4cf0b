// CR curves, CR-AUC and their files (see curves.h).
#include "tools/lib/curves.h"

#include "engine/file_io.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace cte::tools {

void write_text_file(const std::string& path, const std::string& text) {
  write_file_atomically(path, text, "curves");
}

std::string gnuplot_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

namespace {

// A double as text without trailing noise (%.10g).
std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.10g", v);
  return buffer;
}

// Quotes for the shell ('...' with '\'' for a quote).
std::string shell_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::vector<double> linspace(double lo, double hi, int points) {
  if (points < 2) throw std::invalid_argument("[curves] linspace needs at least 2 points, got " + std::to_string(points));
  std::vector<double> out(static_cast<size_t>(points));
  for (int i = 0; i < points; ++i) out[size_t(i)] = lo + (hi - lo) * double(i) / double(points - 1);
  out.back() = hi;  // exactly, whatever the rounding above
  return out;
}

double trapezoid_area(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size())
    throw std::invalid_argument("[curves] trapezoid_area: " + std::to_string(x.size()) + " x values but " +
                                std::to_string(y.size()) + " y values");
  double area = 0.0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (!(x[i] >= x[i - 1])) throw std::invalid_argument("[curves] trapezoid_area: x must be increasing");
    area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
  }
  return area;
}

namespace {

// The CSV behind both writers: a header, then x and each column's value per row.
void write_table(const std::string& path, const std::string& x_name, const std::vector<double>& x,
                 const std::vector<std::string>& names, const std::vector<std::vector<double>>& columns,
                 const char* cell_format) {
  std::string text = x_name;
  for (const std::string& name : names) text += "," + name;
  text += "\n";
  for (size_t k = 0; k < x.size(); ++k) {
    text += number(x[k]);
    for (const std::vector<double>& column : columns) {
      char cell[32];
      std::snprintf(cell, sizeof cell, cell_format, column.at(k));
      text += cell;
    }
    text += "\n";
  }
  write_text_file(path, text);
}

}  // namespace

void write_curves_csv(const std::string& path, const CrCurves& curves) {
  write_table(path, "eps", curves.eps, curves.names, curves.percent, ",%.4f");
}

void write_columns_csv(const std::string& path, const std::string& x_name, const std::vector<double>& x,
                       const std::vector<std::string>& names, const std::vector<std::vector<double>>& columns) {
  write_table(path, x_name, x, names, columns, ",%.9g");
}

std::string write_lines_gnuplot(const std::string& csv_path, const std::string& png_path,
                                const std::vector<std::string>& names, const PlotLabels& labels) {
  const std::string script = csv_path.substr(0, csv_path.rfind('.')) + ".gp";
  std::string text =
      "# re-plot with: gnuplot " + script + "\n"
      "set terminal pngcairo size 900,600 font ',11'\n"
      "set output " + gnuplot_quoted(png_path) + "\n"
      "set datafile separator ','\n"
      "set title " + gnuplot_quoted(labels.title) + " noenhanced\n"
      "set xlabel " + gnuplot_quoted(labels.xlabel) + " noenhanced\n"
      "set ylabel " + gnuplot_quoted(labels.ylabel) + " noenhanced\n" +
      (labels.percent ? "set yrange [0:100]\n" : "") +
      "set key top right noenhanced\nset grid\n"
      "plot ";
  for (size_t c = 0; c < names.size(); ++c) {
    if (c) text += ", \\\n     ";
    text += gnuplot_quoted(csv_path) + " using 1:" + std::to_string(c + 2) + " with lines linewidth 2 title " +
            gnuplot_quoted(names[c]);
  }
  text += "\n";
  write_text_file(script, text);
  return script;
}

bool run_gnuplot(const std::string& script_path, std::string* why) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    if (why) *why = "gnuplot is not installed (make deps installs gnuplot-nox)";
    return false;
  }
  const std::string command = "gnuplot " + shell_quoted(script_path) + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    if (why) *why = "gnuplot failed on " + script_path;
    return false;
  }
  return true;
}

}  // namespace cte::tools
