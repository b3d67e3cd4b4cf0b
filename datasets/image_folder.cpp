// Reader for a folder-per-class image data set (root/<class>/*.png|*.jpg|*.jpeg)
// decoded with stb_image; this is the one translation unit that compiles the
// stb_image implementation. Classes are the sub-folders in sorted order, files
// are read in sorted order, and every image must match the first one in size
// and channel count. Alpha is dropped (gray+alpha -> 1 channel, RGBA -> 3)
// because the networks we certify take gray or RGB input, and exported PNGs
// often carry an opaque alpha channel. Decoding runs in parallel with OpenMP,
// but errors are reported for the first bad file in sorted order so messages
// do not depend on thread timing.
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
// Only the formats we document: stb otherwise decodes TGA, BMP, PSD, ... by
// content whatever the file's name, and a fuzzed TGA header made it spend
// minutes on one file (tests/fuzz/fuzz_image_folder). Data-set images are
// small, so a side over 8192 pixels is refused before anything is allocated.
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_MAX_DIMENSIONS 8192
// stb asserts its own invariants with assert(), and a corrupt JPEG can break
// one (its Huffman decoder's, found by the fuzzer): that aborted the whole
// trainer. Here a broken invariant throws instead, caught in Decoded::load
// and reported as that file's decoding error (stb's buffers for that one
// image leak; nothing else is touched).
#include <stdexcept>
#define STBI_ASSERT(x) \
  ((x) ? (void)0 : throw std::runtime_error("corrupt image (stb_image's check " #x " failed)"))
#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <limits>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/file_io.h"

#include "datasets/dataset.h"

namespace cte {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxClasses = 256;  // labels are uint8

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("[folder] " + path + ": " + what);
}

bool is_hidden(const fs::path& p) {
  std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// Non-hidden entries of `dir` accepted by `keep`, sorted by name. Entries whose
// type cannot be read (a dangling link, say) are simply not accepted.
template <typename Keep>
std::vector<fs::path> sorted_entries(const fs::path& dir, Keep keep) {
  std::vector<fs::path> out;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (!is_hidden(it->path()) && keep(*it, type_ec)) out.push_back(it->path());
  }
  if (ec) fail(dir.string(), "cannot list directory: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

int kept_channels(int channels_in_file) {
  return channels_in_file >= 3 ? 3 : 1;
}

std::string describe_shape(int w, int h, int channels_in_file) {
  std::string s = std::to_string(w) + "x" + std::to_string(h) + " with " +
                  std::to_string(kept_channels(channels_in_file)) + " channel" +
                  (kept_channels(channels_in_file) > 1 ? "s" : "");
  if (channels_in_file == 2 || channels_in_file == 4) s += " (alpha dropped)";
  return s;
}

// stb_image 2.27 (Debian 12's libstb) writes past the 257-entry code-length
// array of a Huffman table when a JPEG DHT segment lists more than 256 codes
// (found by tests/fuzz/fuzz_image_folder; stb checks this from 2.28 on). Such
// a file is corrupt, so it is refused before stb reads it. Every FF C4 pair
// in the file is read as a DHT segment the way stb reads one (its tables
// while its length lasts, bytes past the end as 0): a walk of the segments
// that tried to follow stb's own missed one of stb's paths, and the scan of
// every position is a superset of them (a false alarm needs FF C4 inside
// some other segment followed by counts over 256).
std::string jpeg_huffman_problem(const std::string& bytes) {
  auto at = [&](size_t i) -> size_t { return i < bytes.size() ? uint8_t(bytes[i]) : 0; };
  // stb takes any run of FF bytes before the D8 of the start-of-image marker.
  size_t start = 0;
  while (start < bytes.size() && at(start) == 0xFF) ++start;
  if (start == 0 || at(start) != 0xD8) return "";  // not a JPEG (PNG starts with 89)
  for (size_t i = start + 1; i + 1 < bytes.size(); ++i) {
    if (at(i) != 0xFF || at(i + 1) != 0xC4) continue;
    long left = long((at(i + 2) << 8) | at(i + 3)) - 2;
    size_t table = i + 4;
    while (left > 0) {
      size_t codes = 0;
      for (size_t k = 1; k <= 16; ++k) codes += at(table + k);
      if (codes > 256) return "corrupt JPEG: a Huffman table lists " + std::to_string(codes) + " codes (at most 256)";
      table += 17 + codes;
      left -= long(17 + codes);
    }
  }
  return "";
}

// stb_image 2.27 also memcpy's into a null buffer when a PNG's first IDAT
// chunk is empty (undefined behaviour, found by the same fuzzer). An empty
// IDAT carries no data, so such chunks are dropped before decoding. (stb
// does not check chunk CRCs, so the rest needs no change.) And stb grows its
// IDAT buffer to whatever length a chunk header claims before reading it
// (2 GB for a 121-byte file, found by fuzz_image_folder), so a chunk that
// claims more bytes than the file has left is refused here: `problem` says so.
std::string without_empty_png_idat(const std::string& bytes, std::string& problem) {
  static const char kSignature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  if (bytes.size() < 8 || bytes.compare(0, 8, kSignature, 8) != 0) return bytes;
  std::string out = bytes.substr(0, 8);
  size_t i = 8;
  while (i + 12 <= bytes.size()) {
    const uint32_t length = (uint32_t(uint8_t(bytes[i])) << 24) | (uint32_t(uint8_t(bytes[i + 1])) << 16) |
                            (uint32_t(uint8_t(bytes[i + 2])) << 8) | uint32_t(uint8_t(bytes[i + 3]));
    if (length > bytes.size() - i - 12) {
      problem = "corrupt PNG: the chunk at byte " + std::to_string(i) + " claims " + std::to_string(length) +
                " bytes, the file has " + std::to_string(bytes.size() - i - 12) + " left";
      return bytes;
    }
    if (!(length == 0 && bytes.compare(i + 4, 4, "IDAT") == 0)) out.append(bytes, i, 12 + length);
    i += 12 + length;
  }
  out.append(bytes, i, std::string::npos);
  return out;
}

// Owns one stb_image result.
struct Decoded {
  stbi_uc* pixels = nullptr;
  int width = 0, height = 0, channels_in_file = 0;
  Decoded() = default;
  Decoded(const Decoded&) = delete;
  Decoded& operator=(const Decoded&) = delete;
  ~Decoded() { stbi_image_free(pixels); }
  // Returns an empty string on success, else stb's reason.
  std::string load(const std::string& path) {
    std::string bytes;
    try {
      bytes = read_whole_file(path, "folder");
    } catch (const std::exception& e) {
      return e.what();
    }
    if (std::string problem = jpeg_huffman_problem(bytes); !problem.empty()) return problem;
    std::string png_problem;
    bytes = without_empty_png_idat(bytes, png_problem);
    if (!png_problem.empty()) return png_problem;
    if (bytes.size() > size_t(std::numeric_limits<int>::max())) return "file too large";
    try {
      pixels = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), int(bytes.size()), &width,
                                     &height, &channels_in_file, 0);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    if (pixels) return "";
    const char* reason = stbi_failure_reason();
    return reason ? reason : "unknown reason";
  }
};

// Interleaved HWC (with channels_in_file components) -> planar CHW with the kept channels.
void to_chw(const Decoded& img, uint8_t* out) {
  const int kept = kept_channels(img.channels_in_file);
  const size_t plane = size_t(img.width) * img.height;
  for (int c = 0; c < kept; ++c)
    for (size_t i = 0; i < plane; ++i) out[c * plane + i] = img.pixels[i * img.channels_in_file + c];
}

}  // namespace

Dataset read_image_folder(const std::string& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) fail(root, "missing directory");
  if (!fs::is_directory(root, ec)) fail(root, "not a directory");

  std::vector<std::string> classes;
  for (const fs::path& p : sorted_entries(root, [](const fs::directory_entry&e, std::error_code&type_ec) {
         return e.is_directory(type_ec);
       }))
    classes.push_back(p.filename().string());
  if (classes.empty()) fail(root, "no class folders (expected " + root + "/<class>/*.png|*.jpg|*.jpeg)");
  if (classes.size() > kMaxClasses)
    fail(root, std::to_string(classes.size()) + " class folders, at most " + std::to_string(kMaxClasses) +
                   " are supported");

  std::vector<std::string> files;
  std::vector<uint8_t> file_labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path dir = fs::path(root) / classes[c];
    std::vector<fs::path> in_class =
        sorted_entries(dir, [](const fs::directory_entry& e, std::error_code& type_ec) {
          return has_image_extension(e.path()) && e.is_regular_file(type_ec);
        });
    if (in_class.empty()) fail(dir.string(), "class folder has no .png, .jpg or .jpeg images");
    for (const fs::path& p : in_class) files.push_back(p.string());
    file_labels.insert(file_labels.end(), in_class.size(), uint8_t(c));
  }

  // The first image fixes the shape for all others.
  Decoded first;
  if (std::string why = first.load(files[0]); !why.empty()) fail(files[0], "cannot decode image: " + why);

  Dataset ds;
  ds.name = "folder";
  ds.channels = kept_channels(first.channels_in_file);
  ds.height = first.height;
  ds.width = first.width;
  ds.num_classes = int(classes.size());
  ds.class_names = classes;
  const size_t numel = ds.image_numel();
  try {
    ds.images.resize(files.size() * numel);
  } catch (const std::bad_alloc&) {
    fail(root, std::to_string(files.size()) + " images of " +
                   describe_shape(ds.width, ds.height, first.channels_in_file) + " need " +
                   std::to_string(files.size() * numel) + " bytes, more than memory allows");
  }
  ds.labels = file_labels;
  to_chw(first, ds.images.data());

  // Errors cannot leave an OpenMP loop as exceptions; keep one per file and
  // report the first in sorted order afterwards.
  std::vector<std::string> errors(files.size());
  const long long count = (long long)files.size();
#pragma omp parallel for schedule(dynamic, 16)
  for (long long i = 1; i < count; ++i) {
    Decoded img;
    if (std::string why = img.load(files[i]); !why.empty()) {
      errors[i] = "cannot decode image: " + why;
      continue;
    }
    if (img.width != ds.width || img.height != ds.height ||
        kept_channels(img.channels_in_file) != ds.channels) {
      errors[i] = "image is " + describe_shape(img.width, img.height, img.channels_in_file) +
                  " but the first image " + files[0] + " is " +
                  describe_shape(first.width, first.height, first.channels_in_file);
      continue;
    }
    to_chw(img, ds.images.data() + size_t(i) * numel);
  }
  for (size_t i = 1; i < files.size(); ++i)
    if (!errors[i].empty()) fail(files[i], errors[i]);
  return ds;
}

}  // namespace cte
