// elm kld: KL divergence and perplexity change of a weight conversion against the stored model.
#include <cstdio>

#include "base/error.h"
#include "base/mmap_file.h"
#include "cli_util.h"
#include "commands.h"
#include "eval/quant_quality.h"
#include "io/model_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {

void RegisterKldCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "kld",
      "KL divergence, top-1 agreement and perplexity of converted weights vs the stored ones");
  struct Opts {
    std::string model, weights, base_weights, file, tokenizer, converted;
    bool exact = false;
    int context = 128, max_tokens = 1024, threads = 0;
  };
  auto o = std::make_shared<Opts>();
  AddModelOption(cmd, o->model)->required();
  AddThreadsOption(cmd, o->threads);
  cmd->add_option("--weights", o->weights, "Type to compare: bf16, f16, q8_0, q4_0");
  cmd->add_option("--converted", o->converted,
                  "Instead of --weights: a converted copy of the model to compare, e.g. the GGUF "
                  "`elm quantize --type q4_k_m` wrote");
  cmd->add_option("--base-weights", o->base_weights,
                  "Type of the base model (default: as stored); f32 on a half-precision or "
                  "quantized file measures the kernels' error alone (docs/numerics.md)");
  cmd->add_flag("--exact", o->exact, "The converted model computes with --exact");
  cmd->add_option("--file,-f", o->file,
                  "Text to score (tokenized with the model's tokenizer; - reads standard input)")
      ->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer.json (default: built-in Llama-2)");
  AddContextOption(cmd, o->context, "Window length in tokens")->capture_default_str();
  cmd->add_option("--max-tokens", o->max_tokens, "Score at most this many tokens")
      ->capture_default_str();
  cmd->callback([o] {
    SetThreads(o->threads);
    LoadOptions base_lo;
    base_lo.weights = ParseWeightsFlag(o->base_weights);
    auto base = Model::Load(o->model, base_lo);
    WarnIfBeyondTrainedContext(o->context, base->config().max_context);
    if (o->weights.empty() == o->converted.empty())
      Fail("kld: give --weights TYPE or --converted MODEL (one of them)");
    LoadOptions lo;
    lo.weights = ParseWeightsFlag(o->weights);
    lo.exact = o->exact;
    auto conv = Model::Load(o->converted.empty() ? o->model : o->converted, lo);
    if (conv->config().vocab_size != base->config().vocab_size ||
        conv->config().n_layers != base->config().n_layers)
      Fail(o->converted, ": not a copy of ", o->model, " (other vocabulary or depth)");
    const Tokenizer tok = LoadTokenizerFor(o->model, o->tokenizer);
    auto ids = tok.Encode(ReadInputText(o->file), tok.add_bos());
    if (static_cast<int>(ids.size()) > o->max_tokens)
      ids.resize(static_cast<size_t>(o->max_tokens));
    for (int& id : ids)
      if (id >= base->config().vocab_size)
        Fail(o->file, ": token id ", id, " exceeds the model's vocabulary");
    const auto q = CompareModels(base, conv, ids, o->context);
    std::printf("weights %s%s vs %s %s on %d tokens of %s\n", conv->weights_dtype().c_str(),
                o->exact ? " (exact)" : "", o->base_weights.empty() ? "stored" : "base",
                base->weights_dtype().c_str(), q.tokens, o->file.c_str());
    std::printf("max |logit difference| %.3g (largest |logit| %.3g)\n", q.max_abs_diff,
                q.max_abs_logit);
    std::printf("mean KL %.3g nats/token (max %.3g), top-1 agreement %.2f%%\n", q.mean_kl, q.max_kl,
                100 * q.top1_agreement);
    std::printf("perplexity %.4f → %.4f (%+.3f%%)\n", q.base_ppl, q.converted_ppl,
                100 * (q.converted_ppl / q.base_ppl - 1));
  });
}

ELM_REGISTER_COMMAND(45, RegisterKldCommand);

}  // namespace elm::cli
