#include "server/http_server.h"

#include <httplib.h>
#include <omp.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "server/api_error.h"
#include "server/completion_routes.h"
#include "server/embedding_route.h"
#include "server/guarded_http_server.h"
#include "server/openai_request.h"
#include "server/server_state.h"
#include "server/web_page.h"

namespace elm::server {

using nlohmann::json;

namespace {

void SendError(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 503) res.set_header("Retry-After", "1");
  if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(Dump(ErrorJson(e)), "application/json");
}

void SendJson(httplib::Response& res, const json& j) {
  res.set_content(Dump(j), "application/json");
}

// Runs a route, turning whatever it throws into an OpenAI-style error response. elm::Error is
// what user-caused failures throw throughout the library (bad ids, invalid UTF-8), hence 400.
httplib::Server::Handler Guard(ServerState& st, void (*route)(ServerState&, const httplib::Request&,
                                                              httplib::Response&)) {
  return [&st, route](const httplib::Request& req, httplib::Response& res) {
    try {
      route(st, req, res);
    } catch (const ApiError& e) {
      SendError(res, e);
    } catch (const Error& e) {
      SendError(res, ApiError(400, e.what()));
    } catch (const std::exception& e) {
      ++st.failed;
      SendError(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error"));
    }
  };
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ (i < b.size() ? b[i] : 0);
  return diff == 0;
}

// The page and the health check stay open so that a browser can load the UI (which then asks for
// the key) and a supervisor can probe the server without credentials.
bool IsPublic(const std::string& path) {
  return path == "/" || path == "/index.html" || path == "/health" || path == "/favicon.ico";
}

void HandleHealth(ServerState& st, const httplib::Request&, httplib::Response& res) {
  const auto s = st.scheduler.stats();
  const bool stopping = st.stopping.load();
  if (stopping) res.status = 503;
  SendJson(res, {{"status", stopping ? "shutting_down" : "ok"},
                 {"model", st.model_id},
                 {"context", s.context},
                 {"slots",
                  {{"total", s.slots},
                   {"busy", s.busy},
                   {"idle", s.slots - s.busy},
                   {"threads", st.slot_threads}}},
                 {"queue", {{"waiting", s.waiting}, {"max", s.max_queue}}},
                 {"requests",
                  {{"completed", st.completed.load()},
                   {"cancelled", st.cancelled.load()},
                   {"rejected", st.rejected.load()},
                   {"failed", st.failed.load()}}}});
}

void HandleMetrics(ServerState& st, const httplib::Request&, httplib::Response& res) {
  const auto s = st.scheduler.stats();
  MetricsSnapshot snap;
  snap.slots = s.slots;
  snap.slots_busy = s.busy;
  snap.queue_waiting = s.waiting;
  snap.queue_max = s.max_queue;
  snap.completed = st.completed.load();
  snap.cancelled = st.cancelled.load();
  snap.rejected = st.rejected.load();
  snap.failed = st.failed.load();
  if (st.batcher) {
    const auto b = st.batcher->stats();
    snap.batching = true;
    snap.batch_steps = b.steps;
    snap.batch_rows = b.rows;
    snap.batch_sequences = b.sequences;
  }
  if (st.prefix_store) {
    const auto p = st.prefix_store->stats();
    snap.prefix_store = true;
    snap.store_entries = p.entries;
    snap.store_bytes = p.bytes;
    snap.store_budget = p.budget;
    snap.store_saves = p.saves;
    snap.store_hits = p.hits;
    snap.store_evictions = p.evictions;
  }
  res.set_content(st.metrics.Render(snap), "text/plain; version=0.0.4; charset=utf-8");
}

json ModelJson(const ServerState& st) {
  const auto& c = st.model->config();
  return {{"id", st.model_id},
          {"object", "model"},
          {"created", st.started},
          {"owned_by", "elm"},
          {"meta",
           {{"context", st.scheduler.stats().context},
            {"vocab_size", c.vocab_size},
            {"n_layers", c.n_layers},
            {"dim", c.dim},
            {"defaults", RequestDefaultsJson(st.scheduler.stats().context)}}}};
}

void HandleModels(ServerState& st, const httplib::Request&, httplib::Response& res) {
  SendJson(res, {{"object", "list"}, {"data", json::array({ModelJson(st)})}});
}

void HandleModel(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const std::string name = req.matches.size() > 1 ? req.matches[1].str() : std::string();
  if (name != st.model_id)
    throw ApiError(
        404, "The model '" + name + "' does not exist; this server serves '" + st.model_id + "'.",
        "invalid_request_error", "model", "model_not_found");
  SendJson(res, ModelJson(st));
}

void HandleTokenize(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const auto r = ParseTokenizeRequest(ParseJsonBody(req.body));
  std::vector<int> ids;
  try {
    ids = st.tok.Encode(r.content, r.add_special && st.tok.add_bos());
  } catch (const Error& e) {
    BadParam("content", std::string("cannot tokenize 'content': ") + e.what());
  }
  json tokens = json::array();
  for (int id : ids) {
    if (r.with_pieces)
      tokens.push_back({{"id", id}, {"piece", st.tok.Piece(id)}});
    else
      tokens.push_back(id);
  }
  SendJson(res, {{"tokens", tokens}});
}

void HandleDetokenize(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const auto ids = ParseDetokenizeRequest(ParseJsonBody(req.body), st.tok.vocab_size());
  SendJson(res, {{"content", st.tok.Decode(ids)}});
}

void HandlePage(ServerState&, const httplib::Request&, httplib::Response& res) {
  const std::string_view page = ChatPageHtml();
  res.set_header("Cache-Control", "no-cache");
  // The page carries all its code inline and talks only to this origin.
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                 "connect-src 'self'; img-src data:");
  res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
}

// Messages for the errors httplib produces itself (no route, body too large, unreadable request).
std::string DefaultMessage(const httplib::Request& req, int status, size_t max_body) {
  switch (status) {
    case 400:
      return "The HTTP request could not be read: it is malformed, or the client was too slow "
             "sending it.";
    case 404:
      return "Unknown endpoint: " + req.method + " " + req.path;
    case 413:
      return "The request body is larger than the server's limit of " + std::to_string(max_body) +
             " bytes.";
    case 414:
      return "The request URI is too long.";
    default:
      return "HTTP error " + std::to_string(status);
  }
}

std::string DefaultModelId(const Model& model) {
  std::filesystem::path p(model.path());
  if (!p.has_filename()) p = p.parent_path();  // "models/foo/" -> "foo"
  const std::string name = p.filename().string();
  return name.empty() ? "openelm" : name;
}

}  // namespace

