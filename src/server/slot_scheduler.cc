#include "server/slot_scheduler.h"

#include <algorithm>
#include <chrono>

#include "base/error.h"
#include "base/token_prefix.h"

namespace elm::server {

namespace {
// How often a queued request re-checks its cancellation condition. Releases and shutdown wake
// waiters at once; this only bounds how long a vanished client keeps its queue place.
constexpr auto kPollInterval = std::chrono::milliseconds(50);
}  // namespace

SlotScheduler::SlotScheduler(std::shared_ptr<const Model> model, int slots, int context,
                             int max_queue, DType kv_type)
    : max_queue_(max_queue) {
  if (slots < 1) Fail("the server needs at least one slot (--parallel), got ", slots);
  if (max_queue < 0) Fail("the queue length (--queue) must be >= 0, got ", max_queue);
  for (int i = 0; i < slots; ++i) {
    sessions_.push_back(std::make_unique<Session>(model, context, kv_type));
    free_.push_back(slots - 1 - i);  // hand out slot 0 first
  }
  held_.resize(slots);
  last_used_.assign(slots, 0);
}

SlotScheduler::~SlotScheduler() = default;

SlotScheduler::Lease::~Lease() {
  owner_->Release(slot_);
}

int SlotScheduler::PickSlot(std::span<const int> prompt) const {
  int best = static_cast<int>(free_.size()) - 1;
  size_t best_len = 0;
  for (int i = static_cast<int>(free_.size()) - 1; i >= 0; --i) {
    const int slot = free_[i];
    const std::vector<int>& h = held_[slot];
    const size_t len =
        SharedPrefixLength(h, prompt, static_cast<size_t>(sessions_[slot]->position()));
    if (len > best_len || (len == best_len && last_used_[slot] < last_used_[free_[best]])) {
      best = i;
      best_len = len;
    }
  }
  return best;
}

SlotScheduler::AcquireResult SlotScheduler::Acquire(const std::function<bool()>& cancelled,
                                                    std::span<const int> prompt) {
  std::unique_lock<std::mutex> lock(mu_);
  auto take = [&] {
    const auto pick = free_.begin() + PickSlot(prompt);
    const int slot = *pick;
    free_.erase(pick);
    return AcquireResult{Status::kOk,
                         std::unique_ptr<Lease>(new Lease(this, slot, sessions_[slot].get()))};
  };
  if (shutdown_) return {Status::kShutdown, nullptr};
  if (!free_.empty() && waiters_.empty()) return take();
  if (waiters_.size() >= static_cast<size_t>(max_queue_)) return {Status::kQueueFull, nullptr};

  const uint64_t ticket = next_ticket_++;
  waiters_.push_back(ticket);
  auto leave = [&] {
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), ticket));
    cv_.notify_all();  // the next waiter may now be at the front
  };
  while (true) {
    if (shutdown_) {
      leave();
      return {Status::kShutdown, nullptr};
    }
    if (waiters_.front() == ticket && !free_.empty()) {
      waiters_.pop_front();
      cv_.notify_all();  // another slot may be free for the next in line
      return take();
    }
    if (cancelled && cancelled()) {
      leave();
      return {Status::kCancelled, nullptr};
    }
    cv_.wait_for(lock, kPollInterval);
  }
}

void SlotScheduler::Release(int slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(slot);
    last_used_[slot] = ++tick_;
  }
  cv_.notify_all();
}

void SlotScheduler::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

SlotScheduler::Stats SlotScheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s;
  s.slots = static_cast<int>(sessions_.size());
  s.busy = s.slots - static_cast<int>(free_.size());
  s.waiting = static_cast<int>(waiters_.size());
  s.max_queue = max_queue_;
  s.context = sessions_.front()->context();
  return s;
}

}  // namespace elm::server
