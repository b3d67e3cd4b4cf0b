// Tests for datasets/: every reader on small files written here into a temp
// directory (IDX plain and gzipped, SVHN .mat through libmatio, CIFAR-10
// binary batches, PNG/JPEG folders through stb_image_write), checking that
// pixels land in the right C,H,W place and that each kind of bad input fails
// with a message naming the file and the problem; the real FashionMNIST when
// Debian's package is installed; data-directory lookup; and BatchLoader's
// reproducible shuffling and augmentation (crop stays inside the zero-padded
// image, flip mirrors, results independent of threads and batch size).
#include <doctest/doctest.h>
#include <matio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <unistd.h>
#include <zlib.h>

#define STB_IMAGE_WRITE_STATIC  // private copy, so it cannot clash with another test's
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "datasets/dataset.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("cte_test_datasets_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Sets an environment variable for one scope and restores the old value.
class ScopedEnv {
 public:
  // std::nullopt unsets the variable.
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    if (value) ::setenv(name, value->c_str(), 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

void write_file(const std::string& path, const Bytes& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  REQUIRE(gz != nullptr);
  REQUIRE(gzwrite(gz, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(gz) == Z_OK);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_be32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(uint8_t(v >> shift));
}

Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols, const Bytes& pixels) {
  Bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, uint32_t(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// The message of the std::runtime_error thrown by f, or a marker if none was thrown.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "<no exception thrown>";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Checks that the error names `file` and says `phrase`.
#define CHECK_ERROR(expr, file, phrase)                       \
  do {                                                        \
    const std::string msg_ = error_of([&] { (void)(expr); }); \
    INFO("message: " << msg_);                                \
    CHECK(contains(msg_, file));                              \
    CHECK(contains(msg_, phrase));                            \
  } while (0)

// ---------------------------------------------------------------- IDX

// 3 images of 2x3 with pixel (n,y,x) = 100 + 10n + 3y + x, labels 7, 0, 9.
Bytes small_pixels() {
  Bytes p;
  for (int n = 0; n < 3; ++n)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x) p.push_back(uint8_t(100 + 10 * n + 3 * y + x));
  return p;
}
const Bytes kSmallLabels = {7, 0, 9};

void check_small_idx(const cte::Dataset& ds) {
  CHECK(ds.name == "mnist");
  CHECK(ds.size() == 3);
  CHECK(ds.channels == 1);
  CHECK(ds.height == 2);
  CHECK(ds.width == 3);
  CHECK(ds.num_classes == 10);
  CHECK(ds.class_names.size() == 10);
  CHECK(ds.images == small_pixels());
  CHECK(ds.labels == kSmallLabels);
}

}  // namespace

TEST_CASE("datasets: IDX plain and gzip give the same pixels and labels") {
  TempDir dir;
  write_file(dir / "img", idx_images(3, 2, 3, small_pixels()));
  write_file(dir / "lab", idx_labels(kSmallLabels));
  check_small_idx(cte::read_idx_pair(dir / "img", dir / "lab", "mnist"));

  write_gz(dir / "img2.gz", idx_images(3, 2, 3, small_pixels()));
  write_gz(dir / "lab2.gz", idx_labels(kSmallLabels));
  check_small_idx(cte::read_idx_pair(dir / "img2.gz", dir / "lab2.gz", "mnist"));
  // Given without .gz, the .gz sibling is used.
  check_small_idx(cte::read_idx_pair(dir / "img2", dir / "lab2", "mnist"));
  // gzip is recognised by content, not by name.
  write_gz(dir / "img3", idx_images(3, 2, 3, small_pixels()));
  check_small_idx(cte::read_idx_pair(dir / "img3", dir / "lab", "mnist"));
}

TEST_CASE("datasets: IDX bad inputs name the file and the problem") {
  TempDir dir;
  const Bytes good_images = idx_images(3, 2, 3, small_pixels());
  write_file(dir / "img", good_images);
  write_file(dir / "lab", idx_labels(kSmallLabels));

  SUBCASE("missing file") {
    CHECK_ERROR(cte::read_idx_pair(dir / "nope", dir / "lab", "mnist"), dir / "nope", "missing file");
    CHECK_ERROR(cte::read_idx_pair(dir / "img", dir / "nolab.gz", "mnist"), "nolab.gz", "missing file");
    const std::string msg = error_of([&] { cte::read_idx_pair(dir / "nope", dir / "lab", "mnist"); });
    CHECK(msg.rfind("[mnist] ", 0) == 0);
  }
  SUBCASE("wrong magic") {
    Bytes bad = good_images;
    bad[3] = 0x04;
    write_file(dir / "badmagic", bad);
    CHECK_ERROR(cte::read_idx_pair(dir / "badmagic", dir / "lab", "mnist"), "badmagic",
                "wrong magic 0x00000804");
    // Swapped images and labels.
    CHECK_ERROR(cte::read_idx_pair(dir / "lab", dir / "img", "mnist"), dir / "lab", "wrong magic");
  }
  SUBCASE("truncated plain file") {
    Bytes cut(good_images.begin(), good_images.end() - 1);
    write_file(dir / "cut", cut);
    CHECK_ERROR(cte::read_idx_pair(dir / "cut", dir / "lab", "fashion-mnist"),
                "[fashion-mnist] " + (dir / "cut"),
                "truncated: header says 3 images of 2x3 (34 bytes) but the file has 33 bytes");
    write_file(dir / "tiny", Bytes{0, 0, 8});
    CHECK_ERROR(cte::read_idx_pair(dir / "tiny", dir / "lab", "mnist"), "tiny", "truncated");
    Bytes labels_cut = idx_labels(kSmallLabels);
    labels_cut.pop_back();
    write_file(dir / "labcut", labels_cut);
    CHECK_ERROR(cte::read_idx_pair(dir / "img", dir / "labcut", "mnist"), "labcut", "truncated");
  }
  SUBCASE("truncated gzip content and truncated gzip stream") {
    Bytes cut(good_images.begin(), good_images.end() - 5);
    write_gz(dir / "cut.gz", cut);
    CHECK_ERROR(cte::read_idx_pair(dir / "cut.gz", dir / "lab", "mnist"), "cut.gz",
                "but the file has 29 bytes (after decompression)");
    // A big, poorly compressible file cut in the middle of the compressed stream.
    Bytes big_pixels(200 * 28 * 28);
    uint32_t x = 12345;
    for (auto& p : big_pixels) p = uint8_t((x = x * 1103515245u + 12345u) >> 24);
    write_gz(dir / "big.gz", idx_images(200, 28, 28, big_pixels));
    Bytes compressed = read_file(dir / "big.gz");
    compressed.resize(compressed.size() / 2);
    write_file(dir / "half.gz", compressed);
    CHECK_ERROR(cte::read_idx_pair(dir / "half.gz", dir / "lab", "mnist"), "half.gz", "truncated");
    // Corrupt deflate data.
    Bytes corrupt = read_file(dir / "big.gz");
    for (size_t i = 20; i < 60; ++i) corrupt[i] ^= 0x5a;
    write_file(dir / "corrupt.gz", corrupt);
    const std::string msg = error_of([&] { cte::read_idx_pair(dir / "corrupt.gz", dir / "lab", "mnist"); });
    INFO(msg);
    CHECK(contains(msg, "corrupt.gz"));
    CHECK((contains(msg, "corrupt") || contains(msg, "truncated")));
  }
  SUBCASE("trailing bytes") {
    Bytes longer = good_images;
    longer.push_back(0);
    write_file(dir / "long", longer);
    CHECK_ERROR(cte::read_idx_pair(dir / "long", dir / "lab", "mnist"), "long", "1 more than that");
  }
  SUBCASE("lying header does not allocate what the file does not have") {
    write_file(dir / "huge", idx_images(0xFFFFFFFFu, 0xFFFF, 1, {1, 2, 3}));
    CHECK_ERROR(cte::read_idx_pair(dir / "huge", dir / "lab", "mnist"), "huge",
                "truncated: header says 4294967295 images of 65535x1");
    write_file(dir / "absurd", idx_images(0xFFFFFFFFu, 0xFFFF, 0xFFFF, {1, 2, 3}));
    CHECK_ERROR(cte::read_idx_pair(dir / "absurd", dir / "lab", "mnist"), "absurd", "absurdly large");
    write_file(dir / "none", idx_images(0, 28, 28, {}));
    CHECK_ERROR(cte::read_idx_pair(dir / "none", dir / "lab", "mnist"), "none", "no images");
  }
  SUBCASE("image and label counts differ") {
    write_file(dir / "lab4", idx_labels({1, 2, 3, 4}));
    const std::string msg = error_of([&] { cte::read_idx_pair(dir / "img", dir / "lab4", "mnist"); });
    INFO(msg);
    CHECK(contains(msg, dir / "img"));
    CHECK(contains(msg, dir / "lab4"));
    CHECK(contains(msg, "has 3 images but"));
    CHECK(contains(msg, "has 4 labels"));
  }
  SUBCASE("label out of range") {
    write_file(dir / "lab10", idx_labels({1, 10, 3}));
    CHECK_ERROR(cte::read_idx_pair(dir / "img", dir / "lab10", "mnist"), "lab10",
                "label 10 of item 1 is out of range");
  }
}

// ---------------------------------------------------------------- SVHN

namespace {

// Pixel value for X(h,w,c,n) that differs for every index in the test images.
uint8_t svhn_pixel(size_t h, size_t w, size_t c, size_t n) {
  return uint8_t((h * 7 + w * 3 + c * 101 + n * 59) % 251);
}

struct MatVarSpec {
  std::string name;
  matio_classes cls;
  matio_types type;
  std::vector<size_t> dims;
  const void* data;
};

void write_mat(const std::string& path, const std::vector<MatVarSpec>& vars, bool compress = false) {
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE(mat != nullptr);
  for (const auto& v : vars) {
    std::vector<size_t> dims = v.dims;
    matvar_t* var = Mat_VarCreate(v.name.c_str(), v.cls, v.type, int(dims.size()), dims.data(),
                                  const_cast<void*>(v.data), 0);
    REQUIRE(var != nullptr);
    REQUIRE(Mat_VarWrite(mat, var, compress ? MAT_COMPRESSION_ZLIB : MAT_COMPRESSION_NONE) == 0);
    Mat_VarFree(var);
  }
  Mat_Close(mat);
}

// X of n images in MATLAB's column-major order.
Bytes svhn_x(size_t n) {
  Bytes x(32 * 32 * 3 * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t c = 0; c < 3; ++c)
      for (size_t w = 0; w < 32; ++w)
        for (size_t h = 0; h < 32; ++h) x[h + 32 * (w + 32 * (c + 3 * i))] = svhn_pixel(h, w, c, i);
  return x;
}

}  // namespace

TEST_CASE("datasets: SVHN .mat is transposed to C,H,W and label 10 becomes 0") {
  TempDir dir;
  const Bytes x = svhn_x(3);
  SUBCASE("y as double Nx1, plain or compressed like the real files") {
    for (bool compress : {false, true}) {
      CAPTURE(compress);
      const std::array<double, 3> y = {10, 3, 1};
      write_mat(dir / "s.mat",
                {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 3}, x.data()},
                 {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {3, 1}, y.data()}},
                compress);
      const cte::Dataset ds = cte::read_svhn_mat(dir / "s.mat");
      CHECK(ds.name == "svhn");
      REQUIRE(ds.size() == 3);
      CHECK(ds.channels == 3);
      CHECK(ds.height == 32);
      CHECK(ds.width == 32);
      CHECK(ds.num_classes == 10);
      CHECK(ds.labels == Bytes{0, 3, 1});
      bool all_match = true;
      for (size_t n = 0; n < 3; ++n)
        for (size_t c = 0; c < 3; ++c)
          for (size_t h = 0; h < 32; ++h)
            for (size_t w = 0; w < 32; ++w)
              all_match &= ds.images[((n * 3 + c) * 32 + h) * 32 + w] == svhn_pixel(h, w, c, n);
      CHECK(all_match);
      // Spot checks, spelled out: row 1 column 0 of image 0's red plane is MATLAB's X(2,1,1,1).
      CHECK(ds.images[1 * 32 + 0] == svhn_pixel(1, 0, 0, 0));
      CHECK(ds.images[0 * 32 + 1] == svhn_pixel(0, 1, 0, 0));
    }
  }
  SUBCASE("y as uint8 1xN") {
    const Bytes y = {5, 10, 9};
    write_mat(dir / "s.mat", {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 3}, x.data()},
                              {"y", MAT_C_UINT8, MAT_T_UINT8, {1, 3}, y.data()}});
    CHECK(cte::read_svhn_mat(dir / "s.mat").labels == Bytes{5, 0, 9});
  }
}

