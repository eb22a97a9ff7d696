// The prefix store (docs/server.md "Prefix store", `--cache-ram`): KV prefixes kept apart from the
// slots, in a least-recently-used store bounded in bytes. A slot's cache holds one conversation;
// when a request takes a slot and would discard most of what it holds, those positions are
// copied here first, and a later request whose prompt shares a longer prefix with a stored entry
// than with its slot gets that prefix copied back instead of recomputing it. So a returning
// conversation finds its history even after other traffic reused every slot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/token_prefix.h"
#include "model/session.h"

namespace elm::server {

class PrefixStore {
 public:
  // budget_bytes: the most bytes of KV the entries take together (0: nothing is stored).
  explicit PrefixStore(size_t budget_bytes);

  // Stores positions [0, tokens.size()) of `session` under `tokens` (what it holds, in order;
  // at most session.position() of them). An entry whose tokens are a prefix of these is
  // replaced; when an entry already starts with these tokens it is only marked as used. The
  // least recently used entries leave until the new one fits; one larger than the whole budget
  // is not stored. Thread-safe.
  void Save(const Session& session, std::span<const int> tokens);

  // The longest prefix, of at most `limit` tokens, that `prompt` shares with an entry (0 if none).
  // Thread-safe.
  size_t Match(std::span<const int> prompt, size_t limit) const;

  // Copies the longest shared prefix (at most `limit` tokens, and only when longer than
  // `at_least`) into `session` and its tokens into `held`; returns its length, 0 when none
  // qualifies (the session is then untouched). Marks the entry as used. Thread-safe.
  size_t Restore(Session& session, std::span<const int> prompt, size_t limit, size_t at_least,
                 std::vector<int>& held);

  struct Stats {
    uint64_t entries = 0, bytes = 0, budget = 0;
    uint64_t saves = 0, hits = 0, evictions = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::vector<int> tokens;
    std::vector<uint8_t> kv;  // KVCache::SavePrefix of tokens.size() positions
  };
  using Entries = std::list<std::shared_ptr<const Entry>>;  // most recently used first
  // The entry sharing the longest prefix (at most limit) with prompt, and its length (mu_ held).
  Entries::iterator Best(std::span<const int> prompt, size_t limit, size_t* len) const;

  const size_t budget_;
  mutable std::mutex mu_;
  mutable Entries entries_;  // guarded by mu_
  size_t bytes_ = 0;         // guarded by mu_
  Stats counts_;             // saves, hits, evictions (guarded by mu_)
};

}  // namespace elm::server
