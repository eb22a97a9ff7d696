#include "server/prefix_store.h"

#include <algorithm>

namespace elm::server {

PrefixStore::PrefixStore(size_t budget_bytes) : budget_(budget_bytes) {}

PrefixStore::Entries::iterator PrefixStore::Best(std::span<const int> prompt, size_t limit,
                                                 size_t* len) const {
  auto best = entries_.end();
  *len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const size_t n = SharedPrefixLength((*it)->tokens, prompt, limit);
    if (n > *len) {
      *len = n;
      best = it;
    }
  }
  return best;
}

void PrefixStore::Save(const Session& session, std::span<const int> tokens) {
  if (tokens.empty() || static_cast<int>(tokens.size()) > session.position()) return;
  const size_t need = session.cache().PrefixBytes(static_cast<int>(tokens.size()));
  if (need > budget_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if ((*it)->tokens.size() >= tokens.size() &&
          std::equal(tokens.begin(), tokens.end(), (*it)->tokens.begin())) {
        entries_.splice(entries_.begin(), entries_, it);  // already there: most recently used
        return;
      }
  }
  // The copy outside the lock: other slots may look up or save meanwhile.
  auto entry = std::make_shared<Entry>();
  entry->tokens.assign(tokens.begin(), tokens.end());
  session.cache().SavePrefix(static_cast<int>(tokens.size()), entry->kv);
  std::lock_guard<std::mutex> lock(mu_);
  // Entries this one extends are superseded by it.
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = **it;
    if (e.tokens.size() <= tokens.size() &&
        std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin())) {
      bytes_ -= e.kv.size();
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  while (!entries_.empty() && bytes_ + entry->kv.size() > budget_) {
    bytes_ -= entries_.back()->kv.size();
    entries_.pop_back();
    ++counts_.evictions;
  }
  bytes_ += entry->kv.size();
  entries_.push_front(std::move(entry));
  ++counts_.saves;
}

size_t PrefixStore::Match(std::span<const int> prompt, size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t len = 0;
  Best(prompt, limit, &len);
  return len;
}

size_t PrefixStore::Restore(Session& session, std::span<const int> prompt, size_t limit,
                            size_t at_least, std::vector<int>& held) {
  std::shared_ptr<const Entry> entry;
  size_t len = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto best = Best(prompt, std::min(limit, static_cast<size_t>(session.context())), &len);
    if (best == entries_.end() || len <= at_least) return 0;
    entries_.splice(entries_.begin(), entries_, best);
    entry = entries_.front();
    ++counts_.hits;
  }
  // The entry stays valid while we hold it, even if another thread evicts it now.
  session.LoadPrefix(entry->kv, static_cast<int>(entry->tokens.size()), static_cast<int>(len));
  held.assign(entry->tokens.begin(), entry->tokens.begin() + static_cast<ptrdiff_t>(len));
  return len;
}

PrefixStore::Stats PrefixStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = counts_;
  s.entries = entries_.size();
  s.bytes = bytes_;
  s.budget = budget_;
  return s;
}

}  // namespace elm::server