TEST_CASE("datasets: SVHN bad inputs name the file and the problem") {
  TempDir dir;
  const Bytes x = svhn_x(2);
  const std::array<double, 2> y = {1, 2};
  const std::string path = dir / "bad.mat";
  SUBCASE("missing file") {
    CHECK_ERROR(cte::read_svhn_mat(dir / "train_32x32.mat"), "train_32x32.mat", "missing file");
  }
  SUBCASE("not a mat file") {
    write_file(path, Bytes(300, 'z'));
    CHECK_ERROR(cte::read_svhn_mat(path), path, "cannot open as a MATLAB .mat file");
  }
  SUBCASE("missing X") {
    write_mat(path, {{"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "missing variable X");
  }
  SUBCASE("missing y") {
    write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 2}, x.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "missing variable y");
  }
  SUBCASE("wrong rank") {
    write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 192}, x.data()},
                     {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "X has rank 2");
  }
  SUBCASE("wrong shape") {
    write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {16, 32, 3, 4}, x.data()},
                     {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "X has shape 16x32x3x4, expected 32x32x3xN");
  }
  SUBCASE("wrong class") {
    std::vector<double> xd(32 * 32 * 3 * 2, 1.0);
    write_mat(path, {{"X", MAT_C_DOUBLE, MAT_T_DOUBLE, {32, 32, 3, 2}, xd.data()},
                     {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "X has class double, expected uint8");
  }
  SUBCASE("y not a vector") {
    const std::array<double, 4> y4 = {1, 2, 3, 4};
    write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 2}, x.data()},
                     {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 2}, y4.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "y has shape 2x2");
  }
  SUBCASE("counts differ") {
    const std::array<double, 3> y3 = {1, 2, 3};
    write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 2}, x.data()},
                     {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {3, 1}, y3.data()}});
    CHECK_ERROR(cte::read_svhn_mat(path), path, "X has 2 images but y has 3 labels");
  }
  SUBCASE("labels outside 1..10") {
    for (double bad : {0.0, 11.0, 2.5, -1.0}) {
      const std::array<double, 2> yb = {1, bad};
      write_mat(path, {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 2}, x.data()},
                       {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, yb.data()}});
      CHECK_ERROR(cte::read_svhn_mat(path), path, "label y(2) =");
      CHECK_ERROR(cte::read_svhn_mat(path), path, "outside 1..10");
    }
  }
  SUBCASE("truncated or corrupt file, plain or compressed") {
    for (bool compress : {false, true}) {
      CAPTURE(compress);
      write_mat(dir / "good.mat",
                {{"X", MAT_C_UINT8, MAT_T_UINT8, {32, 32, 3, 2}, x.data()},
                 {"y", MAT_C_DOUBLE, MAT_T_DOUBLE, {2, 1}, y.data()}},
                compress);
      const Bytes whole = read_file(dir / "good.mat");
      REQUIRE(cte::read_svhn_mat(dir / "good.mat").size() == 2);
      // Cut inside X, inside y, and inside the 128-byte header.
      for (size_t keep : {size_t(300), whole.size() - 3, size_t(100)}) {
        CAPTURE(keep);
        write_file(path, Bytes(whole.begin(), whole.begin() + long(keep)));
        CHECK_ERROR(cte::read_svhn_mat(path), path, "truncated");
      }
      if (compress) {
        Bytes corrupt = whole;
        for (size_t i = 200; i < 210; ++i) corrupt[i] ^= 0x55;
        write_file(path, corrupt);
        CHECK_ERROR(cte::read_svhn_mat(path), path, "does not decompress");
      }
    }
  }
}

