// Networks as JSON, for the tools, the tests and exchange with other verifiers:
//   {"input_shape": [C,H,W] or [N],
//    "layers": [{"type":"normalize","mean":[...],"std":[...]},
//               {"type":"conv","W": out x in x kh x kw,"b":[...],"stride":s,"padding":p},
//               {"type":"relu"}, {"type":"flatten"},
//               {"type":"linear","W": out x in,"b":[...]}]}
// Malformed JSON or inconsistent shapes give an error naming the source, the
// layer and the shapes.
#pragma once
#include <string>

#include "engine/nn.h"

namespace cte {

Network network_from_json(const std::string& text, const std::string& source = "<json>");
Network load_network_json(const std::string& path);
std::string network_to_json(const Network& net);
void save_network_json(const std::string& path, const Network& net);  // atomic (temp + rename)

}  // namespace cte
