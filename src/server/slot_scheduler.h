// N inference slots, each a Session (its own KV cache) over one shared read-only Model, and a
// bounded FIFO queue of requests waiting for one. All memory is reserved up front: the KV caches
// are allocated when the scheduler is built, and a request that finds the queue full is turned
// away (HTTP 503) instead of piling up, so load never grows the server's memory.
//
// The slots double as the prefix cache (docs/server.md "Prefix cache"): a slot keeps the KV of
// its last request, and a request takes the free slot whose held tokens share the longest prefix
// with its prompt (the least recently used one on a tie), so a chat's next turn finds its history
// already computed. The cache is bounded by the slots' own memory: slots × context tokens.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "model/session.h"

namespace elm::server {

class SlotScheduler {
 public:
  // `context`: positions per slot (0: the model's max_context_length). `max_queue`: how many
  // requests may wait for a slot; 0 means a request is rejected whenever every slot is busy.
  SlotScheduler(std::shared_ptr<const Model> model, int slots, int context, int max_queue,
                DType kv_type = DType::kF32);
  ~SlotScheduler();

  // A slot held by one request; returned to the pool when destroyed.
  class Lease {
   public:
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Session& session() { return *session_; }
    int slot() const { return slot_; }
    // The tokens the session's cache holds, in order (its first position() of them are valid);
    // the holder keeps it up to date for the next request's prefix match.
    std::vector<int>& held() { return owner_->held_[slot_]; }

   private:
    friend class SlotScheduler;
    Lease(SlotScheduler* owner, int slot, Session* session)
        : owner_(owner), slot_(slot), session_(session) {}
    SlotScheduler* owner_;
    int slot_;
    Session* session_;
  };

  enum class Status { kOk, kQueueFull, kCancelled, kShutdown };
  struct AcquireResult {
    Status status;
    std::unique_ptr<Lease> lease;  // set when status == kOk
  };

  // Takes a free slot, waiting in FIFO order behind earlier requests if none is free.
  // `cancelled` is polled while waiting (e.g. "has the client hung up?"); when it returns true the
  // request leaves the queue. `prompt` picks among free slots the one whose held tokens share the
  // longest prefix with it (empty: the least recently used). Thread-safe.
  AcquireResult Acquire(const std::function<bool()>& cancelled = {},
                        std::span<const int> prompt = {});

  // Wakes every waiter with kShutdown and makes later Acquire calls fail the same way. Leases
  // already handed out stay valid until released.
  void Shutdown();

  struct Stats {
    int slots = 0;
    int busy = 0;
    int waiting = 0;
    int max_queue = 0;
    int context = 0;
  };
  Stats stats() const;

 private:
  void Release(int slot);
  int PickSlot(std::span<const int> prompt) const;  // index into free_ (mu_ held)

  const int max_queue_;
  std::vector<std::unique_ptr<Session>> sessions_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> free_;               // slot indices not leased (guarded by mu_)
  std::vector<std::vector<int>> held_;  // per slot: its cache's tokens (the lease holder's)
  std::vector<uint64_t> last_used_;     // per slot: release tick (guarded by mu_)
  uint64_t tick_ = 0;                   // guarded by mu_
  std::deque<uint64_t> waiters_;        // tickets of queued requests, oldest first (guarded by mu_)
  uint64_t next_ticket_ = 0;            // guarded by mu_
  bool shutdown_ = false;               // guarded by mu_
};

}  // namespace elm::server
