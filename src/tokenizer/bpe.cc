#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>

namespace elm::bpe {

template <typename SlotT, typename KeyT>
void MergeTable::Place(std::vector<SlotT>* slots, KeyT key, uint32_t rank, KeyT empty) {
  for (size_t i = Slot(key);; i = (i + 1) & mask_) {
    SlotT& s = (*slots)[i];
    if (s.key == key) {
      s.rank = rank;
      return;
    }
    if (s.key == empty) {
      s.key = key;
      s.rank = rank;
      ++size_;
      return;
    }
  }
}

void MergeTable::Insert(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  // Keep the load factor at or below 1/2 so probe sequences stay short.
  if ((size_ + 1) * 2 > mask_ + 1) Rehash(std::max<size_t>(1024, (mask_ + 1) * 2));
  if (merged_.size() <= rank) merged_.resize(rank + 1, -1);
  merged_[rank] = merged;
  if (narrow_) {
    const uint32_t key = (static_cast<uint32_t>(left) << 16) | static_cast<uint32_t>(right);
    Place(&narrow_slots_, key, rank, kNarrowEmpty);
  } else {
    const uint64_t key = (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
    Place(&wide_slots_, key, rank, kWideEmpty);
  }
}

void MergeTable::Rehash(size_t capacity) {
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  size_ = 0;
  if (narrow_) {
    std::vector<Narrow> old = std::move(narrow_slots_);
    narrow_slots_.assign(capacity, Narrow{kNarrowEmpty, 0});
    for (const Narrow& s : old) {
      if (s.key != kNarrowEmpty) Place(&narrow_slots_, s.key, s.rank, kNarrowEmpty);
    }
  } else {
    std::vector<Wide> old = std::move(wide_slots_);
    wide_slots_.assign(capacity, Wide{kWideEmpty, 0});
    for (const Wide& s : old) {
      if (s.key != kWideEmpty) Place(&wide_slots_, s.key, s.rank, kWideEmpty);
    }
  }
}

void Merge(const MergeTable& merges, std::vector<int32_t>* symbols, Workspace* ws) {
  const size_t n = symbols->size();
  if (n < 2) return;
  auto& id = ws->id;
  auto& prev = ws->prev;
  auto& next = ws->next;
  auto& heap = ws->heap;
  id.assign(symbols->begin(), symbols->end());
  prev.resize(n);
  next.resize(n);
  heap.clear();

  // Min-heap on `order` = (rank, position): the lowest rank first, the leftmost pair on ties.
  const auto later = [](const Workspace::Candidate& a, const Workspace::Candidate& b) {
    return a.order > b.order;
  };
  const auto candidate = [&](size_t left_pos, int32_t left, int32_t right) {
    const MergeTable::Merge m = merges.Find(left, right);
    if (m.id < 0) return false;
    heap.push_back({(uint64_t{m.rank} << 32) | left_pos, left, right, m.id});
    return true;
  };
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    if (i + 1 < n) candidate(i, id[i], id[i + 1]);
  }
  std::make_heap(heap.begin(), heap.end(), later);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Workspace::Candidate top = heap.back();
    heap.pop_back();
    const auto pos = static_cast<size_t>(top.order & 0xFFFFFFFFu);
    // Entries stay in the heap when a neighbour changes; skip those whose pair is no longer the
    // one queued. (HF compares the merged id instead; a pair at a position can only change by
    // growing, so the two checks agree.)
    if (id[pos] != top.left || next[pos] < 0) continue;
    const auto right = static_cast<size_t>(next[pos]);
    if (id[right] != top.right) continue;

    id[pos] = top.merged;
    id[right] = -1;
    next[pos] = next[right];
    if (next[right] >= 0) prev[static_cast<size_t>(next[right])] = static_cast<int32_t>(pos);

    if (prev[pos] >= 0) {
      const auto left = static_cast<size_t>(prev[pos]);
      if (candidate(left, id[left], id[pos])) std::push_heap(heap.begin(), heap.end(), later);
    }
    if (next[pos] >= 0) {
      if (candidate(pos, id[pos], id[static_cast<size_t>(next[pos])])) {
        std::push_heap(heap.begin(), heap.end(), later);
      }
    }
  }

  // Symbol 0 is never merged away (only right-hand symbols are), so the list starts there.
  symbols->clear();
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) {
    symbols->push_back(id[static_cast<size_t>(i)]);
  }
}

}  // namespace elm::bpe
