// elm tokenize / elm detokenize: lines in, JSON lines out, so scripts (and parity checks against
// other tokenizer implementations) can drive the tokenizer without quoting trouble.
//
//   elm tokenize [--tokenizer tokenizer.json | -m MODEL] [-f texts.txt|.jsonl] [--special]
//   elm detokenize [--tokenizer tokenizer.json | -m MODEL] [-f ids.jsonl]   one id array a line
// tokenize reads one text a line: a line that starts with a double quote is a JSON string (so
// newlines and any byte can be written as escapes), any other line is plain text as written;
// --plain takes every line as plain text (docs/tokenizer.md). The input defaults to stdin.
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
#include "cli_util.h"
#include "commands.h"
#include "io/model_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

using nlohmann::json;

struct TokenizeFlags {
  std::string model;        // a model folder whose tokenizer to use
  std::string tokenizer;    // empty: the model's, else the built-in Llama-2 tokenizer
  std::string input = "-";  // "-": stdin
  bool special = false;
  bool plain = false;  // every line is plain text, even one that starts with '"'
};

// Opens `path` ("-": stdin) and hands each non-blank line with its number to `fn`; an elm::Error
// from it is reported as "<path>:<line>: ...".
void ForEachLine(const std::string& path,
                 const std::function<void(const std::string&, size_t)>& fn) {
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
      fn(line, number);
    } catch (const Error& e) {
      Fail(name, ":", number, ": ", e.what());
    }
  }
  if (in->bad()) Fail("error reading ", name);
}

// The text of one tokenize input line (see the top of this file).
std::string LineText(const std::string& line, bool plain) {
  std::string text = line;
  if (!text.empty() && text.back() == '\r') text.pop_back();  // CRLF files
  const size_t first = text.find_first_not_of(" \t");
  if (plain || first == std::string::npos || text[first] != '"') return text;
  try {
    const json j = json::parse(text);
    if (j.is_string()) return j.get<std::string>();
  } catch (const json::exception&) {
  }
  Fail("the line starts with a double quote but is not one JSON string; write it as a JSON ",
       "string, or pass --plain to take every line as plain text");
}

// Parses each non-blank line of `path` as JSON and hands it to `fn`; any error is reported as
// "<path>:<line>: ...".
void ForEachJsonLine(const std::string& path, const std::function<void(const json&)>& fn) {
  ForEachLine(path, [&](const std::string& line, size_t) {
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      Fail("not a JSON array of token ids (", e.what(), ")");
    }
    fn(j);
  });
}

void Write(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) Fail("cannot write to stdout");
}

void RunTokenize(const TokenizeFlags& flags) {
  const Tokenizer tok = LoadTokenizerFor(flags.model, flags.tokenizer);
  ForEachLine(flags.input, [&](const std::string& line, size_t) {
    const std::string text = LineText(line, flags.plain);
    const std::vector<int> ids = flags.special ? tok.EncodeWithSpecial(text, tok.add_bos())
                                               : tok.Encode(text, tok.add_bos());
    Write(json(ids).dump() + "\n");
  });
}

void RunDetokenize(const TokenizeFlags& flags) {
  const Tokenizer tok = LoadTokenizerFor(flags.model, flags.tokenizer);
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
                    "tokenizer.json to use (default: the --model folder's, else the built-in "
                    "Llama-2 tokenizer); tokenizer_config.json beside it is read too");
    AddModelOption(cmd, flags->model, "Use this model folder's tokenizer");
    cmd->add_option("--input,--file,-f,-i", flags->input, input_help)->capture_default_str();
  };

  CLI::App* tokenize = app.add_subcommand(
      "tokenize",
      "Text to token ids: one text per input line (plain, or a JSON string), one JSON "
      "array out");
  common(tokenize, "Text file (plain lines, or JSON strings), or - for stdin");
  tokenize->add_flag("--plain", flags->plain,
                     "Take every line as plain text, even one that starts with a double quote");
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
