// Tensor: a float32, contiguous, row-major array of up to four dimensions
// (N, C, H, W) that lives on one Device. Tensors are handles: copying a Tensor
// shares its storage; clone() and to(device) copy. Moving data between the CPU
// and the GPU is always an explicit to(). Memory comes from the per-device
// caching allocator (engine/allocator.h), so a steady-state training step
// never calls cudaMalloc or the system allocator.
//
// Gradients: a tensor with requires_grad() is a leaf the tape differentiates
// with respect to (a parameter, or an input under test); its grad() holds the
// accumulated gradient until zero_grad(). Ops whose inputs require a gradient
// produce outputs that also require one, and record a node on the tape
// (engine/tape.h).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace cte {

enum class Device { cpu, cuda };
const char* device_name(Device device);

// Up to four extents; a scalar has ndim 0 and numel 1.
class Shape {
 public:
  static constexpr int kMaxDims = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int axis) const;  // negative axes count from the end
  int64_t numel() const;
  std::vector<int64_t> dims() const { return {dims_, dims_ + ndim_}; }
  std::string str() const;  // "(100,1,28,28)"
  bool operator==(const Shape& other) const;
  bool operator!=(const Shape& other) const { return !(*this == other); }

 private:
  int ndim_ = 0;
  int64_t dims_[kMaxDims] = {0, 0, 0, 0};
};

struct Buffer;  // device memory owned through the caching allocator

struct TensorImpl {
  Shape shape;
  Device device = Device::cpu;
  std::shared_ptr<Buffer> buffer;
  bool requires_grad = false;
  bool is_leaf = true;            // false for outputs of recorded ops
  std::shared_ptr<TensorImpl> grad;
  int64_t tape_epoch = -1;        // which tape recorded this tensor's producer
  int64_t tape_node = -1;         // index of the producer node on that tape
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor

  // Uninitialised memory. Under debug poisoning (set_poison_new_tensors(true),
  // which the tests enable) every new tensor is filled with NaN, so a kernel
  // that forgets to write an element is caught.
  static Tensor empty(const Shape& shape, Device device);
  static Tensor zeros(const Shape& shape, Device device);
  static Tensor full(const Shape& shape, float value, Device device);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device);
  static Tensor scalar(float value, Device device) { return full(Shape{}, value, device); }

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  int ndim() const { return shape().ndim(); }
  int64_t size(int axis) const { return shape()[axis]; }
  int64_t numel() const { return shape().numel(); }
  Device device() const;

  float* data();              // device pointer on CUDA, host pointer on CPU
  const float* data() const;

  std::vector<float> to_vector() const;  // copies to the host
  float item() const;                     // the value of a one-element tensor
  Tensor to(Device device) const;         // a copy on `device` (a new tensor even if same)
  Tensor clone() const;                   // a copy on the same device, not on the tape
  Tensor detach() const;                  // shares storage, no gradient history
  void copy_from(const Tensor& source);   // element-wise copy between same-shaped tensors, any devices

  // Gradient bookkeeping (see engine/tape.h for the rules).
  bool requires_grad() const;
  Tensor& set_requires_grad(bool value);
  Tensor grad() const;  // undefined until a backward pass reaches this tensor
  void zero_grad();     // drops the accumulated gradient

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  static Tensor wrap(std::shared_ptr<TensorImpl> impl) {
    Tensor t;
    t.impl_ = std::move(impl);
    return t;
  }
  bool same_as(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Tensor with new shape metadata over the same storage (numel must match).
// Not recorded on the tape: the differentiable reshape is ops::reshape.
Tensor alias_with_shape(const Tensor& t, const Shape& shape);

void set_poison_new_tensors(bool enabled);
bool poison_new_tensors();

// "[op] message" helper for user-facing errors.
[[noreturn]] void fail(const std::string& where, const std::string& message);

}  // namespace cte
