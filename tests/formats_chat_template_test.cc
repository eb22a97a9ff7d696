// The chat template elm convert writes into GGUF (tokenizer.chat_template) and MLX/HF folders
// (tokenizer_config.json "chat_template"), docs/formats.md: the Jinja string renders the text
// elm's own template (generation/chat_template.h) builds, checked with @huggingface/jinja when
// node and the package are installed (tests/jinja), and the rendered text tokenizes to elm's
// ids. Also the conversion CLI's default output name and progress.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "generation/chat_template.h"
#include "io/gguf.h"
#include "io/hf_chat_template.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace formats_chat_template_test {
namespace fs = std::filesystem;
using nlohmann::json;

struct Case {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt;
  std::string rendered;  // what the template must render (BOS "<s>", EOS "</s>")
};

std::vector<Case> Cases() {
  return {
      {{{"system", "Be brief."}, {"user", "Hi there"}, {"assistant", "Hello!"}, {"user", "Bye"}},
       true,
       "<s><|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello!</s>\n"
       "<|user|>\nBye</s>\n<|assistant|>\n"},
      {{{"user", "2+2?"}}, true, "<s><|user|>\n2+2?</s>\n<|assistant|>\n"},
      {{{"user", "a\nb"}, {"assistant", "c"}},
       false,
       "<s><|user|>\na\nb</s>\n<|assistant|>\nc</s>"},
  };
}

// The expected renderings are elm's template: tokenized as llama.cpp and HF tokenize a rendered
// template (special tokens parsed), they give ApplyChatTemplate's ids.
TEST(ChatTemplateJinja, ExpectedTextTokenizesToElmsTemplate) {
  const Tokenizer tok = Tokenizer::Default();
  for (const Case& c : Cases())
    EXPECT_EQ(tok.EncodeWithSpecial(c.rendered, /*add_bos=*/false),
              ApplyChatTemplate(tok, c.messages, c.add_generation_prompt))
        << c.rendered;
}

// The Jinja string renders those texts (Hugging Face's own Jinja implementation).
TEST(ChatTemplateJinja, RendersLikeElmWithHuggingFaceJinja) {
  std::string out, err;
  if (test::RunShell("command -v node", &out) != 0) GTEST_SKIP() << "node is not installed";
  const std::string script = std::string(ELM_SOURCE_DIR) + "/tests/jinja/render.mjs";
  const std::string dir = test::TempDir("jinja");
  for (const Case& c : Cases()) {
    json in;
    in["template"] = kOpenElmChatTemplateJinja;
    in["bos_token"] = "<s>";
    in["eos_token"] = "</s>";
    in["add_generation_prompt"] = c.add_generation_prompt;
    in["messages"] = json::array();
    for (const auto& m : c.messages)
      in["messages"].push_back({{"role", m.role}, {"content", m.content}});
    std::ofstream(dir + "/in.json") << in.dump();
    const int rc = test::RunShell("node " + script + " < " + dir + "/in.json", &out, &err);
    if (rc == 77) GTEST_SKIP() << err;
    ASSERT_EQ(rc, 0) << err;
    EXPECT_EQ(out, c.rendered);
  }
}

class ConvertCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::TempDir("convert_cli");
    model_ = dir_ + "/tiny-random-32k";
    fs::copy(std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k", model_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string dir_, model_;
};

TEST_F(ConvertCliTest, GgufDefaultNameTemplateAndProgress) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("quantize --model " + model_ + " --type q8_0 --verbose", &out, &err), 0)
      << err;
  const std::string gguf = dir_ + "/tiny-random-32k-q8_0.gguf";  // beside the input
  ASSERT_TRUE(fs::exists(gguf)) << err;
  EXPECT_NE(err.find("converting"), std::string::npos) << err;  // --verbose: progress off a tty
  EXPECT_EQ(GgufFile(gguf).GetString("tokenizer.chat_template"), kOpenElmChatTemplateJinja);
  // Again: the default name exists, so it asks for --output instead of overwriting.
  EXPECT_EQ(test::RunElm("quantize --model " + model_ + " --type q8_0", &out, &err), 1);
  EXPECT_NE(err.find("already exists"), std::string::npos) << err;
  // Without a terminal or --verbose there is no progress bar; --no-chat-template writes none.
  ASSERT_EQ(test::RunElm("convert --model " + model_ + " --to gguf --output " + dir_ +
                             "/plain.gguf --no-chat-template",
                         &out, &err),
            0)
      << err;
  EXPECT_EQ(err.find("converting"), std::string::npos) << err;
  EXPECT_EQ(GgufFile(dir_ + "/plain.gguf").Find("tokenizer.chat_template"), nullptr);
}

TEST_F(ConvertCliTest, MlxFolderCarriesTheTemplate) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("convert --model " + model_ + " --to mlx --q-bits 4", &out, &err), 0)
      << err;
  const std::string mlx = dir_ + "/tiny-random-32k-mlx-4bit";
  std::ifstream in(mlx + "/tokenizer_config.json");
  ASSERT_TRUE(in) << err;
  const json cfg = json::parse(in);
  EXPECT_EQ(cfg.value("chat_template", ""), kOpenElmChatTemplateJinja);
}

}  // namespace formats_chat_template_test
}  // namespace elm