// ---------------------------------------------------------------- CIFAR-10

namespace {

uint8_t cifar_pixel(size_t item, size_t c, size_t y, size_t x) {
  return uint8_t((item * 31 + c * 85 + y * 5 + x) % 256);
}

Bytes cifar_records(size_t first_item, size_t count, const Bytes& labels) {
  Bytes b;
  for (size_t i = 0; i < count; ++i) {
    b.push_back(labels[i]);
    for (size_t c = 0; c < 3; ++c)  // R plane, then G, then B, each row-major
      for (size_t y = 0; y < 32; ++y)
        for (size_t x = 0; x < 32; ++x) b.push_back(cifar_pixel(first_item + i, c, y, x));
  }
  return b;
}

}  // namespace

TEST_CASE("datasets: CIFAR-10 binary records keep the R,G,B plane order") {
  TempDir dir;
  write_file(dir / "a.bin", cifar_records(0, 2, {3, 9}));
  write_file(dir / "b.bin", cifar_records(2, 3, {0, 1, 2}));
  const cte::Dataset ds = cte::read_cifar10_bins({dir / "a.bin", dir / "b.bin"});
  CHECK(ds.name == "cifar10");
  REQUIRE(ds.size() == 5);
  CHECK(ds.channels == 3);
  CHECK(ds.height == 32);
  CHECK(ds.width == 32);
  CHECK(ds.labels == Bytes{3, 9, 0, 1, 2});
  bool all_match = true;
  for (size_t i = 0; i < 5; ++i)
    for (size_t c = 0; c < 3; ++c)
      for (size_t y = 0; y < 32; ++y)
        for (size_t x = 0; x < 32; ++x)
          all_match &= ds.images[i * 3072 + c * 1024 + y * 32 + x] == cifar_pixel(i, c, y, x);
  CHECK(all_match);
}

