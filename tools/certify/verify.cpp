// certify verify: complete verification of VNNLIB properties on a network
// (ONNX or network JSON) by PGD and branch and bound (verify/bab.h), printing
// VNN-COMP's result format; and the VNNLIB files of our own test images.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/device.h"
#include "engine/file_io.h"
#include "engine/onnx_io.h"
#include "tools/certify/commands.h"
#include "tools/lib/cli_flags.h"
#include "verify/bab.h"
#include "verify/property.h"

namespace fs = std::filesystem;

namespace cte::tools {
namespace {

// VNN-COMP's result file: the verdict, and for sat the counterexample as
// ((X_0 v) ... (Y_0 v) ...) with the float64 outputs.
std::string result_text(const Network& net, const verify::VerifyResult& r) {
  std::ostringstream out;
  out << verify::verdict_name(r.verdict) << "\n";
  if (r.verdict == verify::Verdict::sat) {
    const std::vector<double> y = verify::forward_f64(net, r.counterexample);
    char buf[96];
    out << "(";
    for (size_t i = 0; i < r.counterexample.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s(X_%zu %.17g)\n", i ? " " : "", i, r.counterexample[i]);
      out << buf;
    }
    for (size_t j = 0; j < y.size(); ++j) {
      std::snprintf(buf, sizeof buf, " (Y_%zu %.17g)%s\n", j, y[j], j + 1 == y.size() ? ")" : "");
      out << buf;
    }
  }
  return out.str();
}

void write_robustness_files(const std::string& x_path, double eps, const std::string& dir, int num_classes) {
  const nlohmann::json j = nlohmann::json::parse(read_whole_file(x_path, "certify verify --x"), nullptr, false);
  if (j.is_discarded() || !j.contains("x") || !j.contains("y") || !j["x"].is_array() || !j["y"].is_array() ||
      j["x"].size() != j["y"].size())
    fail("certify verify", x_path + ": expected {\"x\": [[...], ...], \"y\": [labels]} of equal lengths");
  fs::create_directories(dir);
  for (size_t i = 0; i < j["x"].size(); ++i) {
    const std::vector<float> x = j["x"][i].get<std::vector<float>>();
    const int label = j["y"][i].get<int>();
    write_file_atomically(dir + "/prop_" + std::to_string(i) + ".vnnlib",
                          verify::robustness_vnnlib(x, label, num_classes, eps), "certify verify");
  }
  std::cout << "[verify] wrote " << j["x"].size() << " VNNLIB files to " << dir << std::endl;
}

}  // namespace

int certify_verify_command(int argc, char** argv) {
  CLI::App app{"certify verify: complete verification of VNNLIB properties (PGD for sat, then branch and bound "
               "over ReLU splits with CROWN bounds in the sound mode; see verify/bab.h). Prints unsat (the "
               "property holds), sat (with a counterexample a float64 forward pass confirms), timeout or unknown, "
               "in VNN-COMP's result format"};
  std::string onnx_path, vnnlib_path, instances, csv_out, result_out, x_path, export_dir, device_arg = "cpu";
  double timeout = 60.0, eps = 0.0;
  int batch = 64, threads = 0, num_classes = 10;
  uint64_t seed = 0;
  verify::VerifyOptions options;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--onnx,--net", onnx_path, "the network: ONNX (.onnx) or network JSON");
  app.add_option("--vnnlib", vnnlib_path, "the property (VNNLIB)");
  app.add_option("--timeout", timeout, "seconds per property (with --instances: the CSV's own timeout wins when smaller)")
      ->capture_default_str();
  app.add_option("--result", result_out, "also write the result file (VNN-COMP format) here");
  app.add_option("--instances", instances,
                 "a benchmark's instances.csv (onnx,vnnlib,timeout per line, paths relative to its folder): "
                 "verify every instance");
  app.add_option("--csv", csv_out, "with --instances: write onnx,vnnlib,result,seconds,domains per instance here");
  app.add_option("--batch", batch, "subdomains bounded together")->capture_default_str();
  app.add_flag("--recompute-intermediate", options.recompute_intermediate,
               "recompute every subdomain's intermediate bounds (tighter, far slower) instead of inheriting its "
               "parent's, clamped at the split");
  app.add_flag("--alpha", options.alpha_slopes,
               "bound every subdomain's output with alpha-CROWN's optimised lower slopes (tighter, each bounding "
               "costs up to --alpha-steps more walks) instead of CROWN's");
  add_alpha_crown_flags(app, options.alpha);
  app.add_option("--seed", seed, "PGD random starts")->capture_default_str();
  app.add_option("--export-vnnlib", export_dir,
                 "instead of verifying: write one robustness VNNLIB per input of --x (radius --eps, clipped to "
                 "[0, 1]) into this folder");
  app.add_option("--x", x_path, "with --export-vnnlib: inputs JSON as certify export-inputs writes it");
  app.add_option("--eps", eps, "with --export-vnnlib: the L-inf radius");
  app.add_option("--classes", num_classes, "with --export-vnnlib: the number of outputs")->capture_default_str();
  app.add_option("--device", device_arg, "cpu | cuda | auto")->capture_default_str();
  app.add_option("--threads", threads, "OpenMP and BLAS threads (0: the default)")->capture_default_str();
  reject_empty_numbers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!export_dir.empty()) {
    if (x_path.empty() || !(eps > 0.0)) fail("certify verify", "--export-vnnlib needs --x and --eps > 0");
    write_robustness_files(x_path, eps, export_dir, num_classes);
    return 0;
  }
  if (!(timeout > 0.0)) fail("certify verify", "--timeout " + std::to_string(timeout) + " must be positive");
  if (batch < 2) fail("certify verify", "--batch " + std::to_string(batch) + " must be at least 2");
  set_thread_count(threads, "[certify] --threads");
  const Device device = parse_device(device_arg);
  options.batch = batch;
  options.seed = seed;

