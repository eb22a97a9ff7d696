// The HTTP server (src/server, `elm serve`): every route and error path over real loopback HTTP,
// streaming, many clients at once, overload (503), auth, disconnects and shutdown. The server runs
// in-process on an ephemeral port with the bundled random-weights model (full Llama-2 vocabulary).
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <omp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "generation/chat_history.h"
#include "generation/chat_template.h"
#include "generation/generator.h"
#include "model/session.h"
#include "sampling/defaults.h"
#include "server/http_server.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace server_test {

using nlohmann::json;
using server::Server;
using server::ServerOptions;
using Clock = std::chrono::steady_clock;

const std::string kModelDir = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::shared_ptr<const Model> TinyModel() {
  static const auto model = Model::Load(kModelDir);
  return model;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
  httplib::Headers headers;
};

class TestServer {
 public:
  explicit TestServer(ServerOptions opt = {}) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<Server>(TinyModel(), Tokenizer::Default(), opt);
    server_->Start();
  }
  Server& server() { return *server_; }
  int port() const { return server_->port(); }

  httplib::Client Client(const std::string& key = {}) const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(30, 0);
    if (!key.empty()) c.set_bearer_token_auth(key);
    return c;
  }
  Reply Post(const std::string& path, const std::string& body, const std::string& key = {}) const {
    auto c = Client(key);
    return Post(c, path, body);
  }
  // Through a client made beforehand: a thread that holds only the client does not touch the
  // TestServer, which another thread may destroy meanwhile.
  static Reply Post(httplib::Client& c, const std::string& path, const std::string& body) {
    return ToReply(c.Post(path, body, "application/json"));
  }
  Reply Post(const std::string& path, const json& body, const std::string& key = {}) const {
    return Post(path, body.dump(), key);
  }
  Reply Get(const std::string& path, const std::string& key = {}) const {
    auto c = Client(key);
    return ToReply(c.Get(path));
  }
  json Health() const { return Get("/health").body; }

 private:
  static Reply ToReply(const httplib::Result& r) {
    Reply out;
    if (!r) return out;  // status 0: no response
    out.status = r->status;
    out.raw = r->body;
    out.headers = r->headers;
    if (r->get_header_value("Content-Type").starts_with("application/json"))
      out.body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    return out;
  }
  std::unique_ptr<Server> server_;
};

// The data of every "data: " event of a server-sent-event stream.
std::vector<std::string> SseEvents(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end == std::string::npos ? body.size() : end + 2;
  }
  return out;
}

// Text of ids as a streaming client sees it (StreamDecoder continuing the prompt's text, as the
// server uses).
std::string StreamText(const std::vector<int>& ids) {
  const Tokenizer tok = Tokenizer::Default();
  StreamDecoder d(tok, /*skip_special=*/true, /*continuation=*/true);
  std::string s;
  for (int id : ids) s += d.Push(id);
  return s + d.Flush();
}

// Waits until pred() holds, up to `seconds`.
template <typename Pred>
bool WaitFor(Pred pred, double seconds = 5.0) {
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

void ExpectError(const Reply& r, int status, const std::string& type, const std::string& param = {},
                 const std::string& code = {}) {
  EXPECT_EQ(r.status, status) << r.raw;
  ASSERT_TRUE(r.body.is_object() && r.body.contains("error")) << r.raw;
  const json& e = r.body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.raw;
  EXPECT_EQ(e["type"], type) << r.raw;
  EXPECT_TRUE(e.contains("param") && e.contains("code")) << r.raw;
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.raw;
  }
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.raw;
  }
}

// ---- Light routes --------------------------------------------------------------------------

TEST(Server, PageHealthModels) {
  TestServer s;
  const Reply page = s.Get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.raw.find("<title>elm chat</title>"), std::string::npos);
  EXPECT_EQ(page.raw.find("http://"), std::string::npos)
      << "the page must not load external assets";
  const json h = s.Health();
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["slots"]["total"], 1);
  EXPECT_EQ(h["context"], 128);
  const Reply models = s.Get("/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body["object"], "list");
  EXPECT_EQ(models.body["data"][0]["id"], "tiny-random-32k");
  EXPECT_EQ(models.body["data"][0]["object"], "model");
  EXPECT_EQ(s.Get("/v1/models/tiny-random-32k").status, 200);
  ExpectError(s.Get("/v1/models/gpt-4"), 404, "invalid_request_error", "model", "model_not_found");
  ExpectError(s.Get("/v1/nothing-here"), 404, "invalid_request_error", "", "not_found");
}

TEST(Server, TokenizeAndDetokenize) {
  TestServer s;
  const Tokenizer tok = Tokenizer::Default();
  const Reply t = s.Post("/tokenize", json{{"content", "Hello world"}});
  ASSERT_EQ(t.status, 200) << t.raw;
  EXPECT_EQ(t.body["tokens"].get<std::vector<int>>(), tok.Encode("Hello world", false));
  const Reply b = s.Post("/tokenize", json{{"content", "Hi"}, {"add_special", true}});
  EXPECT_EQ(b.body["tokens"][0], tok.bos_id());
  const Reply p = s.Post("/tokenize", json{{"content", "Hi"}, {"with_pieces", true}});
  EXPECT_EQ(p.body["tokens"][0]["piece"], "\xE2\x96\x81Hi") << p.raw;
  const Reply d = s.Post("/detokenize", json{{"tokens", t.body["tokens"]}});
  ASSERT_EQ(d.status, 200);
  EXPECT_EQ(d.body["content"], "Hello world");
  ExpectError(s.Post("/detokenize", json{{"tokens", {1, 32000}}}), 400, "invalid_request_error",
              "tokens");
  ExpectError(s.Post("/tokenize", json{{"content", 5}}), 400, "invalid_request_error", "content");
  ExpectError(s.Post("/tokenize", std::string("{\"content\": \"\xff\"}")), 400,
              "invalid_request_error");
}

