// elm merge-lora: folds a LoRA adapter (PEFT layout, e.g. an elm train LoRA checkpoint) into its
// base model and writes a complete HF model folder that every command loads without --lora.
#include <cstdio>

#include "base/dtype.h"
#include "base/error.h"
#include "cli_util.h"
#include "commands.h"
#include "train/lora.h"

namespace elm::cli {

void RegisterMergeLoraCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "merge-lora", "Fold a LoRA adapter into its base model and write a full HF checkpoint");
  struct Opts {
    std::string model, lora, output, dtype;
  };
  auto o = std::make_shared<Opts>();
  AddModelOption(cmd, o->model, "Base model folder (HF layout)")->required();
  cmd->add_option("--lora", o->lora,
                  "LoRA adapter folder (adapter_config.json + "
                  "adapter_model.safetensors)")
      ->required();
  cmd->add_option("--output", o->output, "Folder to write (must not exist, or be empty)")
      ->required();
  cmd->add_option("--dtype", o->dtype, "Stored dtype: f32, bf16 or f16 (default: the base's)");
  cmd->callback([o] {
    std::optional<DType> dtype;
    if (!o->dtype.empty()) {
      dtype = o->dtype == "f32"    ? DType::kF32
              : o->dtype == "bf16" ? DType::kBF16
              : o->dtype == "f16"  ? DType::kF16
                                   : ParseDType(o->dtype).value_or(DType::kQ8_0);
      if (*dtype != DType::kF32 && *dtype != DType::kBF16 && *dtype != DType::kF16)
        Fail("--dtype '", o->dtype, "': expected f32, bf16 or f16");
    }
    const DType wrote = MergeLoraCheckpoint(o->model, o->lora, o->output, dtype);
    std::printf("wrote %s: %s with %s merged, %s\n", o->output.c_str(), o->model.c_str(),
                o->lora.c_str(), DTypeName(wrote));
  });
}

ELM_REGISTER_COMMAND(53, RegisterMergeLoraCommand);

}  // namespace elm::cli