TEST_CASE("datasets: CIFAR-10 bad inputs name the file and the problem") {
  TempDir dir;
  write_file(dir / "good.bin", cifar_records(0, 2, {1, 2}));
  SUBCASE("missing file") {
    CHECK_ERROR(cte::read_cifar10_bins({dir / "good.bin", dir / "data_batch_2.bin"}), "data_batch_2.bin",
                "missing file");
  }
  SUBCASE("size not a multiple of 3073") {
    Bytes b = cifar_records(0, 2, {1, 2});
    b.pop_back();
    write_file(dir / "short.bin", b);
    CHECK_ERROR(cte::read_cifar10_bins({dir / "good.bin", dir / "short.bin"}),
                "[cifar10] " + (dir / "short.bin"),
                "size 6145 bytes is not a multiple of the 3073-byte record");
  }
  SUBCASE("empty file") {
    write_file(dir / "empty.bin", {});
    CHECK_ERROR(cte::read_cifar10_bins({dir / "empty.bin"}), "empty.bin", "empty file");
  }
  SUBCASE("label out of range") {
    write_file(dir / "lab.bin", cifar_records(0, 3, {1, 2, 10}));
    CHECK_ERROR(cte::read_cifar10_bins({dir / "lab.bin"}), "lab.bin", "label 10 of record 2 is out of range");
  }
}

// ---------------------------------------------------------------- image folders

namespace {

// Writes a w x h PNG whose interleaved pixel (y,x,k) is f(y,x,k).
void write_png(const std::string& path, int w, int h, int comp,
               const std::function<uint8_t(int, int, int)>& f) {
  fs::create_directories(fs::path(path).parent_path());
  Bytes px(size_t(w) * h * comp);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < comp; ++k) px[(size_t(y) * w + x) * comp + k] = f(y, x, k);
  REQUIRE(stbi_write_png(path.c_str(), w, h, comp, px.data(), w * comp) != 0);
}

uint8_t folder_pixel(int image, int y, int x, int k) {
  return uint8_t(image * 40 + y * 9 + x * 2 + k * 70);
}

}  // namespace

TEST_CASE("datasets: image folder reads classes and files in sorted order into C,H,W") {
  TempDir dir;
  const std::string root = dir / "train";
  // Written out of order: the reader must sort. Image ids follow sorted order.
  write_png(root + "/dog/b.png", 4, 3, 3, [](int y, int x, int k) { return folder_pixel(2, y, x, k); });
  write_png(root + "/cat/z.PNG", 4, 3, 3, [](int y, int x, int k) { return folder_pixel(1, y, x, k); });
  write_png(root + "/cat/a.png", 4, 3, 4, [](int y, int x, int k) {  // RGBA: alpha is dropped
    return k == 3 ? uint8_t(17) : folder_pixel(0, y, x, k);
  });
  write_file(root + "/cat/notes.txt", {'h', 'i'});  // ignored: not an image extension
  write_file(root + "/cat/.hidden.png", {'x'});     // ignored: hidden
  fs::create_directories(root + "/.cache");         // ignored: hidden class folder

  const cte::Dataset ds = cte::read_image_folder(root);
  CHECK(ds.name == "folder");
  CHECK(ds.class_names == std::vector<std::string>{"cat", "dog"});
  CHECK(ds.num_classes == 2);
  REQUIRE(ds.size() == 3);
  CHECK(ds.labels == Bytes{0, 0, 1});
  CHECK(ds.channels == 3);
  CHECK(ds.height == 3);
  CHECK(ds.width == 4);
  bool all_match = true;
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 4; ++x)
          all_match &= ds.images[((i * 3 + c) * 3 + y) * 4 + x] == folder_pixel(i, y, x, c);
  CHECK(all_match);
}

TEST_CASE("datasets: image folder keeps grayscale as one channel and reads JPEG") {
  TempDir dir;
  write_png(dir / "g/zero/a.png", 5, 2, 1, [](int y, int x, int) { return uint8_t(y * 5 + x); });
  write_png(dir / "g/one/a.png", 5, 2, 2,
            [](int y, int x, int k) { return k ? uint8_t(0) : uint8_t(200 + y * 5 + x); });
  const cte::Dataset gray = cte::read_image_folder(dir / "g");
  CHECK(gray.channels == 1);
  CHECK(gray.class_names == std::vector<std::string>{"one", "zero"});
  REQUIRE(gray.images.size() == 20);
  CHECK(gray.images[7] == 207);     // "one": gray+alpha, alpha dropped
  CHECK(gray.images[10 + 7] == 7);  // "zero": plain gray, row 1 col 2

  // A flat-colour JPEG decodes to (nearly) that colour in every plane.
  fs::create_directories(dir / "j/c");
  Bytes flat(8 * 8 * 3);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = std::array<uint8_t, 3>{200, 40, 90}[i % 3];
  REQUIRE(stbi_write_jpg((dir / "j/c/p.jpg").c_str(), 8, 8, 3, flat.data(), 95) != 0);
  const cte::Dataset jpg = cte::read_image_folder(dir / "j");
  REQUIRE(jpg.images.size() == 3 * 64);
  CHECK(std::abs(int(jpg.images[0]) - 200) <= 6);
  CHECK(std::abs(int(jpg.images[64]) - 40) <= 6);
  CHECK(std::abs(int(jpg.images[128]) - 90) <= 6);
}