// ---- Completions ---------------------------------------------------------------------------

// The server runs the library's one decode loop (generation/generator.h, tested on its own in
// generation_test.cc); this checks the response shape and that the request's parameters reach it.
TEST(Server, CompletionRunsTheLibraryGenerator) {
  TestServer s;
  const Tokenizer tok = Tokenizer::Default();
  for (const float temperature : {0.0f, 0.9f}) {
    SCOPED_TRACE(temperature);
    const json req = {{"prompt", "The capital of France is"},
                      {"max_tokens", 12},
                      {"temperature", temperature},
                      {"top_k", 40},
                      {"seed", 7},
                      {"ignore_eos", true}};
    const Reply r = s.Post("/v1/completions", req);
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body["object"], "text_completion");
    EXPECT_TRUE(r.body["id"].get<std::string>().starts_with("cmpl-"));
    EXPECT_EQ(r.body["model"], "tiny-random-32k");
    const json& c = r.body["choices"][0];
    EXPECT_EQ(c["index"], 0);
    EXPECT_EQ(c["finish_reason"], "length");
    EXPECT_TRUE(c["logprobs"].is_null());

    // The same request through the library's own generator: the fields left out take the one
    // table's defaults (sampling/defaults.h), as `elm generate` does.
    const auto prompt = tok.Encode("The capital of France is", tok.add_bos());
    Session session(TinyModel());
    GenerateOptions go;
    go.max_new_tokens = 12;
    go.stop_at_eos = false;
    go.sampling = DefaultSamplingParams();
    go.sampling.temperature = temperature;
    go.sampling.top_k = 40;
    go.sampling.seed = 7;
    Sampler sampler(go.sampling);
    const auto g = Generate(session, prompt, go, sampler);
    // The text continues the prompt's (a leading space kept, as OpenAI's API and llama-server):
    // prompt text + reply text is the whole sequence's text.
    std::vector<int> all = prompt;
    all.insert(all.end(), g.ids.begin(), g.ids.end());
    EXPECT_EQ("The capital of France is" + c["text"].get<std::string>(), tok.Decode(all));
    EXPECT_EQ(r.body["usage"]["prompt_tokens"], prompt.size());
    EXPECT_EQ(r.body["usage"]["completion_tokens"], 12);
    EXPECT_EQ(r.body["usage"]["total_tokens"], prompt.size() + 12);
  }
}

