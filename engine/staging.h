// Asynchronous uploads of host data (a batch's images and labels) into device
// tensors, so a training step never waits for the device to drain (issue 19).
//
// A plain Tensor::from_vector on CUDA is a synchronous cudaMemcpy from pageable
// memory: the host stops until every kernel queued before it has run. Here the
// values are first copied into one of a ring of page-locked buffers, then a
// cudaMemcpyAsync is queued behind the work already in the stream and the host
// goes on. A slot is reused only after the event recorded behind its last copy
// has completed, i.e. after `ring` later uploads; that wait holds the host
// back only when it is a whole ring ahead of the device. On the CPU an upload
// is a memcpy into a fresh tensor.
#pragma once
#include <cstddef>
#include <vector>

#include "engine/tensor.h"

namespace cte {

class UploadStaging {
 public:
  explicit UploadStaging(size_t ring = 2);
  ~UploadStaging();
  UploadStaging(const UploadStaging&) = delete;
  UploadStaging& operator=(const UploadStaging&) = delete;

  // A new tensor of `shape` on `device` holding values[0, shape.numel()).
  Tensor upload(const float* values, const Shape& shape, Device device);
  Tensor upload(const std::vector<float>& values, const Shape& shape, Device device);

 private:
  struct Slot {
    void* pinned = nullptr;  // page-locked host buffer
    size_t capacity = 0;     // its size in bytes (grow-only)
    void* event = nullptr;   // recorded after the slot's last copy was queued
  };
  std::vector<Slot> slots_;
  size_t next_ = 0;
};

// Scalars read back from the device without stopping the host: queue() puts a
// copy of a one-element tensor behind the work already queued (into
// page-locked memory, with an event behind it) and returns at once;
// value(lag) gives the value queued `lag` calls before the latest, waiting for
// the device only up to that point, so the `lag` steps queued after it keep the
// device busy meanwhile. PGD's early stop reads its "every sample broken" flag
// this way (train/pgd.cpp), one step late on a GPU. On the CPU queue() reads
// the value at once and any lag sees it.
class ScalarReadback {
 public:
  explicit ScalarReadback(size_t depth = 2);
  ~ScalarReadback();
  ScalarReadback(const ScalarReadback&) = delete;
  ScalarReadback& operator=(const ScalarReadback&) = delete;

  void queue(const Tensor& scalar);
  // The value queued `lag` calls before the latest (lag < depth), or nothing
  // when fewer than lag + 1 values have been queued.
  bool value(size_t lag, float* out);
  // Forget the values queued so far (a new attack); the buffers stay.
  void restart() { queued_ = 0; }

 private:
  struct Slot {
    float* pinned = nullptr;  // page-locked host float (CUDA) or unused (CPU)
    void* event = nullptr;    // recorded behind the slot's copy
    float host = 0.0f;        // the value on the CPU
    bool on_device = false;
  };
  std::vector<Slot> slots_;
  size_t queued_ = 0;  // values queued so far
};

}  // namespace cte
