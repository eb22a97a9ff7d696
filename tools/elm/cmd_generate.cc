// elm generate / elm chat: streaming text generation and an interactive Instruct chat.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/mmap_file.h"
#include "chat_repl.h"
#include "cli_util.h"
#include "commands.h"
#include "generation/chat_history.h"
#include "generation/chat_template.h"
#include "generation/generator.h"
#include "grammar/grammar_constraint.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema.h"
#include "io/model_tokenizer.h"
#include "model/session.h"
#include "sampling/defaults.h"
#include "speculative_flags.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

struct CommonOpts {
  std::string model, tokenizer, weights, lora, kv_type = "f32";
  int max_new_tokens = -1;  // -1: DefaultReplyTokens(context) (sampling/defaults.h)
  int context = 0;
  int threads = 0;
  bool ignore_eos = false;
  bool no_mmap = false;
  bool exact = false;
  std::vector<std::string> stop;
  SamplingParams sampling;
  SpeculativeFlags speculative;
};

void AddCommonFlags(CLI::App* cmd, CommonOpts& o) {
  AddModelOption(cmd, o.model)->required();
  AddThreadsOption(cmd, o.threads);
  cmd->add_option("--weights", o.weights,
                  "Convert weights at load: f32, f16, bf16, q8_0 or q4_0 (default: as stored)");
  cmd->add_flag("--no-mmap", o.no_mmap, kNoMmapHelp);
  cmd->add_flag("--exact", o.exact, kExactHelp);
  cmd->add_option("--lora", o.lora,
                  "LoRA adapter folder (PEFT layout, e.g. an elm train LoRA checkpoint), merged "
                  "into the weights at load");
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer.json to use (default: the model folder's, else the built-in Llama-2)");
  cmd->add_option("--max-new-tokens,--max-tokens,-n", o.max_new_tokens, "Most tokens to generate")
      ->capture_default_str();
  AddContextOption(cmd, o.context, "Context size in tokens (default: max_context_length)");
  cmd->add_option("--kv-type", o.kv_type, "KV cache storage: f32, bf16 or f16 (half the memory)")
      ->capture_default_str();
  cmd->add_flag("--ignore-eos", o.ignore_eos, "Keep generating after the end-of-sequence token");
  cmd->add_option("--stop", o.stop, "Stop when this text is generated (repeatable)");
  auto& s = o.sampling;
  cmd->add_option("--temperature,--temp", s.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Keep the k most likely tokens; 0 = off")
      ->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling threshold; 1 = off")->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "Drop tokens below min-p x the best probability; 0 = off")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", s.repetition_penalty,
                  "Repetition penalty (HF semantics; Apple's example uses 1.2); 1 = off")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", s.repetition_window,
                  "Tokens considered by the penalties; -1 = all")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", s.presence_penalty, "OpenAI presence penalty")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", s.frequency_penalty, "OpenAI frequency penalty")
      ->capture_default_str();
  cmd->add_option("--seed,-s", s.seed, "Random seed (same seed, same output)")
      ->capture_default_str();
  AddSpeculativeFlags(cmd, o.speculative);
}

// The common flags' defaults that come from the one table (sampling/defaults.h, docs/sampling.md)
// rather than from a constant: the reply length depends on the context, the seed is random.
void DescribeTableDefaults(CLI::App* cmd) {
  cmd->get_option("--max-new-tokens")->default_str("min(256, context/2)");
  cmd->get_option("--seed")->default_str("random");
}

// What the flags leave to run time: a random seed unless --seed was given (printed with
// --verbose so the run can be repeated), and the reply length for this context.
void ResolveTableDefaults(const CLI::App* cmd, CommonOpts& o, int context, bool verbose) {
  if (cmd->get_option("--seed")->count() == 0) o.sampling.seed = RandomSeed();
  if (o.max_new_tokens < 0) o.max_new_tokens = DefaultReplyTokens(context);
  if (verbose)
    std::fprintf(stderr, "seed %llu, max new tokens %d, context %d\n",
                 static_cast<unsigned long long>(o.sampling.seed), o.max_new_tokens, context);
}

std::shared_ptr<const Model> LoadModel(const CommonOpts& o) {
  LoadOptions lo;
  lo.weights = ParseWeightsFlag(o.weights);
  lo.lora = o.lora;
  lo.mmap = !o.no_mmap;
  lo.exact = o.exact;
  SetThreads(o.threads);
  auto model = Model::Load(o.model, lo);
  WarnIfBeyondTrainedContext(o.context, model->config().max_context);
  return model;
}