  auto run_one = [&](const std::string& net_path, const std::string& prop_path, double limit) {
    Network net = fold_batch_norm(load_network_file(net_path));  // the MILP knows no BatchNorm
    net.to(device);
    const verify::Property property = verify::load_vnnlib(prop_path);
    verify::VerifyOptions o = options;
    o.timeout_s = limit;
    return std::make_pair(std::move(net), verify::verify_property(net, property, o));
  };

  if (instances.empty()) {
    if (onnx_path.empty() || vnnlib_path.empty()) fail("certify verify", "give --onnx and --vnnlib, or --instances");
    auto [net, r] = run_one(onnx_path, vnnlib_path, timeout);
    const std::string text = result_text(net, r);
    std::cout << text;
    std::cerr << "[verify] " << verify::verdict_name(r.verdict) << " in " << r.seconds << " s, " << r.domains_bounded
              << " subdomains bounded, depth " << r.max_depth << " (" << r.note << ")" << std::endl;
    if (!result_out.empty()) write_file_atomically(result_out, text, "certify verify --result");
    return 0;
  }
  const fs::path base = fs::path(instances).parent_path();
  std::istringstream lines(read_whole_file(instances, "certify verify --instances"));
  std::ostringstream csv;
  csv << "onnx,vnnlib,result,seconds,domains\n";
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) cells.push_back(cell);
    if (cells.size() < 2) fail("certify verify", instances + ":" + std::to_string(line_no) + ": expected onnx,vnnlib[,timeout]");
    double limit = timeout;
    if (cells.size() > 2) limit = std::min(limit, std::stod(cells[2]));
    auto [net, r] = run_one((base / cells[0]).string(), (base / cells[1]).string(), limit);
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f", r.seconds);
    csv << cells[0] << "," << cells[1] << "," << verify::verdict_name(r.verdict) << "," << secs << "," << r.domains_bounded << "\n";
    std::cout << cells[0] << " " << cells[1] << ": " << verify::verdict_name(r.verdict) << " " << secs << " s, "
              << r.domains_bounded << " subdomains (" << r.note << ")" << std::endl;
  }
  if (!csv_out.empty()) write_file_atomically(csv_out, csv.str(), "certify verify --csv");
  return 0;
}

}  // namespace cte::tools
