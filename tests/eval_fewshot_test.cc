// Few-shot prompts and the tasks beyond the zero-shot seven, against fixtures written by
// tests/tools/gen_fewshot_cases.py (CPython's random.Random and a Python mirror of lm-eval
// dc90fec's prompt construction on made-up rows in tests/data/eval/fewshot).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "eval/csv.h"
#include "eval/evaluator.h"
#include "eval/fewshot.h"
#include "eval/py_literal.h"
#include "eval/python_random.h"
#include "eval/tasks.h"
#include "test_util.h"

namespace elm::eval {
namespace eval_fewshot_test {
using nlohmann::json;

std::string Dir() {
  return test::DataDir() + "/eval/fewshot";
}

json ReadJson(const std::string& path) {
  return json::parse(ReadTextFile(path));
}

TEST(PyRandom, MatchesCPython) {
  for (const auto& c : ReadJson(Dir() + "/python_random.json")) {
    const uint64_t seed = c["seed"].get<uint64_t>();
    SCOPED_TRACE("seed " + std::to_string(seed));
    PyRandom r(seed);
    for (const auto& v : c["getrandbits32"]) EXPECT_EQ(r.GetRandBits(32), v.get<uint64_t>());
    for (const auto& v : c["getrandbits7"]) EXPECT_EQ(r.GetRandBits(7), v.get<uint64_t>());
    for (const auto& v : c["getrandbits40"]) EXPECT_EQ(r.GetRandBits(40), v.get<uint64_t>());
    for (const auto& v : c["getrandbits64"]) EXPECT_EQ(r.GetRandBits(64), v.get<uint64_t>());
    for (size_t i = 0; i < c["randbelow"].size(); ++i)
      EXPECT_EQ(r.RandBelow(c["randbelow_n"][i].get<uint64_t>()),
                c["randbelow"][i].get<uint64_t>());
    PyRandom s(seed);  // samples on a fresh generator, in sequence
    for (const auto& sm : c["samples"]) {
      const auto got = s.Sample(sm["n"].get<size_t>(), sm["k"].get<size_t>());
      EXPECT_EQ(got, sm["indices"].get<std::vector<size_t>>())
          << "n " << sm["n"] << " k " << sm["k"];
    }
  }
}

TEST(PyRandom, SampleLargerThanPopulationIsAnError) {
  PyRandom r(1234);
  EXPECT_THROW(r.Sample(3, 4), Error);
}

// Every task's requests for its first docs at its suite's shot count, exactly as lm-eval builds
// them (the Python mirror's expected.json), through the same path RunEval takes.
TEST(EvalFewshot, PromptsMatchLmEvalConstruction) {
  const json expected = ReadJson(Dir() + "/expected.json");
  for (const auto& [name, e] : expected.items()) {
    SCOPED_TRACE(name);
    const TaskInfo& task = FindTask(name);
    EvalOptions opt;
    opt.data.data_dir = Dir();
    opt.limit = e["limit"].get<int>();
    opt.num_fewshot = e["num_fewshot"].get<int>();
    if (e["fewshot_file"].is_string())
      opt.data.fewshot_files[name] = Dir() + "/" + e["fewshot_file"].get<std::string>();
    const std::string path = Dir() + "/" + e["file"].get<std::string>();
    TaskResult r;
    const auto docs = PrepareDocs(task, path, opt, &r);
    ASSERT_EQ(docs.size(), e["docs"].size());
    for (size_t i = 0; i < docs.size(); ++i) {
      const auto& want = e["docs"][i]["requests"];
      ASSERT_EQ(docs[i].requests.size(), want.size()) << "doc " << i;
      for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_EQ(docs[i].requests[k].context, want[k][0].get<std::string>())
            << "doc " << i << " request " << k;
        EXPECT_EQ(docs[i].requests[k].continuation, want[k][1].get<std::string>())
            << "doc " << i << " request " << k;
      }
    }
  }
}

TEST(EvalFewshot, ZeroShotLeavesPromptsAlone) {
  const TaskInfo& task = FindTask("arc_challenge");
  EvalOptions opt;
  opt.data.data_dir = Dir();
  TaskResult r;
  const std::string path = Dir() + "/arc_challenge_hf.jsonl";
  const auto docs = PrepareDocs(task, path, opt, &r);
  const auto raw = LoadDocs(task, path);
  ASSERT_EQ(docs.size(), raw.size());
  for (size_t i = 0; i < docs.size(); ++i) EXPECT_TRUE(SameDoc(docs[i], raw[i]));
  EXPECT_EQ(r.num_fewshot, 0);
  EXPECT_EQ(docs[0].requests[0].context.rfind("Question: ", 0), 0u);
}

TEST(EvalFewshot, TruthfulqaIgnoresShots) {
  EvalOptions opt;
  opt.num_fewshot = 5;
  EXPECT_EQ(ShotsFor(FindTask("truthfulqa_mc2"), opt), 0);
  EXPECT_EQ(ShotsFor(FindTask("arc_easy"), opt), 5);
  opt.task_fewshot["arc_easy"] = 25;
  EXPECT_EQ(ShotsFor(FindTask("arc_easy"), opt), 25);
}

TEST(EvalFewshot, MissingFewshotSplitSaysWhatToGet) {
  EvalOptions opt;
  opt.data.data_dir = test::TempDir("fewshot_missing");
  opt.num_fewshot = 25;
  opt.data.files["arc_challenge"] = Dir() + "/arc_challenge_hf.jsonl";
  const TaskInfo* tasks[] = {&FindTask("arc_challenge")};
  try {
    CheckFewshotData(tasks, opt);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("arc_challenge_train.jsonl"), std::string::npos) << m;
    EXPECT_NE(m.find("--fewshot-data"), std::string::npos) << m;
    EXPECT_NE(m.find("allenai/ai2_arc"), std::string::npos) << m;
  }
}

