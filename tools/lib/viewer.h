// `certify viewer`: the relaxation viewer, one self-contained HTML page
// (opens from disk, no server, no network) with
//  - one ReLU: sliders for l and u and each relaxation's region, area and
//    lines, computed in the page by the engine's own per-neuron rules
//    (kernels/common/relu_relaxation.h) compiled to WebAssembly
//    (tools/viewer/relu_rules_wasm.cpp), embedded as base64;
//  - the paper's section 4.1 network: each relaxation's lower bounds of both
//    outputs over w in [-1, 2] (figure 3), computed here by compute_bounds
//    and written into the page as data;
//  - a file picker plotting the CSVs of certify curve, landscape and sgd.
// The page's template, script and style live in tools/viewer/ and are
// embedded into the certify binary at build time (the Makefile's viewer rules).
#pragma once
#include <string>
#include <vector>

#include "engine/nn.h"
#include "relaxations/relaxations.h"

namespace cte::tools {

// The page's source files as built into the binary (tools/viewer/viewer_assets.cpp).
struct ViewerAssets {
  const char* html;  // the template: @@CTE_STYLE@@, @@CTE_SCRIPT@@, @@CTE_WASM@@, @@CTE_DATA@@ mark where the rest goes
  const char* script;
  const char* style;
  const char* wasm_base64;
};
ViewerAssets viewer_assets();

// The section 4.1 network with first-layer bias w: x1 = (x0 + w, x0 + w),
// x2 = relu(x1), x3 = (x22 + 1, x22 - x21), as network JSON (engine/netjson.h).
std::string section_4_1_network_json(double w);

// The lower bounds of both outputs of that network on x0 in [-1, 1] under
// each relaxation, at each w: lower[r][o][k] for relaxations[r], output o, w[k].
struct ToyCurves {
  std::vector<double> w;
  std::vector<Relaxation> relaxations;
  std::vector<std::vector<std::vector<double>>> lower;
};
ToyCurves section_4_1_curves(const std::vector<Relaxation>& relaxations, const std::vector<double>& w);

// The page: the template with the script, style, WebAssembly and the curves filled in.
std::string viewer_page(const ViewerAssets& assets, const ToyCurves& curves);

}  // namespace cte::tools
