// elm init: a randomly initialized OpenELM checkpoint (CoreNet's init, docs/openelm.md §6.7) in the
// HF layout, from a preset or the model section of a training config.
#include <cstdio>
#include <filesystem>

#include "base/dtype.h"
#include "base/error.h"
#include "commands.h"
#include "train/init.h"
#include "train/params.h"
#include "train/train_config.h"

namespace elm::cli {

void RegisterInitCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "init", "Write a randomly initialized OpenELM checkpoint (CoreNet init) in the HF layout");
  struct Opts {
    std::string preset, config, output, dtype = "f32";
    std::vector<std::string> set;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* preset = cmd->add_option("--preset", o->preset,
                                 "OpenELM-270M, OpenELM-450M, OpenELM-1_1B or OpenELM-3B");
  auto* config = cmd->add_option("--config", o->config, "Take the model from this training YAML");
  preset->excludes(config);
  cmd->add_option("--set", o->set, "Override a key of the --config YAML (dotted path)");
  cmd->add_option("--seed,-s", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "Stored dtype: f32, bf16 or f16")->capture_default_str();
  cmd->add_option("--output", o->output, "Folder to write (config.json + model.safetensors)")
      ->required();
  cmd->callback([o] {
    if (o->preset.empty() == o->config.empty()) Fail("give --preset or --config");
    const ModelConfig mc = o->preset.empty() ? LoadTrainConfig(o->config, o->set, false).model
                                             : PresetConfig(o->preset);
    const auto dtype = ParseDType(o->dtype == "f32"    ? "F32"
                                  : o->dtype == "bf16" ? "BF16"
                                  : o->dtype == "f16"  ? "F16"
                                                       : o->dtype);
    if (!dtype) Fail("--dtype '", o->dtype, "': expected f32, bf16 or f16");
    ParamSet ps(mc);
    InitParams(ps, o->seed);
    std::filesystem::create_directories(o->output);
    WriteModelFolder(o->output, ps, *dtype);
    std::printf("wrote %s: %s, %lld parameters, %s, seed %llu\n", o->output.c_str(),
                mc.name.c_str(), static_cast<long long>(mc.ParamCount()), DTypeName(*dtype),
                static_cast<unsigned long long>(o->seed));
  });
}

ELM_REGISTER_COMMAND(51, RegisterInitCommand);

}  // namespace elm::cli
