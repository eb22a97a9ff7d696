// elm generate / elm chat: streaming text generation and an interactive Instruct chat.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <limits>

#include "base/error.h"
#include "base/mmap_file.h"
#include "cli_util.h"
#include "commands.h"
#include "generation/chat_template.h"
#include "generation/generator.h"
#include "io/model_tokenizer.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

struct CommonOpts {
  std::string model, tokenizer, weights, lora, kv_type = "f32";
  int max_new_tokens = 256;
  int context = 0;
  bool ignore_eos = false;
  bool no_mmap = false;
  bool exact = false;
  std::vector<std::string> stop;
  SamplingParams sampling;
};

void AddCommonFlags(CLI::App* cmd, CommonOpts& o) {
  cmd->add_option("--model", o.model, "Model folder (HF layout)")->required();
  cmd->add_option("--weights", o.weights,
                  "Convert weights at load: f32, f16, bf16, q8_0 or q4_0 (default: as stored)");
  cmd->add_flag("--no-mmap", o.no_mmap, kNoMmapHelp);
  cmd->add_flag("--exact", o.exact, kExactHelp);
  cmd->add_option("--lora", o.lora,
                  "LoRA adapter folder (PEFT layout, e.g. an elm train LoRA checkpoint), merged "
                  "into the weights at load");
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer.json to use (default: the model folder's, else the built-in Llama-2)");
  cmd->add_option("--max-new-tokens,-n", o.max_new_tokens, "Most tokens to generate")
      ->capture_default_str();
  cmd->add_option("--context", o.context, "Context size in tokens (default: max_context_length)")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
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
  cmd->add_option("--seed", s.seed, "Random seed (same seed, same output)")->capture_default_str();
}

std::shared_ptr<const Model> LoadModel(const CommonOpts& o) {
  LoadOptions lo;
  lo.weights = ParseWeightsFlag(o.weights);
  lo.lora = o.lora;
  lo.mmap = !o.no_mmap;
  lo.exact = o.exact;
  return Model::Load(o.model, lo);
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

void RegisterGenerate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text (streamed) or token ids from a prompt");
  struct Opts : CommonOpts {
    std::string prompt, prompt_file, ids;
    bool echo = false, output_ids = false, no_bos = false, special = false, stop_at_eos = false;
  };
  auto o = std::make_shared<Opts>();
  AddCommonFlags(cmd, *o);
  auto* g = cmd->add_option_group("input", "What to condition on (one of)");
  g->add_option("--prompt,-p", o->prompt, "Prompt text");
  g->add_option("--prompt-file,-f", o->prompt_file, "Read the prompt text from a file");
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
  cmd->callback([o] {
    ValidateSamplingParams(o->sampling);
    const DType kv_type = ParseKvTypeFlag(o->kv_type);  // a bad flag fails before the load
    auto model = LoadModel(*o);
    Session session(model, o->context, kv_type);
    Sampler sampler(o->sampling);
    GenerateOptions go = OptionsFrom(*o);
    if (!o->ids.empty()) {
      const auto prompt = ParseIdList(o->ids, "--ids");
      go.stop_at_eos = o->stop_at_eos && !o->ignore_eos;
      const auto r = Generate(session, prompt, go, sampler);
      PrintStats(r);
      std::printf("%s\n", IdsToJson(r.ids).c_str());
      return;
    }
    const Tokenizer tok = LoadTokenizerFor(o->model, o->tokenizer);
    CheckVocab(tok, *model);
    const std::string text = o->prompt_file.empty() ? o->prompt : ReadTextFile(o->prompt_file);
    const bool bos = tok.add_bos() && !o->no_bos;
    const auto prompt = o->special ? tok.EncodeWithSpecial(text, bos) : tok.Encode(text, bos);
    if (o->echo) WriteText(text);
    const auto r = GenerateText(session, prompt, go, sampler, tok);
    if (r.reason == StopReason::kContextFull)
      std::fprintf(stderr, "\nnote: stopped at the context limit of %d tokens (--context)\n",
                   session.context());
    std::printf("\n");
    PrintStats(r);
    if (o->output_ids) std::printf("%s\n", IdsToJson(r.ids).c_str());
  });
}

struct ChatOpts : CommonOpts {
  std::string system;
  bool raw = false, verbose_prompt = false, special = false;
};

// Reads one message; a trailing backslash continues it on the next line. False at the end of
// input.
bool ReadMessage(std::string* message) {
  std::string line;
  bool got = false;
  while (std::getline(std::cin, line)) {
    got = true;
    if (!line.empty() && line.back() == '\\') {
      line.pop_back();
      *message += line + "\n";
      continue;
    }
    *message += line;
    break;
  }
  return got;
}

// The tokens of the next turn: the pending last reply token (if any), then the message, as typed
// (--raw) or in the Instruct template.
std::vector<int> TurnTokens(const ChatOpts& o, const Tokenizer& tok, bool start, int pending,
                            const std::string& message) {
  std::vector<int> turn;
  if (pending >= 0) turn.push_back(pending);
  if (o.raw) {
    const auto ids = o.special ? tok.EncodeWithSpecial(message, start && tok.add_bos())
                               : tok.Encode(message, start && tok.add_bos());
    turn.insert(turn.end(), ids.begin(), ids.end());
    return turn;
  }
  std::vector<ChatMessage> msgs;
  if (start && !o.system.empty()) msgs.push_back({"system", o.system});
  msgs.push_back({"user", message});
  // A previous reply that ended without EOS (length limit) still ends its turn.
  if (!start && pending != tok.eos_id()) turn.push_back(tok.eos_id());
  ChatTemplateOptions opt;
  opt.at_start = start;
  opt.parse_special = o.special;
  AppendChatTokens(tok, msgs, opt, turn);
  return turn;
}

void ShowTurn(const Tokenizer& tok, const std::vector<int>& turn) {
  std::fprintf(stderr, "[%zu tokens:", turn.size());
  for (int id : turn) std::fprintf(stderr, " %d:'%s'", id, tok.Piece(id).c_str());
  std::fprintf(stderr, "]\n");
}

void RunChat(const ChatOpts& o) {
  ValidateSamplingParams(o.sampling);
  const DType kv_type = ParseKvTypeFlag(o.kv_type);  // a bad flag fails before the load
  auto model = LoadModel(o);
  const Tokenizer tok = LoadTokenizerFor(o.model, o.tokenizer);
  CheckVocab(tok, *model);
  Session session(model, o.context, kv_type);
  Sampler sampler(o.sampling);
  const GenerateOptions go = OptionsFrom(o);
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr, "elm chat: %s, context %d tokens. /reset starts over, /exit quits.\n",
               o.model.c_str(), session.context());
  int pending = -1;  // last generated token, not yet fed through the model
  while (true) {
    if (tty) std::fprintf(stderr, "\n> ");
    std::string message;
    if (!ReadMessage(&message) || message == "/exit" || message == "/quit") break;
    if (message == "/reset") {
      session.Reset();
      pending = -1;
      std::fprintf(stderr, "(context cleared)\n");
      continue;
    }
    if (message.empty()) continue;
    const bool start = session.position() == 0 && pending < 0;
    const std::vector<int> turn = TurnTokens(o, tok, start, pending, message);
    if (o.verbose_prompt) ShowTurn(tok, turn);
    if (session.position() + static_cast<int>(turn.size()) >= session.context()) {
      std::fprintf(stderr,
                   "error: this message does not fit the remaining context (%d of %d tokens "
                   "used); /reset to start over or raise --context\n",
                   session.position(), session.context());
      continue;
    }
    const auto r = GenerateText(session, turn, go, sampler, tok);
    pending = r.ids.empty() ? -1 : r.ids.back();
    std::printf("\n");
    std::fflush(stdout);
    if (r.reason == StopReason::kContextFull)
      std::fprintf(stderr, "note: the context is full; /reset to start over\n");
    if (o.verbose_prompt) PrintStats(r);
  }
}

void RegisterChat(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "chat", "Interactive multi-turn chat with the OpenELM-Instruct template (/reset, /exit)");
  auto o = std::make_shared<ChatOpts>();
  AddCommonFlags(cmd, *o);
  cmd->add_option("--system", o->system, "System message");
  cmd->add_flag("--raw", o->raw, "No template: each line continues the text as typed");
  cmd->add_flag("--verbose-prompt", o->verbose_prompt,
                "Show the tokens the model sees for each turn (to stderr)");
  cmd->add_flag("--special", o->special, "Parse special tokens such as </s> in your messages");
  cmd->callback([o] { RunChat(*o); });
}

}  // namespace

void RegisterGenerateCommands(CLI::App& app) {
  RegisterGenerate(app);
  RegisterChat(app);
}

ELM_REGISTER_COMMAND(30, RegisterGenerateCommands);

}  // namespace elm::cli
