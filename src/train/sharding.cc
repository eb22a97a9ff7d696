#include "train/sharding.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/dtype.h"
#include "base/error.h"
#include "train/distributed.h"

namespace elm {

ShardLayout ShardLayout::Make(const TrainSlab& slab, int world) {
  ShardLayout l;
  l.bounds.assign(static_cast<size_t>(world) + 1, slab.size());
  l.bounds[0] = 0;
  // Tensor boundaries in slab order; rank r's range ends at the boundary nearest r·size/world
  // (never before the previous rank's end).
  std::vector<size_t> cuts;
  for (const SlabTensor& t : slab.tensors()) cuts.push_back(t.offset);
  cuts.push_back(slab.size());
  size_t c = 0;
  for (int r = 1; r < world; ++r) {
    const size_t target = slab.size() * static_cast<size_t>(r) / static_cast<size_t>(world);
    while (c + 1 < cuts.size() && cuts[c + 1] <= target) ++c;
    size_t best = cuts[c];
    if (c + 1 < cuts.size() && cuts[c + 1] - target < target - cuts[c]) best = cuts[c + 1];
    l.bounds[static_cast<size_t>(r)] = std::max(best, l.bounds[static_cast<size_t>(r) - 1]);
  }
  return l;
}

DataParallel::DataParallel(TrainSlab& slab, Sharding mode, bool reduce_bf16, bool overlap)
    : slab_(slab),
      mode_(mode),
      reduce_bf16_(reduce_bf16),
      overlap_(overlap),
      rank_(Distributed::rank()),
      world_(Distributed::size()),
      sharded_(world_ > 1 && mode != Sharding::kNoShard),
      full_(world_ > 1 && mode == Sharding::kFull),
      layout_(ShardLayout::Make(slab, world_)) {
  if (world_ == 1) return;
  // Buckets: runs of whole tensors of one layer within one owner's range, split at
  // kBucketElements; in slab order, the same on every rank.
  for (int r = 0; r < world_; ++r) {
    for (const SlabTensor& t : slab.tensors()) {
      if (t.offset < layout_.begin(r) || t.offset >= layout_.end(r)) continue;
      for (size_t at = t.offset; at < t.offset + t.numel;) {
        const size_t n = std::min(kBucketElements, t.offset + t.numel - at);
        const bool join = !buckets_.empty() && buckets_.back().owner == r &&
                          buckets_.back().layer == t.spec.layer && buckets_.back().end == at &&
                          buckets_.back().end - buckets_.back().begin + n <= kBucketElements;
        if (join) {
          buckets_.back().end += n;
        } else {
          Bucket b;
          b.begin = at;
          b.end = at + n;
          b.owner = r;
          b.layer = t.spec.layer;
          buckets_.push_back(std::move(b));
        }
        at += n;
      }
    }
  }
  int layers = 0;
  for (const SlabTensor& t : slab.tensors()) layers = std::max(layers, t.spec.layer + 1);
  gathered_.assign(static_cast<size_t>(layers) + 1, 0);
}

void DataParallel::ZeroGrad() {
  if (!releases_grads()) {
    slab_.ZeroGrad();
    return;
  }
  // shard_grad_op, full_shard: the rest of the gradient was released (zero pages) when reduced;
  // releasing it again costs little and covers the first step (the slab was allocated with its
  // pages untouched: TrainSlab::AllocateTrainingState).
  Release(slab_.grads.data(), 0, layout_.begin(rank_));
  Release(slab_.grads.data(), layout_.end(rank_), slab_.size());
  std::fill(slab_.grads.begin() + static_cast<std::ptrdiff_t>(layout_.begin(rank_)),
            slab_.grads.begin() + static_cast<std::ptrdiff_t>(layout_.end(rank_)), 0.0f);
}

void DataParallel::Arm() {
  armed_ = world_ > 1 && overlap_;
}

void DataParallel::Start(Bucket& b) {
  const size_t n = b.end - b.begin;
  const bool owner = b.owner == rank_;
  if (reduce_bf16_) {
    b.send16.resize(n);
    FromF32(DType::kBF16, slab_.grads.data() + b.begin, b.send16.data(), n);
    if (owner) b.recv16.resize(n * static_cast<size_t>(world_));
    b.handle = Distributed::IGather(b.send16.data(), owner ? b.recv16.data() : nullptr,
                                    n * sizeof(uint16_t), b.owner);
  } else {
    if (owner) b.recv.resize(n * static_cast<size_t>(world_));
    b.handle = Distributed::IGather(slab_.grads.data() + b.begin, owner ? b.recv.data() : nullptr,
                                    n * sizeof(float), b.owner);
  }
  b.started = true;
}

// The owner adds the ranks' contributions in rank order and divides by the rank count: the
// same arithmetic in every mode and at every overlap setting.
void DataParallel::Complete(Bucket& b) {
  const size_t n = b.end - b.begin;
  if (b.owner == rank_) {
    if (reduce_bf16_) {
      b.recv.resize(n * static_cast<size_t>(world_));
      ToF32(DType::kBF16, b.recv16.data(), b.recv.data(), b.recv.size());
      std::vector<uint16_t>().swap(b.recv16);
    }
    float* g = slab_.grads.data() + b.begin;
    const float w = static_cast<float>(world_);
    for (size_t i = 0; i < n; ++i) {
      float s = b.recv[i];
      for (int r = 1; r < world_; ++r) s += b.recv[static_cast<size_t>(r) * n + i];
      g[i] = s / w;
    }
    std::vector<float>().swap(b.recv);
  } else if (releases_grads()) {
    Release(slab_.grads.data(), b.begin, b.end);
  }
  std::vector<uint16_t>().swap(b.send16);
  b.done = true;
}

void DataParallel::Release(float* g, size_t begin, size_t end) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto lo = reinterpret_cast<uintptr_t>(g + begin);
  const auto hi = reinterpret_cast<uintptr_t>(g + end);
  const uintptr_t a = (lo + page - 1) / page * page, z = hi / page * page;
  if (z > a) {
    std::memset(g + begin, 0, a - lo);
    std::memset(reinterpret_cast<void*>(z), 0, hi - z);
    // Private anonymous pages read back as zeros after MADV_DONTNEED.
    if (madvise(reinterpret_cast<void*>(a), z - a, MADV_DONTNEED) != 0)
      std::memset(reinterpret_cast<void*>(a), 0, z - a);
  } else {
    std::fill(g + begin, g + end, 0.0f);
  }
}

