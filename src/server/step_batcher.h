// Continuous batching (docs/server.md "Continuous batching"): the slots' forward passes run on one
// thread as batched steps (model/batch_step.h), so each step reads the weights once for every
// stream. A slot's thread hands its tokens over and blocks until they ran: sampling, stop strings
// and streaming stay in the one decode loop (generation/generator.h), per sequence. Streams join
// and leave between steps; a prompt longer than the prefill budget is split over several steps,
// so streams already decoding keep getting a token per step while it fills.
// The stepping thread is the only one of the server that computes with the model while batching
// is on: a lone stream's forward passes, speculative steps, prompt scoring and embeddings are
// handed to it too (Forward, Exclusive). Every other thread that ran an OpenMP parallel region
// would keep a team of its own, and once libgomp manages more threads than there are cores it
// spins only ~100 times at a barrier before sleeping: every step's many barriers would then cost
// a futex wake-up each (measured: 10x the context switches, batched BF16 ~10% slower).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "model/batch_step.h"
#include "model/session.h"

namespace elm::server {

class StepBatcher {
 public:
  // threads: the OpenMP team of the stepping thread (0: all cores). prefill_chunk: the most prompt
  // tokens a step runs while other streams are decoding (a step of prompts alone runs up to
  // Session::kMaxBatch). max_wait_us: how long a step waits for streams between steps (sampling,
  // writing to their clients) before it runs without them.
  StepBatcher(std::shared_ptr<const Model> model, int threads, int prefill_chunk,
              int max_wait_us = 2000);
  ~StepBatcher();
  StepBatcher(const StepBatcher&) = delete;
  StepBatcher& operator=(const StepBatcher&) = delete;

  // A stream taking part in the steps while it lives: steps wait (max_wait_us at most) for every
  // member's next tokens before running, so the streams go through in one step.
  class Membership {
   public:
    explicit Membership(StepBatcher& b);
    ~Membership();
    Membership(const Membership&) = delete;
    Membership& operator=(const Membership&) = delete;

   private:
    StepBatcher& b_;
  };

  // Runs `tokens` on `session` within the coming steps and waits for them; `logits` gets the last
  // row's. Throws elm::Error as Session::Forward does (checked before anything runs).
  void Forward(Session& session, std::span<const int> tokens, std::vector<float>& logits);

  // Runs `work` (model compute that is not one forward pass of a stream: a speculative step,
  // prompt scoring, an embedding) on the stepping thread between two steps, with the steps'
  // OpenMP team, and waits for it; its exception is rethrown here. `work` must not call Forward
  // or Exclusive.
  void Exclusive(const std::function<void()>& work);

  struct Stats {
    uint64_t steps = 0;
    uint64_t rows = 0;       // tokens run, over all steps
    uint64_t sequences = 0;  // sequence-steps: the sum over steps of the sequences in each
  };
  Stats stats() const;

 private:
  struct Job {
    const std::function<void()>* work = nullptr;  // set: an Exclusive job
    Session* session = nullptr;
    std::span<const int> tokens;
    std::vector<float>* logits = nullptr;
    size_t done = 0;  // tokens already run
    bool finished = false;
    std::exception_ptr error;
  };
  void Loop();
  // Hands `job` over on `queue` (pending_ or exclusive_) and waits for it.
  void Submit(Job& job, std::vector<Job*>& queue);
  // Runs the pending Exclusive jobs, in arrival order (mu_ held by `lock`, released while each
  // runs).
  void RunExclusive(std::unique_lock<std::mutex>& lock);

  BatchStep step_;
  const int prefill_chunk_;
  const int max_wait_us_;
  const int team_;  // OpenMP threads of a step (threads, or the constructing thread's default)
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::vector<Job*> pending_;    // forward passes, guarded by mu_, in arrival order
  std::vector<Job*> exclusive_;  // Exclusive jobs, guarded by mu_, in arrival order
  int members_ = 0;              // guarded by mu_
  bool stop_ = false;            // guarded by mu_
  Stats stats_;                  // guarded by mu_
  std::thread thread_;
};

}  // namespace elm::server