void CheckVocab(const Tokenizer& tok, const Model& model) {
  if (tok.vocab_size() > model.config().vocab_size)
    Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocabulary has ",
         model.config().vocab_size, "; pass a matching --tokenizer");
}

void PrintStats(const GenerateResult& r) {
  std::fprintf(stderr,
               "\n[prompt %d tokens, %.1f tokens/s | generated %d tokens, %.1f tokens/s | stop: "
               "%s]\n",
               r.stats.prompt_tokens, r.stats.prompt_tokens_per_s(), r.stats.generated_tokens,
               r.stats.generated_tokens_per_s(), StopReasonName(r.reason));
}

// The decode loop's options from the common flags (text generation: EOS stops unless
// --ignore-eos).
GenerateOptions OptionsFrom(const CommonOpts& o) {
  GenerateOptions go;
  go.max_new_tokens = o.max_new_tokens;
  go.stop_at_eos = !o.ignore_eos;
  go.sampling = o.sampling;
  go.stop = o.stop;
  return go;
}

// Generated text goes to stdout as it becomes safe to show.
void WriteText(const std::string& s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

GenerateResult GenerateText(Session& session, std::span<const int> prompt,
                            const GenerateOptions& go, Sampler& sampler, const Tokenizer& tok) {
  const TextCallback to_stdout = [](const std::string& text, std::span<const TokenLogprob>) {
    WriteText(text);
    return true;
  };
  return Generate(session, prompt, go, sampler, TextOutput{&tok, to_stdout});
}

// --grammar FILE (GBNF) or --json-schema FILE|JSON as a grammar; null when neither is given.
std::shared_ptr<const Grammar> GrammarFromFlags(const std::string& grammar_file,
                                                const std::string& schema_arg) {
  if (!grammar_file.empty() && !schema_arg.empty())
    Fail("give --grammar or --json-schema, not both");
  std::shared_ptr<const Grammar> g;
  if (!grammar_file.empty()) {
    g = std::make_shared<const Grammar>(ParseGbnf(ReadInputText(grammar_file), grammar_file));
  } else if (!schema_arg.empty()) {
    // Inline JSON when it starts like a JSON value, else a file.
    const size_t first = schema_arg.find_first_not_of(" \t\r\n");
    const bool inline_json = first != std::string::npos &&
                             (schema_arg[first] == '{' || schema_arg.substr(first) == "true");
    const std::string origin = inline_json ? "--json-schema" : schema_arg;
    const std::string text = inline_json ? schema_arg : ReadInputText(schema_arg);
    nlohmann::ordered_json schema;
    try {
      schema = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      Fail(origin, ": not valid JSON: ", e.what());
    }
    try {
      g = std::make_shared<const Grammar>(JsonSchemaGrammar(schema));
    } catch (const Error& e) {
      Fail(origin, ": ", e.what());
    }
  }
  if (g) (void)GrammarMatcher(*g).Initial();  // an over-ambiguous grammar fails before the load
  return g;
}

void RegisterGenerate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text (streamed) or token ids from a prompt");
  struct Opts : CommonOpts {
    std::string prompt, prompt_file, ids, grammar, json_schema;
    bool echo = false, output_ids = false, no_bos = false, special = false, stop_at_eos = false;
    bool verbose = false;
  };
  auto o = std::make_shared<Opts>();
  AddCommonFlags(cmd, *o);
  DescribeTableDefaults(cmd);
  cmd->add_flag("--verbose", o->verbose, "Print the seed and reply length used (to stderr)");
  auto* g = cmd->add_option_group("input", "What to condition on (one of)");
  g->add_option("--prompt,-p", o->prompt, "Prompt text");
  g->add_option("--prompt-file,-f", o->prompt_file,
                "Read the prompt text from a file (- reads standard input)");
  g->add_option("--ids", o->ids,
                "Comma-separated prompt token ids, used as given (nothing prepended); the "
                "output is the generated ids, and EOS does not stop unless --stop-at-eos");
  g->require_option(1);
  cmd->add_flag("--stop-at-eos", o->stop_at_eos, "With --ids: stop at the end-of-sequence token");
  cmd->add_flag("--echo", o->echo, "Print the prompt text before the continuation");
  cmd->add_flag("--output-ids", o->output_ids,
                "Finish with a line holding the JSON array of generated ids");
  cmd->add_flag("--no-bos", o->no_bos, "Do not prepend the BOS token to a text prompt");
  cmd->add_flag("--special", o->special, "Parse special tokens such as </s> in the prompt text");
  cmd->add_option(
      "--grammar", o->grammar,
      "Constrain the output to a GBNF grammar file (llama.cpp's syntax; docs/sampling.md)");
  cmd->add_option("--json-schema", o->json_schema,
                  "Constrain the output to JSON following a JSON schema (a file, or inline JSON)");
  cmd->callback([cmd, o] {
    ValidateSamplingParams(o->sampling);
    const auto grammar = GrammarFromFlags(o->grammar, o->json_schema);
    if (grammar && !o->ids.empty())
      Fail("--grammar and --json-schema need a text prompt, not --ids");
    const DType kv_type = ParseKvTypeFlag(o->kv_type);  // a bad flag fails before the load
    auto model = LoadModel(*o);
    Session session(model, o->context, kv_type);
    ResolveTableDefaults(cmd, *o, session.context(), o->verbose);
    Sampler sampler(o->sampling);
    GenerateOptions go = OptionsFrom(*o);
    if (!o->ids.empty()) {
      const auto prompt = ParseIdList(o->ids, "--ids");
      go.stop_at_eos = o->stop_at_eos && !o->ignore_eos;
      const auto spec = MakeSpeculativeDecoder(o->speculative, *model, nullptr, session.context(),
                                               kv_type, o->sampling.seed);
      go.speculative = spec.get();
      const auto r = Generate(session, prompt, go, sampler);
      PrintStats(r);
      if (spec) PrintSpeculativeStats(*spec);
      std::printf("%s\n", IdsToJson(r.ids).c_str());
      return;
    }
    const Tokenizer tok = LoadTokenizerFor(o->model, o->tokenizer);
    CheckVocab(tok, *model);
    const auto spec = MakeSpeculativeDecoder(o->speculative, *model, &tok, session.context(),
                                             kv_type, o->sampling.seed);
    go.speculative = spec.get();
    const std::string text = o->prompt_file.empty() ? o->prompt : ReadInputText(o->prompt_file);
    const bool bos = tok.add_bos() && !o->no_bos;
    const auto prompt = o->special ? tok.EncodeWithSpecial(text, bos) : tok.Encode(text, bos);
    std::optional<GrammarConstraint> constraint;
    if (grammar) {
      constraint.emplace(grammar, TokenTrie::FromTokenizer(tok));
      go.constraint = &*constraint;
    }
    if (o->echo) WriteText(text);
    const auto r = GenerateText(session, prompt, go, sampler, tok);
    if (r.reason == StopReason::kContextFull)
      std::fprintf(stderr, "\nnote: stopped at the context limit of %d tokens (--context)\n",
                   session.context());
    std::printf("\n");
    PrintStats(r);
    if (spec) PrintSpeculativeStats(*spec);
    if (o->output_ids) std::printf("%s\n", IdsToJson(r.ids).c_str());
  });
}