void DataParallel::LayerDone(int layer) {
  if (!armed_) return;
  for (Bucket& b : buckets_)
    if (!b.started && b.layer >= layer) Start(b);
  // Drive MPI's progress and finish what has arrived.
  for (Bucket& b : buckets_)
    if (b.started && !b.done && Distributed::Test(b.handle)) Complete(b);
}

void DataParallel::ReduceGradients() {
  armed_ = false;
  if (world_ == 1) return;
  for (Bucket& b : buckets_)
    if (!b.started) Start(b);
  for (Bucket& b : buckets_) {
    if (!b.done) {
      Distributed::Wait(b.handle);
      Complete(b);
    }
    b.started = b.done = false;
    b.handle = -1;
  }
  if (mode_ != Sharding::kNoShard) return;
  // no_shard (DDP): every rank gets every reduced bucket.
  std::vector<int> handles;
  for (const Bucket& b : buckets_)
    handles.push_back(Distributed::IBroadcast(slab_.grads.data() + b.begin,
                                              (b.end - b.begin) * sizeof(float), b.owner));
  for (const int h : handles) Distributed::Wait(h);
}

double DataParallel::GradNorm() const {
  if (!sharded_) return GlobalGradNorm(slab_);
  // Each rank the f32 norms of its whole tensors; the sum over ranks has one non-zero term per
  // tensor, so it is exact, and the stacked norm is GlobalGradNorm's.
  const auto& tensors = slab_.tensors();
  std::vector<double> norms(tensors.size(), 0.0);
  for (size_t k = 0; k < tensors.size(); ++k) {
    const SlabTensor& t = tensors[k];
    if (t.offset >= moments_begin() && t.offset < moments_end())
      norms[k] = TorchVectorNorm(slab_.grads.data() + t.offset, t.numel);
  }
  Distributed::AllReduceSum(norms.data(), norms.size());
  std::vector<float> stacked;
  for (const size_t k : slab_.norm_order()) stacked.push_back(static_cast<float>(norms[k]));
  return TorchVectorNorm(stacked.data(), stacked.size());
}