TEST(Server, TokenPromptsAndBatches) {
  TestServer s;
  const json base = {{"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}};
  json one = base, ids = base, batch = base;
  one["prompt"] = "Once upon a time";
  ids["prompt"] = Tokenizer::Default().Encode("Once upon a time", true);
  batch["prompt"] = {"Once upon a time", "Hello"};
  const Reply a = s.Post("/v1/completions", one), b = s.Post("/v1/completions", ids);
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);
  const Reply c = s.Post("/v1/completions", batch);
  ASSERT_EQ(c.status, 200) << c.raw;
  ASSERT_EQ(c.body["choices"].size(), 2u);
  EXPECT_EQ(c.body["choices"][1]["index"], 1);
  EXPECT_EQ(c.body["choices"][0]["text"], a.body["choices"][0]["text"]);
  json hello = base;
  hello["prompt"] = "Hello";
  EXPECT_EQ(c.body["choices"][1]["text"],
            s.Post("/v1/completions", hello).body["choices"][0]["text"]);
  EXPECT_EQ(c.body["usage"]["completion_tokens"], 10);
  json id_batch = base;
  id_batch["prompt"] = {{1, 450, 7483}, {1, 15043}};
  EXPECT_EQ(s.Post("/v1/completions", id_batch).body["choices"].size(), 2u);
}

// lm-evaluation-harness's local-completions scoring call: echo the prompt with its logprobs.
TEST(Server, EchoLogprobsScorePrompt) {
  TestServer s;
  const std::vector<int> prompt = {1, 450, 7483, 310, 3444, 338, 3681, 29889};
  const Reply r = s.Post("/v1/completions", json{{"prompt", prompt},
                                                 {"max_tokens", 0},
                                                 {"echo", true},
                                                 {"logprobs", 1},
                                                 {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& lp = r.body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), prompt.size());
  ASSERT_EQ(lp["token_logprobs"].size(), prompt.size());
  ASSERT_EQ(lp["top_logprobs"].size(), prompt.size());
  ASSERT_EQ(lp["text_offset"].size(), prompt.size());
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["tokens"][2], " capital");
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 0);
  EXPECT_EQ(r.body["choices"][0]["text"], Tokenizer::Default().Decode(prompt));

  // Reference: log-softmax of the full-sequence logits.
  Session session(TinyModel());
  std::vector<float> logits;
  ForwardOptions fo;
  fo.all_logits = true;
  session.Forward(prompt, logits, fo);
  const size_t V = TinyModel()->config().vocab_size;
  for (size_t t = 1; t < prompt.size(); ++t) {
    const float* row = logits.data() + (t - 1) * V;
    double mx = -INFINITY, sum = 0;
    size_t best = 0;
    for (size_t i = 0; i < V; ++i) {
      if (row[i] > row[best]) best = i;
      mx = std::max<double>(mx, row[i]);
    }
    for (size_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    const double want = row[prompt[t]] - mx - std::log(sum);
    EXPECT_NEAR(lp["token_logprobs"][t].get<double>(), want, 1e-4) << t;
    const json& top = lp["top_logprobs"][t];
    ASSERT_EQ(top.size(), 1u);
    EXPECT_NEAR(top.begin().value().get<double>(), row[best] - mx - std::log(sum), 1e-4);
    // lm-eval's is_greedy compares with ==: the greedy token must match its top entry exactly.
    if (static_cast<size_t>(prompt[t]) == best) {
      EXPECT_EQ(lp["token_logprobs"][t].get<double>(), top.begin().value().get<double>());
    }
  }

  // max_tokens = 1 (what lm-eval sends): one more entry, for the generated token.
  const Reply r1 = s.Post("/v1/completions", json{{"prompt", prompt},
                                                  {"max_tokens", 1},
                                                  {"echo", true},
                                                  {"logprobs", 5},
                                                  {"temperature", 0},
                                                  {"ignore_eos", true}});
  ASSERT_EQ(r1.status, 200) << r1.raw;
  EXPECT_EQ(r1.body["choices"][0]["logprobs"]["token_logprobs"].size(), prompt.size() + 1);
  EXPECT_EQ(r1.body["choices"][0]["logprobs"]["top_logprobs"][1].size(), 5u);
  EXPECT_EQ(r1.body["choices"][0]["logprobs"]["token_logprobs"][prompt.size() - 1],
            lp["token_logprobs"][prompt.size() - 1]);
}

TEST(Server, StopStringsAndClamping) {
  TestServer s;
  const json base = {{"prompt", "Hello"}, {"temperature", 0}, {"ignore_eos", true}};
  json req = base;
  req["max_tokens"] = 20;
  const std::string full = s.Post("/v1/completions", req).body["choices"][0]["text"];
  // A stop string from the middle of the output (ASCII, so the request stays valid UTF-8).
  size_t at = full.size() / 2;
  auto ascii = [&](size_t i) {
    return i + 3 <= full.size() &&
           std::all_of(full.begin() + i, full.begin() + i + 3, [](char ch) { return ch > 0; });
  };
  while (at < full.size() && !ascii(at)) ++at;
  ASSERT_TRUE(ascii(at)) << full;
  const std::string stop = full.substr(at, 3);
  req["stop"] = {stop, "\x01never"};
  const Reply r = s.Post("/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["text"], full.substr(0, full.find(stop)));
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");

  // A huge max_tokens is clamped to the room left in the context (128 positions).
  json huge = base;
  huge["max_tokens"] = 1e15;
  const Reply h = s.Post("/v1/completions", huge);
  ASSERT_EQ(h.status, 200) << h.raw;
  EXPECT_EQ(h.body["usage"]["total_tokens"], 128);
  EXPECT_EQ(h.body["choices"][0]["finish_reason"], "length");
  // A prompt longer than the context is a clear 400.
  ExpectError(s.Post("/v1/completions", json{{"prompt", std::vector<int>(129, 100)}}), 400,
              "invalid_request_error", "prompt", "context_length_exceeded");
}

TEST(Server, BadRequestsGetOpenAiErrors) {
  TestServer s;
  auto bad = [&](const std::string& body, const std::string& param = {}) {
    SCOPED_TRACE(body);
    ExpectError(s.Post("/v1/completions", body), 400, "invalid_request_error", param);
  };
  bad("{");
  bad("[]");
  bad("");
  bad("{\"prompt\": \"\xff\xfe\"}");  // invalid UTF-8
  bad("{}", "prompt");
  bad(R"({"prompt": 5})", "prompt");
  bad(R"({"prompt": []})", "prompt");
  bad(R"({"prompt": [[]]})", "prompt");
  bad(R"({"prompt": ["a", [1]]})", "prompt");
  bad(R"({"prompt": [1, 40000]})", "prompt");
  bad(R"({"prompt": [1, -3]})", "prompt");
  bad(R"({"prompt": "x", "temperature": "hot"})", "temperature");
  bad(R"({"prompt": "x", "temperature": -1})", "temperature");
  bad(R"({"prompt": "x", "max_tokens": -1})", "max_tokens");
  bad(R"({"prompt": "x", "max_tokens": 2.5})", "max_tokens");
  bad(R"({"prompt": "x", "top_p": 0})", "top_p");
  bad(R"({"prompt": "x", "top_k": true})", "top_k");
  bad(R"({"prompt": "x", "n": 2})", "n");
  bad(R"({"prompt": "x", "logprobs": 50})", "logprobs");
  bad(R"({"prompt": "x", "stop": 5})", "stop");
  bad(R"({"prompt": "x", "stream": "yes"})", "stream");
  bad(R"({"prompt": "x", "seed": "abc"})", "seed");
  bad(R"({"prompt": "x", "logit_bias": {"abc": 1}})", "logit_bias");
  bad(R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty");
  bad(R"({"prompt": ["a", "b"], "stream": true})", "prompt");
  auto bad_chat = [&](const std::string& body, const std::string& param) {
    SCOPED_TRACE(body);
    ExpectError(s.Post("/v1/chat/completions", body), 400, "invalid_request_error", param);
  };
  bad_chat("{}", "messages");
  bad_chat(R"({"messages": []})", "messages");
  bad_chat(R"({"messages": [{"role": "wizard", "content": "hi"}]})", "messages[0].role");
  bad_chat(R"({"messages": [{"content": "hi"}]})", "messages[0].role");
  bad_chat(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
           "messages[0].content");
  bad_chat(R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})",
           "top_logprobs");
  // Nulls mean "unset", as OpenAI clients send them; unknown fields are ignored.
  const Reply ok = s.Post("/v1/completions", json{{"prompt", "x"},
                                                  {"max_tokens", 2},
                                                  {"stop", nullptr},
                                                  {"user", "me"},
                                                  {"logit_bias", {{"100", 5}}},
                                                  {"temperature", nullptr}});
  EXPECT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(s.Health()["requests"]["failed"], 0);
}

TEST(Server, OversizedBodyAndSlowClient) {
  ServerOptions opt;
  opt.max_body_bytes = 1024;
  opt.read_timeout_s = 1;
  TestServer s(opt);
  ExpectError(s.Post("/v1/completions", json{{"prompt", std::string(4096, 'a')}}), 413,
              "invalid_request_error", "", "payload_too_large");

  // A client that announces a body and stalls is answered 400 after the read timeout.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string partial =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 100\r\n\r\n{\"prompt\":";
  ASSERT_EQ(send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const auto t0 = Clock::now();
  std::string got;
  char buf[4096];
  auto complete = [&] {  // headers and the whole Content-Length body are in
    const size_t head = got.find("\r\n\r\n");
    const size_t len = got.find("Content-Length: ");
    return head != std::string::npos && len != std::string::npos &&
           got.size() >= head + 4 + std::stoul(got.substr(len + 16));
  };
  for (ssize_t n; !complete() && (n = recv(fd, buf, sizeof(buf), 0)) > 0;) got.append(buf, n);
  close(fd);
  EXPECT_TRUE(got.starts_with("HTTP/1.1 400")) << got;
  EXPECT_NE(got.find("\"error\""), std::string::npos) << got;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  EXPECT_EQ(s.Health()["status"], "ok");  // and the server goes on serving
}

// ---- Chat and streaming --------------------------------------------------------------------

TEST(Server, ChatCompletion) {
  TestServer s;
  const json req = {{"messages",
                     {{{"role", "system"}, {"content", "Be brief."}},
                      {{"role", "user"}, {"content", "Hi there"}}}},
                    {"max_tokens", 8},
                    {"temperature", 0},
                    {"logprobs", true},
                    {"top_logprobs", 2},
                    {"ignore_eos", true}};
  const Reply r = s.Post("/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_TRUE(r.body["id"].get<std::string>().starts_with("chatcmpl-"));
  const json& c = r.body["choices"][0];
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_TRUE(c["message"]["content"].is_string());
  const std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi there"}};
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], ApplyChatTemplate(Tokenizer::Default(), msgs).size());
  const json& lp = c["logprobs"]["content"];
  ASSERT_TRUE(lp.is_array()) << r.raw;
  ASSERT_FALSE(lp.empty());
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_TRUE(lp[0]["bytes"].is_array());
  // Content parts are accepted as text.
  json parts = req;
  parts["messages"][1]["content"] = {{{"type", "text"}, {"text", "Hi "}},
                                     {{"type", "text"}, {"text", "there"}}};
  EXPECT_EQ(s.Post("/v1/chat/completions", parts).body["choices"][0]["message"]["content"],
            c["message"]["content"]);
}

TEST(Server, StreamingMatchesNonStreaming) {
  TestServer s;
  const json chat = {{"messages", {{{"role", "user"}, {"content", "Tell me a story"}}}},
                     {"max_tokens", 24},
                     {"temperature", 0.8},
                     {"seed", 3},
                     {"ignore_eos", true}};
  const Reply whole = s.Post("/v1/chat/completions", chat);
  ASSERT_EQ(whole.status, 200);
  json streamed = chat;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  const Reply r = s.Post("/v1/chat/completions", streamed);
  ASSERT_EQ(r.status, 200);
  const auto events = SseEvents(r.raw);
  ASSERT_GE(events.size(), 4u) << r.raw;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish;
  json usage;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    if (e.contains("usage")) {
      usage = e["usage"];
      EXPECT_TRUE(e["choices"].empty());
      continue;
    }
    const json& ch = e["choices"][0];
    if (i == 0) {
      EXPECT_EQ(ch["delta"]["role"], "assistant");
    }
    if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(text, whole.body["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, "length");
  // The same counts; the streamed request found the whole prompt but its last token cached.
  for (const char* k : {"prompt_tokens", "completion_tokens", "total_tokens"})
    EXPECT_EQ(usage[k], whole.body["usage"][k]) << k;
  EXPECT_EQ(whole.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"].get<int>() - 1);

  const json comp = {{"prompt", "Hello"},
                     {"max_tokens", 10},
                     {"temperature", 0},
                     {"ignore_eos", true},
                     {"echo", true}};
  json comp_stream = comp;
  comp_stream["stream"] = true;
  const Reply cs = s.Post("/v1/completions", comp_stream);
  ASSERT_EQ(cs.status, 200);
  EXPECT_TRUE(cs.headers.find("Content-Type")->second.starts_with("text/event-stream"));
  std::string ctext;
  for (const auto& ev : SseEvents(cs.raw))
    if (ev != "[DONE]") ctext += json::parse(ev)["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(ctext, s.Post("/v1/completions", comp).body["choices"][0]["text"]);
}

// ---- Load, overload, auth, disconnects, shutdown -------------------------------------------

TEST(Server, ConcurrentClientsGetTheSameAnswersAsAlone) {
  ServerOptions opt;
  opt.parallel = 3;
  opt.queue = 32;
  TestServer s(opt);
  struct Job {
    std::string path;
    json body;
  };
  std::vector<Job> jobs;
  const char* prompts[] = {"The quick brown fox", "In a galaxy far away", "def main():",
                           "Once upon a time",    "1, 2, 3, 4,",          "Dear diary"};
  for (int i = 0; i < 24; ++i) {
    json b = {{"max_tokens", 6 + i % 5},
              {"temperature", i % 3 == 0 ? 0.0 : 0.9},
              {"seed", 100 + i},
              {"top_k", 50},
              {"stream", i % 4 == 1}};
    if (i % 2 == 0) {
      b["prompt"] = prompts[i % 6];
      jobs.push_back({"/v1/completions", b});
    } else {
      b["messages"] = {{{"role", "user"}, {"content", prompts[i % 6]}}};
      jobs.push_back({"/v1/chat/completions", b});
    }
  }
  auto text_of = [](const Reply& r) -> std::string {
    if (r.status != 200) return "HTTP " + std::to_string(r.status) + " " + r.raw;
    if (r.body.is_object())
      return r.body["choices"][0].contains("text")
                 ? r.body["choices"][0]["text"].get<std::string>()
                 : r.body["choices"][0]["message"]["content"].get<std::string>();
    std::string t;
    for (const auto& ev : SseEvents(r.raw)) {
      if (ev == "[DONE]") continue;
      const json event = json::parse(ev);
      const json& ch = event["choices"][0];
      if (ch.contains("text")) t += ch["text"].get<std::string>();
      if (ch.contains("delta") && ch["delta"].contains("content"))
        t += ch["delta"]["content"].get<std::string>();
    }
    return t;
  };
  std::vector<std::string> alone;
  for (const auto& j : jobs) alone.push_back(text_of(s.Post(j.path, j.body)));
  for (const auto& a : alone) ASSERT_FALSE(a.starts_with("HTTP ")) << a;

  constexpr int kClients = 8;
  std::vector<std::string> together(jobs.size());
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] {
      for (size_t i = c; i < jobs.size(); i += kClients)
        together[i] = text_of(s.Post(jobs[i].path, jobs[i].body));
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "job " << i;
  const json h = s.Health();
  EXPECT_EQ(h["requests"]["completed"], 2 * jobs.size());
  EXPECT_EQ(h["requests"]["rejected"], 0);
  EXPECT_EQ(h["slots"]["busy"], 0);
}

// A long streamed generation holding the only slot; cancel() hangs up on it.
class LongStream {
 public:
  explicit LongStream(const TestServer& s) : client_(s.Client()) {
    done_ = std::async(std::launch::async, [this] {
      httplib::Request req;
      req.method = "POST";
      req.path = "/v1/completions";
      req.body =
          json{{"prompt", "Hi"}, {"max_tokens", 100000}, {"ignore_eos", true}, {"stream", true}}
              .dump();
      req.set_header("Content-Type", "application/json");
      std::string body;
      req.content_receiver = [this, &body](const char* data, size_t n, uint64_t, uint64_t) {
        body.append(data, n);
        started_ = true;
        return !cancel_.load();
      };
      httplib::Response res;
      httplib::Error err;
      client_.send(req, res, err);
      return body;
    });
  }
  bool WaitStarted() {
    return WaitFor([&] { return started_.load(); });
  }
  void Cancel() { cancel_ = true; }
  std::string Wait() { return done_.get(); }

 private:
  httplib::Client client_;
  std::atomic<bool> started_{false}, cancel_{false};
  std::future<std::string> done_;
};

ServerOptions OneSlotLongContext(int queue) {
  ServerOptions opt;
  opt.parallel = 1;
  opt.queue = queue;
  opt.context = 8192;  // room for a generation that outlasts the test's steps
  return opt;
}

TEST(Server, FullQueueGets503AndDisconnectCancels) {
  TestServer s(OneSlotLongContext(1));
  LongStream a(s);
  ASSERT_TRUE(a.WaitStarted());
  auto b = std::async(std::launch::async, [&] {
    return s.Post("/v1/completions", json{{"prompt", "queued"}, {"max_tokens", 3}});
  });
  ASSERT_TRUE(WaitFor([&] { return s.Health()["queue"]["waiting"] == 1; }));
  const Reply c = s.Post("/v1/completions", json{{"prompt", "too many"}, {"max_tokens", 3}});
  ExpectError(c, 503, "server_error", "", "server_busy");
  EXPECT_NE(c.headers.find("Retry-After"), c.headers.end());
  // Hanging up on the stream frees the slot for the queued request.
  a.Cancel();
  a.Wait();
  const Reply queued = b.get();
  EXPECT_EQ(queued.status, 200) << queued.raw;
  const json h = s.Health();
  EXPECT_EQ(h["requests"]["cancelled"], 1);
  EXPECT_EQ(h["requests"]["rejected"], 1);
  EXPECT_EQ(h["slots"]["busy"], 0);
}

TEST(Server, NonStreamingClientThatLeavesIsCancelled) {
  TestServer s(OneSlotLongContext(4));
  const auto t0 = Clock::now();
  {
    auto c = s.Client();
    c.set_read_timeout(0, 300000);  // give up after 0.3 s, closing the connection
    auto r = c.Post("/v1/completions",
                    json{{"prompt", "Hi"}, {"max_tokens", 100000}, {"ignore_eos", true}}.dump(),
                    "application/json");
    EXPECT_FALSE(r);
  }
  ASSERT_TRUE(WaitFor([&] { return s.Health()["requests"]["cancelled"] == 1; }));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  EXPECT_EQ(s.Health()["slots"]["busy"], 0);
  EXPECT_EQ(s.Health()["requests"]["completed"], 0);
}

TEST(Server, StopCancelsInFlightGenerations) {
  auto s = std::make_unique<TestServer>(OneSlotLongContext(4));
  LongStream a(*s);
  ASSERT_TRUE(a.WaitStarted());
  // The queued request's thread holds its own client, not `s`, which the main thread resets.
  httplib::Client client = s->Client();
  auto queued = std::async(std::launch::async, [&client] {
    return TestServer::Post(client, "/v1/completions",
                            json{{"prompt", "queued"}, {"max_tokens", 3}}.dump());
  });
  ASSERT_TRUE(WaitFor([&] { return s->Health()["queue"]["waiting"] == 1; }));
  const auto t0 = Clock::now();
  s.reset();  // Stop() and wait for every connection thread
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
  const std::string body = a.Wait();
  EXPECT_NE(body.find("shutting_down"), std::string::npos) << body.substr(body.size() - 300);
  const Reply q = queued.get();
  EXPECT_EQ(q.status, 503);
}

TEST(Server, ApiKey) {
  ServerOptions opt;
  opt.api_key = "sekret";
  TestServer s(opt);
  ExpectError(s.Get("/v1/models"), 401, "authentication_error", "", "invalid_api_key");
  ExpectError(s.Get("/v1/models", "wrong"), 401, "authentication_error");
  ExpectError(s.Post("/v1/completions", json{{"prompt", "x"}}), 401, "authentication_error");
  EXPECT_EQ(s.Get("/v1/models", "sekret").status, 200);
  EXPECT_EQ(s.Post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 1}}, "sekret").status,
            200);
  EXPECT_EQ(s.Get("/health").status, 200);
  EXPECT_EQ(s.Get("/").status, 200);
}

// Each slot's forward passes use cores / parallel OpenMP threads unless --threads says otherwise,
// and the answer does not depend on the team size.
TEST(Server, ThreadsPerSlot) {
  const int cores = omp_get_max_threads();
  ServerOptions two_slots;
  two_slots.parallel = 2;
  TestServer a(two_slots);
  EXPECT_EQ(a.server().threads_per_slot(), std::max(1, cores / 2));
  EXPECT_EQ(a.Health()["slots"]["threads"], std::max(1, cores / 2));
  ServerOptions three;
  three.threads = 3;
  TestServer b(three);
  EXPECT_EQ(b.server().threads_per_slot(), 3);
  ServerOptions one;
  one.threads = 1;
  TestServer c(one);
  const json req = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"seed", 7}};
  const Reply rb = b.Post("/v1/completions", req), rc = c.Post("/v1/completions", req);
  ASSERT_EQ(rb.status, 200) << rb.raw;
  ASSERT_EQ(rc.status, 200) << rc.raw;
  EXPECT_EQ(rb.body["choices"][0]["text"], rc.body["choices"][0]["text"]);
}

