// elm serve: the OpenAI-compatible HTTP server (src/server) with a chat page at "/". Built into
// the elm-serve program, which `elm serve` runs (cmd_serve_launcher.cc).
//
// SIGINT/SIGTERM end the server through Server::Stop(), which takes locks and so cannot run in a
// signal handler. The signals are blocked in the main thread before any server thread exists (so
// every thread started later blocks them too) and a waiter thread takes them with sigtimedwait().
// Threads that libraries started before main() (OpenBLAS starts its pool at load time) do not
// block them, so a handler is installed as well: it only sets a flag that the waiter polls.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <thread>

#include "base/error.h"
#include "cli_util.h"
#include "commands.h"
#include "io/model_tokenizer.h"
#include "model/model.h"
#include "server/http_server.h"
#include "speculative_flags.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

std::atomic<int> g_signal{0};  // lock-free, so async-signal-safe
static_assert(std::atomic<int>::is_always_lock_free);

void OnSignal(int sig) {
  g_signal.store(sig);
}

// Runs `work` on a new thread and waits for it, rethrowing its exception here. libgomp keeps the
// team of a thread that ran a parallel region until that thread ends.
void OnPassingThread(const std::function<void()>& work) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      work();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) std::rethrow_exception(error);
}

struct ServeOpts {
  std::string model, tokenizer, weights, lora, kv_type = "f32";
  bool no_mmap = false;
  bool exact = false;
  server::ServerOptions server;
  SpeculativeFlags speculative;
  int cache_ram_mib = 1024;
};

