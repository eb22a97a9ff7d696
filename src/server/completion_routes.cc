#include "server/completion_routes.h"

#include <omp.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "generation/chat_history.h"
#include "sampling/defaults.h"
#include "server/api_error.h"
#include "server/completion_runner.h"
#include "server/connection_watch.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/tool_calls.h"

namespace elm::server {

using nlohmann::json;

namespace {

// Status for a request whose client left before the answer (nginx's convention); nobody reads it,
// but it keeps the access log honest.
constexpr int kClientClosedRequest = 499;

std::vector<int> TokenizePrompt(const ServerState& st, const PromptInput& p) {
  if (!p.is_text) return p.ids;
  try {
    return st.tok.Encode(p.text, st.tok.add_bos());
  } catch (const Error& e) {
    BadParam("prompt", std::string("cannot tokenize the prompt: ") + e.what());
  }
}

void CheckFits(const ServerState& st, size_t n, const char* param) {
  if (n == 0) BadParam(param, "the prompt is empty (no tokens)");
  const auto ctx = static_cast<size_t>(st.scheduler.stats().context);
  if (n > ctx)
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(ctx) +
                       " tokens, but the prompt has " + std::to_string(n) +
                       " tokens. Shorten the prompt, or start the server with a larger --context.",
                   "invalid_request_error", param, "context_length_exceeded");
}

std::shared_ptr<ConnectionWatch> WatchClient(const httplib::Request& req) {
  return std::make_shared<ConnectionWatch>(req.local_addr, req.local_port, req.remote_addr,
                                           req.remote_port);
}

// Waits for a slot. Null means the client left while queued.
std::unique_ptr<SlotScheduler::Lease> AcquireSlot(ServerState& st,
                                                  const std::function<bool()>& cancelled,
                                                  std::span<const int> prompt) {
  auto r =
      st.scheduler.Acquire(cancelled, st.options.cache_prompt ? prompt : std::span<const int>());
  switch (r.status) {
    case SlotScheduler::Status::kOk:
      return std::move(r.lease);
    case SlotScheduler::Status::kQueueFull: {
      ++st.rejected;
      const auto s = st.scheduler.stats();
      throw ApiError(503,
                     "The server is busy: all " + std::to_string(s.slots) +
                         " slots are generating and " + std::to_string(s.max_queue) +
                         " requests are already waiting. Retry shortly.",
                     "server_error", "", "server_busy");
    }
    case SlotScheduler::Status::kShutdown:
      throw ApiError(503, "The server is shutting down.", "server_error", "", "shutting_down");
    case SlotScheduler::Status::kCancelled:
      break;
  }
  ++st.cancelled;
  return nullptr;
}

// The prefix store (docs/server.md "Prefix store"): before a request discards most of what its
// slot holds, that conversation is saved; when a stored prefix shares more with the prompt than
// the slot does, it is copied into the slot (RunCompletion then reuses it as the slot's own).
void UsePrefixStore(PrefixStore& store, SlotScheduler::Lease& lease, std::span<const int> prompt) {
  Session& session = lease.session();
  std::vector<int>& held = lease.held();
  const size_t limit = prompt.size() - 1;  // the last prompt token is always run
  const size_t slot_keep =
      SharedPrefixLength(held, prompt, std::min(limit, static_cast<size_t>(session.position())));
  if (held.size() > 2 * slot_keep) store.Save(session, held);
  store.Restore(session, prompt, limit, slot_keep, held);
}

// RunCompletion on a slot, on the calling (connection) thread with the slot's OpenMP team size:
// omp_set_num_threads() sets it for this thread's parallel regions only.
// With batching, all model work runs on the batcher's thread and this one only samples; with
// the prefix cache, the slot's last request's KV is reused (docs/server.md).
CompletionResult RunOnSlot(ServerState& st, SlotScheduler::Lease& lease,
                           std::span<const int> prompt, const GenerationParams& gen,
                           const std::function<bool()>& cancelled,
                           const DeltaCallback& on_delta = {}) {
  SlotRun run;
  run.held = st.options.cache_prompt ? &lease.held() : nullptr;
  run.batcher = st.batcher.get();
  if (st.prefix_store && run.held && !(gen.echo && gen.logprobs >= 0))
    UsePrefixStore(*st.prefix_store, lease, prompt);
  // Speculative decoding when configured and this request is the only one generating (always
  // without batching, where every slot runs on its own thread anyway); otherwise the batched
  // steps, which serve several streams better (docs/server.md "Speculative decoding").
  SpeculativeDecoder* spec =
      st.speculative.empty() ? nullptr : st.speculative[static_cast<size_t>(lease.slot())].get();
  if (spec && (!st.batcher || st.scheduler.stats().busy <= 1)) {
    run.speculative = spec;
    omp_set_num_threads(st.speculative_threads);
  } else {
    omp_set_num_threads(st.slot_threads);
  }
  CompletionResult r =
      RunCompletion(lease.session(), st.tok, prompt, gen, cancelled, on_delta, run);
  st.metrics.RecordGeneration(static_cast<int>(prompt.size()), r.cached_tokens,
                              static_cast<int>(r.ids.size()), r.prefill_seconds, r.decode_seconds);
  if (r.speculated) st.metrics.RecordSpeculation(r.drafted, r.accepted);
  return r;
}

// elm's extensions to a response object or last chunk: the choice's "stop_detail" (why the reply
// ended: eos, stop, length or context) and, when the chat was trimmed to fit, "dropped_messages".
void AddStopDetail(json& obj, const CompletionResult& r, size_t dropped_messages) {
  obj["choices"][0]["stop_detail"] = r.stop_detail;
  if (dropped_messages > 0) obj["dropped_messages"] = dropped_messages;
}

void PickSeed(ServerState& st, GenerationParams& gen) {
  if (!gen.has_seed) gen.sampling.seed = st.Random();
}

// Logprobs of generated tokens as chat shows them: without the EOS that ended the reply.
std::vector<TokenLogprob> WithoutEos(std::span<const TokenLogprob> lps, int eos, bool ignore_eos) {
  std::vector<TokenLogprob> out;
  for (const auto& lp : lps)
    if (ignore_eos || lp.id != eos) out.push_back(lp);
  return out;
}

// A chat reply's sampled tokens, for the turns that send it back (generation/reply_memo.h): not a
// reply cut by a stop string (its ids run past its text), nor a cancelled one, nor a tool call
// (sent back as tool_calls, not as text). The EOS that ended a reply is the template's "</s>".
void RememberReply(ServerState& st, const CompletionResult& r) {
  if (r.cancelled || r.stop_detail == "stop") return;
  std::vector<int> ids = r.ids;
  if (r.stop_detail == "eos" && !ids.empty()) ids.pop_back();
  st.replies.Remember(r.text, std::move(ids));
}

// One streamed completion. The handler prepares it (slot already taken, so a full queue is still
// a plain 503) and httplib calls Run() once the 200 headers are out.
struct StreamJob {
  ServerState* st = nullptr;
  std::unique_ptr<SlotScheduler::Lease> lease;
  std::shared_ptr<ConnectionWatch> watch;
  std::vector<int> prompt;
  GenerationParams gen;
  ResponseMeta meta;
  bool chat = false;
  bool include_usage = false;
  std::string echo_text;  // completions with echo: sent as the first chunk
  size_t text_offset = 0;
  size_t dropped_messages = 0;  // chat: the oldest messages left out to fit the context
  ToolRequest tools;  // chat with active tools: the reply is held back and sent once, at the end

