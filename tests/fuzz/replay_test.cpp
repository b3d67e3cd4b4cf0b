// `make test`'s share of the fuzzing. Every harness of tests/fuzz/ is compiled
// into the ASan/UBSan test binary with its libFuzzer entry point renamed
// (Makefile: FUZZ_REPLAY_OBJS), and this test feeds each one every saved input
// of its parser: the regressions (crashes found by fuzzing and fixed) and the
// seed corpus. A parser that crashes, trips a sanitizer or lets a non-std
// exception out fails here, in seconds and without the clang fuzzing build;
// `make fuzz` is where new inputs are searched for.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

// One row per harness: tests/fuzz/fuzz_<name>.cpp, inputs in tests/fuzz/{regressions,corpus}/<name>/.
#define CTE_FUZZ_HARNESSES(X) \
  X(checkpoint) X(cifar10) X(config) X(idx) X(image_folder) X(netjson) X(onnx) X(svhn) X(vnnlib) X(xjson)

#define CTE_DECLARE_HARNESS(name) int cte_fuzz_replay_##name(const uint8_t* data, size_t size);
extern "C" {
CTE_FUZZ_HARNESSES(CTE_DECLARE_HARNESS)
}

namespace {

struct Harness {
  const char* name;
  int (*one_input)(const uint8_t*, size_t);
};

#define CTE_HARNESS_ROW(name) Harness{#name, &cte_fuzz_replay_##name},
const Harness kHarnesses[] = {CTE_FUZZ_HARNESSES(CTE_HARNESS_ROW)};

const std::filesystem::path kFuzzDir = std::filesystem::path(__FILE__).parent_path();

std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  if (!std::filesystem::is_directory(dir)) return files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  return files;
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("fuzz: the replay table lists every harness of tests/fuzz/") {
  std::set<std::string> on_disk, in_table;
  for (const auto& entry : std::filesystem::directory_iterator(kFuzzDir)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind("fuzz_", 0) == 0 && entry.path().extension() == ".cpp") on_disk.insert(file.substr(5, file.size() - 9));
  }
  for (const Harness& h : kHarnesses) in_table.insert(h.name);
  CHECK(on_disk == in_table);
}

TEST_CASE("fuzz: every harness passes on its saved regression and corpus inputs") {
  for (const Harness& h : kHarnesses) {
    const auto corpus = files_in(kFuzzDir / "corpus" / h.name);
    const auto regressions = files_in(kFuzzDir / "regressions" / h.name);
    INFO("harness " << h.name);
    CHECK(!corpus.empty());  // a harness without seeds would replay nothing
    for (const auto* set : {&regressions, &corpus}) {
      for (const auto& path : *set) {
        INFO("input " << path.string());
        const std::string bytes = read_bytes(path);
        CHECK(h.one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()) == 0);
      }
    }
  }
}