struct ChatOpts : CommonOpts {
  std::string system;
  bool raw = false, verbose_prompt = false, special = false, verbose = false;
};

// --raw: the tokens of the next line, continuing the text as typed after the pending last reply
// token (if any). No template, so nothing to trim: the context simply fills up.
std::vector<int> RawTurnTokens(const ChatOpts& o, const Tokenizer& tok, bool start, int pending,
                               const std::string& message) {
  std::vector<int> turn;
  if (pending >= 0) turn.push_back(pending);
  const auto ids = o.special ? tok.EncodeWithSpecial(message, start && tok.add_bos())
                             : tok.Encode(message, start && tok.add_bos());
  turn.insert(turn.end(), ids.begin(), ids.end());
  return turn;
}

void ShowTurn(const Tokenizer& tok, const std::vector<int>& turn, size_t reused) {
  std::fprintf(stderr, "[%zu tokens:", turn.size());
  for (int id : turn) std::fprintf(stderr, " %d:'%s'", id, tok.Piece(id).c_str());
  std::fprintf(stderr, "]");
  if (reused > 0) std::fprintf(stderr, " (after %zu cached tokens)", reused);
  std::fprintf(stderr, "\n");
}

// The conversation of `elm chat`: its messages (the system prompt first), rendered each turn with
// the Instruct template and trimmed to fit (generation/chat_history.h), and the tokens the
// session's KV cache holds, so a turn feeds only what differs from the last one.
struct ChatState {
  std::vector<ChatMessage> messages;
  std::vector<int> cached;  // the tokens in the session's KV cache, in order
  // The replies' sampled tokens: each turn feeds them back as generated, not re-encoded from their
  // text (generation/reply_memo.h), so the cached prefix covers the whole conversation.
  ReplyMemo replies{256};
  bool told_trim = false;  // the "oldest turns are left out" note is shown once
  int pending = -1;        // --raw: the last generated token, not yet fed through the model

