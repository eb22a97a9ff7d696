// The flags llama.cpp and mlx-lm users type (-m, -p, -f -, -n/--max-tokens, -t, -c/--ctx-size,
// -s), "did you mean" for a mistyped flag or command, --version, the --context warning, and
// `elm tokenize` on plain text: run through the real elm binary (README.md, "Flags").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/mmap_file.h"
#include "base/spelling.h"
#include "test_util.h"

namespace elm {
namespace cli_flags_test {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = test::DataDir() + "/conformance/a_tiny_qknorm_tied";  // context 128
const std::string kChatModel = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::string LastLine(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

TEST(Spelling, ClosestName) {
  EXPECT_EQ(EditDistance("", "abc"), 3);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
  EXPECT_EQ(EditDistance("max_step", "max_steps"), 1);
  const std::vector<std::string> flags = {"--max-new-tokens", "--model", "--max-tokens", "--seed"};
  EXPECT_EQ(ClosestName("--max-tokns", flags), "--max-tokens");
  EXPECT_EQ(ClosestName("--modle", flags), "--model");
  EXPECT_EQ(ClosestName("--max-new", flags), "--max-new-tokens");  // a prefix
  EXPECT_EQ(ClosestName("--verbose", flags), "");                  // nothing close
}

// The short forms give the same ids as the long ones.
TEST(CliFlags, ShortAndAliasFormsMatchTheLongOnes) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("generate --model " + kTiny +
                             " --ids 1,5,9 --max-new-tokens 6 --temperature 0 --seed 3 "
                             "--context 64 --output-ids",
                         &out, &err),
            0)
      << err;
  const json want = json::parse(LastLine(out));
  ASSERT_EQ(want.size(), 6u);
  for (const std::string& flags :
       {"-m " + kTiny + " --ids 1,5,9 -n 6 --temp 0 -s 3 -c 64 -t 1 --output-ids",
        "-m " + kTiny +
            " --ids 1,5,9 --max-tokens 6 --temp 0 --ctx-size 64 --threads 2 "
            "--output-ids"}) {
    SCOPED_TRACE(flags);
    ASSERT_EQ(test::RunElm("generate " + flags, &out, &err), 0) << err;
    EXPECT_EQ(json::parse(LastLine(out)), want);
  }
  // -m everywhere a model is loaded (it used to say "--model is required").
  ASSERT_EQ(test::RunElm("info -m " + kTiny, &out, &err), 0) << err;
  EXPECT_NE(out.find("total params"), std::string::npos) << out;
  const std::string tmp = test::TempDir("cli_flags");
  ASSERT_EQ(
      test::RunElm("logits -m " + kTiny + " -t 1 --ids 1,5 --output " + tmp + "/l.bin", &out, &err),
      0)
      << err;
  EXPECT_EQ(fs::file_size(tmp + "/l.bin"), 2u * 256 * 4);
  fs::remove_all(tmp);
}

// Every command that takes --model takes -m too (convert and quantize once did not), read from
// each command's --help, so a new command is checked as it lands.
TEST(CliFlags, EveryModelFlagHasItsShortForm) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("--help", &out, &err), 0) << err;
  const size_t subs = out.find("Subcommands:");
  ASSERT_NE(subs, std::string::npos) << out;
  std::istringstream lines(out.substr(subs));
  std::string line;
  int with_model = 0;
  while (std::getline(lines, line)) {
    if (line.size() < 3 || line[0] != ' ' || line[2] == ' ') continue;
    const std::string name = line.substr(2, line.find(' ', 2) - 2);
    std::string help;
    ASSERT_EQ(test::RunElm(name + " --help", &help, &err), 0) << name << ": " << err;
    // An option line starting with --model has no short form.
    EXPECT_EQ(help.find("\n  --model "), std::string::npos) << "elm " << name << " --help:\n"
                                                            << help;
    if (help.find("-m,--model ") != std::string::npos) ++with_model;
  }
  EXPECT_GE(with_model, 10);
}

// -s is --seed for init's weights too.
TEST(CliFlags, InitSeedShortForm) {
  const std::string tmp = test::TempDir("cli_init");
  std::ofstream(tmp + "/t.yaml") << test::TinyTrainYaml(tmp, 2, 1, 1);
  std::string out, err;
  ASSERT_EQ(
      test::RunElm("init --config " + tmp + "/t.yaml --seed 5 --output " + tmp + "/a", &out, &err),
      0)
      << err;
  ASSERT_EQ(
      test::RunElm("init --config " + tmp + "/t.yaml -s 5 --output " + tmp + "/b", &out, &err), 0)
      << err;
  EXPECT_TRUE(ReadTextFile(tmp + "/a/model.safetensors") ==
              ReadTextFile(tmp + "/b/model.safetensors"));
  fs::remove_all(tmp);
}

// -f - reads the prompt (generate) or the text (perplexity) from standard input.
TEST(CliFlags, DashFileIsStdin) {
  const std::string tmp = test::TempDir("cli_stdin");
  std::ofstream(tmp + "/prompt.txt") << "Once upon a time";
  std::string from_file, from_stdin, err;
  ASSERT_EQ(test::RunElm("generate -m " + kChatModel + " -f " + tmp +
                             "/prompt.txt -n 4 --temp 0 --output-ids",
                         &from_file, &err),
            0)
      << err;
  ASSERT_EQ(test::RunElm("generate -m " + kChatModel + " -f - -n 4 --temp 0 --output-ids < " + tmp +
                             "/prompt.txt",
                         &from_stdin, &err),
            0)
      << err;
  EXPECT_EQ(LastLine(from_stdin), LastLine(from_file));
  ASSERT_EQ(test::RunElm("perplexity -m " + kChatModel + " -c 32 -f - < " + tmp + "/prompt.txt",
                         &from_stdin, &err),
            0)
      << err;
  EXPECT_NE(from_stdin.find("token perplexity"), std::string::npos) << from_stdin;
  fs::remove_all(tmp);
}