// The listening socket: a busy port is an error (httplib's default SO_REUSEPORT let a second
// server bind it and take some of its connections), and answers are not held back by Nagle's
// algorithm (httplib sends headers and body separately, so each answer on a kept-alive connection
// waited 40 ms for the client's delayed ACK).
TEST(Server, PortInUseAndNoNagleDelay) {
  TestServer s;
  ServerOptions opt;
  opt.host = "127.0.0.1";
  opt.port = s.port();
  Server second(TinyModel(), Tokenizer::Default(), opt);
  EXPECT_THROW(second.Bind(), Error);

  auto c = s.Client();
  c.set_keep_alive(true);
  std::vector<double> ms;
  for (int i = 0; i < 9; ++i) {
    const auto t0 = Clock::now();
    const auto r = c.Get("/health");
    ASSERT_TRUE(r && r->status == 200);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::nth_element(ms.begin(), ms.begin() + 4, ms.end());
  EXPECT_LT(ms[4], 30.0) << "median /health round trip on one connection, in ms";
}

// `elm serve` as a process: prints where it listens, serves, exits 0 on SIGTERM and SIGINT
// (the second run with --weights q8_0 --no-mmap).
TEST(Server, CliServesAndExitsCleanlyOnSignals) {
  for (const int sig : {SIGTERM, SIGINT}) {
    SCOPED_TRACE(sig);
    int err_pipe[2];
    ASSERT_EQ(pipe(err_pipe), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(err_pipe[1], STDERR_FILENO);
      close(err_pipe[0]);
      if (sig == SIGTERM)
        execl(ELM_BINARY, ELM_BINARY, "serve", "--model", kModelDir.c_str(), "--port", "0",
              "--parallel", "2", static_cast<char*>(nullptr));
      else  // the load options too: quantized at load, the rest copied instead of mmapped
        execl(ELM_BINARY, ELM_BINARY, "serve", "--model", kModelDir.c_str(), "--port", "0",
              "--weights", "q8_0", "--no-mmap", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(err_pipe[1]);
    struct Reaper {  // a failed ASSERT must not leave the server running
      pid_t pid;
      bool reaped = false;
      ~Reaper() {
        if (!reaped) {
          kill(pid, SIGKILL);
          waitpid(pid, nullptr, 0);
        }
      }
    } reaper{pid};
    std::string err;
    int port = 0;
    char buf[512];
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (port == 0 && Clock::now() < deadline) {
      const ssize_t n = read(err_pipe[0], buf, sizeof(buf));
      if (n <= 0) break;
      err.append(buf, n);
      const size_t at = err.find("http://127.0.0.1:");
      if (at != std::string::npos && err.find('/', at + 17) != std::string::npos)
        port = std::atoi(err.c_str() + at + 17);
    }
    ASSERT_GT(port, 0) << err;
    httplib::Client c("127.0.0.1", port);
    auto h = c.Get("/health");
    ASSERT_TRUE(h) << err;
    EXPECT_EQ(h->status, 200);
    auto r = c.Post("/v1/completions", R"({"prompt": "Hi", "max_tokens": 4})", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    kill(pid, sig);
    int status = 0;
    ASSERT_TRUE(WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 10.0));
    reaper.reaped = true;
    while (true) {  // collect the rest of stderr for the message below
      const ssize_t n = read(err_pipe[0], buf, sizeof(buf));
      if (n <= 0) break;
      err.append(buf, n);
    }
    close(err_pipe[0]);
    EXPECT_TRUE(WIFEXITED(status)) << err;
    EXPECT_EQ(WEXITSTATUS(status), 0) << err;
    EXPECT_NE(err.find("stopped"), std::string::npos) << err;
  }
}

// ---- Issue 18: unsupported options, one set of defaults, long chats, true stop reasons -----

// response_format (other than text) and tools ask for behaviour elm does not have: a 400 that
// says so, never a 200 with plain text a client would take for JSON mode or a tool call.
// Structured output and tools (docs/server.md, "Structured output", "Tools"): a schema-valid
// reply from the random tiny model, a tool call, and 400s naming what is wrong. The openai npm
// client does the same end to end in tests/openai_client/structured_output.mjs.
TEST(Server, StructuredOutputAndToolsOverHttp) {
  TestServer s;
  const json chat = {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"max_tokens", 400}};
  auto with = [&](const char* key, json value) {
    json r = chat;
    r[key] = std::move(value);
    return r;
  };
  const json schema = {
      {"type", "object"},
      {"properties", {{"n", {{"type", "integer"}}}, {"s", {{"enum", {"a", "b"}}}}}},
      {"required", {"n", "s"}}};
  const Reply r = s.Post(
      "/v1/chat/completions",
      with("response_format", {{"type", "json_schema"}, {"json_schema", {{"schema", schema}}}}));
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& choice = r.body["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice["stop_detail"], "grammar");
  const json content = json::parse(choice["message"]["content"].get<std::string>());
  EXPECT_TRUE(content["n"].is_number_integer()) << content.dump();
  EXPECT_TRUE(content["s"] == "a" || content["s"] == "b") << content.dump();

  json tool_req =
      with("tools", json::array({{{"type", "function"}, {"function", {{"name", "f"}}}}}));
  tool_req["tool_choice"] = "required";
  const Reply t = s.Post("/v1/chat/completions", tool_req);
  ASSERT_EQ(t.status, 200) << t.raw;
  const json& tc = t.body["choices"][0];
  EXPECT_EQ(tc["finish_reason"], "tool_calls");
  EXPECT_TRUE(tc["message"]["content"].is_null());
  EXPECT_EQ(tc["message"]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_EQ(tc["message"]["tool_calls"][0]["function"]["arguments"], "{}");

  ExpectError(s.Post("/v1/chat/completions", with("response_format", "json")), 400,
              "invalid_request_error", "response_format");
  ExpectError(s.Post("/v1/chat/completions",
                     with("tool_choice", {{"type", "function"}, {"function", {{"name", "f"}}}})),
              400, "invalid_request_error", "tool_choice");
  ExpectError(s.Post("/v1/completions", {{"prompt", "Hi"}, {"grammar", "root ::= x"}}), 400,
              "invalid_request_error", "grammar");
  for (const auto& [key, value] : std::vector<std::pair<const char*, json>>{
           {"functions", json::array({{{"name", "f"}}})}, {"function_call", "auto"}}) {
    SCOPED_TRACE(key);
    ExpectError(s.Post("/v1/chat/completions", with(key, value)), 400, "invalid_request_error", key,
                "unsupported_parameter");
  }
  // What asks for nothing is accepted: text format, no tools, tool_choice none or auto, nulls.
  json small = chat;
  small["max_tokens"] = 2;
  auto small_with = [&](const char* key, json value) {
    json b = small;
    b[key] = std::move(value);
    return b;
  };
  EXPECT_EQ(
      s.Post("/v1/chat/completions", small_with("response_format", {{"type", "text"}})).status,
      200);
  EXPECT_EQ(s.Post("/v1/chat/completions", small_with("tools", json::array())).status, 200);
  EXPECT_EQ(s.Post("/v1/chat/completions", small_with("tool_choice", "none")).status, 200);
  EXPECT_EQ(s.Post("/v1/chat/completions", small_with("tool_choice", "auto")).status, 200);
  EXPECT_EQ(s.Post("/v1/chat/completions", small_with("tools", nullptr)).status, 200);
}

// One table of defaults: /v1/models reports it, and a request that leaves every field out samples
// exactly as the library does with DefaultSamplingParams() (the CLI's flag defaults).
TEST(Server, RequestDefaultsAreTheOneTable) {
  TestServer s;
  const Reply models = s.Get("/v1/models");
  ASSERT_EQ(models.status, 200) << models.raw;
  const json& d = models.body["data"][0]["meta"]["defaults"];
  const SamplingParams p = DefaultSamplingParams();
  EXPECT_FLOAT_EQ(d["temperature"].get<float>(), p.temperature);
  EXPECT_EQ(d["top_k"], p.top_k);
  EXPECT_FLOAT_EQ(d["top_p"].get<float>(), p.top_p);
  EXPECT_FLOAT_EQ(d["min_p"].get<float>(), p.min_p);
  EXPECT_FLOAT_EQ(d["repetition_penalty"].get<float>(), p.repetition_penalty);
  EXPECT_EQ(d["repeat_last_n"], p.repetition_window);
  EXPECT_EQ(d["max_tokens"], DefaultReplyTokens(128));
  EXPECT_EQ(d["max_tokens"], 64);
  EXPECT_EQ(d["temperature"].dump(), "0.8") << "written as in the table, for the page to show";

  const json req = {{"prompt", "Once upon a time"}, {"seed", 11}, {"ignore_eos", true}};
  const Reply r = s.Post("/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const Tokenizer tok = Tokenizer::Default();
  const auto prompt = tok.Encode("Once upon a time", tok.add_bos());
  Session session(TinyModel());
  GenerateOptions go;
  go.max_new_tokens = DefaultReplyTokens(128);
  go.stop_at_eos = false;
  go.sampling = DefaultSamplingParams();
  go.sampling.seed = 11;
  Sampler sampler(go.sampling);
  const auto g = Generate(session, prompt, go, sampler);
  EXPECT_EQ(r.body["choices"][0]["text"], StreamText(g.ids));
  EXPECT_EQ(r.body["usage"]["completion_tokens"], DefaultReplyTokens(128));
  // Without a seed, two identical requests sample different text.
  const json noseed = {{"prompt", "Once upon a time"},
                       {"max_tokens", 24},
                       {"ignore_eos", true},
                       {"temperature", 1.5}};
  const Reply a = s.Post("/v1/completions", noseed), b = s.Post("/v1/completions", noseed);
  ASSERT_EQ(a.status, 200);
  EXPECT_NE(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);
}

// The stop reason is reported truly: finish_reason stays OpenAI's ("length" for both), and
// stop_detail tells max_tokens ("length") from a full context ("context").
TEST(Server, StopDetailTellsMaxTokensFromAFullContext) {
  TestServer s;
  const json base = {{"prompt", "Hello"}, {"temperature", 0}, {"ignore_eos", true}};
  json few = base;
  few["max_tokens"] = 5;
  const Reply a = s.Post("/v1/completions", few);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(a.body["choices"][0]["stop_detail"], "length");
  json many = base;
  many["max_tokens"] = 1000;
  const Reply b = s.Post("/v1/completions", many);
  ASSERT_EQ(b.status, 200) << b.raw;
  EXPECT_EQ(b.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(b.body["choices"][0]["stop_detail"], "context");
  // Streaming: the last chunk carries it too.
  many["stream"] = true;
  const Reply c = s.Post("/v1/completions", many);
  ASSERT_EQ(c.status, 200);
  std::string detail;
  for (const auto& e : SseEvents(c.raw)) {
    if (e == "[DONE]") continue;
    const json j = json::parse(e);
    if (j.contains("choices") && !j["choices"].empty() && j["choices"][0].contains("stop_detail"))
      detail = j["choices"][0]["stop_detail"];
  }
  EXPECT_EQ(detail, "context") << c.raw;
}

// A chat longer than the context keeps going (issue 18: the second message failed with "maximum
// context length is 256 tokens, but the prompt has 282"): the oldest turns are left out, the
// response says how many, and the prompt plus the reply fit.
TEST(Server, LongChatIsTrimmedToFitTheContext) {
  TestServer s;  // 128 positions
  json messages = json::array({{{"role", "system"}, {"content", "You are terse."}}});
  std::vector<ChatMessage> msgs = {{"system", "You are terse."}};
  for (int t = 0; t < 6; ++t) {
    const std::string q = "Tell me fact number " + std::to_string(t) + " about the moon.";
    const std::string a = "Fact " + std::to_string(t) + ": the moon is far away and made of rock.";
    messages.push_back({{"role", "user"}, {"content", q}});
    messages.push_back({{"role", "assistant"}, {"content", a}});
    msgs.push_back({"user", q});
    msgs.push_back({"assistant", a});
  }
  messages.push_back({{"role", "user"}, {"content", "And the last one?"}});
  msgs.push_back({"user", "And the last one?"});
  const Tokenizer tok = Tokenizer::Default();
  ASSERT_GT(ApplyChatTemplate(tok, msgs).size(), 128u) << "the test needs a chat over the context";

  const json req = {{"messages", messages}, {"temperature", 0}, {"ignore_eos", true}};
  const Reply r = s.Post("/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const ChatFit fit = FitChatToContext(tok, msgs, 128, DefaultReplyTokens(128));
  ASSERT_GT(fit.dropped, 0u);
  EXPECT_EQ(r.body["dropped_messages"], fit.dropped);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], fit.prompt.size());
  EXPECT_EQ(r.body["usage"]["completion_tokens"], DefaultReplyTokens(128));
  EXPECT_LE(r.body["usage"]["total_tokens"].get<int>(), 128);
  EXPECT_EQ(r.body["choices"][0]["stop_detail"], "length");

  // Streaming reports the trim in its last chunk.
  json sreq = req;
  sreq["stream"] = true;
  const Reply st = s.Post("/v1/chat/completions", sreq);
  ASSERT_EQ(st.status, 200);
  size_t dropped = 0;
  for (const auto& e : SseEvents(st.raw))
    if (e != "[DONE]" && json::parse(e).contains("dropped_messages"))
      dropped = json::parse(e)["dropped_messages"];
  EXPECT_EQ(dropped, fit.dropped) << st.raw;

  // A reply longer than the room left is cut by the context, and says so.
  json big = req;
  big["max_tokens"] = 1000;
  const Reply b = s.Post("/v1/chat/completions", big);
  ASSERT_EQ(b.status, 200) << b.raw;
  EXPECT_EQ(b.body["usage"]["total_tokens"], 128);
  EXPECT_EQ(b.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(b.body["choices"][0]["stop_detail"], "context");

  // One message longer than the whole context is still a 400.
  const json huge = {{"messages", {{{"role", "user"}, {"content", std::string(2000, 'x')}}}}};
  ExpectError(s.Post("/v1/chat/completions", huge), 400, "invalid_request_error", "messages",
              "context_length_exceeded");
}

}  // namespace server_test
}  // namespace elm
