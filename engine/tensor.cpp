// Tensor construction, copies between devices, and gradient bookkeeping.
#include "engine/tensor.h"

#include <atomic>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "engine/allocator.h"
#include "engine/device.h"
#include "kernels/gpu_runtime.h"
#include "kernels/kernels.h"

namespace cte {

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

void fail(const std::string& where, const std::string& message) {
  throw std::runtime_error("[" + where + "] " + message);
}

// ---------------------------------------------------------------- Shape

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::vector<int64_t>(dims)) {}

Shape::Shape(const std::vector<int64_t>& dims) {
  if (dims.size() > size_t(kMaxDims))
    fail("shape", "at most 4 dimensions are supported, got " + std::to_string(dims.size()));
  ndim_ = int(dims.size());
  for (int i = 0; i < ndim_; ++i) {
    if (dims[size_t(i)] < 0) fail("shape", "negative extent " + std::to_string(dims[size_t(i)]));
    dims_[i] = dims[size_t(i)];
  }
}

int64_t Shape::operator[](int axis) const {
  const int resolved = axis < 0 ? axis + ndim_ : axis;
  if (resolved < 0 || resolved >= ndim_)
    fail("shape", "axis " + std::to_string(axis) + " out of range for " + str());
  return dims_[resolved];
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::str() const {
  std::ostringstream out;
  out << "(";
  for (int i = 0; i < ndim_; ++i) out << (i ? "," : "") << dims_[i];
  out << ")";
  return out.str();
}

bool Shape::operator==(const Shape& other) const {
  if (ndim_ != other.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

// ---------------------------------------------------------------- poisoning

namespace {
std::atomic<bool> g_poison_new_tensors{false};
}
void set_poison_new_tensors(bool enabled) { g_poison_new_tensors = enabled; }
bool poison_new_tensors() { return g_poison_new_tensors; }

// ---------------------------------------------------------------- Tensor

namespace {

void fill_device(Device device, float* ptr, int64_t n, float value) {
  if (device == Device::cpu) kern::fill_cpu(ptr, n, value);
  else kern::fill_cuda(ptr, n, value);
}

TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) fail("tensor", "use of an undefined tensor");
  return *impl;
}

}  // namespace

Tensor Tensor::empty(const Shape& shape, Device device) {
  if (device == Device::cuda) require_device(Device::cuda);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->device = device;
  impl->buffer = std::make_shared<Buffer>(device, size_t(shape.numel()) * sizeof(float));
  Tensor t = wrap(std::move(impl));
  if (g_poison_new_tensors) fill_device(device, t.data(), t.numel(), __builtin_nanf(""));
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device) { return full(shape, 0.0f, device); }

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, device);
  fill_device(device, t.data(), t.numel(), value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape, Device device) {
  if (int64_t(values.size()) != shape.numel())
    fail("tensor", "from_vector got " + std::to_string(values.size()) + " values for shape " +
                       shape.str() + " (" + std::to_string(shape.numel()) + " elements)");
  Tensor t = empty(shape, device);
  const size_t bytes = values.size() * sizeof(float);
  if (bytes == 0) return t;
  if (device == Device::cpu) std::memcpy(t.data(), values.data(), bytes);
  else gpu::copy_host_to_device(t.data(), values.data(), bytes);
  return t;
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }
Device Tensor::device() const { return checked(impl_).device; }
float* Tensor::data() { return checked(impl_).buffer->ptr; }
const float* Tensor::data() const { return checked(impl_).buffer->ptr; }

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  const size_t bytes = out.size() * sizeof(float);
  if (bytes == 0) return out;
  if (device() == Device::cpu) std::memcpy(out.data(), data(), bytes);
  else gpu::copy_device_to_host(out.data(), data(), bytes);
  return out;
}

float Tensor::item() const {
  if (numel() != 1) fail("item", "tensor of shape " + shape().str() + " has " + std::to_string(numel()) + " elements, not 1");
  return to_vector()[0];
}

void Tensor::copy_from(const Tensor& source) {
  if (source.shape().numel() != shape().numel())
    fail("copy", "shapes " + source.shape().str() + " and " + shape().str() + " differ in size");
  const size_t bytes = size_t(numel()) * sizeof(float);
  if (bytes == 0) return;
  const Device from = source.device(), to = device();
  if (from == Device::cpu && to == Device::cpu) std::memcpy(data(), source.data(), bytes);
  else if (from == Device::cpu) gpu::copy_host_to_device(data(), source.data(), bytes);
  else if (to == Device::cpu) gpu::copy_device_to_host(data(), source.data(), bytes);
  else gpu::copy_device_to_device(data(), source.data(), bytes);
}

Tensor Tensor::to(Device target) const {
  Tensor out = empty(shape(), target);
  out.copy_from(*this);
  return out;
}

Tensor Tensor::clone() const { return to(device()); }

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape();
  impl->device = device();
  impl->buffer = checked(impl_).buffer;
  return wrap(std::move(impl));
}

Tensor alias_with_shape(const Tensor& t, const Shape& shape) {
  if (shape.numel() != t.numel())
    fail("reshape", "cannot view " + t.shape().str() + " as " + shape.str());
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->device = t.device();
  impl->buffer = t.impl()->buffer;
  return Tensor::wrap(std::move(impl));
}

bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }

Tensor& Tensor::set_requires_grad(bool value) {
  TensorImpl& impl = checked(impl_);
  if (!impl.is_leaf)
    fail("requires_grad", "only leaf tensors (parameters, inputs) can change requires_grad");
  impl.requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const { return wrap(checked(impl_).grad); }
void Tensor::zero_grad() { checked(impl_).grad.reset(); }

}  // namespace cte
