// What the route handlers share: the model, tokenizer, slots, options and counters. Internal to
// src/server (the public face is http_server.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "generation/reply_memo.h"
#include "generation/speculative.h"
#include "grammar/grammar_constraint.h"
#include "model/model.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/prefix_store.h"
#include "server/slot_scheduler.h"
#include "server/step_batcher.h"
#include "tokenizer/tokenizer.h"

namespace elm::server {

struct ServerState {
  ServerState(std::shared_ptr<const Model> m, Tokenizer t, ServerOptions o)
      : options(std::move(o)),
        model(std::move(m)),
        tok(std::move(t)),
        scheduler(model, options.parallel, options.context, options.queue, options.kv_type),
        replies(options.reply_memo),
        started(std::time(nullptr)),
        rng(std::random_device{}()) {}

  const ServerOptions options;
  const std::shared_ptr<const Model> model;
  const Tokenizer tok;
  std::string model_id;
  SlotScheduler scheduler;
  // The tokens of recent chat replies (generation/reply_memo.h), for the next turns' prompts.
  ReplyMemo replies;
  const std::time_t started;
  int slot_threads = 1;  // OpenMP threads each generating request uses (options.threads resolved)
  // Continuous batching (options.batching): runs every slot's forward passes as batched steps.
  std::unique_ptr<StepBatcher> batcher;
  // The prefix store (options.cache_ram_bytes with options.cache_prompt; null: none).
  std::unique_ptr<PrefixStore> prefix_store;
  // Speculative decoding (options.make_drafter): one decoder per slot, indexed by Lease::slot(),
  // used by the request holding the slot when it decodes alone (docs/server.md).
  std::vector<std::unique_ptr<SpeculativeDecoder>> speculative;
  int speculative_threads = 1;  // OpenMP threads of a speculating request
  ServerMetrics metrics;

  std::atomic<bool> stopping{false};
  // Request outcomes, reported by /health (the tests use them to see cancellations happen).
  std::atomic<uint64_t> completed{0}, cancelled{0}, rejected{0}, failed{0};

  // Fresh random numbers for response ids and for requests that give no seed.
  uint64_t Random() {
    std::lock_guard<std::mutex> lock(rng_mu);
    return rng();
  }
  // The vocabulary as a byte trie for grammar-constrained replies (grammar/grammar_constraint.h),
  // built on the first request that needs it and shared by all.
  std::shared_ptr<const TokenTrie> Vocab() {
    std::call_once(vocab_once, [&] { vocab = TokenTrie::FromTokenizer(tok); });
    return vocab;
  }
  std::string NewId(const char* prefix) {
    static const char kHex[] = "0123456789abcdef";
    std::string id = prefix;
    for (uint64_t r = Random(), i = 0; i < 16; ++i, r >>= 4) id.push_back(kHex[r & 15]);
    return id;
  }

 private:
  std::mutex rng_mu;
  std::mt19937_64 rng;
  std::once_flag vocab_once;
  std::shared_ptr<const TokenTrie> vocab;
};

}  // namespace elm::server
