// The BPE merge loop: turns a sequence of initial symbols (one id per character, or per byte for
// byte-fallback characters) into vocabulary ids by applying merges in priority order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace elm::bpe {

// (left id, right id) -> (rank, merged id) as an open-addressing hash table. The merge loop does
// one lookup per candidate pair and the table (61k merges for Llama-2) does not fit in L1, so
// slot size matters: when ids and ranks fit in 16 bits (vocabularies and merge lists up to 65536
// entries, like Llama-2's) a slot is 8 bytes (packed pair, rank, merged id); otherwise 16.
class MergeTable {
 public:
  struct Merge {
    uint32_t rank;
    int32_t id;  // -1: no such merge
  };

  // `max_id` and `max_rank`: the largest id and rank that will be inserted (they decide the
  // slot layout).
  MergeTable(int32_t max_id, uint32_t max_rank)
      : narrow_(max_id >= 0 && max_id < 65536 && max_rank < 65536) {}
  MergeTable() : MergeTable(0, 0) {}

  // Adds or replaces the entry for (left, right). A pair listed twice keeps the last entry, as
  // HF's HashMap built from the merges list does.
  void Insert(int32_t left, int32_t right, uint32_t rank, int32_t merged);

  Merge Find(int32_t left, int32_t right) const {
    if (size_ == 0) return {0, -1};
    if (narrow_) {
      const uint32_t key = (static_cast<uint32_t>(left) << 16) | static_cast<uint32_t>(right);
      for (size_t i = Slot(key);; i = (i + 1) & mask_) {
        const Narrow& s = narrow_slots_[i];
        if (s.key == key) return {s.rank, s.id};
        if (s.key == kNarrowEmpty) return {0, -1};
      }
    }
    const uint64_t key =
        (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
    for (size_t i = Slot(key);; i = (i + 1) & mask_) {
      const Wide& s = wide_slots_[i];
      if (s.key == key) return {s.rank, s.id};
      if (s.key == kWideEmpty) return {0, -1};
    }
  }

  size_t size() const { return size_; }

 private:
  struct Narrow {
    uint32_t key;
    uint16_t rank;
    uint16_t id;
  };
  struct Wide {
    uint64_t key;
    uint32_t rank;
    int32_t id;
  };
  // Ids are non-negative, so a pair never packs to all ones.
  static constexpr uint32_t kNarrowEmpty = ~uint32_t{0};
  static constexpr uint64_t kWideEmpty = ~uint64_t{0};

  size_t Slot(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_;
  }
  void Rehash(size_t capacity);
  template <typename SlotT>
  void Place(std::vector<SlotT>* slots, const SlotT& slot, decltype(SlotT::key) empty);

  bool narrow_;
  std::vector<Narrow> narrow_slots_;
  std::vector<Wide> wide_slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

// Reusable scratch state for Merge(); one per encoding call (not shared between threads).
struct Workspace {
  std::vector<int32_t> id;     // symbol id; -1 once merged into its left neighbour
  std::vector<int32_t> prev;   // index of the previous live symbol, -1 at the start
  std::vector<int32_t> next;   // index of the next live symbol, -1 at the end
  std::vector<uint64_t> heap;  // candidate merges, rank << 32 | position of the left symbol
};

// Merges `symbols` in place exactly like HF tokenizers' BPE Word::merge_all (without dropout):
// repeatedly apply the candidate pair of lowest rank, the leftmost one on ties. A heap of
// candidates plus a doubly linked list over the symbols makes it O(n log n), so a single "word"
// of megabytes (Llama has no pre-tokenizer) is fine. The result replaces `symbols`.
void Merge(const MergeTable& merges, std::vector<int32_t>* symbols, Workspace* ws);

}  // namespace elm::bpe