  bool Run(httplib::DataSink& sink) {
    bool write_ok = true;
    auto send = [&](const std::string& payload) {
      if (!write_ok) return false;
      const std::string event = "data: " + payload + "\n\n";
      write_ok = sink.write(event.data(), event.size());
      return write_ok;
    };
    auto cancelled = [&] { return !write_ok || st->stopping.load() || watch->Closed(); };
    const int eos = st->model->config().eos_id;
    const bool want_lp = gen.logprobs >= 0;
    const bool hold = chat && tools.active();
    auto on_delta = [&](const std::string& text, std::span<const TokenLogprob> lps) {
      if (hold) return !cancelled();  // a tool call is sent whole once it is complete
      if (chat) {
        const auto shown = WithoutEos(lps, eos, gen.ignore_eos);
        if (text.empty() && shown.empty()) return true;
        const json lp = want_lp ? ChatLogprobsJson(st->tok, shown) : json(nullptr);
        return send(Dump(ChatChunk(meta, {{"content", text}}, lp, nullptr)));
      }
      const json lp =
          want_lp ? CompletionLogprobsJson(st->tok, {}, {}, lps, text_offset) : json(nullptr);
      for (const auto& t : lps) text_offset += TokenText(st->tok, t.id).size();
      return send(Dump(CompletionChunk(meta, text, lp, nullptr)));
    };

    if (chat)
      send(Dump(ChatChunk(meta, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)));
    else if (!echo_text.empty())
      send(Dump(CompletionChunk(meta, echo_text, nullptr, nullptr)));
    CompletionResult r;
    try {
      r = RunOnSlot(*st, *lease, prompt, gen, cancelled, on_delta);
    } catch (const std::exception& e) {
      // The 200 headers are already out; an error event is all a client can still be told.
      lease.reset();
      ++st->failed;
      send(Dump(ErrorJson(e.what(), "server_error")));
      sink.done();
      return true;
    }
    if (r.cancelled) ++st->cancelled;
    lease.reset();  // free the slot before the last writes
    if (r.cancelled) {
      if (!st->stopping.load() || !write_ok) return false;  // client gone: drop the connection
      send(Dump(ErrorJson("The server is shutting down.", "server_error", "", "shutting_down")));
      sink.done();
      return true;
    }
    const char* finish = r.finish_reason.c_str();
    if (hold) {
      if (const auto call = ParseToolCall(tools, r.text)) {
        json tc = ToolCallJson(st->NewId("call_"), *call);
        tc["index"] = 0;
        send(Dump(ChatChunk(meta, {{"tool_calls", json::array({tc})}}, nullptr, nullptr)));
        finish = "tool_calls";
      } else if (!r.text.empty()) {
        send(Dump(ChatChunk(meta, {{"content", r.text}}, nullptr, nullptr)));
      }
    }
    if (chat && std::string_view(finish) != "tool_calls") RememberReply(*st, r);
    json last = chat ? ChatChunk(meta, json::object(), nullptr, finish)
                     : CompletionChunk(meta, "", nullptr, finish);
    AddStopDetail(last, r, dropped_messages);
    send(Dump(last));
    if (include_usage)
      send(Dump(UsageChunk(meta, chat ? "chat.completion.chunk" : "text_completion",
                           static_cast<int>(prompt.size()), static_cast<int>(r.ids.size()),
                           r.cached_tokens)));
    send("[DONE]");
    if (!write_ok) return false;
    ++st->completed;
    sink.done();
    return true;
  }
};

void StartStream(httplib::Response& res, std::shared_ptr<StreamJob> job) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // proxies must not hold the events back
  res.set_chunked_content_provider(
      "text/event-stream",
      [job](size_t /*offset*/, httplib::DataSink& sink) { return job->Run(sink); });
}

}  // namespace