  void Reset(const ChatOpts& o, Session& session) {
    messages.clear();
    if (!o.system.empty()) messages.push_back({"system", o.system});
    cached.clear();
    told_trim = false;
    pending = -1;
    session.Reset();
  }
};

// One templated turn: trim, reuse the cached prefix, generate, remember the reply.
void ChatTurn(const ChatOpts& o, const Tokenizer& tok, Session& session, Sampler& sampler,
              GenerateOptions go, ChatTerminal& term, ChatState& st, const std::string& message) {
  std::vector<ChatMessage> msgs = st.messages;
  msgs.push_back({"user", message});
  ChatFit fit;
  try {
    fit = FitChatToContext(tok, msgs, session.context(), o.max_new_tokens, o.special, &st.replies);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n",
                 term.Paint("31", std::string("error: ") + e.what() + "; raise --context").c_str());
    return;
  }
  if (fit.dropped > 0 && !st.told_trim) {
    std::fprintf(stderr, "%s\n",
                 term.Paint("33", "note: the conversation no longer fits the context of " +
                                      std::to_string(session.context()) +
                                      " tokens; from now on its oldest turns are left out (the "
                                      "system prompt stays)")
                     .c_str());
    st.told_trim = true;
  }
  // The session already holds the longest common prefix; feed the rest (at least one token,
  // whose logits start the reply).
  size_t common = 0;
  const size_t held = std::min(st.cached.size(), static_cast<size_t>(session.position()));
  while (common < held && common + 1 < fit.prompt.size() && st.cached[common] == fit.prompt[common])
    ++common;
  session.Rewind(static_cast<int>(common));
  const std::vector<int> turn(fit.prompt.begin() + static_cast<long>(common), fit.prompt.end());
  if (o.verbose_prompt) ShowTurn(tok, turn, common);
  go.max_new_tokens = fit.reply_tokens;
  go.cancelled = [&term] { return term.interrupted(); };
  term.ClearInterrupt();
  const auto r = GenerateText(session, turn, go, sampler, tok);
  // The session now holds the prompt and every reply token but the last (less when Ctrl-C came
  // during the prompt's prefill).
  st.cached = fit.prompt;
  if (!r.ids.empty()) st.cached.insert(st.cached.end(), r.ids.begin(), r.ids.end() - 1);
  st.cached.resize(std::min(st.cached.size(), static_cast<size_t>(session.position())));
  st.messages = std::move(fit.kept);
  st.messages.push_back({"assistant", r.text});
  if (r.reason != StopReason::kStopString && r.reason != StopReason::kCancelled) {
    std::vector<int> ids = r.ids;
    if (r.reason == StopReason::kEos && !ids.empty()) ids.pop_back();
    st.replies.Remember(r.text, std::move(ids));
  }
  std::printf("\n");
  std::fflush(stdout);
  // A reply that ran into a length shortened to the room left was stopped by the context.
  const bool cut = r.reason == StopReason::kContextFull ||
                   (r.reason == StopReason::kMaxTokens && fit.reply_tokens < o.max_new_tokens);
  if (r.reason == StopReason::kCancelled)
    std::fprintf(stderr, "%s\n", term.Paint("2", "[reply stopped]").c_str());
  else if (cut)
    std::fprintf(stderr, "%s\n", term.Paint("2", "[reply cut at the context limit]").c_str());
  if (o.verbose || o.verbose_prompt) {
    GenerateResult shown = r;
    if (cut) shown.reason = StopReason::kContextFull;
    PrintStats(shown);
    if (go.speculative) PrintSpeculativeStats(*go.speculative);
  }
}

