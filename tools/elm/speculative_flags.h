// The speculative decoding flags of elm generate and elm chat (--draft-model, --draft-weights,
// --draft-max, --lookup-ngram; docs/sampling.md "Speculative decoding") and the decoder they
// describe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "generation/speculative.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {

struct SpeculativeFlags {
  std::string draft_model, draft_weights;
  int draft_max = 8;
  int lookup_ngram = 0;
  bool no_mmap = false;
};

void AddSpeculativeFlags(CLI::App* cmd, SpeculativeFlags& f);

// Makes one drafter per call (elm serve: one per slot), sharing the draft model loaded once; empty
// when neither --draft-model nor --lookup-ngram was given. Loads and checks as below.
std::function<std::unique_ptr<Drafter>()> MakeDrafterFactory(const SpeculativeFlags& f,
                                                             std::shared_ptr<const Model> target,
                                                             const Tokenizer* target_tok,
                                                             int context, DType kv_type);

// Null when neither --draft-model nor --lookup-ngram was given. Loads the draft model (any format
// elm loads) and checks that its vocabulary is the target's: the same size and, when `target_tok`
// is given, the same token strings. Throws elm::Error naming the mismatch. `seed` is the sampler's;
// the acceptance tests draw from AcceptanceSeedFor(seed).
std::unique_ptr<SpeculativeDecoder> MakeSpeculativeDecoder(const SpeculativeFlags& f,
                                                           const Model& target,
                                                           const Tokenizer* target_tok, int context,
                                                           DType kv_type, uint64_t seed);

// "[speculative: 120 drafted, 96 accepted (80.0%) in 30 steps]" on stderr.
void PrintSpeculativeStats(const SpeculativeDecoder& spec);

}  // namespace elm::cli
