#include "tokenizer/bpe.h"

#include <algorithm>
#include <bit>

#include "base/error.h"

namespace elm::bpe {

template <typename SlotT>
void MergeTable::Place(std::vector<SlotT>* slots, const SlotT& slot, decltype(SlotT::key) empty) {
  for (size_t i = Slot(slot.key);; i = (i + 1) & mask_) {
    SlotT& s = (*slots)[i];
    if (s.key == empty) ++size_;
    if (s.key == empty || s.key == slot.key) {
      s = slot;
      return;
    }
  }
}

void MergeTable::Insert(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  // Keep the load factor at or below 1/2 so probe sequences stay short.
  if ((size_ + 1) * 2 > mask_ + 1) Rehash(std::max<size_t>(1024, (mask_ + 1) * 2));
  if (narrow_) {
    ELM_CHECK(left >= 0 && left < 65536 && right >= 0 && right < 65536 && merged >= 0 &&
              merged < 65536 && rank < 65536);
    const uint32_t key = (static_cast<uint32_t>(left) << 16) | static_cast<uint32_t>(right);
    Place(&narrow_slots_, Narrow{key, static_cast<uint16_t>(rank), static_cast<uint16_t>(merged)},
          kNarrowEmpty);
  } else {
    ELM_CHECK(left >= 0 && right >= 0 && merged >= 0);
    const uint64_t key =
        (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
    Place(&wide_slots_, Wide{key, rank, merged}, kWideEmpty);
  }
}

void MergeTable::Rehash(size_t capacity) {
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  size_ = 0;
  if (narrow_) {
    std::vector<Narrow> old = std::move(narrow_slots_);
    narrow_slots_.assign(capacity, Narrow{kNarrowEmpty, 0, 0});
    for (const Narrow& s : old) {
      if (s.key != kNarrowEmpty) Place(&narrow_slots_, s, kNarrowEmpty);
    }
  } else {
    std::vector<Wide> old = std::move(wide_slots_);
    wide_slots_.assign(capacity, Wide{kWideEmpty, 0, 0});
    for (const Wide& s : old) {
      if (s.key != kWideEmpty) Place(&wide_slots_, s, kWideEmpty);
    }
  }
}

namespace {

// An 8-ary min-heap of (rank << 32 | position) keys: a node's eight children fill one cache
// line, so a pop touches a third as many lines as a binary heap once a huge word's heap no
// longer fits in cache.
constexpr size_t kArity = 8;

void SiftDown(std::vector<uint64_t>& h, size_t i, uint64_t key) {
  const size_t n = h.size();
  for (;;) {
    const size_t first = kArity * i + 1;
    if (first >= n) break;
    size_t best = first;
    const size_t end = std::min(first + kArity, n);
    for (size_t k = first + 1; k < end; ++k) {
      if (h[k] < h[best]) best = k;
    }
    if (h[best] >= key) break;
    h[i] = h[best];
    i = best;
  }
  h[i] = key;
}

void HeapPush(std::vector<uint64_t>& h, uint64_t key) {
  size_t i = h.size();
  h.push_back(key);
  while (i > 0) {
    const size_t parent = (i - 1) / kArity;
    if (h[parent] <= key) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = key;
}

uint64_t HeapPop(std::vector<uint64_t>& h) {
  const uint64_t top = h.front();
  const uint64_t last = h.back();
  h.pop_back();
  if (!h.empty()) SiftDown(h, 0, last);
  return top;
}

// The same merge order for a short word, without the heap: with at most kShortWord symbols a
// scan for the best pair touches one or two cache lines and beats heap bookkeeping. (Words in
// ordinary text are this short; long "words" take the O(n log n) path below.)
constexpr size_t kShortWord = 24;

void MergeShort(const MergeTable& merges, std::vector<int32_t>* symbols) {
  size_t n = symbols->size();
  int32_t* id = symbols->data();
  uint32_t rank[kShortWord];
  int32_t merged[kShortWord];
  const auto lookup = [&](size_t i) {
    const MergeTable::Merge m = merges.Find(id[i], id[i + 1]);
    rank[i] = m.id < 0 ? ~uint32_t{0} : m.rank;
    merged[i] = m.id;
  };
  for (size_t i = 0; i + 1 < n; ++i) lookup(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (rank[i] < rank[best]) best = i;  // strict: the leftmost of equal ranks wins
    }
    if (merged[best] < 0) break;
    id[best] = merged[best];
    for (size_t i = best + 1; i + 1 < n; ++i) id[i] = id[i + 1];
    for (size_t i = best + 1; i + 2 < n; ++i) {  // pairs are 0 .. n-2
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) lookup(best - 1);
    if (best + 1 < n) lookup(best);
  }
  symbols->resize(n);
}

}  // namespace

void Merge(const MergeTable& merges, std::vector<int32_t>* symbols, Workspace* ws) {
  const size_t n = symbols->size();
  if (n < 2) return;
  if (n <= kShortWord) {
    MergeShort(merges, symbols);
    return;
  }
  auto& id = ws->id;
  auto& prev = ws->prev;
  auto& next = ws->next;
  auto& heap = ws->heap;
  id.assign(symbols->begin(), symbols->end());
  prev.resize(n);
  next.resize(n);
  heap.clear();

  // Queues the pair starting at `pos` if its symbols can merge.
  const auto queue = [&](size_t pos, bool heapify) {
    const MergeTable::Merge m = merges.Find(id[pos], id[static_cast<size_t>(next[pos])]);
    if (m.id < 0) return;
    const uint64_t key = (uint64_t{m.rank} << 32) | pos;
    if (heapify) {
      HeapPush(heap, key);
    } else {
      heap.push_back(key);
    }
  };
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  for (size_t i = 0; i + 1 < n; ++i) queue(i, false);
  for (size_t i = heap.size() / kArity + 1; i-- > 0;) {
    if (i < heap.size()) SiftDown(heap, i, heap[i]);
  }

  while (!heap.empty()) {
    const uint64_t top = HeapPop(heap);
    const auto pos = static_cast<size_t>(top & 0xFFFFFFFFu);
    const auto rank = static_cast<uint32_t>(top >> 32);
    // Entries stay queued when a neighbour changes. As in HF, skip those whose symbols no longer
    // form the queued merge (a pair can only change by growing, so the rule identifies it).
    if (id[pos] < 0 || next[pos] < 0) continue;
    const auto right = static_cast<size_t>(next[pos]);
    const MergeTable::Merge m = merges.Find(id[pos], id[right]);
    if (m.id < 0 || m.rank != rank) continue;

    id[pos] = m.id;
    id[right] = -1;
    next[pos] = next[right];
    if (next[right] >= 0) prev[static_cast<size_t>(next[right])] = static_cast<int32_t>(pos);
    if (prev[pos] >= 0) queue(static_cast<size_t>(prev[pos]), true);
    if (next[pos] >= 0) queue(pos, true);
  }

  // Symbol 0 is never merged away (only right-hand symbols are), so the list starts there.
  symbols->clear();
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) {
    symbols->push_back(id[static_cast<size_t>(i)]);
  }
}

}  // namespace elm::bpe