TEST_CASE("datasets: image folder bad inputs name the file and the problem") {
  TempDir dir;
  auto gray = [](int, int, int) { return uint8_t(50); };
  SUBCASE("missing root") {
    CHECK_ERROR(cte::read_image_folder(dir / "absent"), "absent", "missing directory");
  }
  SUBCASE("no classes") {
    fs::create_directories(dir / "empty");
    write_file(dir / "empty/readme.txt", {'x'});
    CHECK_ERROR(cte::read_image_folder(dir / "empty"), "[folder] " + (dir / "empty"), "no class folders");
  }
  SUBCASE("class without images") {
    write_png(dir / "r/a/1.png", 2, 2, 1, gray);
    write_file(dir / "r/b/readme.txt", {'x'});
    CHECK_ERROR(cte::read_image_folder(dir / "r"), dir / "r/b",
                "class folder has no .png, .jpg or .jpeg images");
  }
  SUBCASE("undecodable image, first or later") {
    write_png(dir / "r/a/1.png", 2, 2, 1, gray);
    write_file(dir / "r/a/2.png", Bytes(64, 'q'));
    CHECK_ERROR(cte::read_image_folder(dir / "r"), dir / "r/a/2.png", "cannot decode image: ");
    write_file(dir / "s/a/0.jpg", Bytes(64, 'q'));
    const std::string msg = error_of([&] { cte::read_image_folder(dir / "s"); });
    INFO(msg);
    CHECK(contains(msg, dir / "s/a/0.jpg"));
    // stb's own reason follows the phrase.
    CHECK(msg.size() > msg.find("cannot decode image: ") + std::string("cannot decode image: ").size());
  }
  SUBCASE("PNG chunk longer than the file") {
    // stb would grow its buffer to the claimed length first (fuzz_image_folder: 2 GB for 121 bytes).
    write_png(dir / "r/a/1.png", 2, 2, 1, gray);
    Bytes png = read_file(dir / "r/a/1.png");
    REQUIRE(png.size() > 16);
    png[8] = 0x0A;  // the IHDR length (13) becomes 0x0A00000D bytes
    write_file(dir / "r/a/1.png", png);
    CHECK_ERROR(cte::read_image_folder(dir / "r"), dir / "r/a/1.png",
                "corrupt PNG: the chunk at byte 8 claims 167772173 bytes, the file has " +
                    std::to_string(png.size() - 20) + " left");
  }
  SUBCASE("size differs from the first image") {
    write_png(dir / "r/a/1.png", 2, 2, 1, gray);
    write_png(dir / "r/b/1.png", 3, 2, 1, gray);
    const std::string msg = error_of([&] { cte::read_image_folder(dir / "r"); });
    INFO(msg);
    CHECK(contains(msg, dir / "r/b/1.png"));
    CHECK(contains(msg, dir / "r/a/1.png"));
    CHECK(contains(msg, "image is 3x2 with 1 channel but the first image"));
  }
  SUBCASE("channel count differs from the first image") {
    write_png(dir / "r/a/1.png", 2, 2, 1, gray);
    write_png(dir / "r/a/2.png", 2, 2, 3, gray);
    const std::string msg = error_of([&] { cte::read_image_folder(dir / "r"); });
    INFO(msg);
    CHECK(contains(msg, dir / "r/a/2.png"));
    CHECK(contains(msg, dir / "r/a/1.png"));
    CHECK(contains(msg, "3 channels"));
  }
  SUBCASE("train and test classes differ") {
    write_png(dir / "r/train/a/1.png", 2, 2, 1, gray);
    write_png(dir / "r/train/b/1.png", 2, 2, 1, gray);
    write_png(dir / "r/test/a/1.png", 2, 2, 1, gray);
    write_png(dir / "r/test/c/1.png", 2, 2, 1, gray);
    CHECK_ERROR(cte::load_dataset("folder", dir / "r"), dir / "r/test", "classes {a, c} differ");
  }
}

TEST_CASE("datasets: a JPEG whose Huffman table lists over 256 codes is refused (fuzz regression)") {
  // stb_image 2.27 wrote past its code-length array on this file (found by
  // tests/fuzz/fuzz_image_folder; the first byte is the harness's own).
  // The second starts FF FF D8: stb takes any run of FF before the D8.
  for (const char* name : {"jpeg_dht_over_256_codes", "jpeg_dht_over_256_codes_2"}) {
    CAPTURE(name);
    TempDir dir;
    std::ifstream in(std::string("tests/fuzz/regressions/image_folder/") + name, std::ios::binary);
    REQUIRE(in);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    write_file(dir / "r/a/0.jpg", Bytes(bytes.begin() + 1, bytes.end()));
    CHECK_ERROR(cte::read_image_folder(dir / "r"), dir / "r/a/0.jpg", "corrupt JPEG: a Huffman table lists");
  }
}

TEST_CASE("datasets: a PNG with an empty first IDAT chunk decodes without undefined behaviour (fuzz regression)") {
  // stb_image 2.27 memcpy'd into a null buffer here (UBSan stops the test
  // without the fix); a decoded image or a clean error are both fine.
  TempDir dir;
  std::ifstream in("tests/fuzz/regressions/image_folder/png_empty_idat", std::ios::binary);
  REQUIRE(in);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(dir / "r/a/0.png", Bytes(bytes.begin() + 1, bytes.end()));
  const std::string msg = error_of([&] { cte::read_image_folder(dir / "r"); });
  INFO(msg);
  CHECK((msg == "<no exception thrown>" || contains(msg, "cannot decode image: ")));
}

TEST_CASE("datasets: a JPEG breaking stb_image's Huffman assertion is an error, not an abort (fuzz regression)") {
  TempDir dir;
  std::ifstream in("tests/fuzz/regressions/image_folder/jpeg_huffman_assert", std::ios::binary);
  REQUIRE(in);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(dir / "r/a/0.jpg", Bytes(bytes.begin() + 1, bytes.end()));
  // Whether the assertion breaks depends on the compiler (it reads bits a
  // 32-bit shift left undefined): a decoded image or a clean error are both fine.
  const std::string msg = error_of([&] { cte::read_image_folder(dir / "r"); });
  INFO(msg);
  CHECK((msg == "<no exception thrown>" || contains(msg, "cannot decode image: ")));
}

TEST_CASE("datasets: a TGA named .png is refused at once, not decoded for minutes (fuzz regression)") {
  // stb decoded any format by content; this 33-byte TGA header claims an
  // image large enough to keep it busy for minutes.
  TempDir dir;
  std::ifstream in("tests/fuzz/regressions/image_folder/tga_slow_decode", std::ios::binary);
  REQUIRE(in);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_file(dir / "r/a/0.png", Bytes(bytes.begin() + 1, bytes.end()));
  CHECK_ERROR(cte::read_image_folder(dir / "r"), dir / "r/a/0.png", "cannot decode image: ");
}

TEST_CASE("datasets: an SVHN .mat whose header claims terabytes is refused before reading (fuzz regression)") {
  const std::string path = "tests/fuzz/regressions/svhn/huge_claimed_dims";
  REQUIRE(fs::exists(path));
  CHECK_ERROR(cte::read_svhn_mat(path), path, "more than a file of 520 bytes can hold");
}

// ---------------------------------------------------------------- finding and loading

