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

std::function<std::unique_ptr<Drafter>()> MakeDrafterFactory(const SpeculativeFlags& f,
                                                             std::shared_ptr<const Model> target,
                                                             const Tokenizer* target_tok,
                                                             int context, DType kv_type) {
  if (!f.draft_model.empty() && f.lookup_ngram > 0)
    Fail("--draft-model and --lookup-ngram are alternatives; give one");
  if (f.draft_model.empty() && !f.draft_weights.empty())
    Fail("--draft-weights needs --draft-model");
  if ((f.lookup_ngram > 0 || !f.draft_model.empty()) && f.draft_max < 1)
    Fail("--draft-max must be >= 1, got ", f.draft_max);
  if (f.lookup_ngram > 0) {
    const int ngram = f.lookup_ngram;
    return [ngram] { return std::make_unique<PromptLookupDrafter>(ngram); };
  }
  if (f.draft_model.empty()) return {};
  LoadOptions lo;
  lo.weights = ParseWeightsFlag(f.draft_weights);
  std::shared_ptr<const Model> draft = Model::Load(f.draft_model, lo);
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
  // The size check (DraftModelDrafter's) once here, so that the factory does not throw later.
  DraftModelDrafter check(draft, *target, 1, kv_type);
  return [draft, target, context, kv_type] {
    return std::make_unique<DraftModelDrafter>(draft, *target, context, kv_type);
  };
}

std::unique_ptr<SpeculativeDecoder> MakeSpeculativeDecoder(const SpeculativeFlags& f,
                                                           const Model& target,
                                                           const Tokenizer* target_tok, int context,
                                                           DType kv_type, uint64_t seed) {
  // The factory keeps the target alive; the caller's model outlives the decoder anyway.
  const std::shared_ptr<const Model> borrowed(&target, [](const Model*) {});
  const auto make = MakeDrafterFactory(f, borrowed, target_tok, context, kv_type);
  if (!make) return nullptr;
  return std::make_unique<SpeculativeDecoder>(make(), f.draft_max, AcceptanceSeedFor(seed));
}

void PrintSpeculativeStats(const SpeculativeDecoder& spec) {
  const SpeculativeStats& s = spec.stats();
  std::fprintf(stderr, "[speculative: %lld drafted, %lld accepted (%.1f%%) in %lld steps]\n",
               static_cast<long long>(s.drafted), static_cast<long long>(s.accepted),
               100.0 * s.acceptance_rate(), static_cast<long long>(s.steps));
}

}  // namespace elm::cli
