#include "speculative_flags.h"

#include <cstdio>

#include "base/error.h"
#include "cli_util.h"
#include "io/model_tokenizer.h"
#include "model/model.h"

namespace elm::cli {

void AddSpeculativeFlags(CLI::App* cmd, SpeculativeFlags& f) {
  cmd->add_option("--draft-model", f.draft_model,
                  "Speculative decoding with this draft model (same vocabulary; any format elm "
                  "loads, e.g. a q4_0 GGUF of the same model)");
  cmd->add_option("--draft-weights", f.draft_weights,
                  "Convert the draft model's weights at load: f32, f16, bf16, q8_0 or q4_0");
  cmd->add_option("--draft-max", f.draft_max, "Most tokens proposed per speculative step")
      ->capture_default_str();
  cmd->add_option("--lookup-ngram", f.lookup_ngram,
                  "Speculative decoding by prompt lookup: propose what followed the last earlier "
                  "match of the final N tokens (N, N-1 .. 1); 0 = off")
      ->capture_default_str();
}

std::unique_ptr<SpeculativeDecoder> MakeSpeculativeDecoder(const SpeculativeFlags& f,
                                                           const Model& target,
                                                           const Tokenizer* target_tok, int context,
                                                           DType kv_type, uint64_t seed) {
  if (!f.draft_model.empty() && f.lookup_ngram > 0)
    Fail("--draft-model and --lookup-ngram are alternatives; give one");
  if (f.draft_model.empty() && !f.draft_weights.empty())
    Fail("--draft-weights needs --draft-model");
  std::unique_ptr<Drafter> drafter;
  if (f.lookup_ngram > 0) {
    drafter = std::make_unique<PromptLookupDrafter>(f.lookup_ngram);
  } else if (!f.draft_model.empty()) {
    LoadOptions lo;
    lo.weights = ParseWeightsFlag(f.draft_weights);
    auto draft = Model::Load(f.draft_model, lo);
    if (target_tok) {
      const Tokenizer draft_tok = LoadTokenizerFor(f.draft_model, "");
      if (draft_tok.vocab_size() != target_tok->vocab_size())
        Fail("--draft-model ", f.draft_model, ": its tokenizer has ", draft_tok.vocab_size(),
             " tokens, the model's ", target_tok->vocab_size(),
             "; speculative decoding needs the same vocabulary");
      for (int id = 0; id < draft_tok.vocab_size(); ++id)
        if (draft_tok.Piece(id) != target_tok->Piece(id))
          Fail("--draft-model ", f.draft_model, ": token ", id, " is '", draft_tok.Piece(id),
               "' there but '", target_tok->Piece(id),
               "' in the model's tokenizer; speculative decoding needs the same vocabulary");
    }
    drafter = std::make_unique<DraftModelDrafter>(std::move(draft), target, context, kv_type);
  } else {
    return nullptr;
  }
  return std::make_unique<SpeculativeDecoder>(std::move(drafter), f.draft_max, seed);
}

void PrintSpeculativeStats(const SpeculativeDecoder& spec) {
  const SpeculativeStats& s = spec.stats();
  std::fprintf(stderr, "[speculative: %lld drafted, %lld accepted (%.1f%%) in %lld steps]\n",
               static_cast<long long>(s.drafted), static_cast<long long>(s.accepted),
               100.0 * s.acceptance_rate(), static_cast<long long>(s.steps));
}

}  // namespace elm::cli
