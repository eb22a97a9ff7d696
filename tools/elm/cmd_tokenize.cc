// elm tokenize / elm detokenize: JSON lines in, JSON lines out, so scripts (and parity checks
// against other tokenizer implementations) can drive the tokenizer without quoting trouble.
//
//   elm tokenize [--tokenizer tokenizer.json] --input texts.jsonl [--special]   one string a line
//   elm detokenize [--tokenizer tokenizer.json] --input ids.jsonl               one id array a line
// Output: one JSON value per non-blank input line, in order. BOS is added per the tokenizer's
// configuration; detokenize skips special tokens.
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "commands.h"
#include "io/model_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

using nlohmann::json;

struct TokenizeFlags {
  std::string tokenizer;  // empty: the built-in Llama-2 tokenizer
  std::string input;      // "-": stdin
  bool special = false;
};

// Parses each non-blank line of `path` as JSON and hands it to `fn`; any error is reported as
// "<path>:<line>: ...".
void ForEachJsonLine(const std::string& path, const std::function<void(const json&)>& fn) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) Fail("cannot open input file ", path);
    in = &file;
  }
  const std::string name = path == "-" ? "<stdin>" : path;
  std::string line;
  for (size_t number = 1; std::getline(*in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      fn(json::parse(line));
    } catch (const json::exception& e) {
      Fail(name, ":", number, ": ", e.what());
    } catch (const Error& e) {
      Fail(name, ":", number, ": ", e.what());
    }
  }
  if (in->bad()) Fail("error reading ", name);
}

void Write(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) Fail("cannot write to stdout");
}

void RunTokenize(const TokenizeFlags& flags) {
  const Tokenizer tok = LoadTokenizerFor("", flags.tokenizer);
  ForEachJsonLine(flags.input, [&](const json& line) {
    if (!line.is_string()) Fail("expected a JSON string, got ", line.type_name());
    const std::string& text = line.get_ref<const std::string&>();
    const std::vector<int> ids = flags.special ? tok.EncodeWithSpecial(text, tok.add_bos())
                                               : tok.Encode(text, tok.add_bos());
    Write(json(ids).dump() + "\n");
  });
}

void RunDetokenize(const TokenizeFlags& flags) {
  const Tokenizer tok = LoadTokenizerFor("", flags.tokenizer);
  ForEachJsonLine(flags.input, [&](const json& line) {
    if (!line.is_array()) Fail("expected a JSON array of token ids, got ", line.type_name());
    std::vector<int> ids;
    ids.reserve(line.size());
    for (const json& id : line) {
      if (!id.is_number_integer()) Fail("expected integer token ids, got ", id.dump());
      const auto value = id.get<int64_t>();
      if (value < 0 || value >= tok.vocab_size()) {
        Fail("token id ", value, " is out of range (vocabulary size ", tok.vocab_size(), ")");
      }
      ids.push_back(static_cast<int>(value));
    }
    Write(json(tok.Decode(ids, /*skip_special=*/true)).dump() + "\n");
  });
}

}  // namespace

void RegisterTokenizeCommands(CLI::App& app) {
  auto flags = std::make_shared<TokenizeFlags>();
  const auto common = [&flags](CLI::App* cmd, const char* input_help) {
    cmd->add_option("--tokenizer", flags->tokenizer,
                    "tokenizer.json to use (default: the built-in Llama-2 tokenizer); "
                    "tokenizer_config.json beside it is read too");
    cmd->add_option("--input", flags->input, input_help)->required();
  };

  CLI::App* tokenize = app.add_subcommand(
      "tokenize", "Text to token ids: one JSON string per input line, one JSON array out");
  common(tokenize, "JSON-lines file of strings, or - for stdin");
  tokenize->add_flag("--special", flags->special,
                     "parse special tokens written in the text (<s>, </s>) instead of treating "
                     "them as plain text");
  tokenize->callback([flags] { RunTokenize(*flags); });

  CLI::App* detokenize = app.add_subcommand(
      "detokenize", "Token ids to text: one JSON array per input line, one JSON string out");
  common(detokenize, "JSON-lines file of id arrays, or - for stdin");
  detokenize->callback([flags] { RunDetokenize(*flags); });
}

ELM_REGISTER_COMMAND(40, RegisterTokenizeCommands);

}  // namespace elm::cli
