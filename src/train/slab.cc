#include "train/slab.h"

#include <algorithm>

#include "base/error.h"

namespace elm {

void TrainSlab::Add(TensorSpec spec, bool decay) {
  SlabTensor t;
  t.numel = 1;
  for (int64_t d : spec.shape) t.numel *= static_cast<size_t>(d);
  t.decay = decay;
  t.offset = size_;
  t.spec = std::move(spec);
  size_ += t.numel;
  norm_order_.push_back(tensors_.size());
  tensors_.push_back(std::move(t));
  params.resize(size_);  // value-initialized: zero, pages untouched (SlabAllocator)
}

const SlabTensor* TrainSlab::Find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.spec.name == name) return &t;
  return nullptr;
}

void TrainSlab::AllocateTrainingState(size_t begin, size_t end) {
  end = std::min(end, size_);
  ELM_CHECK(begin <= end);
  grads = SlabFloats();
  grads.resize(size_);  // zero, its pages not written (SlabAllocator)
  moments_begin = begin;
  m.assign(end - begin, 0.0f);
  v.assign(end - begin, 0.0f);
}

void TrainSlab::ZeroGrad() {
  grads.assign(size_, 0.0f);
}

void LoadSlab(const TrainSlab& slab, const TensorStore& store, const std::string& prefix,
              float* dst) {
  for (const SlabTensor& t : slab.tensors()) {
    const std::string name = prefix + t.spec.name;
    const TensorView* v = store.Find(name);
    if (v == nullptr)
      Fail(store.origin(), ": missing tensor '", name, "' (the checkpoint was written for ",
           "another model shape, or other LoRA targets or rank)");
    if (v->shape != t.spec.shape)
      Fail(store.origin(), ": tensor '", name, "' is ", ShapeString(v->shape),
           "; this run expects ", ShapeString(t.spec.shape));
    if (!v->dtype)
      Fail(store.origin(), ": tensor '", name, "' has dtype ", v->dtype_name,
           "; elm reads F32, F16 and BF16");
    ToF32(*v->dtype, v->data, dst + t.offset, t.numel);
  }
}

std::vector<TensorToWrite> SlabTensors(const TrainSlab& slab, const float* src,
                                       const std::string& prefix, DType dtype,
                                       std::vector<uint16_t>& scratch) {
  if (dtype != DType::kF32) {
    scratch.resize(slab.size());
    FromF32(dtype, src, scratch.data(), slab.size());
  }
  std::vector<TensorToWrite> out;
  for (const SlabTensor& t : slab.tensors()) {
    TensorToWrite w;
    w.name = prefix + t.spec.name;
    w.dtype = dtype;
    w.shape = t.spec.shape;
    w.data = dtype == DType::kF32 ? static_cast<const void*>(src + t.offset)
                                  : static_cast<const void*>(scratch.data() + t.offset);
    out.push_back(std::move(w));
  }
  return out;
}

}  // namespace elm
