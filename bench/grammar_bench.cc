// Cost of grammar-constrained sampling per token (docs/sampling.md, "Grammars and JSON schemas"),
// to weigh against a decode step of the model: the mask of a state already seen (the common case:
// a cache lookup and one pass over 32000 logits), the mask of a new state (a walk of the
// vocabulary's byte trie; inside a JSON string nearly every token is allowed, the worst case),
// and accepting one token. bench/structured_speed.sh measures whole decoding with and without a
// schema.
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "grammar/grammar_constraint.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace {

const Tokenizer& BenchTokenizer() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

std::shared_ptr<const TokenTrie> BenchVocab() {
  static const auto v = TokenTrie::FromTokenizer(BenchTokenizer());
  return v;
}

std::shared_ptr<const Grammar> BenchGrammar() {
  static const auto g =
      std::make_shared<const Grammar>(JsonSchemaGrammar(nlohmann::ordered_json::parse(
          R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},
          "required":["name","age"]})")));
  return g;
}

// A constraint inside the "name" string: {"name": "
GrammarConstraint InString() {
  GrammarConstraint c(BenchGrammar(), BenchVocab());
  for (const char* piece : {"{\"", "name", "\":", "\xE2\x96\x81\""})
    c.Accept(*BenchTokenizer().TokenId(piece));
  return c;
}

void BM_GrammarMaskCached(benchmark::State& state) {
  GrammarConstraint c = InString();
  std::vector<float> logits(32000, 0.5f);
  c.Mask(logits);  // fills the cache
  for (auto _ : state) {
    std::fill(logits.begin(), logits.end(), 0.5f);
    c.Mask(logits);
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_GrammarMaskCached)->Unit(benchmark::kMicrosecond);

void BM_GrammarMaskNewState(benchmark::State& state) {
  std::vector<float> logits(32000, 0.5f);
  for (auto _ : state) {
    state.PauseTiming();
    GrammarConstraint c = InString();
    state.ResumeTiming();
    c.Mask(logits);
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_GrammarMaskNewState)->Unit(benchmark::kMillisecond);

void BM_GrammarMaskFirstToken(benchmark::State& state) {
  std::vector<float> logits(32000, 0.5f);
  for (auto _ : state) {
    GrammarConstraint c(BenchGrammar(), BenchVocab());
    c.Mask(logits);
    benchmark::DoNotOptimize(logits.data());
  }
}
BENCHMARK(BM_GrammarMaskFirstToken)->Unit(benchmark::kMicrosecond);

void BM_GrammarAccept(benchmark::State& state) {
  const int the = *BenchTokenizer().TokenId("\xE2\x96\x81the");
  GrammarConstraint c = InString();
  for (auto _ : state) {
    c.Accept(the);  // the string state comes back after every word
    benchmark::DoNotOptimize(&c);
  }
}
BENCHMARK(BM_GrammarAccept)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace elm