TEST(EvalFewshot, TooFewExamplesIsAnError) {
  const TaskInfo& task = FindTask("siqa");
  EvalOptions opt;
  opt.data.data_dir = Dir();
  opt.num_fewshot = 20;  // 21 draws from 20 train rows
  opt.data.fewshot_files["siqa"] = Dir() + "/siqa_train.jsonl";
  TaskResult r;
  EXPECT_THROW(PrepareDocs(task, Dir() + "/siqa_validation.jsonl", opt, &r), Error);
}

// The doc's own copy in the few-shot split is dropped (lm-eval's `x != doc`).
TEST(EvalFewshot, EvaluatedDocIsNeverItsOwnExample) {
  const TaskInfo& task = FindTask("crows_pairs_english");
  const auto docs = LoadDocs(task, Dir() + "/crows_pairs_english.jsonl");
  FewshotSampler s(task, [&] {
    std::vector<const Doc*> p;
    for (const auto& d : docs) p.push_back(&d);
    return p;
  }());
  int short_prompts = 0;
  for (const auto& d : docs) {
    const std::string ctx = s.Context(d, 25);
    EXPECT_EQ(ctx.find(d.example + "\n\n"), std::string::npos);
    size_t n = 0;
    for (size_t at = ctx.find("\n\n"); at != std::string::npos; at = ctx.find("\n\n", at + 2)) ++n;
    EXPECT_TRUE(n == 25 || n == 24) << n;
    short_prompts += n == 24;
  }
  EXPECT_GT(short_prompts, 0);
}

TEST(EvalTasksExtra, MmluDocAndSubjects) {
  EXPECT_EQ(MmluSubjects().size(), 57u);
  const auto docs = LoadDocs(FindTask("mmlu"), Dir() + "/mmlu_test.jsonl");
  ASSERT_EQ(docs.size(), 6u);
  EXPECT_EQ(docs[0].subset, "abstract_algebra");
  EXPECT_EQ(docs[0].description,
            "The following are multiple choice questions (with answers) about abstract "
            "algebra.\n\n");
  EXPECT_EQ(docs[0].requests[1].continuation, " B");
  const json bad =
      json::parse(R"({"question":"q","subject":"cooking","choices":["a","b","c","d"],"answer":0})");
  EXPECT_THROW(MmluDoc(bad, 0, "x:1"), Error);
}

