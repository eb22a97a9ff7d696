#include "generation/reply_memo.h"

#include <utility>

namespace elm {

void ReplyMemo::Remember(const std::string& text, std::vector<int> ids) {
  if (capacity_ == 0 || text.empty() || ids.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto it = by_text_.find(text); it != by_text_.end()) {
    it->second->ids = std::move(ids);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  if (lru_.size() >= capacity_) {
    by_text_.erase(lru_.back().text);
    lru_.pop_back();
  }
  lru_.push_front(Entry{text, std::move(ids)});
  by_text_.emplace(lru_.front().text, lru_.begin());
}

std::optional<std::vector<int>> ReplyMemo::Find(const std::string& text) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = by_text_.find(text);
  if (it == by_text_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->ids;
}

size_t ReplyMemo::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

}  // namespace elm