// --raw: each line continues the text in the KV cache.
void RawTurn(const ChatOpts& o, const Tokenizer& tok, Session& session, Sampler& sampler,
             GenerateOptions go, ChatTerminal& term, ChatState& st, const std::string& message) {
  const bool start = session.position() == 0 && st.pending < 0;
  const std::vector<int> turn = RawTurnTokens(o, tok, start, st.pending, message);
  if (o.verbose_prompt) ShowTurn(tok, turn, 0);
  if (session.position() + static_cast<int>(turn.size()) >= session.context()) {
    std::fprintf(stderr,
                 "error: this text does not fit the remaining context (%d of %d tokens used); "
                 "/reset to start over or raise --context\n",
                 session.position(), session.context());
    return;
  }
  go.cancelled = [&term] { return term.interrupted(); };
  term.ClearInterrupt();
  const auto r = GenerateText(session, turn, go, sampler, tok);
  st.pending = r.ids.empty() ? -1 : r.ids.back();
  std::printf("\n");
  std::fflush(stdout);
  if (r.reason == StopReason::kContextFull)
    std::fprintf(stderr, "note: the context is full; /reset to start over\n");
  if (o.verbose || o.verbose_prompt) PrintStats(r);
}

void RunChat(const CLI::App* cmd, ChatOpts& o) {
  ValidateSamplingParams(o.sampling);
  const DType kv_type = ParseKvTypeFlag(o.kv_type);  // a bad flag fails before the load
  auto model = LoadModel(o);
  const Tokenizer tok = LoadTokenizerFor(o.model, o.tokenizer);
  CheckVocab(tok, *model);
  Session session(model, o.context, kv_type);
  ResolveTableDefaults(cmd, o, session.context(), o.verbose);
  Sampler sampler(o.sampling);
  const auto spec = MakeSpeculativeDecoder(o.speculative, *model, &tok, session.context(), kv_type,
                                           o.sampling.seed);
  GenerateOptions go = OptionsFrom(o);
  go.speculative = spec.get();
  ChatTerminal term;
  std::fprintf(
      stderr, "%s\n",
      term.Paint("2", "elm chat: " + o.model + ", context " + std::to_string(session.context()) +
                          " tokens, replies up to " + std::to_string(o.max_new_tokens) +
                          ". /help for help, Ctrl-C stops a reply, /exit or Ctrl-D quits.")
          .c_str());
  ChatState st;
  st.Reset(o, session);
  bool interrupted_at_prompt = false;
  while (true) {
    std::string line;
    const ChatTerminal::Read got = term.ReadMessage(&line);
    if (got == ChatTerminal::Read::kEnd) break;
    if (got == ChatTerminal::Read::kInterrupted) {
      if (interrupted_at_prompt) break;
      interrupted_at_prompt = true;
      std::fprintf(stderr, "%s\n",
                   term.Paint("2", "(Ctrl-C again, Ctrl-D or /exit to quit)").c_str());
      continue;
    }
    interrupted_at_prompt = false;
    switch (ParseChatCommand(line)) {
      case ChatCommand::kExit:
        return;
      case ChatCommand::kHelp:
        std::fputs(ChatHelpText(), stderr);
        continue;
      case ChatCommand::kReset:
        st.Reset(o, session);
        std::fprintf(stderr, "%s\n", term.Paint("2", "(new conversation)").c_str());
        continue;
      case ChatCommand::kUnknown:
        std::fprintf(stderr, "%s\n",
                     term.Paint("31", "unknown command " + line +
                                          "; /help lists the commands (start a message "
                                          "with // to send a '/')")
                         .c_str());
        continue;
      case ChatCommand::kNone:
        break;
    }
    const std::string message = UnescapeMessage(line);
    if (message.empty()) continue;
    if (o.raw)
      RawTurn(o, tok, session, sampler, go, term, st, message);
    else
      ChatTurn(o, tok, session, sampler, go, term, st, message);
  }
}

void RegisterChat(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "chat",
      "Interactive multi-turn chat with the OpenELM-Instruct template (/help, /reset, /exit)");
  auto o = std::make_shared<ChatOpts>();
  AddCommonFlags(cmd, *o);
  DescribeTableDefaults(cmd);
  cmd->add_option("--system", o->system, "System message");
  cmd->add_flag("--raw", o->raw, "No template: each line continues the text as typed");
  cmd->add_flag("--verbose-prompt", o->verbose_prompt,
                "Show the tokens the model is fed for each turn (to stderr)");
  cmd->add_flag("--verbose", o->verbose,
                "Print the seed and reply length used, and each reply's speed (to stderr)");
  cmd->add_flag("--special", o->special, "Parse special tokens such as </s> in your messages");
  cmd->callback([cmd, o] { RunChat(cmd, *o); });
}

}  // namespace

void RegisterGenerateCommands(CLI::App& app) {
  RegisterGenerate(app);
  RegisterChat(app);
}

ELM_REGISTER_COMMAND(30, RegisterGenerateCommands);

}  // namespace elm::cli
