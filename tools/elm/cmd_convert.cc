// elm convert --model DIR_OR_GGUF --to gguf|mlx|hf --output PATH [--type T] [--q-bits N]
// elm quantize --model DIR_OR_GGUF --type q8_0 --output FILE.gguf
// Thin wrappers over io/convert.h; docs/formats.md describes the layouts.
#include <cstdio>

#include "base/error.h"
#include "commands.h"
#include "io/convert.h"

namespace elm::cli {
namespace {

std::optional<DType> ParseTypeFlag(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto t = ParseDType(text);
  if (!t) Fail("--type: unknown type '", text, "' (expected f32, f16, bf16, q8_0 or q4_0)");
  return t;
}

}  // namespace

void RegisterConvertCommands(CLI::App& app) {
  {
    auto* cmd = app.add_subcommand(
        "convert", "Convert a model between HF, MLX (mlx-lm) and GGUF (llama.cpp) layouts");
    struct Opts {
      std::string model, to, output, type, name;
      int q_bits = 0, q_group_size = 64;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--model", o->model, "Model folder (HF or MLX layout) or GGUF file")
        ->required();
    cmd->add_option("--to", o->to, "Output layout: gguf, mlx or hf")
        ->required()
        ->check(CLI::IsMember({"gguf", "mlx", "hf"}));
    cmd->add_option("--output", o->output, "Output file (gguf) or folder (mlx, hf)")->required();
    cmd->add_option("--type", o->type,
                    "Weight type: f32, f16, bf16 (all layouts), q8_0, q4_0 (gguf); default: as "
                    "stored");
    cmd->add_option("--q-bits", o->q_bits, "MLX only: affine group quantization, 4 or 8 bits")
        ->check(CLI::IsMember({2, 4, 8}));
    cmd->add_option("--q-group-size", o->q_group_size, "MLX only: quantization group size")
        ->check(CLI::IsMember({32, 64, 128}));
    cmd->add_option("--name", o->name, "GGUF general.name (default: the source's name)");
    cmd->callback([o] {
      ConvertOptions opt;
      opt.to = o->to;
      opt.output = o->output;
      opt.type = ParseTypeFlag(o->type);
      opt.name = o->name;
      if (o->q_bits != 0) opt.mlx_quant = MlxQuantization{o->q_bits, o->q_group_size};
      const ModelSource src = OpenModelSource(o->model);
      ConvertModel(src, opt, /*verbose=*/true);
    });
  }
  {
    auto* cmd = app.add_subcommand("quantize", "Write a model as a quantized GGUF file");
    struct Opts {
      std::string model, type, output, name;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--model", o->model, "Model folder (HF or MLX layout) or GGUF file")
        ->required();
    cmd->add_option("--type", o->type, "q8_0 or q4_0 (also f32, f16, bf16)")->required();
    cmd->add_option("--output", o->output, "Output GGUF file")->required();
    cmd->add_option("--name", o->name, "GGUF general.name (default: the source's name)");
    cmd->callback([o] {
      ConvertOptions opt;
      opt.to = "gguf";
      opt.output = o->output;
      opt.type = ParseTypeFlag(o->type);
      opt.name = o->name;
      const ModelSource src = OpenModelSource(o->model);
      ConvertModel(src, opt, /*verbose=*/true);
    });
  }
}

ELM_REGISTER_COMMAND(80, RegisterConvertCommands);

}  // namespace elm::cli
