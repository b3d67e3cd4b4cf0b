// BatchLoader: seeded, reproducible mini-batches from a Dataset. The random
// numbers come from the engine's generator (engine/random.h: xoshiro256**
// seeded through splitmix64, not <random>'s distributions, whose output
// differs between standard libraries), so a seed
// gives the same batches everywhere. An epoch's order is a Fisher-Yates shuffle
// seeded from (seed, epoch); each sample's crop offset and flip are drawn from
// (seed, epoch, dataset index), so they depend neither on the thread count nor
// on the batch size. Batches are converted from uint8 to float with OpenMP.
#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "datasets/dataset.h"
#include "engine/random.h"

namespace cte {
namespace {

// The streams' seeds: (seed, tag, epoch[, dataset index]); distinct tags keep
// the shuffle and the augmentation streams independent even for equal (seed, epoch).
constexpr uint64_t kShuffleTag = 0x53485546464C45ull;  // "SHUFFLE"
constexpr uint64_t kAugmentTag = 0x4155474D454E54ull;  // "AUGMENT"

struct SampleAugment {
  int shift_y = 0, shift_x = 0;  // window offset minus padding, in [-pad, pad]
  bool flip = false;
};

SampleAugment draw_augment(const Augment& a, uint64_t seed, int epoch, size_t index) {
  SampleAugment s;
  if (a.crop_padding <= 0 && !a.horizontal_flip) return s;
  Rng rng(mix_seed_words({seed, kAugmentTag, uint64_t(int64_t(epoch)), index}));
  if (a.crop_padding > 0) {
    const uint64_t span = 2 * uint64_t(a.crop_padding) + 1;
    s.shift_y = int(rng.below(span)) - a.crop_padding;
    s.shift_x = int(rng.below(span)) - a.crop_padding;
  }
  if (a.horizontal_flip) s.flip = (rng.next_u64() >> 63) != 0;
  return s;
}

// byte/255 exactly as a division would round it, looked up instead of divided.
struct ByteToUnit {
  float table[256];
  ByteToUnit() {
    for (int b = 0; b < 256; ++b) table[b] = float(b) / 255.0f;
  }
};
const ByteToUnit kByteToUnit;

// Writes one C,H,W image as floats: out(c,y,x) = in(c, y+shift_y, x'+shift_x)
// with x' = W-1-x when flipped, and 0 where that falls in the zero padding.
void convert_sample(const uint8_t* in, float* out, int channels, int height, int width,
                    const SampleAugment& aug) {
  const float* lut = kByteToUnit.table;
  const size_t plane = size_t(height) * width;
  if (aug.shift_x == 0 && aug.shift_y == 0 && !aug.flip) {
    for (size_t i = 0; i < plane * channels; ++i) out[i] = lut[in[i]];
    return;
  }
  // Columns x whose source column lies inside the image: [x_lo, x_hi).
  const int x_lo = std::max(0, -aug.shift_x), x_hi = std::min(width, width - aug.shift_x);
  for (int c = 0; c < channels; ++c) {
    const uint8_t* src_plane = in + c * plane;
    float* dst_plane = out + c * plane;
    for (int y = 0; y < height; ++y) {
      float* dst_row = dst_plane + size_t(y) * width;
      const int sy = y + aug.shift_y;
      if (sy < 0 || sy >= height || x_lo >= x_hi) {
        std::fill(dst_row, dst_row + width, 0.0f);
        continue;
      }
      const uint8_t* src_row = src_plane + size_t(sy) * width;
      // Unflipped row r(x) = src[x+shift_x]; a flip writes r(x) to W-1-x.
      for (int x = 0; x < width; ++x) {
        const int dx = aug.flip ? width - 1 - x : x;
        dst_row[dx] = (x >= x_lo && x < x_hi) ? lut[src_row[x + aug.shift_x]] : 0.0f;
      }
    }
  }
}

}  // namespace

Augment default_augment(const std::string& name) {
  if (name == "cifar10") return Augment{4, true};
  if (name == "svhn") return Augment{2, false};
  return Augment{};
}

BatchLoader::BatchLoader(const Dataset& data, int batch_size, uint64_t seed, bool shuffle, Augment augment,
                         bool drop_last)
    : data_(data),
      batch_size_(batch_size),
      seed_(seed),
      shuffle_(shuffle),
      augment_(augment),
      drop_last_(drop_last) {
  const std::string tag = "[" + (data.name.empty() ? std::string("dataset") : data.name) + "] ";
  if (batch_size <= 0)
    throw std::invalid_argument(tag + "batch size must be positive, got " + std::to_string(batch_size));
  if (data.size() == 0) throw std::invalid_argument(tag + "cannot batch an empty data set");
  if (data.size() > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument(tag + "more than 2^32-1 samples");
  if (data.has_features()) {
    if (data.channels <= 0 || data.height <= 0 || data.width <= 0 ||
        data.features.size() != data.size() * data.image_numel())
      throw std::invalid_argument(tag + "features hold " + std::to_string(data.features.size()) +
                                  " floats, expected " + std::to_string(data.size()) + " x " +
                                  std::to_string(data.channels) + "x" + std::to_string(data.height) + "x" +
                                  std::to_string(data.width));
    if (augment.crop_padding != 0 || augment.horizontal_flip)
      throw std::invalid_argument(tag + "cannot crop or flip features (PCA coordinates): augmentation needs pixels");
  } else if (data.channels <= 0 || data.height <= 0 || data.width <= 0 ||
             data.images.size() != data.size() * data.image_numel())
    throw std::invalid_argument(tag + "images hold " + std::to_string(data.images.size()) +
                                " bytes, expected " + std::to_string(data.size()) + " x " +
                                std::to_string(data.channels) + "x" + std::to_string(data.height) + "x" +
                                std::to_string(data.width));
  if (augment.crop_padding < 0) throw std::invalid_argument(tag + "crop padding must not be negative");
  start_epoch(0);
}

void BatchLoader::start_epoch(int epoch) {
  epoch_ = epoch;
  position_ = 0;
  order_.resize(data_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = uint32_t(i);
  if (!shuffle_) return;
  Rng rng(mix_seed_words({seed_, kShuffleTag, uint64_t(int64_t(epoch)), 0}));
  for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
}

size_t BatchLoader::batches_per_epoch() const {
  const size_t n = data_.size(), b = size_t(batch_size_);
  return drop_last_ ? n / b : (n + b - 1) / b;
}

size_t BatchLoader::batch_index() const {
  // position_ is a multiple of the batch size except after a short last batch.
  return (position_ + size_t(batch_size_) - 1) / size_t(batch_size_);
}

void BatchLoader::seek_batch(size_t batch) {
  if (batch > batches_per_epoch())
    throw std::out_of_range("[" + data_.name + "] seek to batch " + std::to_string(batch) +
                            " of an epoch with " + std::to_string(batches_per_epoch()) + " batches");
  position_ = std::min(batch * size_t(batch_size_), data_.size());
}

bool BatchLoader::next(std::vector<float>& images, std::vector<int>& labels) {
  const size_t remaining = data_.size() - position_;
  if (remaining == 0 || (drop_last_ && remaining < size_t(batch_size_))) return false;
  const size_t count = std::min(remaining, size_t(batch_size_));
  const size_t numel = data_.image_numel();
  images.resize(count * numel);
  labels.resize(count);

  const uint32_t* indices = order_.data() + position_;
  float* out = images.data();
  if (data_.has_features()) {
    for (size_t k = 0; k < count; ++k) {
      std::copy_n(data_.features.data() + size_t(indices[k]) * numel, numel, out + k * numel);
      labels[k] = data_.labels[indices[k]];
    }
    position_ += count;
    return true;
  }
  const uint8_t* pixels = data_.images.data();
  // A training batch (100 CIFAR images: 1.2 MB of floats) converts in well
  // under a millisecond on one thread; a thread team saves little there and,
  // on a machine whose cores are busy (the trainer's own kernels, or other
  // jobs), waiting for a descheduled team member costs milliseconds. So only
  // large batches, e.g. for evaluation, are split across threads.
#pragma omp parallel for schedule(static) if (count * numel >= (size_t(1) << 20))
  for (size_t k = 0; k < count; ++k) {
    const size_t index = indices[k];
    const SampleAugment aug = draw_augment(augment_, seed_, epoch_, index);
    convert_sample(pixels + index * numel, out + k * numel, data_.channels, data_.height, data_.width, aug);
  }
  for (size_t k = 0; k < count; ++k) labels[k] = data_.labels[indices[k]];
  position_ += count;
  return true;
}

}  // namespace cte
