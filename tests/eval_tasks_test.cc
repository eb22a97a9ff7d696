// Prompt building of every task on real rows of the shipped data/eval files, the Python string
// semantics behind them, and the errors for malformed data.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/tasks.h"
#include "test_util.h"
#include "text/py_text.h"

namespace elm::eval {
namespace eval_tasks_test {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kData = std::string(ELM_SOURCE_DIR) + "/data/eval";

std::vector<Doc> Load(const char* task) {
  const TaskInfo& t = FindTask(task);
  return LoadDocs(t, TaskDataPath(t, {kData, ""}));
}

void ExpectChoices(const Doc& d, const std::string& context,
                   const std::vector<std::string>& choices) {
  ASSERT_EQ(d.requests.size(), choices.size());
  EXPECT_EQ(d.choices, choices);
  for (size_t k = 0; k < choices.size(); ++k) {
    EXPECT_EQ(d.requests[k].context, context) << "choice " << k;
    EXPECT_EQ(d.requests[k].continuation, " " + choices[k]) << "choice " << k;
  }
}

TEST(EvalTasks, ShippedFilesHaveTheExpectedRowCounts) {
  const std::pair<const char*, size_t> counts[] = {
      {"arc_easy", 2376},   {"arc_challenge", 1172},  {"boolq", 3270},     {"piqa", 1838},
      {"winogrande", 1267}, {"lambada_openai", 5153}, {"hellaswag", 10042}};
  for (const auto& [task, n] : counts) {
    const auto docs = Load(task);
    EXPECT_EQ(docs.size(), n) << task;
    for (size_t i = 0; i < docs.size(); ++i) ASSERT_EQ(docs[i].index, static_cast<int>(i));
  }
}

TEST(EvalTasks, ArcEasy) {
  const auto docs = Load("arc_easy");
  ExpectChoices(docs[0],
                "Question: Which statement best explains why photosynthesis is the foundation of "
                "most food webs?\nAnswer:",
                {"Sunlight is the source of energy for nearly all ecosystems.",
                 "Most ecosystems are found on land instead of in water.",
                 "Carbon dioxide is more available than other gases.",
                 "The producers in all ecosystems are plants."});
  EXPECT_EQ(docs[0].gold, 0);
}

TEST(EvalTasks, ArcChallenge) {
  const auto docs = Load("arc_challenge");
  ExpectChoices(docs[0],
                "Question: An astronomer observes that a planet rotates faster after a meteorite "
                "impact. Which is the most likely effect of this increase in rotation?\nAnswer:",
                {"Planetary density will decrease.", "Planetary years will become longer.",
                 "Planetary days will become shorter.", "Planetary gravity will become stronger."});
  EXPECT_EQ(docs[0].gold, 2);
}

TEST(EvalTasks, Boolq) {
  const auto docs = Load("boolq");
  const Doc& d = docs[0];
  ASSERT_EQ(d.requests.size(), 2u);
  const std::string& ctx = d.requests[0].context;
  // lm-eval: "{{passage}}\nQuestion: {{question}}?\nAnswer:" with no "Passage: " prefix.
  EXPECT_EQ(ctx.rfind("All biomass goes through at least some of these steps:", 0), 0u);
  const std::string tail = "\nQuestion: does ethanol take more energy make that produces?\nAnswer:";
  ASSERT_GE(ctx.size(), tail.size());
  EXPECT_EQ(ctx.substr(ctx.size() - tail.size()), tail);
  EXPECT_EQ(d.requests[0].continuation, " no");
  EXPECT_EQ(d.requests[1].continuation, " yes");
  EXPECT_EQ(d.requests[1].context, ctx);
  EXPECT_EQ(d.gold, 0);
}

TEST(EvalTasks, Piqa) {
  const auto docs = Load("piqa");
  ExpectChoices(
      docs[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
      {"Provide the guinea pig with a cage full of a few inches of bedding made of ripped "
       "paper strips, you will also need to supply it with a water bottle and a food "
       "dish.",
       "Provide the guinea pig with a cage full of a few inches of bedding made of ripped "
       "jeans material, you will also need to supply it with a water bottle and a food "
       "dish."});
  EXPECT_EQ(docs[0].gold, 0);
}

TEST(EvalTasks, WinograndePartialScoring) {
  const auto docs = Load("winogrande");
  const Doc& d = docs[0];
  ASSERT_EQ(d.requests.size(), 2u);
  // One context per option (the sentence up to the blank, option filled in), shared tail.
  EXPECT_EQ(d.requests[0].context, "Sarah was a much better surgeon than Maria so Sarah");
  EXPECT_EQ(d.requests[1].context, "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(d.requests[0].continuation, " always got the easier cases.");
  EXPECT_EQ(d.requests[1].continuation, " always got the easier cases.");
  EXPECT_EQ(d.gold, 1);
}

TEST(EvalTasks, LambadaOpenai) {
  const auto docs = Load("lambada_openai");
  const Doc& d = docs[0];
  ASSERT_EQ(d.requests.size(), 1u);
  EXPECT_EQ(d.requests[0].continuation, " signs");  // " " + last word, no extra delimiter
  const std::string& ctx = d.requests[0].context;
  EXPECT_EQ(ctx.rfind("In my palm is a clear stone,", 0), 0u);
  const std::string tail = "grin, I don't care about";
  EXPECT_EQ(ctx.substr(ctx.size() - tail.size()), tail);
  EXPECT_EQ(d.gold, -1);
  EXPECT_TRUE(d.choices.empty());
}

TEST(EvalTasks, Hellaswag) {
  const auto docs = Load("hellaswag");
  ExpectChoices(docs[0], "Roof shingle removal: A man is sitting on a roof. he",
                {"is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                 "is holding a rubik's cube.", "starts pulling up roofing on a roof."});
  EXPECT_EQ(docs[0].gold, 3);
  // Block 3505 still carries a "[...]" span that lm-eval's preprocess() removes.
  const std::string& ctx = docs[3505].requests[0].context;
  EXPECT_EQ(ctx.find('['), std::string::npos);
  EXPECT_NE(ctx.find("Visit a site like to find loads"), std::string::npos) << ctx;
}

TEST(EvalTasks, HellaswagPreprocess) {
  EXPECT_EQ(HellaswagPreprocess("  A man [title] rides. [step] He falls.  "),
            "A man. rides. He falls.");
  EXPECT_EQ(HellaswagPreprocess("a [b [c] d] e"), "a d] e");  // non-greedy, first ']' wins
  EXPECT_EQ(HellaswagPreprocess("open [bracket"), "open [bracket");
  EXPECT_EQ(HellaswagPreprocess("x   y"), "x  y");  // one left-to-right pass, like str.replace
}

TEST(EvalTasks, SciqBothFormats) {
  for (const char* file : {"sciq_sample.json", "sciq_sample.jsonl"}) {
    SCOPED_TRACE(file);
    const std::string path = test::DataDir() + "/eval/" + file;
    const auto docs = LoadDocs(FindTask("sciq"), TaskDataPath(FindTask("sciq"), {kData, path}));
    ASSERT_EQ(docs.size(), 2u);
    // support.lstrip() + "\nQuestion: " + question + "\nAnswer:"; gold is always 3.
    ExpectChoices(docs[0],
                  "Green plants take in carbon dioxide and water and, using the energy of light, "
                  "make sugar.\nOxygen is released as a by-product.\nQuestion: What gas do green "
                  "plants release during photosynthesis?\nAnswer:",
                  {"carbon dioxide", "methane", "nitrogen", "oxygen"});
    EXPECT_EQ(docs[0].gold, 3);
    EXPECT_EQ(docs[1].requests[0].context,
              "\nQuestion: Which unit measures electric current?\nAnswer:");
  }
}

TEST(EvalTasks, SciqAbsentIsSkippedWithAMessage) {
  const DataLocations where{kData, ""};
  EXPECT_EQ(TaskDataPath(FindTask("sciq"), where), "");
  EXPECT_NE(MissingDataMessage(FindTask("sciq"), where).find("--sciq"), std::string::npos);
  EXPECT_THROW(TaskDataPath(FindTask("sciq"), {kData, "/nonexistent/sciq.json"}), Error);
}

TEST(EvalTasks, TaskListParsing) {
  const auto list = ParseTaskList(" arc_easy, boolq ,lambada_openai");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_STREQ(list[0]->name, "arc_easy");
  EXPECT_STREQ(list[2]->name, "lambada_openai");
  EXPECT_EQ(ParseTaskList("all").size(), AllTasks().size());
  try {
    ParseTaskList("arc_easy,mmlu_pro");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown task \"mmlu_pro\""), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ParseTaskList("boolq,boolq"), Error);
  EXPECT_THROW(ParseTaskList(" , "), Error);
}

TEST(EvalTasks, MalformedRowsNameFileAndLine) {
  const std::string dir = test::TempDir("eval_tasks");
  auto expect_error = [&](const char* task, const std::string& text, const std::string& what) {
    const std::string path = dir + "/" + task + ".data";
    std::ofstream(path, std::ios::binary) << text;
    try {
      LoadDocs(FindTask(task), path);
      ADD_FAILURE() << task << ": no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  const std::string ok = R"({"query": "Question: q", "choices": ["a", "b"], "gold": 1})";
  expect_error("arc_easy", ok + "\n{\"query\": 1}\n", "arc_easy.data:2: field \"query\"");
  expect_error("arc_easy", ok + "\nnot json\n", "arc_easy.data:2: malformed JSON");
  expect_error("arc_easy", ok + "\n\n" + ok + "\n", "arc_easy.data:2: empty line");
  expect_error("arc_easy", R"({"query": "Q", "choices": ["a"], "gold": 3})", ":1: gold 3");
  expect_error("boolq", R"({"query": "Q?", "choices": ["no", "yes"], "gold": 1})", "Passage: ");
  expect_error("winogrande", R"({"context_options": ["a"], "gold": 0})", "\"continuation\"");
  expect_error("lambada_openai", R"({"context": "a b", "continuation": ""})", "empty");
  expect_error("hellaswag", "ctx\n3\na\nb\nc\n", "not a multiple of 6");
  expect_error("hellaswag", "ctx\n7\na\nb\nc\nd\n", "hellaswag.data:1: line 2");
  expect_error("hellaswag", "BZh91AY&SY", "bzip2");
  expect_error("sciq", R"([{"question": "q"}])", "row 0: missing field");
  fs::remove_all(dir);
}

TEST(EvalPyText, Whitespace) {
  EXPECT_EQ(text::TrailingSpaceBytes("abc \t\n"), 3u);
  EXPECT_EQ(text::TrailingSpaceBytes("abc"), 0u);
  EXPECT_EQ(text::TrailingSpaceBytes("a\xC2\xA0"), 2u);       // U+00A0 no-break space
  EXPECT_EQ(text::TrailingSpaceBytes("a\xE3\x80\x80 "), 4u);  // U+3000 ideographic space
  EXPECT_EQ(text::TrailingSpaceBytes("caf\xC3\xA9"), 0u);     // é is not whitespace
  EXPECT_EQ(text::TrailingSpaceBytes("\x1f"), 1u);            // unit separator: Python isspace
  EXPECT_EQ(text::PyLStrip(" \n x "), "x ");
  EXPECT_EQ(text::PyStrip("\t x y \n"), "x y");
  EXPECT_EQ(text::CodePointCount("caf\xC3\xA9"), 4u);
  EXPECT_EQ(text::CodePointCount(""), 0u);
}

TEST(EvalPyText, LmEvalWordCount) {
  // len(re.split(r"\s+", s))
  EXPECT_EQ(text::LmEvalWordCount("a b  c"), 3u);
  EXPECT_EQ(text::LmEvalWordCount(" a b\n"), 4u);  // ['', 'a', 'b', '']
  EXPECT_EQ(text::LmEvalWordCount(""), 1u);
  EXPECT_EQ(text::LmEvalWordCount("one"), 1u);
}

}  // namespace eval_tasks_test
}  // namespace elm::eval