// --threads sets the OpenMP threads the command computes with (bench reports them).
TEST(CliFlags, ThreadsSetsTheOpenMpThreads) {
  std::string out, err;
  ASSERT_EQ(
      test::RunElm("bench -m " + kTiny + " -t 1 -p 4 -n 2 -r 1 --bandwidth 1 --json", &out, &err),
      0)
      << err;
  EXPECT_EQ(json::parse(out)["threads"], 1) << out;
  EXPECT_NE(test::RunElm("generate -m " + kTiny + " --ids 1 -t 0", &out, &err), 0);
  EXPECT_NE(err.find("--threads"), std::string::npos) << err;
}

TEST(CliFlags, UnknownFlagsSuggestTheClosest) {
  std::string out, err;
  // mlx-lm's spelling with a typo: named, with the closest flag, not "10 was not expected".
  EXPECT_NE(test::RunElm("generate -m " + kTiny + " --ids 1 --max-tokns 10", &out, &err), 0);
  EXPECT_NE(err.find("unknown option '--max-tokns' for elm generate; did you mean --max-tokens?"),
            std::string::npos)
      << err;
  // A mistyped --model is named first, not reported as "--model is required".
  EXPECT_NE(test::RunElm("info --modle " + kTiny, &out, &err), 0);
  EXPECT_NE(err.find("did you mean --model?"), std::string::npos) << err;
  EXPECT_EQ(err.find("required"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("generat -m " + kTiny, &out, &err), 0);
  EXPECT_NE(err.find("unknown command 'generat'; did you mean generate?"), std::string::npos)
      << err;
  // A value that starts with '-' is a value, not an unknown flag: CLI11's own message stays.
  EXPECT_NE(test::RunElm("generate -m " + kTiny + " --ids 1 --temperature -1", &out, &err), 0);
  EXPECT_EQ(err.find("unknown option"), std::string::npos) << err;
  EXPECT_NE(err.find("temperature"), std::string::npos) << err;
  EXPECT_NE(test::RunElm("eval -m " + kTiny + " --tasks arc_easy --limt 2", &out, &err), 0);
  EXPECT_NE(err.find("did you mean --limit?"), std::string::npos) << err;
}

TEST(CliFlags, VersionNamesCommitKernelsAndBlas) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("--version", &out, &err), 0) << err;
  EXPECT_EQ(out.rfind("elm 0.", 0), 0u) << out;
  for (const char* line : {"\ncommit: ", "\nkernels: ", "\nBLAS: OpenBLAS"})
    EXPECT_NE(out.find(line), std::string::npos) << line << " in " << out;
  EXPECT_EQ(out.find("commit: \n"), std::string::npos) << out;
}

// A context beyond the trained length is allowed, with one warning; within it, none.
TEST(CliFlags, ContextBeyondTrainingWarnsOnce) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("generate -m " + kTiny + " --ids 1 -n 1 -c 256", &out, &err), 0) << err;
  const std::string warning = "beyond the 128 tokens this model was trained on";
  ASSERT_NE(err.find(warning), std::string::npos) << err;
  EXPECT_EQ(err.find(warning, err.find(warning) + 1), std::string::npos) << err;
  ASSERT_EQ(test::RunElm("generate -m " + kTiny + " --ids 1 -n 1 -c 128", &out, &err), 0) << err;
  EXPECT_EQ(err.find("beyond"), std::string::npos) << err;
}

// tokenize reads plain text lines as written and JSON-string lines decoded; a line that looks
// like JSON but is not is an error naming the line (it used to be a raw parser error for any
// plain text).
TEST(CliFlags, TokenizePlainText) {
  const std::string tmp = test::TempDir("cli_tokenize");
  std::ofstream(tmp + "/plain.txt") << "Hello world\n\n\"Hello world\"\n";
  std::string out, err;
  ASSERT_EQ(test::RunElm("tokenize -f " + tmp + "/plain.txt", &out, &err), 0) << err;
  std::stringstream lines(out);
  std::string a, b, extra;
  ASSERT_TRUE(std::getline(lines, a) && std::getline(lines, b)) << out;
  EXPECT_FALSE(std::getline(lines, extra));  // the blank line is skipped
  EXPECT_EQ(a, b);                           // plain and JSON-string forms agree
  EXPECT_EQ(json::parse(a).front(), 1);      // BOS
  // -m takes the model folder's tokenizer; input defaults to stdin.
  ASSERT_EQ(test::RunElm("tokenize -m " + kChatModel + " < " + tmp + "/plain.txt", &out, &err), 0)
      << err;

  std::ofstream(tmp + "/quote.txt") << "ok\n\"Hello,\" she said.\n";
  EXPECT_NE(test::RunElm("tokenize --input " + tmp + "/quote.txt", &out, &err), 0);
  EXPECT_NE(err.find(tmp + "/quote.txt:2: "), std::string::npos) << err;
  EXPECT_NE(err.find("--plain"), std::string::npos) << err;
  ASSERT_EQ(test::RunElm("tokenize --plain -f " + tmp + "/quote.txt", &out, &err), 0) << err;
  fs::remove_all(tmp);
}

}  // namespace cli_flags_test
}  // namespace elm