// The shipped OpenBookQA rows (llm-foundry's query/choices/gold) give the document the Hugging
// Face rows do, and the shipped file is the test split's 500 questions.
TEST(EvalTasksExtra, OpenbookqaShippedRowsEqualHuggingFaceRows) {
  const json hf = json::parse(
      R"({"question_stem":"Predators eat","choices":{"text":["lions","humans","bunnies","grass"],)"
      R"("label":["A","B","C","D"]},"answerKey":"C"})");
  const json shipped =
      json::parse(R"({"query":"Predators eat","choices":["lions","humans","bunnies","grass"],)"
                  R"("gold":2})");
  const Doc a = OpenbookqaDoc(hf, 0, "x:1"), b = OpenbookqaDoc(shipped, 0, "x:1");
  ASSERT_EQ(a.requests.size(), b.requests.size());
  for (size_t i = 0; i < a.requests.size(); ++i) {
    EXPECT_EQ(a.requests[i].context, b.requests[i].context);
    EXPECT_EQ(a.requests[i].continuation, b.requests[i].continuation);
  }
  EXPECT_EQ(a.gold, b.gold);
  EXPECT_EQ(a.example, b.example);
  DataLocations where;
  where.data_dir = std::string(ELM_SOURCE_DIR) + "/data/eval";
  const auto docs = LoadDocs(FindTask("openbookqa"), TaskDataPath(FindTask("openbookqa"), where));
  ASSERT_EQ(docs.size(), 500u);
  EXPECT_EQ(docs[2].requests[2].continuation, " bunnies");
  EXPECT_EQ(docs[2].gold, 2);
}

TEST(EvalTasksExtra, TruthfulqaMc2) {
  const auto docs = LoadDocs(FindTask("truthfulqa_mc2"), Dir() + "/truthfulqa_mc.jsonl");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].n_true, 1);
  EXPECT_EQ(docs[1].n_true, 2);
  EXPECT_EQ(docs[0].requests[0].context.rfind(TruthfulqaPrimer() + "\n\nQ: ", 0), 0u);
  const json no_false =
      json::parse(R"({"question":"q","mc2_targets":{"choices":["a","b"],"labels":[1,1]}})");
  EXPECT_THROW(TruthfulqaMc2Doc(no_false, 0, "x:1"), Error);
}

TEST(EvalTasksExtra, Mc2AndCrowsPairsMetrics) {
  DocResult a, b;
  a.mc2 = 0.25;
  b.mc2 = 0.75;
  const DocResult mc2[] = {a, b};
  const auto m = TaskMetrics(FindTask("truthfulqa_mc2"), mc2);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].name, "acc");
  EXPECT_DOUBLE_EQ(m[0].value, 0.5);
  a.likelihood_diff = 1;
  a.pct_stereotype = 1;
  b.likelihood_diff = 3;
  const DocResult pairs[] = {a, b};
  const auto c = TaskMetrics(FindTask("crows_pairs_english"), pairs);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].name, "likelihood_diff");
  EXPECT_DOUBLE_EQ(c[0].value, 2);
  EXPECT_EQ(c[1].name, "pct_stereotype");
  EXPECT_DOUBLE_EQ(c[1].value, 0.5);
}

TEST(EvalTasksExtra, PooledMetricsAsLmEval) {
  // aggregate_subtask_metrics (weighted by size) and pooled_sample_stderr.
  const SubsetResult parts[] = {{"a", "", 10, {{"acc", 0.5, 0.1}}},
                                {"b", "", 30, {{"acc", 0.3, 0.2}}}};
  const auto m = PooledMetrics(parts);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_DOUBLE_EQ(m[0].value, (0.5 * 10 + 0.3 * 30) / 40);
  EXPECT_NEAR(m[0].std_err, std::sqrt((9 * 0.01 * 10 + 29 * 0.04 * 30) / 38.0 / 40), 1e-15);
}

TEST(EvalTasksExtra, RaceProblemsAndCrowsPairsRows) {
  const auto race = LoadDocs(FindTask("race"), Dir() + "/race_high_test.jsonl");
  ASSERT_EQ(race.size(), 3u);
  EXPECT_EQ(race[0].choices.size(), 4u);
  EXPECT_EQ(race[0].requests[0].context.rfind("Article: ", 0), 0u);
  const auto crows =
      LoadDocs(FindTask("crows_pairs_english"), Dir() + "/crows_pairs_english.jsonl");
  ASSERT_EQ(crows.size(), 30u);
  EXPECT_EQ(crows[0].requests[0].context, "");
  EXPECT_EQ(crows[0].requests[0].continuation, crows[0].choices[0]);
}

TEST(PyLiteral, ReadsReprOfListsOfDicts) {
  const json v = ParsePyLiteral(
      R"([{'answer': 'A', "q": 'it\'s \"x\"\n\u00e9\x41', 'n': -3, 'f': 1.5e2, 't': (True, None)}])",
      "w");
  ASSERT_TRUE(v.is_array());
  EXPECT_EQ(v[0]["answer"], "A");
  EXPECT_EQ(v[0]["q"],
            "it's \"x\"\n\xC3\xA9"
            "A");
  EXPECT_EQ(v[0]["n"], -3);
  EXPECT_EQ(v[0]["f"], 150.0);
  EXPECT_EQ(v[0]["t"][0], true);
  EXPECT_TRUE(v[0]["t"][1].is_null());
  for (const char* bad : {"[", "{'a' 1}", "'abc", "[1,,2]", "foo", "{1: 2}", "[1] x", "'\\x4'",
                          "99999999999999999999999"})
    EXPECT_THROW(ParsePyLiteral(bad, "w"), Error) << bad;
  EXPECT_THROW(ParsePyLiteral(std::string(100, '['), "w"), Error);
}