struct Server::Impl {
  Impl(std::shared_ptr<const Model> model, Tokenizer tok, ServerOptions opt)
      : st(std::move(model), std::move(tok), std::move(opt)),
        http(ConnectionLimits{st.options.header_timeout_s, st.options.body_timeout_s,
                              st.options.max_waiting_per_client}) {}

  ServerState st;
  GuardedHttpServer http;  // httplib with per-request deadlines and per-client limits
  int bound_port = -1;
  int listen_fd = -1;  // httplib's listening socket, seen by the socket-options callback
  std::atomic<bool> run_entered{false};  // Run() began (so Stop() must wait for listening)
  std::atomic<bool> run_done{false};
  std::thread thread;  // Start()'s serving thread
};

Server::Server(std::shared_ptr<const Model> model, Tokenizer tokenizer, ServerOptions options) {
  if (!model) Fail("server: no model");
  if (tokenizer.vocab_size() > model->config().vocab_size)
    Fail("the tokenizer has ", tokenizer.vocab_size(), " tokens but the model's vocabulary has ",
         model->config().vocab_size, "; pass a matching --tokenizer");
  if (options.port < 0 || options.port > 65535) Fail("--port must be in [0, 65535]");
  if (options.read_timeout_s <= 0 || options.write_timeout_s <= 0 ||
      options.header_timeout_s <= 0 || options.body_timeout_s <= 0)
    Fail("server timeouts must be positive");
  if (options.max_waiting_per_client <= 0)
    Fail("--max-waiting-per-client must be positive, got ", options.max_waiting_per_client);
  if (options.threads < 0) Fail("--threads must be >= 0, got ", options.threads);
  impl_ = std::make_unique<Impl>(std::move(model), std::move(tokenizer), std::move(options));
  ServerState& st = impl_->st;
  const ServerOptions& opt = st.options;
  st.model_id = opt.model_id.empty() ? DefaultModelId(*st.model) : opt.model_id;
  // Each slot's forward passes are OpenMP-parallel. With every slot using all the cores, N busy
  // slots ran N teams on the same cores, and the oversubscription (and the waits of teams whose
  // threads were descheduled) cost more than the extra slots gained: on 2 cores, --parallel 2
  // served 8 clients at ~75 requests/s with 2 threads per slot and ~155 with 1 (docs/server.md).
  st.slot_threads = opt.threads > 0
                        ? opt.threads
                        : std::max(1, omp_get_max_threads() / std::max(1, opt.parallel));
  // Continuous batching: one thread runs every slot's forward passes as batched steps, with all
  // the cores (or --threads); the slots' own threads only sample (docs/server.md).
  if (opt.prefill_chunk < 1) Fail("--prefill-chunk must be >= 1, got ", opt.prefill_chunk);
  if (opt.batching)
    st.batcher = std::make_unique<StepBatcher>(st.model, opt.threads, opt.prefill_chunk);
  if (opt.cache_prompt && opt.cache_ram_bytes > 0)
    st.prefix_store = std::make_unique<PrefixStore>(opt.cache_ram_bytes);
  // Speculative decoding: a decoder per slot (a draft model's keeps a KV cache of the slot's
  // context). A speculating request decodes alone, with the batched steps' team.
  if (opt.make_drafter) {
    if (opt.draft_max < 1) Fail("--draft-max must be >= 1, got ", opt.draft_max);
    for (int i = 0; i < opt.parallel; ++i)
      st.speculative.push_back(
          std::make_unique<SpeculativeDecoder>(opt.make_drafter(), opt.draft_max, 0));
    st.speculative_threads = opt.batching && opt.threads <= 0 ? omp_get_max_threads()
                             : opt.batching                   ? opt.threads
                                                              : st.slot_threads;
  }

  // A write to a client that has gone raises SIGPIPE, which would kill the process; httplib (as
  // built by Debian) sends without MSG_NOSIGNAL, so the signal must be ignored process-wide.
  std::signal(SIGPIPE, SIG_IGN);

  GuardedHttpServer& http = impl_->http;
  // Every queued or generating request holds a connection thread; the rest serve /health, the
  // page, tokenization and 503s while the slots are busy.
  const int threads = opt.http_threads > 0 ? opt.http_threads : opt.parallel + opt.queue + 8;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(opt.max_body_bytes);
  http.set_read_timeout(opt.read_timeout_s, 0);
  http.set_write_timeout(opt.write_timeout_s, 0);
  http.set_keep_alive_timeout(opt.keep_alive_timeout_s);
  http.set_keep_alive_max_count(100);
  // httplib writes a response's headers and its body with separate send()s; with Nagle's
  // algorithm the body then waited for the client's delayed ACK (40 ms on Linux), so every
  // request took 40 ms more than it needed. Accepted sockets inherit TCP_NODELAY from the
  // listening one.
  http.set_tcp_nodelay(true);
  // Instead of httplib's default (SO_REUSEPORT, which let a second server bind the same port and
  // take a share of its connections): SO_REUSEADDR only, so a busy port is an error while a
  // restart does not wait for TIME_WAIT. Also keeps the socket, for Bind() to widen its backlog.
  http.set_socket_options([impl = impl_.get()](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl->listen_fd = sock;
  });

  http.set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    if (st.options.api_key.empty() || IsPublic(req.path))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.size() > prefix.size() && strncasecmp(auth.c_str(), "bearer ", prefix.size()) == 0 &&
        ConstantTimeEquals(auth.substr(prefix.size()), st.options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    SendError(res, ApiError(401,
                            auth.empty() ? "Missing API key: send 'Authorization: Bearer <key>'."
                                         : "Invalid API key.",
                            "authentication_error", "", "invalid_api_key"));
    // The body was not read; closing keeps it from being parsed as the next request.
    res.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  });
  const size_t max_body = opt.max_body_bytes;
  http.set_error_handler(httplib::Server::HandlerWithResponse(
      [max_body](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty() || res.status == 499)
          return httplib::Server::HandlerResponse::Unhandled;
        const char* type = res.status >= 500 ? "server_error" : "invalid_request_error";
        const char* code = res.status == 404   ? "not_found"
                           : res.status == 413 ? "payload_too_large"
                                               : "";
        res.set_content(Dump(ErrorJson(DefaultMessage(req, res.status, max_body), type, "", code)),
                        "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  http.set_exception_handler(
      [&st](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        ++st.failed;
        SendError(res, ApiError(500, "internal error: " + what, "server_error"));
      });
  if (opt.log_requests) {
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "%s %s %s -> %d\n", req.remote_addr.c_str(), req.method.c_str(),
                   req.path.c_str(), res.status);
    });
  }

  http.Get("/", Guard(st, HandlePage));
  http.Get("/index.html", Guard(st, HandlePage));
  http.Get("/health", Guard(st, HandleHealth));
  http.Get("/metrics", Guard(st, HandleMetrics));
  for (const char* prefix : {"/v1", ""}) {
    const std::string p = prefix;
    http.Get(p + "/models", Guard(st, HandleModels));
    http.Get(p + "/models/(.+)", Guard(st, HandleModel));
    http.Post(p + "/completions", Guard(st, HandleCompletions));
    http.Post(p + "/chat/completions", Guard(st, HandleChatCompletions));
    http.Post(p + "/embeddings", Guard(st, HandleEmbeddings));
  }
  http.Post("/tokenize", Guard(st, HandleTokenize));
  http.Post("/detokenize", Guard(st, HandleDetokenize));
}

