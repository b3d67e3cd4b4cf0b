// Image-folder reader (stb_image): the input is one image file of class "a"
// (PNG or JPEG by content; the first byte picks the file's extension).
#include <exception>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string name = (data[0] & 1) ? "root/a/0.jpg" : "root/a/0.png";
  static std::string last;
  if (!last.empty() && last != name) std::filesystem::remove(last);
  last = (cte::fuzz::scratch_dir() / name).string();
  cte::fuzz::write_scratch(name, data + 1, size - 1);
  try {
    const cte::Dataset ds = cte::read_image_folder((cte::fuzz::scratch_dir() / "root").string());
    if (ds.images.size() != ds.size() * ds.image_numel()) std::abort();
  } catch (const std::exception&) {
  }
  return 0;
}
