// elm embed: text -> embedding vector (docs/server.md "Embeddings"; the same computation as the
// server's POST /v1/embeddings). Each --prompt (repeatable) or the --prompt-file text gives one
// line of output: a JSON array of the model's dim floats, the final hidden states pooled by
// --pooling (mean or last token) and L2-normalized unless --no-normalize.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli_util.h"
#include "commands.h"
#include "generation/embedding.h"
#include "io/model_tokenizer.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/tokenizer.h"

namespace elm::cli {
namespace {

struct EmbedFlags {
  std::string model, tokenizer, weights, prompt_file, pooling = "mean";
  std::vector<std::string> prompts;
  int threads = 0;
  bool no_normalize = false, no_bos = false, no_mmap = false;
};

void RegisterEmbed(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "embed", "Embedding vectors of texts (final hidden states, pooled, L2-normalized)");
  auto f = std::make_shared<EmbedFlags>();
  AddModelOption(cmd, f->model)->required();
  AddThreadsOption(cmd, f->threads);
  cmd->add_option("--weights", f->weights,
                  "Convert weights at load: f32, f16, bf16, q8_0 or q4_0 (default: as stored)");
  cmd->add_flag("--no-mmap", f->no_mmap, kNoMmapHelp);
  cmd->add_option("--tokenizer", f->tokenizer,
                  "tokenizer.json to use (default: the model folder's, else the built-in Llama-2)");
  auto* g = cmd->add_option_group("input", "What to embed (one of)");
  g->add_option("--prompt,-p", f->prompts, "Text to embed (repeatable: one output line each)");
  g->add_option("--prompt-file,-f", f->prompt_file,
                "Embed the text of a file (- reads standard input) as one input");
  g->require_option(1);
  cmd->add_option("--pooling", f->pooling, "How token states become one vector: mean or last")
      ->capture_default_str();
  cmd->add_flag("--no-normalize", f->no_normalize, "Do not scale the vector to unit L2 norm");
  cmd->add_flag("--no-bos", f->no_bos, "Do not prepend the BOS token");
  cmd->callback([f] {
    EmbedOptions eo;
    eo.pooling = ParsePooling(f->pooling, "--pooling");
    eo.normalize = !f->no_normalize;
    LoadOptions lo;
    lo.weights = ParseWeightsFlag(f->weights);
    lo.mmap = !f->no_mmap;
    SetThreads(f->threads);
    const auto model = Model::Load(f->model, lo);
    const Tokenizer tok = LoadTokenizerFor(f->model, f->tokenizer);
    std::vector<std::string> texts = f->prompts;
    if (!f->prompt_file.empty()) texts.push_back(ReadInputText(f->prompt_file));
    for (const std::string& text : texts) {
      const auto ids = tok.Encode(text, tok.add_bos() && !f->no_bos);
      if (ids.empty()) Fail("--prompt: nothing to embed (the text has no tokens)");
      if (static_cast<int>(ids.size()) > model->config().max_context)
        Fail("the text has ", ids.size(), " tokens, more than the model's context of ",
             model->config().max_context);
      // A session just long enough for this input (the KV cache is sized by it).
      Session session(model, static_cast<int>(ids.size()));
      const std::vector<float> v = Embed(session, ids, eo);
      std::printf("%s\n", nlohmann::json(v).dump().c_str());
    }
  });
}

}  // namespace

ELM_REGISTER_COMMAND(35, RegisterEmbed);

}  // namespace elm::cli
