// Checkpoints and network JSON: round trips, and the errors a user sees for
// corrupt files and inconsistent shapes.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>
#include <zlib.h>

#include <cstring>

#include "engine/checkpoint.h"
#include "engine/file_io.h"
#include "engine/netjson.h"
#include "engine/ops.h"
#include "tests/test_util.h"

namespace cte::test {
namespace {

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "cte-tests";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

}  // namespace

TEST_CASE("checkpoint: round trip of tensors and metadata, no temp file left") {
  Rng rng(7);
  Checkpoint ck;
  ck.metadata = R"({"epoch": 3})";
  ck.tensors.emplace_back("w", random_tensor(Shape{3, 4}, rng));
  ck.tensors.emplace_back("scalar", Tensor::scalar(5.0f, Device::cpu));
  ck.tensors.emplace_back("conv", random_tensor(Shape{2, 1, 3, 3}, rng));
  const std::string path = temp_path("roundtrip.ckpt");
  save_checkpoint(path, ck);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  const Checkpoint back = load_checkpoint(path);
  CHECK(back.metadata == ck.metadata);
  REQUIRE(back.tensors.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(back.tensors[i].first == ck.tensors[i].first);
    CHECK(back.tensors[i].second.shape() == ck.tensors[i].second.shape());
    CHECK(back.tensors[i].second.to_vector() == ck.tensors[i].second.to_vector());
  }
}

TEST_CASE("checkpoint: wrong magic, version, truncation and corruption are clear errors") {
  Checkpoint ck;
  ck.tensors.emplace_back("w", Tensor::full(Shape{10}, 1.0f, Device::cpu));
  const std::string path = temp_path("bad.ckpt");
  save_checkpoint(path, ck);
  const std::string good = read_file(path);

  write_file(path, "NOTACKPT" + good.substr(8));
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("wrong magic"), std::runtime_error);

  std::string bad_version = good;
  bad_version[8] = 9;
  write_file(path, bad_version);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("format version 9"), std::runtime_error);

  write_file(path, good.substr(0, good.size() - 20));
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("truncated"), std::runtime_error);

  std::string flipped = good;
  flipped[flipped.size() - 10] ^= 0x40;
  write_file(path, flipped);
  CHECK_THROWS_WITH_AS(load_checkpoint(path), doctest::Contains("CRC mismatch"), std::runtime_error);

  CHECK_THROWS_WITH_AS(load_checkpoint(temp_path("missing.ckpt")), doctest::Contains("missing.ckpt"), std::runtime_error);
}

TEST_CASE("network json: round trip preserves every layer and the function") {
  Rng rng(3);
  std::vector<Layer> layers;
  layers.push_back(make_normalize({0.5f}, {0.25f}));
  layers.push_back(make_conv(1, 2, 3, 2, 1, rng));
  layers.push_back(make_relu());
  layers.push_back(make_flatten());
  layers.push_back(make_linear(2 * 3 * 3, 4, rng));
  const Network net(Shape{1, 6, 6}, std::move(layers));
  const Network back = network_from_json(network_to_json(net));
  CHECK(back.describe() == net.describe());
  const Tensor x = random_tensor(Shape{2, 1, 6, 6}, rng, Device::cpu, 0.0f, 1.0f);
  CHECK(back.forward(x).to_vector() == net.forward(x).to_vector());
}

