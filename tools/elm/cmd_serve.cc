// elm serve: the OpenAI-compatible HTTP server (src/server) with a chat page at "/".
//
// SIGINT/SIGTERM: the handler only writes the signal number to a pipe (async-signal-safe); a
// thread reading the pipe calls Server::Stop(), which takes locks a handler must not touch.
// (Blocking the signals and using sigwait() does not work here: libraries start threads, e.g.
// OpenBLAS's pool at load time, before main() could block anything, and the kernel may deliver
// the signal to one of those.)
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <thread>

#include "base/error.h"
#include "commands.h"
#include "model/model.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

int g_signal_pipe = -1;

void OnSignal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe, &byte, 1);
}

struct ServeOpts {
  std::string model, tokenizer;
  server::ServerOptions server;
};

void RegisterServe(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) with a web "
      "chat page at /");
  auto o = std::make_shared<ServeOpts>();
  auto& s = o->server;
  cmd->add_option("--model", o->model, "Model folder (HF layout)")->required();
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
  cmd->add_option("--context", s.context,
                  "Context size per slot in tokens (default: max_context_length)")
      ->check(CLI::NonNegativeNumber);
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
  cmd->add_option("--threads-http", s.http_threads,
                  "HTTP connection threads (default: parallel + queue + 8)");
  cmd->add_flag("--log", s.log_requests, "Log one line per request to stderr");
  cmd->callback([o] {
    o->server.write_timeout_s = o->server.read_timeout_s;
    auto model = Model::Load(o->model);
    Tokenizer tok = LoadTokenizerFor(o->model, o->tokenizer);
    server::Server srv(model, std::move(tok), o->server);
    const int port = srv.Bind();

    int fds[2];
    if (pipe(fds) != 0) Fail("serve: cannot create a pipe for signal handling");
    g_signal_pipe = fds[1];
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::thread waiter([&srv, fd = fds[0]] {
      unsigned char sig = 0;
      while (read(fd, &sig, 1) < 0 && errno == EINTR) {
      }
      if (sig != 0) {
        std::fprintf(stderr, "\nelm serve: %s received, shutting down\n",
                     sig == SIGINT ? "SIGINT" : "SIGTERM");
        srv.Stop();
      }
    });

    std::fprintf(stderr,
                 "elm serve: %s on http://%s:%d/ (%d slot%s, queue %d)%s\n"
                 "Press Ctrl+C to stop.\n",
                 srv.model_id().c_str(), o->server.host.c_str(), port, o->server.parallel,
                 o->server.parallel == 1 ? "" : "s", o->server.queue,
                 o->server.api_key.empty() ? "" : ", API key required");
    std::fflush(stderr);
    srv.Run();
    // Run() also returns if listening failed: wake the waiter with a 0 byte (no signal).
    const unsigned char zero = 0;
    [[maybe_unused]] const ssize_t n = write(fds[1], &zero, 1);
    waiter.join();
    // Back to the default actions: a second Ctrl+C during teardown ends the process at once.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_signal_pipe = -1;
    close(fds[0]);
    close(fds[1]);
    std::fprintf(stderr, "elm serve: stopped\n");
  });
}

}  // namespace

void RegisterServeCommand(CLI::App& app) {
  RegisterServe(app);
}

ELM_REGISTER_COMMAND(70, RegisterServeCommand);

}  // namespace elm::cli
