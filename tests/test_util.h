// Helpers shared by the test files: locating test data, reading reference binaries, running the
// elm binary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace elm {
class Model;
}  // namespace elm

namespace elm::test {

// tests/data in the source tree.
std::string DataDir();
// ../shared/conformance beside the repository, or "" when absent.
std::string SharedConformanceDir();
// Every conformance folder (one holding vectors.json): the roots in $ELM_CONFORMANCE_DIR, else
// tests/data/conformance and ../shared/conformance (when present; `tag` prints a note when not),
// each root itself or its subfolders, sorted, each folder name once (the in-repo copies and
// ../shared hold the same small folders). Any further folder in the same format is picked up.
std::vector<std::string> ConformanceFolders(const std::string& tag);
// The same for another set of vectors: the folders holding `vectors_file` under the roots in
// $`env`, else tests/data/`in_repo` and ../shared/conformance/`shared_sub` (train, posttrain).
std::vector<std::string> VectorFolders(const char* env, const std::string& in_repo,
                                       const std::string& shared_sub,
                                       const std::string& vectors_file, const std::string& tag);
// The starting checkpoint (a folder with config.json and model.safetensors) that a vectors file
// names by "initial_weights", relative to `folder` ("../../a_tiny_qknorm_tied/model.safetensors
// (+ ...)"), or by `config_name`: looked for there, beside `folder`, in tests/data/conformance
// and in ../shared/conformance under the same folder name; "" when none holds it.
std::string FindInitialCheckpoint(const std::string& folder, const std::string& initial_weights,
                                  const std::string& config_name);
// The tokens of the longest test sequence in a conformance folder's vectors.json.
std::vector<int> LongestSequenceTokens(const std::string& dir);
// Unpacks the tar.xz `archive` into folder `dest` once (dest/.complete marks it done): into a
// temporary folder beside it, renamed into place, so tests running at the same time never see half
// a folder. False, with the reason in *why, when tar fails.
bool UnpackOnce(const std::string& archive, const std::string& dest, std::string* why);
// Reads `count` float32 values at byte `offset` of a little-endian binary file.
std::vector<float> ReadFloats(const std::string& path, uint64_t offset, uint64_t count);
// A fresh empty temporary folder (removed by the OS eventually; tests clean up when they can).
std::string TempDir(const std::string& tag);
// Runs a shell command; returns its exit code, fills stdout (and stderr when asked).
int RunShell(const std::string& cmd, std::string* out, std::string* err = nullptr);
// The start of an `mpirun -np N` command line for the MPI tests, ending in a space: `mpirun` is the
// launcher; every rank runs with one OpenMP and one BLAS thread; `launch` holds mpirun's own
// options (default: oversubscribed, unbound); root may run it; under AddressSanitizer the ranks
// run with LeakSanitizer off (Open MPI leaks at MPI_Finalize, in its dlopened components: not
// elm's to fix); `forward` names further environment variables to pass to every rank.
std::string MpirunCommand(const std::string& mpirun, int np,
                          const std::string& launch = "--oversubscribe --bind-to none",
                          const std::vector<std::string>& forward = {});
// Runs the elm binary with `args` (shell-quoted by the caller); returns exit code, fills stdout.
int RunElm(const std::string& args, std::string* out, std::string* err = nullptr);
// Config of a 2-layer OpenELM on the first 6000 bytes of Tiny Shakespeare (written to
// dir/corpus.txt): batch 2 × 16 tokens, accumulation 2, 6 steps, validation every 3 steps; each
// step takes milliseconds. Results go to dir/results/run.
std::string TinyTrainYaml(const std::string& dir, int save_every, int val_batches,
                          int keep_last_checkpoints);
// For the multi-rank LoRA runs: `elm init --config yaml --seed 4` into dir/base, then the --set
// flags (with a trailing space) of a LoRA run from it (r 2, alpha 4, dropout 0.2 on the layer
// linears). Returns the init's exit code; its output goes to out and err.
int InitLoraBase(const std::string& yaml, const std::string& dir, std::string* flags,
                 std::string* out, std::string* err);
float MaxAbsDiff(const float* a, const float* b, size_t n);
// The folders listed in environment variable `var` (colon-separated, empty entries dropped), or
// false when it is unset or empty (the caller then uses its default folders).
bool RootsFromEnv(const char* var, std::vector<std::string>* roots);
// Logits [T, V] of one forward over `tokens` in a fresh session (fast kernels).
std::vector<float> AllLogits(const std::shared_ptr<const Model>& m, const std::vector<int>& tokens);

}  // namespace elm::test
