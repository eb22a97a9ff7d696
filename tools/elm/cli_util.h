// Small helpers shared by the CLI subcommands.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace elm::cli {

// Parses "1,5,9" (spaces allowed) into ids; throws elm::Error naming `flag` on bad input.
std::vector<int> ParseIdList(const std::string& text, const std::string& flag);
// Parses a --weights value (f32, f16, bf16, q8_0, q4_0); "" → unset (keep the stored types).
std::optional<DType> ParseWeightsFlag(const std::string& text);
// Help text of --no-mmap (LoadOptions::mmap), shared by the commands that load a model to run it.
inline constexpr const char* kNoMmapHelp =
    "Copy unquantized weights into memory instead of reading them from the mmapped file (faster "
    "decoding on some machines; docs/performance.md)";
// Help text of --exact (LoadOptions::exact), shared by the commands that run a model.
inline constexpr const char* kExactHelp =
    "Compute every matrix product in f32 on the weights widened exactly (no bf16 or int8 "
    "rounding of activations; slower for bf16 and quantized weights; docs/numerics.md)";
// What `elm serve` does, in `elm --help` (the launcher in elm) and in elm-serve's own help.
inline constexpr const char* kServeHelp =
    "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) with a web chat page "
    "at /";
// Parses a --kv-type value (f32, bf16, f16).
DType ParseKvTypeFlag(const std::string& text);
// "[1,5,9]"
std::string IdsToJson(const std::vector<int>& ids);

// ---- Flags shared by the subcommands, with the short names llama.cpp and mlx-lm users type
// (README.md, "Flags"). Each returns the option for further settings (->required(), checks).

// --model,-m: a model folder or file.
CLI::Option* AddModelOption(CLI::App* cmd, std::string& model,
                            const std::string& help =
                                "Model folder (HF or MLX layout) or GGUF "
                                "file");
// --threads,-t: OpenMP threads for this command (0 = the default: all cores, or OMP_NUM_THREADS).
CLI::Option* AddThreadsOption(CLI::App* cmd, int& threads);
// --context,--ctx-size,-c: context length in tokens.
CLI::Option* AddContextOption(CLI::App* cmd, int& context, const std::string& help);
// Sets the number of OpenMP threads elm's kernels (and OpenBLAS's OpenMP build) use from here on
// in this thread; n ≤ 0 keeps the default. Used by every command with --threads.
void SetThreads(int n);
// The text of `path`, or of standard input when path is "-" (-f -).
std::string ReadInputText(const std::string& path);
// A --context above the context the model was trained with (max_context_length) runs RoPE at
// positions it never saw in training: the output degrades. Warns on stderr (README.md, "Flags"),
// once per process; `context` ≤ 0 means the model's own and says nothing.
void WarnIfBeyondTrainedContext(int context, int max_context_length);

}  // namespace elm::cli
