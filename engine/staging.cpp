#include "engine/staging.h"

#include <cstring>
#include <string>

#include "engine/tensor.h"
#include "kernels/gpu_runtime.h"

namespace cte {

UploadStaging::UploadStaging(size_t ring) : slots_(ring == 0 ? 1 : ring) {}

UploadStaging::~UploadStaging() {
  for (Slot& slot : slots_) {
    // The last copies may still be queued: wait for them before the buffers go.
    if (slot.event != nullptr) {
      gpu::event_wait(slot.event);
      gpu::event_destroy(slot.event);
    }
    gpu::free_pinned(slot.pinned);
  }
}

Tensor UploadStaging::upload(const std::vector<float>& values, const Shape& shape, Device device) {
  if (int64_t(values.size()) != shape.numel())
    fail("upload", "got " + std::to_string(values.size()) + " values for shape " + shape.str() + " (" +
                       std::to_string(shape.numel()) + " elements)");
  return upload(values.data(), shape, device);
}

Tensor UploadStaging::upload(const float* values, const Shape& shape, Device device) {
  Tensor t = Tensor::empty(shape, device);
  const size_t bytes = size_t(shape.numel()) * sizeof(float);
  if (bytes == 0) return t;
  if (device == Device::cpu) {
    std::memcpy(t.data(), values, bytes);
    return t;
  }
  Slot& slot = slots_[next_];
  next_ = (next_ + 1) % slots_.size();
  if (slot.event != nullptr) gpu::event_wait(slot.event);  // its previous copy has left the buffer
  else slot.event = gpu::event_create();
  if (bytes > slot.capacity) {
    gpu::free_pinned(slot.pinned);
    slot.pinned = nullptr;
    slot.capacity = 0;
    slot.pinned = gpu::malloc_pinned(bytes);
    slot.capacity = bytes;
  }
  std::memcpy(slot.pinned, values, bytes);
  gpu::copy_host_to_device_async(t.data(), slot.pinned, bytes);
  gpu::event_record(slot.event);
  return t;
}

ScalarReadback::ScalarReadback(size_t depth) : slots_(depth == 0 ? 1 : depth) {}

ScalarReadback::~ScalarReadback() {
  for (Slot& slot : slots_) {
    if (slot.event != nullptr) {  // a copy may still be queued into the buffer
      gpu::event_wait(slot.event);
      gpu::event_destroy(slot.event);
    }
    if (slot.pinned != nullptr) gpu::free_pinned(slot.pinned);
  }
}

void ScalarReadback::queue(const Tensor& scalar) {
  if (scalar.numel() != 1) fail("readback", "expects one value, got a tensor of shape " + scalar.shape().str());
  Slot& slot = slots_[queued_ % slots_.size()];
  ++queued_;
  slot.on_device = scalar.device() == Device::cuda;
  if (!slot.on_device) {
    slot.host = scalar.data()[0];
    return;
  }
  if (slot.pinned == nullptr) {
    slot.pinned = static_cast<float*>(gpu::malloc_pinned(sizeof(float)));
    slot.event = gpu::event_create();
  } else {
    gpu::event_wait(slot.event);  // the copy `depth` calls ago has left this buffer
  }
  gpu::copy_device_to_host_async(slot.pinned, scalar.data(), sizeof(float));
  gpu::event_record(slot.event);
}

bool ScalarReadback::value(size_t lag, float* out) {
  if (lag >= slots_.size())
    fail("readback", "lag " + std::to_string(lag) + " needs more than the " + std::to_string(slots_.size()) +
                         " values kept");
  if (queued_ <= lag) return false;
  Slot& slot = slots_[(queued_ - 1 - lag) % slots_.size()];
  if (!slot.on_device) {
    *out = slot.host;
    return true;
  }
  gpu::event_wait(slot.event);
  *out = *slot.pinned;
  return true;
}

}  // namespace cte
