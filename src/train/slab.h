// The one trainable-state type (llm.c): flat f32 slabs that line up (parameters, gradients and the
// two AdamW moments) and the tensor table that names them. Tensor k occupies [offset, offset +
// numel) in every slab, so initialization, the gradient norm, clipping, the AdamW step, the MPI
// reductions and checkpointing are each one walk over the same table, whatever the slab holds.
//
// Two families fill it today: ParamSet (train/params.h, every tensor of the model, HF names) and
// LoraParams (train/lora.h, the adapter tensors, PEFT names). Each supplies only what differs:
// its table, the order of the gradient norm, and the folder format its parameters are written in
// (WriteWeights/ReadWeights). Everything else (train/optimizer.h, train/checkpoint.h,
// train/slab_sync.h) takes a TrainSlab and never asks which family it is.
//
// Extensions that need no new family:
// - DoRA: the adapter table holds one magnitude vector per adapted linear (model/lora_adapter.h);
//   the optimizer, clipping, broadcast and checkpoint walk it with the rest.
// - Preference tuning (train/posttrain.h): the frozen reference model is a second TrainModel
//   whose training state is never allocated (or, for LoRA, the policy with its adapter off); only
//   the policy's slab is passed to the optimizer.
// - ZeRO sharding: a rank owns a range [begin, end) of the slab (cut at tensor boundaries from the
//   table); gradients are reduce-scattered to the owner, AdamW runs over the owned range (the
//   update is element-wise) and the parameters are all-gathered back; m and v need only be
//   allocated for the owned range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "base/dtype.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace elm {

// The parameter slab's allocator. Its memory comes from calloc, whose large blocks are fresh pages
// the kernel maps on first write, and growing the vector writes no zero over memory that already
// reads zero: a range of the slab that is never written takes no resident memory. QLoRA's
// quantized base (train/qlora_base.h) leaves the layer linears' ranges so, and its f32 copy never
// exists (docs/training.md, "QLoRA: a quantized base").
template <typename T>
struct SlabAllocator {
  using value_type = T;
  SlabAllocator() = default;
  template <typename U>
  SlabAllocator(const SlabAllocator<U>&) noexcept {}  // NOLINT: allocators convert implicitly
  T* allocate(size_t n) {
    void* p = std::calloc(n, sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { std::free(p); }
  // Value-initialization (resize(n)): the memory reads zero unless a shrink left a value there.
  template <typename U>
  void construct(U* p) noexcept {
    if (*p != U()) *p = U();
  }
  template <typename U, typename... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
  template <typename U>
  bool operator==(const SlabAllocator<U>&) const noexcept {
    return true;
  }
};
using SlabFloats = std::vector<float, SlabAllocator<float>>;

struct SlabTensor {
  TensorSpec spec;    // name as stored on disk, shape, layer (-1: not in a layer)
  size_t offset = 0;  // into each slab
  size_t numel = 0;
  bool decay = true;  // AdamW's weight decay applies to this tensor
};

class TrainSlab {
 public:
  virtual ~TrainSlab() = default;

  const std::vector<SlabTensor>& tensors() const { return tensors_; }
  size_t size() const { return size_; }  // elements per slab
  const SlabTensor* Find(const std::string& name) const;
  // Indices into tensors() in the order the global gradient norm stacks the per-tensor norms
  // (the reference's parameter registration order).
  const std::vector<size_t>& norm_order() const { return norm_order_; }

  // Gradients and both moments, zero. The parameter slab is allocated with the table. Sharded
  // data parallelism (train/sharding.h) allocates the moments for elements [begin, end) only.
  void AllocateTrainingState(size_t begin = 0, size_t end = SIZE_MAX);
  void ZeroGrad();

  // The parameters as a folder of this family's format (an HF model folder with the run's
  // tokenizer, or a PEFT adapter, which borrows its base's), into the existing folder `dir`.
  virtual void WriteWeights(const std::string& dir, const std::string& tokenizer_json) const = 0;
  // Reads the parameters back from a folder WriteWeights wrote; throws naming the folder when it
  // holds the other family's weights.
  virtual void ReadWeights(const std::string& dir) = 0;

  SlabFloats params;  // allocated with the table, zero; pages never written stay unmapped
  // Allocated by AllocateTrainingState untouched too: a sharded run (train/sharding.h) releases
  // the ranges it does not own before anything writes them.
  SlabFloats grads;
  std::vector<float> m, v;
  // m and v hold elements [moments_begin, moments_begin + m.size()) of the slab (all of it unless
  // the moments are sharded).
  size_t moments_begin = 0;

 protected:
  // Only a family builds (or copies) one, so a slab is never sliced off its family.
  TrainSlab() = default;
  TrainSlab(const TrainSlab&) = default;
  TrainSlab(TrainSlab&&) = default;
  TrainSlab& operator=(const TrainSlab&) = default;
  TrainSlab& operator=(TrainSlab&&) = default;

  // Appends a tensor to the table (the parameter slab grows with it, zero-filled).
  void Add(TensorSpec spec, bool decay);
  // Room for a table of `n` elements, so the Adds that follow never move the slab (a move would
  // write every page of it).
  void Reserve(size_t n) { params.reserve(n); }
  void set_norm_order(std::vector<size_t> order) { norm_order_ = std::move(order); }

 private:
  std::vector<SlabTensor> tensors_;
  std::vector<size_t> norm_order_;
  size_t size_ = 0;
};

// Copies (widening F16/BF16 to f32) the tensors `prefix` + name of `store` into `dst`, a slab of
// `slab`'s layout. Throws naming the file and tensor when one is missing, has another shape or a
// type elm cannot widen.
void LoadSlab(const TrainSlab& slab, const TensorStore& store, const std::string& prefix,
              float* dst);
// Tensors to write for one slab `src` of `slab`'s layout, named `prefix` + name, in `dtype`
// (converted into `scratch`, which must outlive the write).
std::vector<TensorToWrite> SlabTensors(const TrainSlab& slab, const float* src,
                                       const std::string& prefix, DType dtype,
                                       std::vector<uint16_t>& scratch);

}  // namespace elm