Server::~Server() {
  Stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::Bind() {
  if (impl_->bound_port >= 0) return impl_->bound_port;
  const auto& opt = impl_->st.options;
  int port = opt.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(opt.host);
    if (port <= 0) Fail("cannot listen on ", opt.host, " (any port)");
  } else if (!impl_->http.bind_to_port(opt.host, port)) {
    Fail("cannot listen on ", opt.host, ":", port, " (in use, or not an address of this machine)");
  }
  // httplib listens with a backlog of 5: a burst of more simultaneous connections (8 load-test
  // clients, lm-eval's num_concurrent) overflowed the accept queue, and the kernel dropped SYNs
  // that the clients only retried a second later. listen() again just resizes the queue.
  if (impl_->listen_fd >= 0 && ::listen(impl_->listen_fd, SOMAXCONN) != 0)
    Fail("cannot listen on ", opt.host, ":", port, ": ", std::strerror(errno));
  impl_->bound_port = port;
  return port;
}

void Server::Run() {
  Bind();
  impl_->run_entered = true;
  // Stop() may have come first; it then skipped httplib's stop() (which only acts on a running
  // server), so the listen loop must not start.
  if (!impl_->st.stopping.load()) impl_->http.listen_after_bind();
  impl_->run_done = true;
}

void Server::Start() {
  Bind();
  impl_->thread = std::thread([this] { Run(); });
  while (!impl_->http.is_running() && !impl_->run_done.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void Server::Stop() {
  ServerState& st = impl_->st;
  if (st.stopping.exchange(true)) return;
  st.scheduler.Shutdown();  // queued requests leave with 503; running ones see `stopping`
  // httplib's stop() is a no-op until the listen loop runs, so wait for it if Run() is starting.
  while (impl_->run_entered.load() && !impl_->run_done.load() && !impl_->http.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
}

int Server::port() const {
  return impl_->bound_port;
}
const std::string& Server::model_id() const {
  return impl_->st.model_id;
}
int Server::threads_per_slot() const {
  return impl_->st.slot_threads;
}

}  // namespace elm::server