TEST_CASE("network json: malformed input names the layer and the shapes") {
  CHECK_THROWS_WITH_AS(network_from_json("{not json", "net.json"), doctest::Contains("net.json: parse error"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(network_from_json(R"({"layers": []})", "net.json"), doctest::Contains("input_shape"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(
      network_from_json(R"({"input_shape": [3], "layers": [{"type": "linear", "W": [[1, 2]], "b": [0]}]})", "n.json"),
      doctest::Contains("layer 0 (linear): input is (3) but weight (1,2)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      network_from_json(R"({"input_shape": [2], "layers": [{"type": "linear", "W": [[1, 2], [3]]}]})", "n.json"),
      doctest::Contains("ragged"), std::runtime_error);
  CHECK_THROWS_WITH_AS(network_from_json(R"({"input_shape": [2], "layers": [{"type": "softmax"}]})", "n.json"),
                       doctest::Contains("unknown layer type \"softmax\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      network_from_json(R"({"input_shape": [1, 4, 4], "layers": [{"type": "conv", "W": [[[[1]]], [[[1]]]], "b": [0]}]})", "n.json"),
      doctest::Contains("bias (1) does not match weight (2,1,1,1)"), std::runtime_error);
}

TEST_CASE("nn: PyTorch-default initialisation bounds and the linear/conv forward") {
  Rng rng(11);
  Layer fc = make_linear(400, 10, rng);
  const float bound = 1.0f / 20.0f;  // 1/sqrt(400)
  float max_abs = 0.0f;
  for (float v : fc.weight.to_vector()) max_abs = std::max(max_abs, std::fabs(v));
  CHECK(max_abs <= bound);
  CHECK(max_abs > 0.9f * bound);  // the whole range is used
  // y = W x + b by hand for a 2x3 layer.
  std::vector<Layer> layers;
  Layer l;
  l.kind = LayerKind::linear;
  l.weight = Tensor::from_vector({1, 2, 3, -1, 0, 1}, Shape{2, 3}, Device::cpu);
  l.bias = Tensor::from_vector({0.5f, -0.5f}, Shape{2}, Device::cpu);
  layers.push_back(l);
  const Network net(Shape{3}, layers);
  const Tensor y = net.forward(Tensor::from_vector({1, 1, 2}, Shape{1, 3}, Device::cpu));
  CHECK(y.to_vector() == std::vector<float>{9.5f, 0.5f});
}

}  // namespace cte::test

namespace cte::test {

TEST_CASE("network json: unknown and duplicate keys are errors naming the layer and the key") {
  // A misspelt "strides" used to leave the stride at 1 without a word.
  CHECK_THROWS_WITH_AS(
      network_from_json(R"({"input_shape": [1, 4, 4], "layers": [{"type": "relu"},
                          {"type": "conv", "W": [[[[1]]]], "b": [0], "strides": 2}]})", "n.json"),
      doctest::Contains("n.json: layer 1 (conv): unknown key \"strides\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(network_from_json(R"({"input_shape": [2], "layers": [{"type": "relu", "alpha": 0.1}]})", "n.json"),
                       doctest::Contains("layer 0 (relu): unknown key \"alpha\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(network_from_json(R"({"input_shape": [2], "layers": [], "comment": "x"})", "n.json"),
                       doctest::Contains("top level: unknown key \"comment\""), std::runtime_error);
  // json::parse keeps the last of two equal keys: this relu would become a flatten.
  CHECK_THROWS_WITH_AS(
      network_from_json(R"({"input_shape": [2], "layers": [{"type": "linear", "W": [[1, 0], [0, 1]]},
                          {"type": "relu", "type": "flatten"}]})", "n.json"),
      doctest::Contains("n.json: layer 1 (relu): duplicate key \"type\""), std::runtime_error);
  CHECK_THROWS_WITH_AS(network_from_json(R"({"input_shape": [2], "input_shape": [3], "layers": []})", "n.json"),
                       doctest::Contains("top level: duplicate key \"input_shape\""), std::runtime_error);
  // Equal keys in different layers are fine.
  CHECK(network_from_json(R"({"input_shape": [2], "layers": [{"type": "relu"}, {"type": "relu"}]})").layers().size() == 2);
}

TEST_CASE("files: a directory where a file is expected is named as such") {
  const std::string dir = temp_path("a-directory.json");
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH_AS(load_network_json(dir), doctest::Contains((dir + ": is a directory, expected a file").c_str()),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(load_checkpoint(dir), doctest::Contains((dir + ": is a directory, expected a file").c_str()),
                       std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("files: a full disk names the cause and leaves no temp file") {
  // <path>.tmp as a link to /dev/full: every write to it fails with ENOSPC,
  // as on a full disk, deterministically and without root.
  Rng rng(1);
  std::vector<Layer> layers;
  layers.push_back(make_linear(2, 2, rng));
  const Network net(Shape{2}, std::move(layers));
  Checkpoint ck;
  ck.tensors.emplace_back("w", Tensor::full(Shape{3}, 1.0f, Device::cpu));
  const std::string net_path = temp_path("full-disk-network.json"), ck_path = temp_path("full-disk.ckpt");
  for (const std::string& path : {net_path, ck_path}) {
    std::filesystem::remove(path);
    std::filesystem::remove(path + ".tmp");
    std::filesystem::create_symlink("/dev/full", path + ".tmp");
  }
  CHECK_THROWS_WITH_AS(save_network_json(net_path, net),
                       doctest::Contains((net_path + ".tmp: write failed: No space left on device").c_str()), std::runtime_error);
  CHECK_THROWS_WITH_AS(save_checkpoint(ck_path, ck),
                       doctest::Contains((ck_path + ".tmp: write failed: No space left on device").c_str()), std::runtime_error);
  for (const std::string& path : {net_path, ck_path}) {
    CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path + ".tmp")));
    CHECK_FALSE(std::filesystem::exists(path));
  }
  // With room again, the same call writes the file.
  save_network_json(net_path, net);
  CHECK(load_network_json(net_path).describe() == net.describe());
  std::filesystem::remove(net_path);
}

TEST_CASE("files: a folder lock refuses a second holder, naming the first one's pid") {
  const std::string dir = temp_path("locked-run");
  std::filesystem::create_directories(dir);
  {
    DirectoryLock first(dir, "train");
    CHECK_THROWS_WITH_AS(DirectoryLock(dir, "train"),
                         doctest::Contains((dir + " is in use by another process (pid " + std::to_string(::getpid()) + ",").c_str()),
                         std::runtime_error);
  }
  CHECK_NOTHROW(DirectoryLock(dir, "train"));  // released with its holder
  std::filesystem::remove_all(dir);
}

}  // namespace cte::test

namespace cte::test {

// Inputs the fuzzers found (tests/fuzz/regressions/); each crashed before its fix.
TEST_CASE("fuzz regressions: checkpoint and network JSON") {
  SUBCASE("a checkpoint holding an empty tensor (memcpy from a null vector)") {
    std::string bytes = read_file("tests/fuzz/regressions/checkpoint/empty_tensor").substr(1);
    REQUIRE(bytes.size() > 4);
    // The harness rewrites the CRC when the first byte is odd, as it is here.
    const uint32_t crc = uint32_t(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), uInt(bytes.size() - 4)));
    std::memcpy(bytes.data() + bytes.size() - 4, &crc, 4);
    try {
      (void)checkpoint_from_bytes(bytes, "empty_tensor");
    } catch (const std::runtime_error&) {
      // a clean error is as good as a load
    }
  }
  SUBCASE("extents whose product exceeds the file are refused before allocating") {
    std::string bytes("CTECKPT\0", 8);
    auto put32 = [&](uint32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
    auto put64 = [&](uint64_t v) { bytes.append(reinterpret_cast<const char*>(&v), 8); };
    put32(kCheckpointVersion);
    put32(1);  // one tensor
    put64(0);  // no metadata
    put32(1);
    bytes += "w";
    put32(4);
    for (int d = 0; d < 4; ++d) put64(60);  // 60^4 values (52 MB) in a file of 69 bytes
    put32(0);
    CHECK_THROWS_WITH_AS(checkpoint_from_bytes(bytes, "huge.ckpt"),
                         doctest::Contains("huge.ckpt: tensor 'w' has more values than the file has bytes"),
                         std::runtime_error);
  }
  SUBCASE("a network JSON that is a bare value (the duplicate-key check had no open object)") {
    CHECK_THROWS_WITH_AS(network_from_json("1", "n.json"), doctest::Contains("n.json: top level: expected an object"),
                         std::runtime_error);
    CHECK_THROWS_WITH_AS(network_from_json(read_file("tests/fuzz/regressions/netjson/bare_value"), "n.json"),
                         doctest::Contains("n.json"), std::runtime_error);
  }
}

}  // namespace cte::test
