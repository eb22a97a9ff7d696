// The OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health,
// /tokenize, /detokenize, /metrics and the chat page at /. N slots share one Model; see
// docs/server.md for the API, the limits and how overload, bad input and shutdown are handled.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "generation/speculative.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace elm::server {

struct ServerOptions {
  std::string host = "127.0.0.1";    // loopback unless asked otherwise
  int port = 8080;                   // 0: any free port (see Server::port())
  int parallel = 1;                  // slots: requests generating at the same time
  int queue = 8;                     // requests that may wait for a slot; more get 503
  int context = 0;                   // positions per slot; 0: the model's max_context_length
  DType kv_type = DType::kF32;       // KV cache storage of every slot
  std::string api_key;               // non-empty: require "Authorization: Bearer <key>"
  std::string model_id;              // name in responses; default: the model folder's name
  size_t max_body_bytes = 4u << 20;  // larger request bodies get 413
  int read_timeout_s = 10;           // a client silent this long while sending gets 400
  int write_timeout_s = 10;          // a client not reading this long is dropped
  int keep_alive_timeout_s = 2;      // idle keep-alive connections close after this
  int header_timeout_s = 10;         // a request's line and headers must arrive within this
  int body_timeout_s = 10;           // its body within this + 1 s per 64 KiB of Content-Length
  int max_waiting_per_client = 4;    // connections one address may keep waiting on it over 1 s
  int http_threads = 0;              // 0: parallel + queue + 8 (see docs/server.md)
  // OpenMP threads: with batching, of the thread that runs the batched steps (0: all cores);
  // without, per generating request (0: cores / parallel).
  int threads = 0;
  bool batching = true;      // continuous batching: the slots decode in one step (docs/server.md)
  int prefill_chunk = 128;   // batching: prompt tokens per step while other streams decode
  bool cache_prompt = true;  // reuse the KV of a slot's last request for a shared prefix
  // The prefix store (--cache-ram): bytes of KV prefixes kept apart from the slots, least recently
  // used out first (docs/server.md "Prefix store"); 0: none. Needs cache_prompt.
  size_t cache_ram_bytes = size_t{1024} << 20;
  // Chat replies whose sampled tokens are remembered, so an assistant message sent back verbatim
  // is fed as those tokens (docs/server.md "Replies fed back as sampled"); 0: none.
  size_t reply_memo = 256;
  // Speculative decoding (docs/server.md "Speculative decoding"): makes each slot's drafter (a
  // draft model's or prompt lookup's); empty: off. draft_max: most tokens proposed per step.
  std::function<std::unique_ptr<Drafter>()> make_drafter;
  int draft_max = 8;
  bool log_requests = false;  // one line per request on stderr
};

class Server {
 public:
  // Builds the slots (all KV caches are allocated here). Throws elm::Error for bad options.
  Server(std::shared_ptr<const Model> model, Tokenizer tokenizer, ServerOptions options);
  ~Server();  // Stop()s and waits for the serving thread if Start() made one
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port; returns the port (the chosen one when port is 0). Throws elm::Error.
  int Bind();
  // Serves until Stop(); binds first if Bind() was not called. Returns once every connection
  // thread has finished.
  void Run();
  // Bind() + Run() on a background thread; returns once the server accepts connections.
  void Start();
  // Stops accepting, cancels queued and running generations and makes Run() return. Thread-safe,
  // idempotent, and does not wait for Run() (the destructor does, for Start()).
  void Stop();

  int port() const;
  const std::string& model_id() const;
  int threads_per_slot() const;  // OpenMP threads each generating request uses

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace elm::server
