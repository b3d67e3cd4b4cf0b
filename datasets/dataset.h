// Image classification data sets for training and certification: the in-memory
// Dataset (uint8 pixels in C,H,W order plus uint8 labels), the readers for the
// formats we support (MNIST/FashionMNIST IDX, SVHN .mat, CIFAR-10 binary, and a
// folder of PNG/JPEG images per class), the lookup of where a data set lives on
// disk, and BatchLoader, which turns a Dataset into seeded, reproducible float
// batches with optional random-crop / horizontal-flip augmentation. Every reader
// fails with a std::runtime_error whose message starts with "[<data set>] <file>:"
// and says what is wrong; no reader ever returns a silently short data set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cte {

// One data set split held as uint8 until a batch is made (CIFAR-10 train is 150 MB this way).
struct Dataset {
  std::string name;  // "mnist", "fashion-mnist", "svhn", "cifar10", or "folder"
  int channels = 0, height = 0, width = 0, num_classes = 0;
  std::vector<uint8_t> images;           // size() * channels*height*width, each image in C,H,W order
  std::vector<uint8_t> labels;           // size(), each in [0, num_classes)
  std::vector<std::string> class_names;  // for image folders (sorted dir names); digits otherwise
  // Inputs that are not pixels (PCA coordinates, datasets/pca.h): size() * image_numel()
  // floats that batches take as they are instead of images / 255 (`images` is then empty).
  // They are not confined to [0, 1], so their eps balls are not clipped to it.
  std::vector<float> features;
  bool has_features() const { return !features.empty(); }
  size_t size() const { return labels.size(); }
  size_t image_numel() const { return size_t(channels) * height * width; }
};

struct DatasetSplits {
  Dataset train, test;
  std::string dir;  // where it was found
};

// Finds the directory of data set `name`: `flag_dir` if non-empty (then only
// there); else $CTE_DATA_DIR/<name> when the variable is set (then only there:
// set but empty, or not holding the data set, is an error naming it); else the
// first that holds it of ./data/<name> and for "fashion-mnist"
// /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist package).
// A candidate holds the data set if it has its first training file (for
// cifar10 also inside a cifar-10-batches-bin sub-folder, which is what the
// official tarball extracts to). Throws a message listing every place it
// looked and why each was rejected. "folder" needs `flag_dir`.
std::string find_data_dir(const std::string& name, const std::string& flag_dir);

// name: mnist | fashion-mnist | svhn | cifar10 | folder (for folder, dir must be
// given: root/train/<class>/*.png|jpg and root/test/<class>/...; both splits
// must have the same class folders). Train and test images must have the same
// shape (the error names both files). Logs the directory used on stderr.
DatasetSplits load_dataset(const std::string& name, const std::string& flag_dir);

// Per-format readers (used by load_dataset and by tests on small files the tests write).

// An empty data set of `classes` classes named "0", "1", ... (the digit data
// sets and CIFAR-10), images of channels x height x width; the loaders fill it.
Dataset numbered_classes_dataset(const std::string& name, int channels, int height, int width, int classes);

// IDX image file (magic 0x00000803) + label file (magic 0x00000801), plain or
// gzip (detected by the magic bytes 1f 8b). A path given without ".gz" that does
// not exist falls back to its ".gz" sibling. `name` is the data set name used in
// messages and in Dataset::name. 10 classes.
Dataset read_idx_pair(const std::string& images_path, const std::string& labels_path,
                      const std::string& name);
// SVHN cropped-digit .mat (v5 or whatever libmatio reads): X is 32x32x3xN uint8
// column-major (X(h,w,c,n)), y is Nx1 or 1xN (double, single or any integer
// class) with labels 1..10, where 10 means digit 0.
Dataset read_svhn_mat(const std::string& path);
// CIFAR-10 binary batches: records of 1 label byte + 3072 bytes (R,G,B planes of 32x32).
Dataset read_cifar10_bins(const std::vector<std::string>& paths);
// root/<class>/*.png|*.jpg|*.jpeg (extension case-insensitive; other files and
// names starting with '.' are ignored), classes and files in sorted (byte) order,
// decoded with stb_image. Grayscale stays 1 channel, RGB 3 channels; an alpha
// channel is dropped (gray+alpha -> 1, RGBA -> 3), so images must agree on
// size and on the channel count after that.
Dataset read_image_folder(const std::string& root);

struct Augment {
  int crop_padding = 0;          // pad with zeros on every side, then take a random HxW window
  bool horizontal_flip = false;  // mirror left-right with probability 1/2 (after the crop)
};
// CIFAR-10: {4, true}, SVHN: {2, false}; mnist/fashion-mnist/folder: none.
Augment default_augment(const std::string& name);

// Seeded, reproducible batching. Epoch e's order depends only on (seed, e).
// Augmentation (random crop with zero padding, flip) is drawn from
// (seed, epoch, dataset index of the sample), so results depend neither on the
// number of threads nor on the batch size. The loader keeps a reference to
// `data`, which must outlive it. The constructor throws std::invalid_argument
// for a batch size below 1, an empty or inconsistent data set, negative padding,
// or augmentation asked of features (crops and flips need pixels).
class BatchLoader {
 public:
  BatchLoader(const Dataset& data, int batch_size, uint64_t seed, bool shuffle, Augment augment,
              bool drop_last = false);
  // A temporary Dataset would dangle: keep the data set alive in a variable.
  BatchLoader(Dataset&&, int, uint64_t, bool, Augment, bool = false) = delete;
  // Sets the epoch and rewinds to its first batch; reshuffles deterministically.
  // The constructor has already started epoch 0.
  void start_epoch(int epoch);
  // Fills images (count*C*H*W floats in [0,1] = byte/255, or the data set's
  // features as they are) and labels (count ints).
  // Returns false at end of epoch (the vectors are then left untouched).
  bool next(std::vector<float>& images, std::vector<int>& labels);
  size_t batches_per_epoch() const;

  // Position, so that a trainer can resume mid-epoch: start_epoch(e) then
  // seek_batch(b) gives exactly the batches that followed batch b-1 before.
  int epoch() const { return epoch_; }
  size_t batch_index() const;     // batches already returned in this epoch
  void seek_batch(size_t batch);  // throws if batch > batches_per_epoch()

  int batch_size() const { return batch_size_; }
  const Dataset& dataset() const { return data_; }
  // Dataset indices of the current epoch in the order they are served.
  const std::vector<uint32_t>& order() const { return order_; }

 private:
  const Dataset& data_;
  int batch_size_;
  uint64_t seed_;
  bool shuffle_;
  Augment augment_;
  bool drop_last_;
  int epoch_ = 0;
  size_t position_ = 0;  // samples served in this epoch
  std::vector<uint32_t> order_;
};

}  // namespace cte
