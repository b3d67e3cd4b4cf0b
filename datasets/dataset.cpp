// Finding and loading whole data sets by name: find_data_dir decides where a
// data set lives (command-line flag, then $CTE_DATA_DIR/<name>, then
// ./data/<name>, then Debian's copy of FashionMNIST), and load_dataset reads
// its train and test splits with the per-format readers. A directory only
// counts if it holds the data set's first training file, so an empty
// ./data/fashion-mnist does not hide the system copy; when nothing fits, the
// error lists every place tried and why it was rejected.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "datasets/dataset.h"

namespace cte {
namespace {

namespace fs = std::filesystem;

const char* const kKnownNames = "mnist, fashion-mnist, svhn, cifar10, folder";
const char* const kDebianFashionMnist = "/usr/share/datasets/fashion-mnist";
const char* const kCifarTarballDir = "cifar-10-batches-bin";  // what cifar-10-binary.tar.gz holds

bool is_idx_name(const std::string& name) {
  return name == "mnist" || name == "fashion-mnist";
}

bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// If `dir` holds data set `name`, returns the directory the readers should use
// (dir itself, or for cifar10 possibly its cifar-10-batches-bin sub-folder);
// otherwise returns "" and says why in `why_not`.
std::string usable_dir(const std::string& name, const fs::path& dir, std::string& why_not) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    why_not = "no such directory";
    return "";
  }
  if (!fs::is_directory(dir, ec)) {
    why_not = "not a directory";
    return "";
  }
  if (is_idx_name(name)) {
    if (file_exists(dir / "train-images-idx3-ubyte") || file_exists(dir / "train-images-idx3-ubyte.gz"))
      return dir.string();
    why_not = "has no train-images-idx3-ubyte[.gz]";
  } else if (name == "svhn") {
    if (file_exists(dir / "train_32x32.mat")) return dir.string();
    why_not = "has no train_32x32.mat";
  } else if (name == "cifar10") {
    if (file_exists(dir / "data_batch_1.bin")) return dir.string();
    if (file_exists(dir / kCifarTarballDir / "data_batch_1.bin")) return (dir / kCifarTarballDir).string();
    why_not = std::string("has no data_batch_1.bin (nor ") + kCifarTarballDir + "/data_batch_1.bin)";
  } else {  // folder
    if (fs::is_directory(dir / "train", ec) && fs::is_directory(dir / "test", ec)) return dir.string();
    why_not = "has no train/ and test/ sub-folders";
  }
  return "";
}

void check_name(const std::string& name) {
  if (is_idx_name(name) || name == "svhn" || name == "cifar10" || name == "folder") return;
  throw std::runtime_error("[" + name + "] unknown data set; known: " + kKnownNames);
}

// A network trained on one image shape cannot be evaluated on another: say so
// at load time, naming both files, instead of failing inside a tensor op later.
void check_same_image_shape(const std::string& name, const Dataset& train, const std::string& train_file,
                            const Dataset& test, const std::string& test_file) {
  if (train.channels == test.channels && train.height == test.height && train.width == test.width) return;
  auto shape = [](const Dataset& ds) {
    return std::to_string(ds.width) + "x" + std::to_string(ds.height) + "x" + std::to_string(ds.channels);
  };
  throw std::runtime_error("[" + name + "] " + test_file + ": test images are " + shape(test) +
                           " but the training images of " + train_file + " are " + shape(train) +
                           " (width x height x channels)");
}

DatasetSplits load_folder(const std::string& dir) {
  DatasetSplits s;
  s.dir = dir;
  const std::string train_dir = (fs::path(dir) / "train").string();
  const std::string test_dir = (fs::path(dir) / "test").string();
  s.train = read_image_folder(train_dir);
  s.test = read_image_folder(test_dir);
  // Labels are positions in the sorted class list, so both splits must list
  // the same classes or the same label would mean different things.
  if (s.train.class_names != s.test.class_names) {
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
      return out;
    };
    throw std::runtime_error("[folder] " + test_dir + ": classes {" + join(s.test.class_names) +
                             "} differ from those of " + train_dir + " {" + join(s.train.class_names) + "}");
  }
  check_same_image_shape("folder", s.train, train_dir, s.test, test_dir);
  return s;
}

}  // namespace

