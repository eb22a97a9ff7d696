// elm info --model DIR: per-layer table and totals.
#include <cstdio>
#include <string>

#include "cli_util.h"
#include "commands.h"
#include "model/model.h"

namespace elm::cli {

void RegisterInfoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's per-layer shapes and parameter counts");
  auto model_path = std::make_shared<std::string>();
  AddModelOption(cmd, *model_path)->required();
  cmd->callback([model_path] {
    auto model = Model::Load(*model_path);
    const ModelConfig& c = model->config();
    std::printf("model:   %s\n", model_path->c_str());
    std::printf("layers %d, model_dim %d, head_dim %d, vocab %d, context %d, gqa_groups %d\n",
                c.n_layers, c.dim, c.head_dim, c.vocab_size, c.max_context, c.gqa_groups);
    std::printf("qk_norm %s, tied embeddings %s, rope base %g, weights %s\n",
                c.qk_norm ? "yes" : "no", c.tied_embeddings ? "yes" : "no", c.rope_base,
                model->weights_dtype().c_str());
    std::printf("\n%5s %8s %8s %8s %8s %8s %12s\n", "layer", "qkv_mul", "ffn_mul", "heads",
                "kv_heads", "ffn_dim", "params");
    int64_t layers_total = 0;
    for (int i = 0; i < c.n_layers; ++i) {
      const auto& l = c.layers[i];
      // A llama.cpp GGUF stores the per-layer counts and no multipliers.
      auto mul = [](double m) {
        char b[32] = "-";
        if (m > 0) std::snprintf(b, sizeof b, "%.2f", m);
        return std::string(b);
      };
      std::printf("%5d %8s %8s %8d %8d %8d %12lld\n", i, mul(l.qkv_multiplier).c_str(),
                  mul(l.ffn_multiplier).c_str(), l.n_heads, l.n_kv_heads, l.ffn_dim,
                  static_cast<long long>(c.LayerParams(i)));
      layers_total += c.LayerParams(i);
    }
    const int64_t emb = static_cast<int64_t>(c.vocab_size) * c.dim;
    std::printf("\nembeddings:      %lld%s\n", static_cast<long long>(emb),
                c.tied_embeddings ? " (tied with the output layer)" : "");
    if (!c.tied_embeddings) std::printf("lm_head:         %lld\n", static_cast<long long>(emb));
    std::printf("layers:          %lld\n", static_cast<long long>(layers_total));
    std::printf("total params:    %lld\n", static_cast<long long>(c.ParamCount()));
    std::printf("weights on disk: %.2f MB\n", static_cast<double>(model->weights_bytes()) / 1e6);
  });
}

ELM_REGISTER_COMMAND(10, RegisterInfoCommand);

}  // namespace elm::cli
