// Tokenizer throughput. The main number is BM_EncodeMixed: bytes/s encoding ~1 MB of mostly
// English text (Shakespeare, the KJV Bible, and the multilingual/emoji/code strings of the hard
// test corpus), from tests/data/tokenizer/bench_sample.txt repeated.
//
//   build/release/bench/elm_bench --benchmark_filter=Tokenizer
#include <benchmark/benchmark.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string ReadSample() {
  const std::string path = ELM_SOURCE_DIR "/tests/data/tokenizer/bench_sample.txt";
  std::ifstream in(path, std::ios::binary);
  if (!in) elm::Fail("cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

// The sample repeated to about `bytes`, cut at a line end.
const std::string& MixedText(size_t bytes = 1 << 20) {
  static const std::string text = [bytes] {
    const std::string sample = ReadSample();
    std::string t;
    while (t.size() < bytes) t += sample;
    t.resize(t.rfind('\n', bytes) + 1);
    return t;
  }();
  return text;
}

// Worst case for the encoder: CJK text has no spaces, so the whole input is one BPE word.
const std::string& CjkText() {
  static const std::string text = [] {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> cp(0x4E00, 0x9FFF);
    std::string t;
    while (t.size() < (256u << 10)) {
      const int c = cp(rng);
      t += static_cast<char>(0xE0 | (c >> 12));
      t += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      t += static_cast<char>(0x80 | (c & 0x3F));
    }
    return t;
  }();
  return text;
}

void Tokenizer_EncodeMixed(benchmark::State& state) {
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  const std::string& text = MixedText();
  size_t n = 0;
  for (auto _ : state) {
    const auto ids = tok.Encode(text, true);
    n = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n);
}
BENCHMARK(Tokenizer_EncodeMixed)->Unit(benchmark::kMillisecond);

// Plain English with many distinct words (data/corpus/tinyshakespeare.txt, 1.1 MB, if present).
void Tokenizer_EncodeShakespeare(benchmark::State& state) {
  std::ifstream in(ELM_SOURCE_DIR "/data/corpus/tinyshakespeare.txt", std::ios::binary);
  if (!in) {
    state.SkipWithError("data/corpus/tinyshakespeare.txt not found");
    return;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = std::move(ss).str();
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  for (auto _ : state) benchmark::DoNotOptimize(tok.Encode(text, true).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(Tokenizer_EncodeShakespeare)->Unit(benchmark::kMillisecond);

void Tokenizer_EncodeCjkOneWord(benchmark::State& state) {
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  const std::string& text = CjkText();
  for (auto _ : state) benchmark::DoNotOptimize(tok.Encode(text, true).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(Tokenizer_EncodeCjkOneWord)->Unit(benchmark::kMillisecond);

// A short prompt: per-call overhead matters for chat.
void Tokenizer_EncodePrompt(benchmark::State& state) {
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  const std::string text = "Write a short poem about a llama who learns to program in C++.";
  for (auto _ : state) benchmark::DoNotOptimize(tok.Encode(text, true).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(Tokenizer_EncodePrompt);

void Tokenizer_DecodeMixed(benchmark::State& state) {
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  const std::string& text = MixedText();
  const auto ids = tok.Encode(text, true);
  for (auto _ : state) benchmark::DoNotOptimize(tok.Decode(ids).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(Tokenizer_DecodeMixed)->Unit(benchmark::kMillisecond);

void Tokenizer_StreamDecodeMixed(benchmark::State& state) {
  const elm::Tokenizer tok = elm::Tokenizer::Default();
  const std::string& text = MixedText();
  const auto ids = tok.Encode(text, true);
  for (auto _ : state) {
    elm::StreamDecoder dec(tok);
    size_t total = 0;
    for (const int id : ids) total += dec.Push(id).size();
    total += dec.Flush().size();
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(Tokenizer_StreamDecodeMixed)->Unit(benchmark::kMillisecond);

// Parsing the 1.8 MB tokenizer.json (paid once per process for the built-in tokenizer).
void Tokenizer_LoadJson(benchmark::State& state) {
  std::ifstream in(ELM_SOURCE_DIR "/data/tokenizer/llama2/tokenizer.json", std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string json = std::move(ss).str();
  for (auto _ : state) {
    benchmark::DoNotOptimize(elm::Tokenizer::FromJson(json, "tokenizer.json").vocab_size());
  }
}
BENCHMARK(Tokenizer_LoadJson)->Unit(benchmark::kMillisecond);

}  // namespace