double DataParallel::Update(const AdamWParams& hp, double lr, int64_t step, double grad_clip) {
  const double norm = GradNorm();
  if (grad_clip > 0) ClipGradients(slab_, norm, grad_clip, moments_begin(), moments_end());
  // full_shard: the gathered copies go first (they would be stale); the updated range stays here
  // and the next gathers send it.
  ReleaseAllParams();
  AdamWUpdate(slab_, hp, lr, step);
  if (!sharded_ || full_) return norm;
  BroadcastParams(std::nullopt);  // every rank's updated range to every rank
  return norm;
}

void DataParallel::BroadcastParams(std::optional<int> layer) {
  std::vector<int> handles;
  for (const Bucket& b : buckets_)
    if (!layer || b.layer == *layer)
      handles.push_back(Distributed::IBroadcast(slab_.params.data() + b.begin,
                                                (b.end - b.begin) * sizeof(float), b.owner));
  for (const int h : handles) Distributed::Wait(h);
}

void DataParallel::ShareMoments(bool from_root) {
  if (!sharded_) return;
  const size_t begin = moments_begin(), end = moments_end();
  const bool root_full = rank_ == 0 && slab_.moments_begin == 0 && slab_.m.size() == slab_.size();
  if (rank_ != 0 && (slab_.moments_begin != begin || slab_.m.size() != end - begin)) {
    slab_.moments_begin = begin;
    slab_.m.assign(end - begin, 0.0f);
    slab_.v.assign(end - begin, 0.0f);
  }
  if (from_root) {
    ELM_CHECK(rank_ != 0 || root_full);
    // Rank 0 holds every moment: each bucket goes to its owner (the others receive it into a
    // scratch buffer and drop it).
    std::vector<float> scratch;
    for (const Bucket& b : buckets_) {
      if (b.owner == 0) continue;
      const size_t n = b.end - b.begin;
      for (std::vector<float>* mv : {&slab_.m, &slab_.v}) {
        float* buf = nullptr;
        if (rank_ == 0) {
          buf = mv->data() + b.begin;
        } else if (rank_ == b.owner) {
          buf = mv->data() + (b.begin - begin);
        } else {
          scratch.resize(n);
          buf = scratch.data();
        }
        Distributed::Wait(Distributed::IBroadcast(buf, n * sizeof(float), 0));
      }
    }
  }
  if (rank_ == 0 && (slab_.moments_begin != begin || slab_.m.size() != end - begin)) {
    const size_t from = begin - slab_.moments_begin;
    std::vector<float> m(slab_.m.begin() + static_cast<std::ptrdiff_t>(from),
                         slab_.m.begin() + static_cast<std::ptrdiff_t>(from + end - begin));
    std::vector<float> v(slab_.v.begin() + static_cast<std::ptrdiff_t>(from),
                         slab_.v.begin() + static_cast<std::ptrdiff_t>(from + end - begin));
    slab_.m.swap(m);
    slab_.v.swap(v);
    slab_.moments_begin = begin;
  }
}

// A layer past the slab's last (a LoRA adapter on the lower layers only) has nothing to gather.
void DataParallel::GatherParams(int layer) {
  const auto g = static_cast<size_t>(layer + 1);
  if (!full_ || g >= gathered_.size() || gathered_[g]) return;
  BroadcastParams(layer);
  gathered_[g] = 1;
}

void DataParallel::ReleaseParams(int layer) {
  const auto g = static_cast<size_t>(layer + 1);
  if (!full_ || g >= gathered_.size() || !gathered_[g]) return;
  for (const Bucket& b : buckets_)
    if (b.layer == layer && b.owner != rank_) Release(slab_.params.data(), b.begin, b.end);
  gathered_[g] = 0;
}

void DataParallel::GatherAllParamsToRoot() {
  if (!full_) return;
  std::vector<float> scratch;
  for (const Bucket& b : buckets_) {
    if (b.owner == 0) continue;
    const size_t n = b.end - b.begin;
    float* buf = slab_.params.data() + b.begin;
    if (rank_ != 0 && rank_ != b.owner) {
      scratch.resize(n);
      buf = scratch.data();
    }
    Distributed::Wait(Distributed::IBroadcast(buf, n * sizeof(float), b.owner));
  }
  if (rank_ == 0) std::fill(gathered_.begin(), gathered_.end(), 1);
}

void DataParallel::ReleaseAllParams() {
  if (!full_) return;
  Release(slab_.params.data(), 0, layout_.begin(rank_));
  Release(slab_.params.data(), layout_.end(rank_), slab_.size());
  std::fill(gathered_.begin(), gathered_.end(), 0);
}

}  // namespace elm
