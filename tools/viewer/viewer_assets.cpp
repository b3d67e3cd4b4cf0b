// The viewer's page template, script, style and WebAssembly module, built
// into the certify binary: the Makefile writes build/gen/viewer_assets.inc
// (tools/viewer/viewer.html, viewer.js and viewer.css as raw string
// literals, then the base64 of build/viewer/relu_rules.wasm). Linked into
// certify only, so the other binaries and the tests need no WebAssembly tools.
#include "tools/lib/viewer.h"

namespace cte::tools {

ViewerAssets viewer_assets() {
  static const char* const parts[] = {
#include "build/gen/viewer_assets.inc"
  };
  static_assert(sizeof parts / sizeof parts[0] == 4, "viewer_assets.inc: html, script, style, wasm");
  return {parts[0], parts[1], parts[2], parts[3]};
}

}  // namespace cte::tools