TEST(EvalTasksExtra, MalformedRowsNameFileAndLine) {
  const std::string tmp = test::TempDir("eval_extra_bad");
  auto expect_error = [&](const char* task, const std::string& body, const std::string& what) {
    const std::string path = tmp + "/" + task + ".jsonl";
    std::ofstream(path) << body;
    try {
      LoadDocs(FindTask(task), path);
      ADD_FAILURE() << task << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error("mmlu",
               "{\"question\":\"q\",\"subject\":\"anatomy\",\"choices\":[\"a\"],\"answer\":0}\n",
               ".jsonl:1: MMLU needs 4 choices");
  expect_error("siqa", "\n", ".jsonl:1: empty line");
  expect_error("openbookqa",
               "{\"question_stem\":\"q\",\"choices\":{\"text\":[\"a\"],\"label\":[\"A\"]},"
               "\"answerKey\":\"B\"}\n",
               ".jsonl:1: answerKey \"B\"");
  expect_error("race", "{\"article\":\"a\",\"problems\":\"[{'answer': 'E'\"}\n",
               ".jsonl:1 (problems): Python literal");
  expect_error("crows_pairs_english", "{\"sent_more\":\"a\"}\n", "missing field \"sent_less\"");
  expect_error("hellaswag",
               "{\"activity_label\":\"a\",\"ctx_a\":\"b\",\"ctx_b\":\"c\",\"endings\":[\"x\"],"
               "\"label\":\"3\"}\n",
               ".jsonl:1: label 3 is out of range");
  expect_error("winogrande",
               "{\"sentence\":\"no blank\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"1\"}\n",
               "no \"_\" blank");
}

// The original releases' CSV: MMLU's data/test folder and CrowS-Pairs' crows_pairs_anonymized.csv.
TEST(EvalTasksExtra, OriginalReleaseCsv) {
  const auto mmlu = LoadDocs(FindTask("mmlu"), Dir() + "/mmlu_csv/test");
  ASSERT_EQ(mmlu.size(), 2u);
  EXPECT_EQ(mmlu[0].subset, "abstract_algebra");
  EXPECT_EQ(mmlu[0].gold, 1);
  EXPECT_EQ(mmlu[0].requests[0].context,
            "What is 2+2?\nA. 3\nB. 4\nC. 5, or more\nD. a \"quoted\" one\nAnswer:");
  EXPECT_EQ(mmlu[1].requests[0].context.rfind("Which line\nbreaks?\nA. x", 0), 0u);
  EXPECT_EQ(mmlu[1].gold, 3);
  const auto crows =
      LoadDocs(FindTask("crows_pairs_english"), Dir() + "/crows_pairs_anonymized.csv");
  ASSERT_EQ(crows.size(), 2u);
  EXPECT_EQ(crows[0].choices, (std::vector<std::string>{"He, the man, cried.", "She cried."}));
  EXPECT_EQ(crows[1].requests[1].continuation, "Ann ran.");

  const auto recs = ParseCsv("a,\"b\"\"c\",\r\n\n\"x\ny\",z\n", "f.csv");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].fields, (std::vector<std::string>{"a", "b\"c", ""}));
  EXPECT_EQ(recs[1].line, 3);
  EXPECT_EQ(recs[1].fields, (std::vector<std::string>{"x\ny", "z"}));
  for (const char* bad : {"\"abc", "\"a\"b,c", "a\"b"}) {
    try {
      ParseCsv(bad, "f.csv");
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("f.csv:1:"), std::string::npos) << e.what();
    }
  }
}

TEST(EvalTasksExtra, LmEvalTaskNameIsAnAlias) {
  EXPECT_EQ(&FindTask("social_iqa"), &FindTask("siqa"));
}

TEST(EvalTasksExtra, PyCapitalize) {
  EXPECT_EQ(PyCapitalize("then The Man"), "Then the man");
  EXPECT_EQ(PyCapitalize(""), "");
}

}  // namespace eval_fewshot_test
}  // namespace elm::eval
