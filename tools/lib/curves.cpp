// CR curves, CR-AUC and their files (see curves.h).
#include "tools/lib/curves.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "engine/file_io.h"

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

std::string gnuplot_title(const std::string& title, size_t width) {
  const size_t newline = title.find('\n');
  // Both as labels in the top margin: gnuplot's own title would sit on the subtitle.
  std::string text = "unset title\nset label 101 " + gnuplot_quoted(title.substr(0, newline)) +
                     " at screen 0.5, screen 0.965 center front noenhanced font ',14'\n";
  std::vector<std::string> lines;
  std::string rest = newline == std::string::npos ? "" : title.substr(newline + 1);
  while (!rest.empty()) {
    // The subtitle, wrapped: break after the last " -> " or space that fits.
    const size_t cut_newline = rest.find('\n');
    std::string line = rest.substr(0, cut_newline);
    if (line.size() > width) {
      size_t cut = line.rfind(" -> ", width);
      if (cut != std::string::npos && cut > width / 3) cut += 3;
      else cut = line.rfind(' ', width);
      if (cut == std::string::npos || cut == 0) cut = width;
      line = line.substr(0, cut);
      rest = rest.substr(cut);
      while (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
    } else {
      rest = cut_newline == std::string::npos ? "" : rest.substr(cut_newline + 1);
    }
    lines.push_back(line);
  }
  for (size_t k = 0; k < lines.size(); ++k) {
    char at[64];
    std::snprintf(at, sizeof at, " at screen 0.5, screen %.3f", 0.925 - 0.027 * double(k));
    text += "set label " + std::to_string(102 + k) + " " + gnuplot_quoted(lines[k]) + at +
            " center front noenhanced font ',10'\n";
  }
  char margin[64];
  std::snprintf(margin, sizeof margin, "set tmargin %.1f\n", 3.5 + 1.5 * double(lines.size()));
  return text + margin;
}

std::string gnuplot_line_style(size_t c, bool dashed, bool marker) {
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
  static const int kPoints[] = {7, 5, 9, 13, 11, 15, 3};  // filled circle, square, triangles, diamond, pentagon, star
  const size_t k = c % 7;
  std::string style = "linecolor rgb '" + std::string(kColours[k]) + "'";
  if (dashed) style += " dashtype " + std::to_string(c % 5 + 1);
  if (marker) style += " pointtype " + std::to_string(kPoints[k]);
  return style;
}

namespace {

std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

}  // namespace

std::string write_lines_gnuplot(const std::string& csv_path, const std::string& png_path,
                                const std::vector<std::string>& names, const PlotLabels& labels) {
  const std::string script = csv_path.substr(0, csv_path.rfind('.')) + ".gp";
  const std::string csv = gnuplot_quoted(file_name(csv_path));
  std::string text =
      "# re-plot from this folder: gnuplot " + file_name(script) + "\n"
      "set terminal pngcairo size 1000,680 font ',11'\n"
      "set output " + gnuplot_quoted(file_name(png_path)) + "\n"
      "set datafile separator ','\n" +
      gnuplot_title(labels.title) +
      "set xlabel " + gnuplot_quoted(labels.xlabel) + " noenhanced\n"
      "set ylabel " + gnuplot_quoted(labels.ylabel) + " noenhanced\n" +
      (labels.percent ? "set yrange [0:100]\n" : "") +
      (labels.x_max > labels.x_min ? "set xrange [" + number(labels.x_min) + ":" + number(labels.x_max) + "]\n" : "") +
      "set key below horizontal noenhanced\nset grid\n"
      "rows = 0\nstats " + csv + " using 1 nooutput\nrows = STATS_records\n"
      "gap = rows > 16 ? int(rows / 8) : 1  # rows between two markers of a curve\n"
      "plot ";
  // Per curve: the line, its markers (every `gap` rows, shifted per curve so
  // markers of equal curves do not hide each other), and a legend entry with both.
  const size_t n = names.size();
  for (size_t c = 0; c < n; ++c) {
    const std::string column = std::to_string(c + 2);
    const std::string y = c < labels.y_offsets.size()
                              ? "($" + column + " - (" + number(labels.y_offsets[c]) + "))"
                              : column;

    const std::string width = number(std::max(1.5, 3.0 - 0.4 * double(c)));
    const std::string legend = c < labels.legend.size() ? labels.legend[c] : names[c];
    if (c) text += ", \\\n     ";
    text += csv + " using 1:" + y + " with lines " + gnuplot_line_style(c, true, false) + " linewidth " + width +
            " notitle, \\\n     " + csv + " every gap::int(" + std::to_string(c) + " * gap / " + std::to_string(n) +
            ") using 1:" + y + " with points " + gnuplot_line_style(c, false, true) +
            " pointsize 1.3 notitle, \\\n     NaN with linespoints " + gnuplot_line_style(c, true, true) +
            " linewidth " + width + " pointsize 1.3 title " + gnuplot_quoted(legend);
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
  const std::filesystem::path script(script_path);
  const std::string folder = script.parent_path().empty() ? "." : script.parent_path().string();
  const std::string command =
      "cd " + shell_quoted(folder) + " && gnuplot " + shell_quoted(script.filename().string()) + " 2>&1";
  if (std::system(command.c_str()) != 0) {
    if (why) *why = "gnuplot failed on " + script_path;
    return false;
  }
  return true;
}

}  // namespace cte::tools
