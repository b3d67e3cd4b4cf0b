// `certify bounds`: bounds of a network (engine/netjson.h format) on the
// L-inf balls around given inputs, from the command line:
//
//   certify bounds --net NET.json --x X.json --eps E --relaxations R[,R2...]
//                  [--spec label] [--no-clip] [--no-elide] [--device cpu|cuda|auto] [--threads N]
//
// X.json is {"x": [[values in C,H,W order], ...], "y": [labels]} ("y" only
// needed with --spec label); inputs lie in [0, 1] unless --no-clip. Prints
// {"relaxation": R, "lower": [[...]], "upper": [[...]]}, one line per
// relaxation (one row per input: the logits' bounds, or with --spec
// label the margins z_y' - z_y for y' != y in increasing y') on stdout and the
// start-up banner on stderr. Bad input gives a message on stderr that starts
// with the flag or file at fault, and a non-zero exit status. The command is
// certify_bounds_command (tools/certify/commands.h); this header is for the
// x.json reader, which the fuzz test drives.
#pragma once

#include <string>
#include <vector>

namespace cte::tools {

// X.json's contents; `path` names the file in errors, which throw
// std::runtime_error "<path>: <what>".
struct BoundsInputs {
  std::vector<std::vector<float>> x;
  std::vector<int> y;
  bool has_y = false;
};
BoundsInputs bounds_inputs_from_json(const std::string& text, const std::string& path);

}  // namespace cte::tools