void HandleCompletions(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json body = ParseJsonBody(req.body);
  CompletionRequest creq = ParseCompletionRequest(body, st.model->config().vocab_size);
  if (creq.gen.grammar) creq.gen.vocab = st.Vocab();
  std::vector<std::vector<int>> prompts;
  for (const auto& p : creq.prompts) {
    prompts.push_back(TokenizePrompt(st, p));
    CheckFits(st, prompts.back().size(), "prompt");
  }
  PickSeed(st, creq.gen);
  auto prompt_text = [&](size_t i) {
    return creq.prompts[i].is_text ? creq.prompts[i].text : st.tok.Decode(prompts[i]);
  };
  const ResponseMeta meta{st.NewId("cmpl-"), st.model_id, std::time(nullptr)};
  auto watch = WatchClient(req);

  if (creq.stream) {
    auto job = std::make_shared<StreamJob>();
    job->st = &st;
    job->watch = watch;
    job->lease = AcquireSlot(
        st, [&] { return st.stopping.load() || watch->Closed(); }, prompts[0]);
    if (!job->lease) {
      res.status = kClientClosedRequest;
      return;
    }
    job->prompt = std::move(prompts[0]);
    job->gen = creq.gen;
    job->meta = meta;
    job->include_usage = creq.include_usage;
    if (creq.gen.echo) job->echo_text = prompt_text(0);
    job->text_offset = job->echo_text.size();
    StartStream(res, std::move(job));
    return;
  }

  auto cancelled = [&] { return st.stopping.load() || watch->Closed(); };
  auto lease = AcquireSlot(st, cancelled, prompts[0]);
  if (!lease) {
    res.status = kClientClosedRequest;
    return;
  }
  json choices = json::array();
  int prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const CompletionResult r = RunOnSlot(st, *lease, prompts[i], creq.gen, cancelled);
    if (r.cancelled) {
      ++st.cancelled;
      res.status = kClientClosedRequest;
      return;
    }
    prompt_tokens += static_cast<int>(prompts[i].size());
    completion_tokens += static_cast<int>(r.ids.size());
    cached_tokens += r.cached_tokens;
    const bool need_prompt_text = creq.gen.echo || creq.gen.logprobs >= 0;
    const std::string ptext = need_prompt_text ? prompt_text(i) : std::string();
    json lp = nullptr;
    if (creq.gen.logprobs >= 0)
      lp = CompletionLogprobsJson(
          st.tok, creq.gen.echo ? std::span<const int>(prompts[i]) : std::span<const int>(),
          r.prompt_logprobs, r.logprobs, creq.gen.echo ? 0 : ptext.size());
    choices.push_back(CompletionChoice(static_cast<int>(i), creq.gen.echo ? ptext + r.text : r.text,
                                       std::move(lp), r.finish_reason.c_str()));
    choices.back()["stop_detail"] = r.stop_detail;
  }
  lease.reset();
  ++st.completed;
  res.set_content(
      Dump(CompletionObject(meta, std::move(choices),
                            UsageJson(prompt_tokens, completion_tokens, cached_tokens))),
      "application/json");
}