void RegisterServe(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", kServeHelp);
  auto o = std::make_shared<ServeOpts>();
  auto& s = o->server;
  AddModelOption(cmd, o->model)->required();
  cmd->add_option("--weights", o->weights,
                  "Convert weights at load: f32, f16, bf16, q8_0 or q4_0 (default: as stored)");
  cmd->add_flag("--no-mmap", o->no_mmap, kNoMmapHelp);
  cmd->add_flag("--exact", o->exact, kExactHelp);
  cmd->add_option("--lora", o->lora,
                  "LoRA adapter folder (PEFT layout), merged into the weights at load");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json to use (default: the model folder's, else the built-in Llama-2)");
  cmd->add_option("--host", s.host, "Address to listen on (0.0.0.0 exposes the server)")
      ->capture_default_str();
  cmd->add_option("--port", s.port, "Port to listen on; 0 picks a free one")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", s.parallel,
                  "Requests generating at once (slots, each with its own KV cache)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--queue", s.queue, "Requests that may wait for a slot; beyond that, 503")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  AddContextOption(cmd, s.context, "Context size per slot in tokens (default: max_context_length)");
  cmd->add_option("--kv-type", o->kv_type,
                  "KV cache storage of every slot: f32, bf16 or f16 (half the memory)")
      ->capture_default_str();
  cmd->add_option("--api-key", s.api_key,
                  "Require 'Authorization: Bearer KEY' (default: the ELM_API_KEY environment "
                  "variable, if set)")
      ->envname("ELM_API_KEY");
  cmd->add_option("--alias", s.model_id, "Model name reported by the API (default: folder name)");
  cmd->add_option("--max-body", s.max_body_bytes, "Largest request body in bytes (413 beyond)")
      ->capture_default_str();
  cmd->add_option("--timeout", s.read_timeout_s,
                  "Seconds a client may stay silent while sending a request, or not read the "
                  "response")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--header-timeout", s.header_timeout_s,
                  "Seconds within which a request's line and headers must all arrive")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--body-timeout", s.body_timeout_s,
                  "Seconds within which a request's body must arrive, plus 1 s per 64 KiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-waiting-per-client", s.max_waiting_per_client,
                  "Connections one client address may keep waiting on it for over 1 s (a slow "
                  "request or an idle keep-alive); more are closed")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--threads,-t", s.threads,
                  "OpenMP threads of the batched decoding steps (default: all cores); with "
                  "--no-batching, per generating request (default: cores / --parallel)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("!--no-batching", s.batching,
                "Decode each slot on its own thread instead of all slots in one batched step");
  cmd->add_option("--prefill-chunk", s.prefill_chunk,
                  "Batching: prompt tokens a step runs while other streams decode")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_flag("!--no-cache-prompt", s.cache_prompt,
                "Do not reuse the KV of a slot's previous request for a shared prompt prefix");
  cmd->add_option("--cache-ram", o->cache_ram_mib,
                  "MiB of KV prefixes kept apart from the slots, least recently used out first, "
                  "so a returning conversation finds its prefix after other traffic (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--reply-memo", s.reply_memo,
                  "Chat replies whose sampled tokens are remembered: an assistant message sent "
                  "back verbatim is fed as those tokens, not re-encoded, so the next turn reuses "
                  "its whole prefix (0: off; docs/server.md)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  AddSpeculativeFlags(cmd, o->speculative);
  cmd->add_option("--threads-http", s.http_threads,
                  "HTTP connection threads (default: parallel + queue + 8)");
  cmd->add_flag("--log", s.log_requests, "Log one line per request to stderr");
  cmd->callback([o] {
    o->server.write_timeout_s = o->server.read_timeout_s;
    o->server.kv_type = ParseKvTypeFlag(o->kv_type);
    o->server.cache_ram_bytes = static_cast<size_t>(o->cache_ram_mib) << 20;
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    // Loading may run OpenMP regions (converting or packing weights, a draft model too). It runs
    // on a thread of its own that ends before serving, and its OpenMP team with it: with batching
    // the stepping thread's team must be the process's only one (server/step_batcher.h; a packed
    // Q8_0 server otherwise made ~17,000 context switches a second and ran ~20% slower).
    std::optional<server::Server> srv;
    OnPassingThread([&] {
      LoadOptions lo;
      lo.weights = ParseWeightsFlag(o->weights);
      lo.mmap = !o->no_mmap;
      lo.lora = o->lora;
      lo.exact = o->exact;
      auto model = Model::Load(o->model, lo);
      WarnIfBeyondTrainedContext(o->server.context, model->config().max_context);
      Tokenizer tok = LoadTokenizerFor(o->model, o->tokenizer);
      // Speculative decoding: a drafter per slot, each with a KV cache of the slot's context.
      o->server.make_drafter = MakeDrafterFactory(
          o->speculative, model, &tok,
          o->server.context > 0 ? o->server.context : model->config().max_context,
          o->server.kv_type);
      o->server.draft_max = o->speculative.draft_max;
      srv.emplace(model, std::move(tok), o->server);
    });
    const int port = srv->Bind();
    std::atomic<bool> done{false};
    std::thread waiter([&srv, &signals, &done] {
      while (!done.load()) {
        const timespec poll_interval{0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&signals, nullptr, &poll_interval);
        if (sig <= 0) sig = g_signal.exchange(0);
        if (sig > 0) {
          std::fprintf(stderr, "\nelm serve: %s received, shutting down\n",
                       sig == SIGINT ? "SIGINT" : "SIGTERM");
          srv->Stop();
          return;
        }
      }
    });

    std::fprintf(stderr,
                 "elm serve: %s on http://%s:%d/ (%d slot%s of %d thread%s, queue %d)%s\n"
                 "Press Ctrl+C to stop.\n",
                 srv->model_id().c_str(), o->server.host.c_str(), port, o->server.parallel,
                 o->server.parallel == 1 ? "" : "s", srv->threads_per_slot(),
                 srv->threads_per_slot() == 1 ? "" : "s", o->server.queue,
                 o->server.api_key.empty() ? "" : ", API key required");
    std::fflush(stderr);
    srv->Run();
    done = true;  // Run() also returns if listening failed
    waiter.join();
    std::fprintf(stderr, "elm serve: stopped\n");
  });
}

}  // namespace

void RegisterServeCommand(CLI::App& app) {
  RegisterServe(app);
}

ELM_REGISTER_COMMAND(70, RegisterServeCommand);

}  // namespace elm::cli