TEST_CASE("datasets: find_data_dir and load_dataset") {
  TempDir dir;
  SUBCASE("flag dir is used, and only it") {
    write_file(dir / "m/train-images-idx3-ubyte", idx_images(3, 2, 3, small_pixels()));
    write_file(dir / "m/train-labels-idx1-ubyte", idx_labels(kSmallLabels));
    write_gz(dir / "m/t10k-images-idx3-ubyte.gz", idx_images(3, 2, 3, small_pixels()));
    write_gz(dir / "m/t10k-labels-idx1-ubyte.gz", idx_labels(kSmallLabels));
    CHECK(cte::find_data_dir("mnist", dir / "m") == dir / "m");
    const cte::DatasetSplits s = cte::load_dataset("mnist", dir / "m");
    CHECK(s.dir == dir / "m");
    check_small_idx(s.train);
    check_small_idx(s.test);
    const std::string msg = error_of([&] { cte::find_data_dir("mnist", dir / "missing"); });
    INFO(msg);
    CHECK(contains(msg, dir / "missing"));
    CHECK(contains(msg, "no such directory"));
    CHECK(!contains(msg, "CTE_DATA_DIR"));  // the flag is not second-guessed
  }
  SUBCASE("CTE_DATA_DIR/<name>, including a cifar-10-batches-bin sub-folder") {
    for (int b = 1; b <= 5; ++b)
      write_file(dir / ("cifar10/cifar-10-batches-bin/data_batch_" + std::to_string(b) + ".bin"),
                 cifar_records(size_t(b), 1, {uint8_t(b)}));
    write_file(dir / "cifar10/cifar-10-batches-bin/test_batch.bin", cifar_records(0, 2, {0, 9}));
    ScopedEnv env("CTE_DATA_DIR", dir.str());
    const cte::DatasetSplits s = cte::load_dataset("cifar10", "");
    CHECK(s.dir == dir / "cifar10/cifar-10-batches-bin");
    CHECK(s.train.labels == Bytes{1, 2, 3, 4, 5});
    CHECK(s.test.labels == Bytes{0, 9});
    // A missing batch is an error, not a shorter training set.
    fs::remove(dir / "cifar10/cifar-10-batches-bin/data_batch_4.bin");
    CHECK_ERROR(cte::load_dataset("cifar10", ""), "data_batch_4.bin", "missing file");
  }
  SUBCASE("nothing found lists every place") {
    ScopedEnv env("CTE_DATA_DIR", std::nullopt);
    const std::string msg = error_of([&] { cte::find_data_dir("svhn", ""); });
    INFO(msg);
    CHECK(contains(msg, "$CTE_DATA_DIR: not set"));
    CHECK(contains(msg, "data/svhn"));
    CHECK(contains(msg, "not found"));
  }
  SUBCASE("a set CTE_DATA_DIR that does not hold the data set is an error, not a fallback") {
    ScopedEnv env("CTE_DATA_DIR", dir / "nowhere");
    const std::string msg = error_of([&] { cte::find_data_dir("fashion-mnist", ""); });
    INFO(msg);
    CHECK(contains(msg, "$CTE_DATA_DIR=" + dir / "nowhere"));
    CHECK(contains(msg, dir / "nowhere/fashion-mnist"));
    CHECK(contains(msg, "no such directory"));
    CHECK(!contains(msg, "/usr/share/datasets"));
  }
  SUBCASE("an empty CTE_DATA_DIR is an error naming the variable") {
    ScopedEnv env("CTE_DATA_DIR", std::string());
    const std::string msg = error_of([&] { cte::find_data_dir("fashion-mnist", ""); });
    INFO(msg);
    CHECK(contains(msg, "$CTE_DATA_DIR is set but empty"));
  }
  SUBCASE("test images shaped differently from the training images: an error at load naming both files") {
    write_file(dir / "m/train-images-idx3-ubyte", idx_images(3, 2, 3, small_pixels()));
    write_file(dir / "m/train-labels-idx1-ubyte", idx_labels(kSmallLabels));
    write_file(dir / "m/t10k-images-idx3-ubyte", idx_images(3, 3, 2, small_pixels()));
    write_file(dir / "m/t10k-labels-idx1-ubyte", idx_labels(kSmallLabels));
    const std::string msg = error_of([&] { cte::load_dataset("mnist", dir / "m"); });
    INFO(msg);
    CHECK(contains(msg, dir / "m/t10k-images-idx3-ubyte: test images are 2x3x1"));
    CHECK(contains(msg, "training images of " + dir / "m/train-images-idx3-ubyte are 3x2x1"));
  }
  SUBCASE("fashion-mnist falls back to Debian's package") {
    ScopedEnv env("CTE_DATA_DIR", std::nullopt);
    const bool have_local = fs::exists("data/fashion-mnist/train-images-idx3-ubyte.gz") ||
                            fs::exists("data/fashion-mnist/train-images-idx3-ubyte");
    if (fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") && !have_local)
      CHECK(cte::find_data_dir("fashion-mnist", "") == "/usr/share/datasets/fashion-mnist");
    else if (!have_local)
      CHECK_ERROR(cte::find_data_dir("fashion-mnist", ""), "/usr/share/datasets/fashion-mnist",
                  "no such directory");
  }
  SUBCASE("an image folder with train/ and test/") {
    auto shade = [](uint8_t v) { return [v](int, int, int) { return v; }; };
    write_png(dir / "f/train/ant/1.png", 3, 2, 3, shade(10));
    write_png(dir / "f/train/bee/1.png", 3, 2, 3, shade(20));
    write_png(dir / "f/train/bee/2.png", 3, 2, 3, shade(30));
    write_png(dir / "f/test/ant/1.png", 3, 2, 3, shade(40));
    write_png(dir / "f/test/bee/1.png", 3, 2, 3, shade(50));
    const cte::DatasetSplits s = cte::load_dataset("folder", dir / "f");
    CHECK(s.dir == dir / "f");
    CHECK(s.train.labels == Bytes{0, 1, 1});
    CHECK(s.test.labels == Bytes{0, 1});
    CHECK(s.test.class_names == std::vector<std::string>{"ant", "bee"});
    CHECK(s.train.images[2 * 18] == 30);
    CHECK(s.test.images[18 + 17] == 50);
  }
  SUBCASE("unknown name and folder without a directory") {
    CHECK_ERROR(cte::find_data_dir("imagenet", ""), "[imagenet]", "unknown data set");
    CHECK_ERROR(cte::find_data_dir("folder", ""), "[folder]", "needs its directory");
  }
  SUBCASE("default augmentation") {
    CHECK(cte::default_augment("cifar10").crop_padding == 4);
    CHECK(cte::default_augment("cifar10").horizontal_flip);
    CHECK(cte::default_augment("svhn").crop_padding == 2);
    CHECK(!cte::default_augment("svhn").horizontal_flip);
    for (const char* n : {"mnist", "fashion-mnist", "folder"}) {
      CHECK(cte::default_augment(n).crop_padding == 0);
      CHECK(!cte::default_augment(n).horizontal_flip);
    }
  }
}

TEST_CASE("datasets: real FashionMNIST from Debian's dataset-fashion-mnist") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: " << dir << " is not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  const cte::DatasetSplits s = cte::load_dataset("fashion-mnist", dir);
  CHECK(s.train.size() == 60000);
  CHECK(s.test.size() == 10000);
  for (const cte::Dataset* d : {&s.train, &s.test}) {
    CHECK(d->name == "fashion-mnist");
    CHECK(d->channels == 1);
    CHECK(d->height == 28);
    CHECK(d->width == 28);
    CHECK(d->images.size() == d->size() * 784);
  }
  REQUIRE(s.test.size() >= 5);
  CHECK(std::vector<int>(s.test.labels.begin(), s.test.labels.begin() + 5) ==
        std::vector<int>{9, 2, 1, 1, 6});
  std::array<int, 10> per_class{};
  for (uint8_t l : s.test.labels) per_class[l]++;
  for (int c = 0; c < 10; ++c) CHECK(per_class[c] == 1000);
}