void HandleChatCompletions(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json body = ParseJsonBody(req.body);
  ChatRequest creq = ParseChatRequest(body, st.model->config().vocab_size);
  if (creq.gen.grammar) creq.gen.vocab = st.Vocab();
  // The oldest turns go when the conversation and the reply do not fit the context
  // (generation/chat_history.h); the system prompt and the last message always stay.
  const int context = st.scheduler.stats().context;
  const int want = creq.gen.max_tokens < 0 ? DefaultReplyTokens(context) : creq.gen.max_tokens;
  ChatFit fit;
  try {
    fit = FitChatToContext(st.tok, creq.messages, context, want, false, &st.replies);
  } catch (const Error& e) {
    throw ApiError(400,
                   std::string(e.what()) +
                       ". Shorten the message, or start the server with a larger --context.",
                   "invalid_request_error", "messages", "context_length_exceeded");
  }
  std::vector<int> prompt = std::move(fit.prompt);
  PickSeed(st, creq.gen);
  const ResponseMeta meta{st.NewId("chatcmpl-"), st.model_id, std::time(nullptr)};
  auto watch = WatchClient(req);
  auto cancelled = [&] { return st.stopping.load() || watch->Closed(); };
  auto lease = AcquireSlot(st, cancelled, prompt);
  if (!lease) {
    res.status = kClientClosedRequest;
    return;
  }
  if (creq.stream) {
    auto job = std::make_shared<StreamJob>();
    job->st = &st;
    job->watch = watch;
    job->lease = std::move(lease);
    job->prompt = std::move(prompt);
    job->gen = creq.gen;
    job->meta = meta;
    job->chat = true;
    job->include_usage = creq.include_usage;
    job->dropped_messages = fit.dropped;
    job->tools = creq.tools;
    StartStream(res, std::move(job));
    return;
  }
  const CompletionResult r = RunOnSlot(st, *lease, prompt, creq.gen, cancelled);
  lease.reset();
  if (r.cancelled) {
    ++st.cancelled;
    res.status = kClientClosedRequest;
    return;
  }
  ++st.completed;
  if (creq.tools.active()) {
    if (const auto call = ParseToolCall(creq.tools, r.text)) {
      json obj = ChatToolCallObject(meta, st.NewId("call_"), *call,
                                    UsageJson(static_cast<int>(prompt.size()),
                                              static_cast<int>(r.ids.size()), r.cached_tokens));
      AddStopDetail(obj, r, fit.dropped);
      res.set_content(Dump(obj), "application/json");
      return;
    }
  }
  RememberReply(st, r);
  json lp = nullptr;
  if (creq.gen.logprobs >= 0)
    lp = ChatLogprobsJson(st.tok,
                          WithoutEos(r.logprobs, st.model->config().eos_id, creq.gen.ignore_eos));
  json obj = ChatObject(
      meta, r.text, std::move(lp), r.finish_reason.c_str(),
      UsageJson(static_cast<int>(prompt.size()), static_cast<int>(r.ids.size()), r.cached_tokens));
  AddStopDetail(obj, r, fit.dropped);
  res.set_content(Dump(obj), "application/json");
}

}  // namespace elm::server
