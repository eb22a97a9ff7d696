// elm convert --model DIR_OR_GGUF_OR_PT --to gguf|mlx|hf [--output PATH] [--type T] [--q-bits N]
//             [--config CONFIG [--weights model|ema]]   (a CoreNet .pt checkpoint)
// elm quantize --model DIR_OR_GGUF_OR_PT --type q8_0|q4_k_m|... [--output FILE.gguf] [--pure]
//              [--imatrix FILE]
// Thin wrappers over io/convert.h; docs/formats.md describes the layouts.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "base/error.h"
#include "base/mmap_file.h"
#include "cli_util.h"
#include "commands.h"
#include "config/hf_config.h"
#include "eval/progress.h"
#include "io/convert.h"
#include "train/train_config.h"

namespace elm::cli {
namespace {

// --type: elm's own types (f32, f16, bf16, q8_0, q4_0) or one of llama-quantize's presets.
void ParseTypeFlag(const std::string& text, ConvertOptions& opt) {
  if (text.empty()) return;
  if (const auto p = FindQuantPreset(text)) {
    opt.llama_preset = p;
    return;
  }
  const auto t = ParseDType(text);
  if (!t)
    Fail("--type: unknown type '", text, "' (expected f32, f16, bf16, q8_0, q4_0 or one of ",
         QuantPresetList(), ")");
  opt.type = t;
}

// Options both commands share: the output name, progress, the chat template and the
// llama-quantize options.
struct ConvertCommonOpts {
  std::string output, imatrix;
  std::string config, weights = "model";  // a .pt source's config and which of its weights
  bool verbose = false, no_chat_template = false, pure = false;
};

void AddCommonFlags(CLI::App* cmd, ConvertCommonOpts& c, const char* output_help) {
  cmd->add_option("--output", c.output, output_help);
  cmd->add_flag("--pure", c.pure,
                "With a llama-quantize type (q4_k_m, ...): every matrix in its base type, as "
                "llama-quantize --pure");
  cmd->add_option("--imatrix", c.imatrix,
                  "With a llama-quantize type: llama.cpp importance matrix (.dat or .gguf from "
                  "llama-imatrix) weighting the quantization search");
  cmd->add_flag("--verbose", c.verbose, "Show progress also when stderr is not a terminal");
  cmd->add_option("--config", c.config,
                  "For a PyTorch .pt checkpoint (CoreNet's): its shape, as a CoreNet YAML "
                  "(naming a preset such as OpenELM-270M) or an HF config.json");
  cmd->add_option("--weights", c.weights,
                  "For a CoreNet training checkpoint: model (model_state_dict, default) or ema "
                  "(ema_state_dict)");
  cmd->add_flag("--no-chat-template", c.no_chat_template,
                "Do not write the OpenELM-Instruct chat template (GGUF tokenizer.chat_template, "
                "tokenizer_config.json chat_template) when the source has none");
}

// The shape of a .pt checkpoint: an HF config.json, or a CoreNet YAML (a preset named by
// model.language_modeling.general_gpt.model_name, or the shape spelled out; docs/formats.md).
SourceOptions PyTorchSourceOptions(const ConvertCommonOpts& c) {
  SourceOptions opt;
  if (c.weights != "model" && c.weights != "ema")
    Fail("--weights: expected model or ema, not '", c.weights, "'");
  opt.pt_weights = c.weights == "ema" ? CoreNetWeights::kEma : CoreNetWeights::kModel;
  if (c.config.empty()) return opt;
  const std::string ext = c.config.size() >= 5 ? c.config.substr(c.config.size() - 5) : "";
  if (ext == ".json") {
    opt.config = LoadHfConfig(c.config);
    opt.config_json = ReadTextFile(c.config);
  } else {
    opt.config = LoadTrainConfig(c.config, {}, /*require_data=*/false).model;
  }
  return opt;
}

void Run(const std::string& model, ConvertOptions opt, const ConvertCommonOpts& c) {
  const ModelSource src = OpenModelSource(model, PyTorchSourceOptions(c));
  if (src.format != "pytorch" && (!c.config.empty() || c.weights != "model"))
    Fail(model, ": --config and --weights apply to PyTorch .pt checkpoints only (this ", src.format,
         " source carries its own config)");
  if (c.no_chat_template) opt.chat_template.clear();
  opt.pure = c.pure;
  opt.imatrix = c.imatrix;
  opt.output = c.output.empty() ? DefaultConvertOutput(src, opt) : c.output;
  if (c.output.empty())
    std::fprintf(stderr, "writing %s (no --output given)\n", opt.output.c_str());
  auto bar = std::make_shared<eval::ProgressBar>(c.verbose || ::isatty(STDERR_FILENO) == 1);
  bool started = false;
  opt.progress = [bar, started](int64_t done, int64_t total) mutable {
    constexpr int64_t kMiB = 1024 * 1024;
    if (!started) bar->Start("converting", total / kMiB, "MiB/s");
    started = true;
    bar->Update(done / kMiB, done / kMiB);
  };
  ConvertModel(src, opt);
  bar->Finish();
  std::fprintf(stderr, "wrote %s\n", opt.output.c_str());
}

}  // namespace

void RegisterConvertCommands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand(
        "convert", "Convert a model between HF, MLX (mlx-lm) and GGUF (llama.cpp) layouts");
    struct Opts {
      std::string model, to, type, name;
      int q_bits = 0, q_group_size = 64;
      ConvertCommonOpts common;
    };
    auto o = std::make_shared<Opts>();
    AddModelOption(cmd, o->model,
                   "Model folder (HF or MLX layout), GGUF file or PyTorch .pt checkpoint (with "
                   "--config)")
        ->required();
    cmd->add_option("--to", o->to, "Output layout: gguf, mlx or hf")
        ->required()
        ->check(CLI::IsMember({"gguf", "mlx", "hf"}));
    AddCommonFlags(cmd, o->common,
                   "Output file (gguf) or folder (mlx, hf); default: beside the input, named "
                   "after it and the type, e.g. OpenELM-270M-q8_0.gguf");
    cmd->add_option("--type", o->type,
                    "Weight type: f32, f16, bf16 (all layouts), q8_0, q4_0 or one of "
                    "llama-quantize's types q2_k ... q6_k, q4_k_m, iq4_xs, q5_1 (gguf); default: "
                    "as stored");
    cmd->add_option("--q-bits", o->q_bits, "MLX only: affine group quantization, 4 or 8 bits")
        ->check(CLI::IsMember({2, 4, 8}));
    cmd->add_option("--q-group-size", o->q_group_size, "MLX only: quantization group size")
        ->check(CLI::IsMember({32, 64, 128}));
    cmd->add_option("--name", o->name, "GGUF general.name (default: the source's name)");
    cmd->callback([o] {
      ConvertOptions opt;
      opt.to = o->to;
      ParseTypeFlag(o->type, opt);
      opt.name = o->name;
      if (o->q_bits != 0) opt.mlx_quant = MlxQuantization{o->q_bits, o->q_group_size};
      Run(o->model, opt, o->common);
    });
  }
  {
    auto* cmd = app.add_subcommand("quantize", "Write a model as a quantized GGUF file");
    struct Opts {
      std::string model, type, name;
      ConvertCommonOpts common;
    };
    auto o = std::make_shared<Opts>();
    AddModelOption(cmd, o->model, "Model folder (HF or MLX layout) or GGUF file")->required();
    cmd->add_option("--type", o->type,
                    "q8_0, q4_0, or llama-quantize's types: q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, "
                    "q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs, q4_1, q5_0, q5_1 (also f32, "
                    "f16, bf16)")
        ->required();
    AddCommonFlags(cmd, o->common,
                   "Output GGUF file; default: beside the input, e.g. OpenELM-270M-q8_0.gguf");
    cmd->add_option("--name", o->name, "GGUF general.name (default: the source's name)");
    cmd->callback([o] {
      ConvertOptions opt;
      opt.to = "gguf";
      ParseTypeFlag(o->type, opt);
      opt.name = o->name;
      Run(o->model, opt, o->common);
    });
  }
}

ELM_REGISTER_COMMAND(80, RegisterConvertCommands);

}  // namespace elm::cli
