// Data parallelism over MPI ranks with the training state optionally sharded (ZeRO, PyTorch
// FSDP's sharding strategies; docs/training.md, "Sharded data parallelism"):
//
//   no_shard          every rank holds parameters, gradients and both AdamW moments (DDP)
//   ZeRO-1            each rank keeps the moments of its own range of the slab only
//   shard_grad_op     ZeRO-2: the gradients outside a rank's range are released once reduced
//   full_shard        ZeRO-3: the parameters outside a rank's range too; each layer's are
//                     gathered (broadcast from their owners) just before the layer runs forward
//                     or backward and released after it (TrainModel's parameter hooks)
//
// A rank's range is a run of whole tensors (train/slab.h's table), so it computes the gradient
// norms of whole tensors and its checkpoint shard holds whole tensors (train/checkpoint.h).
//
// Every mode reduces gradients the same way, so their arithmetic is the same and their losses
// and weights are bit-identical (docs/numerics.md): the slab is cut into buckets (whole layers
// of one owner's range, at most kBucketElements), each bucket is gathered to its owner with a
// non-blocking MPI_Igather, and the owner adds the ranks' contributions in rank order, then
// divides by the rank count. With overlap on, a bucket is started as soon as the backward pass
// has finished its layer (layers run last first), while the lower layers are still computed.
// no_shard then broadcasts each reduced bucket from its owner; ZeRO-1 and ZeRO-2 update their
// range and broadcast the updated parameters instead; full_shard updates its range and keeps it
// (the next step's gathers send it). Releasing gives a range's pages back to the system
// (madvise(MADV_DONTNEED)): the slabs keep their full size as address space, only the pages a
// rank owns or has gathered are resident.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "train/optimizer.h"
#include "train/slab.h"
#include "train/train_config.h"

namespace elm {

// Rank r owns elements [bounds[r], bounds[r+1]) of the slab: ranges cut at tensor boundaries,
// balanced by element count (a rank may own nothing when there are more ranks than tensors).
struct ShardLayout {
  std::vector<size_t> bounds;  // world + 1 offsets: 0 … slab.size()
  static ShardLayout Make(const TrainSlab& slab, int world);
  int world() const { return static_cast<int>(bounds.size()) - 1; }
  size_t begin(int r) const { return bounds[static_cast<size_t>(r)]; }
  size_t end(int r) const { return bounds[static_cast<size_t>(r) + 1]; }
};

class DataParallel {
 public:
  // The largest bucket, in elements (4 MiB of f32).
  static constexpr size_t kBucketElements = size_t{1} << 20;

  // `slab` must outlive this; the layout uses Distributed::rank() and size().
  DataParallel(TrainSlab& slab, Sharding mode, bool reduce_bf16, bool overlap);

  // The moments are sharded (ZeRO-1 and up, above one rank).
  bool sharded() const { return sharded_; }
  // The parameters are sharded too (full_shard above one rank): call GatherParams/ReleaseParams
  // around every use of the parameters (TrainModel::set_param_hooks).
  bool full_shard() const { return full_; }
  const ShardLayout& layout() const { return layout_; }
  // This rank's range, whose moments it keeps (the whole slab when not sharded).
  size_t moments_begin() const { return sharded_ ? layout_.begin(rank_) : 0; }
  size_t moments_end() const { return sharded_ ? layout_.end(rank_) : slab_.size(); }

  // Zeroes the gradients before a step (sharded gradients: only what this rank wrote).
  void ZeroGrad();
  // The next backward pass leaves the step's final gradients: with overlap, LayerDone starts
  // reducing each bucket when its layer is done.
  void Arm();
  // The backward pass finished layer `layer` (train_model.h's after-layer hook).
  void LayerDone(int layer);
  // Completes the reduction: the gradients become their mean over the ranks in this rank's
  // range (sharded) or everywhere (no_shard). A no-op alone.
  void ReduceGradients();
  // clip_grad_norm_ and AdamW over this rank's range, then every rank's updated parameters to
  // all ranks. Returns the global gradient norm, bit-identical to GlobalGradNorm of the whole
  // reduced gradient.
  double Update(const AdamWParams& hp, double lr, int64_t step, double grad_clip);
  // After rank 0 loaded or initialized the moments for the whole slab (`from_root`: a resumed
  // or continued run) or none: every rank keeps the moments of its own range (re-sharding a
  // checkpoint written by any number of ranks). Collective; no-op unless sharded.
  void ShareMoments(bool from_root);

  // full_shard (no-ops otherwise): the parameters of decoder layer `layer` (-1: the tensors
  // outside the layers: embeddings, final norm, output) from their owners to this rank, unless
  // already gathered. Collective: every rank gathers the same layers in the same order.
  void GatherParams(int layer);
  // Gives the pages of layer `layer`'s parameters this rank does not own back (local).
  void ReleaseParams(int layer);
  // Every parameter to rank 0 (before it writes a checkpoint; collective): the other ranks
  // receive nothing but pass each bucket through a scratch buffer of one bucket.
  void GatherAllParamsToRoot();
  // Back to this rank's range only (local).
  void ReleaseAllParams();

 private:
  struct Bucket {
    size_t begin = 0, end = 0;  // slab elements
    int owner = 0;
    int layer = -1;   // the backward layer after which it is final (-1: after the whole pass)
    int handle = -1;  // the gather in flight
    bool started = false, done = false;
    std::vector<float> recv;       // the owner's W contributions (f32 reduction)
    std::vector<uint16_t> send16;  // this rank's contribution in bf16 (bf16 reduction)
    std::vector<uint16_t> recv16;  // the owner's W contributions (bf16 reduction)
  };
  void Start(Bucket& b);
  void Complete(Bucket& b);
  // Every bucket's parameters from its owner to every rank (only layer `layer`'s when given).
  void BroadcastParams(std::optional<int> layer);
  // Gives the pages of slab elements [begin, end) of `v` back to the system, leaving zeros.
  static void Release(float* v, size_t begin, size_t end);
  // Gradients outside the owner's range are released once reduced (shard_grad_op, full_shard).
  bool releases_grads() const { return sharded_ && mode_ >= Sharding::kGradients; }
  double GradNorm() const;

  TrainSlab& slab_;
  Sharding mode_;
  bool reduce_bf16_, overlap_;
  int rank_, world_;
  bool sharded_, full_;
  bool armed_ = false;
  std::vector<char> gathered_;  // full_shard: per layer + 1, its parameters are gathered
  ShardLayout layout_;
  std::vector<Bucket> buckets_;
};

}  // namespace elm