std::string find_data_dir(const std::string& name, const std::string& flag_dir) {
  check_name(name);
  std::vector<std::pair<std::string, std::string>> tried;  // (place, why rejected)
  // `place` describes where a candidate came from, for the error message.
  auto try_dir = [&](const fs::path& dir, const std::string& place) -> std::string {
    std::string why_not;
    std::string found = usable_dir(name, dir, why_not);
    if (found.empty()) tried.emplace_back(dir.string() + " (" + place + ")", why_not);
    return found;
  };
  auto failure = [&]() {
    std::string msg = "[" + name + "] data set not found; looked in:";
    for (const auto& [place, why] : tried) msg += "\n  " + place + ": " + why;
    if (name != "folder") msg += "\n(tools/get_data.sh " + name + " downloads it into data/" + name + ")";
    return std::runtime_error(msg);
  };

  // An explicit flag is the user's choice: never silently read something else.
  if (!flag_dir.empty()) {
    if (std::string d = try_dir(flag_dir, "the directory given"); !d.empty()) return d;
    throw failure();
  }
  if (name == "folder")
    throw std::runtime_error(
        "[folder] the folder data set needs its directory given explicitly "
        "(root/train/<class>/*.png|jpg and root/test/<class>/...)");
  // A set $CTE_DATA_DIR is the user's choice too: when it does not hold the
  // data set, falling back to another copy would train on data nobody asked for.
  if (const char* env = std::getenv("CTE_DATA_DIR")) {
    if (!*env)
      throw std::runtime_error("[" + name + "] $CTE_DATA_DIR is set but empty; unset it to search ./data/" +
                               name + (name == "fashion-mnist" ? " and Debian's copy" : "") +
                               ", or set it to the folder holding " + name + "/");
    if (std::string d = try_dir(fs::path(env) / name, "$CTE_DATA_DIR/" + name); !d.empty()) return d;
    throw std::runtime_error("[" + name + "] $CTE_DATA_DIR=" + env + ": " + tried.back().first + " " +
                             tried.back().second + " (unset CTE_DATA_DIR to search ./data/" + name + " instead)");
  }
  tried.emplace_back("$CTE_DATA_DIR", "not set");
  std::error_code ec;
  fs::path local = fs::absolute(fs::path("data") / name, ec);
  if (ec) local = fs::path("data") / name;
  if (std::string d = try_dir(local, "./data/" + name); !d.empty()) return d;
  if (name == "fashion-mnist")
    if (std::string d = try_dir(kDebianFashionMnist, "Debian package dataset-fashion-mnist"); !d.empty())
      return d;
  throw failure();
}

DatasetSplits load_dataset(const std::string& name, const std::string& flag_dir) {
  const std::string dir = find_data_dir(name, flag_dir);
  // Always said, so that a run's log shows which copy of the data it used.
  std::fprintf(stderr, "[%s] data directory: %s\n", name.c_str(), dir.c_str());
  if (name == "folder") return load_folder(dir);

  DatasetSplits s;
  s.dir = dir;
  const fs::path d(dir);
  std::string train_file, test_file;  // named when the splits disagree
  if (is_idx_name(name)) {
    // Paths without ".gz": read_idx_pair falls back to the .gz sibling.
    train_file = (d / "train-images-idx3-ubyte").string();
    test_file = (d / "t10k-images-idx3-ubyte").string();
    s.train = read_idx_pair(train_file, (d / "train-labels-idx1-ubyte").string(), name);
    s.test = read_idx_pair(test_file, (d / "t10k-labels-idx1-ubyte").string(), name);
  } else if (name == "svhn") {
    train_file = (d / "train_32x32.mat").string();
    test_file = (d / "test_32x32.mat").string();
    s.train = read_svhn_mat(train_file);
    s.test = read_svhn_mat(test_file);
  } else {  // cifar10
    std::vector<std::string> train_files;
    for (int b = 1; b <= 5; ++b)
      train_files.push_back((d / ("data_batch_" + std::to_string(b) + ".bin")).string());
    train_file = train_files.front();
    test_file = (d / "test_batch.bin").string();
    s.train = read_cifar10_bins(train_files);
    s.test = read_cifar10_bins({test_file});
  }
  check_same_image_shape(name, s.train, train_file, s.test, test_file);
  return s;
}

Dataset numbered_classes_dataset(const std::string& name, int channels, int height, int width, int classes) {
  Dataset ds;
  ds.name = name;
  ds.channels = channels;
  ds.height = height;
  ds.width = width;
  ds.num_classes = classes;
  for (int c = 0; c < classes; ++c) ds.class_names.push_back(std::to_string(c));
  return ds;
}

}  // namespace cte