// ---------------------------------------------------------------- BatchLoader

namespace {

// n images of c x h x w whose pixel (i,ch,y,x) = 1 + (ch*h*w + y*w + x) % 250, label i % 10.
cte::Dataset synthetic(size_t n, int c, int h, int w, bool distinct_per_image = false) {
  cte::Dataset d;
  d.name = "synthetic";
  d.channels = c;
  d.height = h;
  d.width = w;
  d.num_classes = 10;
  d.images.resize(n * d.image_numel());
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < d.image_numel(); ++k)
      d.images[i * d.image_numel() + k] = uint8_t(1 + (k + (distinct_per_image ? i * 7 : 0)) % 250);
  for (size_t i = 0; i < n; ++i) d.labels.push_back(uint8_t(i % 10));
  return d;
}

struct Epoch {
  std::vector<float> images;
  std::vector<int> labels;
  size_t batches = 0;
};

Epoch run_epoch(cte::BatchLoader& loader, int epoch) {
  loader.start_epoch(epoch);
  Epoch e;
  std::vector<float> im;
  std::vector<int> lb;
  while (loader.next(im, lb)) {
    e.images.insert(e.images.end(), im.begin(), im.end());
    e.labels.insert(e.labels.end(), lb.begin(), lb.end());
    ++e.batches;
  }
  return e;
}

// Finds the (shift_y, shift_x, flip) for which out(y,x) = in(y+sy, x'+sx) or 0
// in the padding (x' = W-1-x when flipped); returns false if none fits.
bool explain_crop(const float* out, const uint8_t* in, int h, int w, int pad,
                  std::tuple<int, int, bool>& found) {
  for (int flip = 0; flip < 2; ++flip)
    for (int sy = -pad; sy <= pad; ++sy)
      for (int sx = -pad; sx <= pad; ++sx) {
        bool ok = true;
        for (int y = 0; y < h && ok; ++y)
          for (int x = 0; x < w && ok; ++x) {
            const int xs = (flip ? w - 1 - x : x) + sx, ys = y + sy;
            const float want =
                (ys < 0 || ys >= h || xs < 0 || xs >= w) ? 0.0f : float(in[ys * w + xs]) / 255.0f;
            ok = out[y * w + x] == want;
          }
        if (ok) {
          found = {sy, sx, flip != 0};
          return true;
        }
      }
  return false;
}

}  // namespace

TEST_CASE("datasets: BatchLoader covers every sample once with exact byte/255 values") {
  const cte::Dataset d = synthetic(23, 1, 2, 2, true);
  cte::BatchLoader loader(d, 5, 42, true, cte::Augment{});
  CHECK(loader.batches_per_epoch() == 5);
  const Epoch e = run_epoch(loader, 0);
  CHECK(e.batches == 5);
  CHECK(loader.batch_index() == 5);
  REQUIRE(e.labels.size() == 23);
  std::vector<uint32_t> sorted = loader.order();
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 23; ++i) CHECK(sorted[i] == i);
  for (size_t k = 0; k < 23; ++k) {
    const size_t idx = loader.order()[k];
    CHECK(e.labels[k] == d.labels[idx]);
    for (size_t p = 0; p < 4; ++p) CHECK(e.images[k * 4 + p] == float(d.images[idx * 4 + p]) / 255.0f);
  }
  // Last batch is short without drop_last and dropped with it.
  std::vector<float> im;
  std::vector<int> lb;
  cte::BatchLoader dropping(d, 5, 42, true, cte::Augment{}, true);
  CHECK(dropping.batches_per_epoch() == 4);
  CHECK(run_epoch(dropping, 0).labels.size() == 20);
  CHECK(!dropping.next(im, lb));
  // Without shuffling the order is the identity.
  cte::BatchLoader plain(d, 100, 42, false, cte::Augment{});
  const Epoch p = run_epoch(plain, 3);
  CHECK(p.batches == 1);
  for (size_t k = 0; k < 23; ++k) CHECK(p.labels[k] == int(k % 10));
  CHECK_THROWS_AS(cte::BatchLoader(d, 0, 1, true, cte::Augment{}), std::invalid_argument);
}

TEST_CASE("datasets: BatchLoader shuffling is reproducible per (seed, epoch)") {
  const cte::Dataset d = synthetic(200, 1, 1, 1);
  cte::BatchLoader a(d, 32, 7, true, cte::Augment{}), b(d, 32, 7, true, cte::Augment{}),
      c(d, 32, 8, true, cte::Augment{});
  a.start_epoch(3);
  const std::vector<uint32_t> a3 = a.order();
  b.start_epoch(1);
  b.start_epoch(3);  // history does not matter
  CHECK(b.order() == a3);
  c.start_epoch(3);
  CHECK(c.order() != a3);
  a.start_epoch(4);
  CHECK(a.order() != a3);
  // Pinned values: same order with any standard library (our own PRNG).
  const cte::Dataset ten = synthetic(10, 1, 1, 1);
  cte::BatchLoader pinned(ten, 10, 1234, true, cte::Augment{});
  const std::vector<uint32_t> first = pinned.order();
  pinned.start_epoch(0);
  CHECK(pinned.order() == first);
  CHECK(first == std::vector<uint32_t>{4, 1, 6, 8, 7, 5, 3, 0, 2, 9});
}

