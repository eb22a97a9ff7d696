#include "server/step_batcher.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

#include "base/error.h"

namespace elm::server {

StepBatcher::StepBatcher(std::shared_ptr<const Model> model, int threads, int prefill_chunk,
                         int max_wait_us)
    : step_(std::move(model)),
      prefill_chunk_(std::max(1, prefill_chunk)),
      max_wait_us_(std::max(0, max_wait_us)),
      team_(threads > 0 ? threads : omp_get_max_threads()) {
  thread_ = std::thread([this] { Loop(); });
}

StepBatcher::~StepBatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

StepBatcher::Membership::Membership(StepBatcher& b) : b_(b) {
  std::lock_guard<std::mutex> lock(b_.mu_);
  ++b_.members_;
}

StepBatcher::Membership::~Membership() {
  {
    std::lock_guard<std::mutex> lock(b_.mu_);
    --b_.members_;
  }
  b_.work_cv_.notify_all();  // a step may be waiting for this stream
}

StepBatcher::Stats StepBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void StepBatcher::Forward(Session& session, std::span<const int> tokens,
                          std::vector<float>& logits) {
  const ModelConfig& c = session.model().config();
  if (tokens.empty()) Fail("forward: no tokens given");
  for (size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      Fail("token id ", tokens[t], " at position ", t, " is out of range [0, ", c.vocab_size, ")");
  if (session.position() + static_cast<int>(tokens.size()) > session.context())
    Fail(tokens.size(), " tokens after ", session.position(),
         " in the cache exceed the context of ", session.context(), " tokens");
  Job job;
  job.session = &session;
  job.tokens = tokens;
  job.logits = &logits;
  Submit(job, pending_);
}

void StepBatcher::Exclusive(const std::function<void()>& work) {
  Job job;
  job.work = &work;
  Submit(job, exclusive_);
}

void StepBatcher::Submit(Job& job, std::vector<Job*>& queue) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_) Fail("the step batcher has stopped");
  queue.push_back(&job);
  work_cv_.notify_all();
  done_cv_.wait(lock, [&] { return job.finished; });
  if (job.error) std::rethrow_exception(job.error);
}

void StepBatcher::RunExclusive(std::unique_lock<std::mutex>& lock) {
  while (!exclusive_.empty()) {
    Job* j = exclusive_.front();
    exclusive_.erase(exclusive_.begin());
    lock.unlock();
    std::exception_ptr error;
    try {
      (*j->work)();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    j->error = error;
    j->finished = true;
    done_cv_.notify_all();
  }
}

void StepBatcher::Loop() {
  omp_set_num_threads(team_);
  std::vector<BatchItem> items;
  std::vector<Job*> in_step;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || !pending_.empty() || !exclusive_.empty(); });
    if (stop_) {
      // Forward and Exclusive refuse new jobs once stop_ is set; fail the ones already waiting.
      for (auto* queue : {&pending_, &exclusive_}) {
        for (Job* j : *queue) {
          j->error = std::make_exception_ptr(Error("the server is stopping"));
          j->finished = true;
        }
        queue->clear();
      }
      done_cv_.notify_all();
      return;
    }
    RunExclusive(lock);
    if (pending_.empty()) continue;
    // Give the other streams a moment to hand in their next token, so they share this step.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::microseconds(max_wait_us_);
    work_cv_.wait_until(lock, deadline, [&] {
      return stop_ || !exclusive_.empty() || static_cast<int>(pending_.size()) >= members_;
    });
    if (stop_) continue;
    RunExclusive(lock);

    // Decoding streams take one row each; prompts share the prefill budget in arrival order
    // (the whole step's worth when nothing is decoding).
    const bool decoding = std::any_of(pending_.begin(), pending_.end(),
                                      [](const Job* j) { return j->tokens.size() - j->done == 1; });
    int budget = decoding ? prefill_chunk_ : Session::kMaxBatch;
    items.clear();
    in_step.clear();
    for (Job* j : pending_) {
      const int left = static_cast<int>(j->tokens.size() - j->done);
      int take = left;
      if (left > 1) {
        take = std::min(left, budget);
        if (take <= 0) continue;
        budget -= take;
      }
      const bool last = take == left;
      items.push_back({j->session, j->tokens.subspan(j->done, static_cast<size_t>(take)),
                       last ? j->logits : nullptr});
      in_step.push_back(j);
    }
    lock.unlock();
    std::exception_ptr error;
    try {
      step_.Forward(items);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    ++stats_.steps;
    stats_.sequences += items.size();
    for (size_t i = 0; i < in_step.size(); ++i) {
      Job* j = in_step[i];
      stats_.rows += items[i].tokens.size();
      j->done += items[i].tokens.size();
      if (error || j->done == j->tokens.size()) {
        j->error = error;
        j->finished = true;
        pending_.erase(std::find(pending_.begin(), pending_.end(), j));
      }
    }
    done_cv_.notify_all();
  }
}

}  // namespace elm::server