TEST_CASE("datasets: BatchLoader resumes mid-epoch") {
  const cte::Dataset d = synthetic(50, 3, 8, 8, true);
  cte::BatchLoader full(d, 8, 99, true, cte::Augment{2, true});
  const Epoch all = run_epoch(full, 2);
  cte::BatchLoader resumed(d, 8, 99, true, cte::Augment{2, true});
  resumed.start_epoch(2);
  resumed.seek_batch(3);
  CHECK(resumed.batch_index() == 3);
  std::vector<float> im;
  std::vector<int> lb;
  REQUIRE(resumed.next(im, lb));
  const size_t numel = d.image_numel();
  CHECK(std::equal(im.begin(), im.end(), all.images.begin() + 3 * 8 * numel));
  CHECK(resumed.batch_index() == 4);
  CHECK_THROWS_AS(resumed.seek_batch(8), std::out_of_range);
}

TEST_CASE("datasets: crop stays inside the zero-padded image and flip mirrors") {
  const int h = 8, w = 8, pad = 4;
  SUBCASE("all-255 image: ones form the shifted rectangle, zeros the padding") {
    cte::Dataset d = synthetic(1000, 1, h, w);
    std::fill(d.images.begin(), d.images.end(), uint8_t(255));
    cte::BatchLoader loader(d, 64, 5, true, cte::Augment{pad, true});
    const Epoch e = run_epoch(loader, 0);
    std::set<size_t> counts;
    bool all_binary = true, all_rectangles = true;
    for (size_t i = 0; i < 1000; ++i) {
      const float* img = e.images.data() + i * h * w;
      int ones = 0, row_lo = h, row_hi = -1, col_lo = w, col_hi = -1;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const float v = img[y * w + x];
          all_binary &= v == 0.0f || v == 1.0f;
          if (v == 1.0f) {
            ++ones;
            row_lo = std::min(row_lo, y), row_hi = std::max(row_hi, y);
            col_lo = std::min(col_lo, x), col_hi = std::max(col_hi, x);
          }
        }
      const int rows = row_hi - row_lo + 1, cols = col_hi - col_lo + 1;
      // A shift by (dy,dx) leaves a (h-|dy|) x (w-|dx|) block of ones touching the border.
      all_rectangles &= ones == rows * cols && rows >= h - pad && cols >= w - pad &&
                        (row_lo == 0 || row_hi == h - 1) && (col_lo == 0 || col_hi == w - 1);
      counts.insert(size_t(ones));
    }
    CHECK(all_binary);
    CHECK(all_rectangles);
    CHECK(counts.count(64) == 1);  // some samples are not shifted
    CHECK(counts.size() > 5);      // and many are
  }
  SUBCASE("distinct pixels: every output is some shift and flip of its input") {
    const cte::Dataset d = synthetic(400, 1, h, w, true);
    cte::BatchLoader loader(d, 64, 11, true, cte::Augment{pad, true});
    const Epoch e = run_epoch(loader, 0);
    std::set<std::tuple<int, int, bool>> seen;
    bool all_explained = true;
    int flips = 0;
    for (size_t k = 0; k < 400; ++k) {
      std::tuple<int, int, bool> t;
      const size_t idx = loader.order()[k];
      const bool ok = explain_crop(e.images.data() + k * h * w, d.images.data() + idx * h * w, h, w, pad, t);
      all_explained &= ok;
      if (ok) seen.insert(t), flips += std::get<2>(t);
    }
    CHECK(all_explained);
    CHECK(seen.size() > 100);  // most of the 81*2 combinations occur
    CHECK(flips > 120);
    CHECK(flips < 280);
  }
  SUBCASE("flip only mirrors each row") {
    const cte::Dataset d = synthetic(64, 2, 3, 5, true);
    cte::BatchLoader loader(d, 64, 3, false, cte::Augment{0, true});
    std::vector<float> im;
    std::vector<int> lb;
    REQUIRE(loader.next(im, lb));
    int flipped = 0;
    bool each_is_identity_or_mirror = true;
    for (size_t i = 0; i < 64; ++i) {
      bool same = true, mirror = true;
      for (int c = 0; c < 2; ++c)
        for (int y = 0; y < 3; ++y)
          for (int x = 0; x < 5; ++x) {
            const float out = im[i * 30 + c * 15 + y * 5 + x];
            same &= out == d.images[i * 30 + c * 15 + y * 5 + x] / 255.0f;
            mirror &= out == d.images[i * 30 + c * 15 + y * 5 + (4 - x)] / 255.0f;
          }
      each_is_identity_or_mirror &= same || mirror;
      flipped += mirror && !same;
    }
    CHECK(each_is_identity_or_mirror);
    CHECK(flipped > 10);
    CHECK(flipped < 54);
  }
}

TEST_CASE("datasets: augmentation is reproducible and independent of threads and batch size") {
  const cte::Dataset d = synthetic(400, 3, 32, 32, true);
  const cte::Augment aug{4, true};
  cte::BatchLoader a(d, 64, 21, true, aug);
  const Epoch ea = run_epoch(a, 1);
  cte::BatchLoader b(d, 64, 21, true, aug);
  CHECK(run_epoch(b, 1).images == ea.images);
  cte::BatchLoader other_seed(d, 64, 22, true, aug);
  CHECK(run_epoch(other_seed, 1).images != ea.images);
  CHECK(run_epoch(a, 2).images != ea.images);

#ifdef _OPENMP
  // One thread vs several: identical. Batches of 400 images of 3x32x32 are
  // large enough for the loader to use its thread team.
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  cte::BatchLoader single(d, 400, 21, true, aug);
  const Epoch es = run_epoch(single, 1);
  omp_set_num_threads(std::max(threads, 3));
  cte::BatchLoader multi(d, 400, 21, true, aug);
  const Epoch em = run_epoch(multi, 1);
  omp_set_num_threads(threads);
  CHECK(es.images == ea.images);
  CHECK(em.images == ea.images);
#endif

  // Per-sample augmentation does not depend on the batch size (unshuffled, so positions align).
  cte::BatchLoader small(d, 7, 21, false, aug), large(d, 400, 21, false, aug);
  CHECK(run_epoch(small, 5).images == run_epoch(large, 5).images);
}
