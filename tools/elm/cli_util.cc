#include "cli_util.h"

#include <omp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <limits>

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm::cli {

std::vector<int> ParseIdList(const std::string& text, const std::string& flag) {
  std::vector<int> ids;
  size_t i = 0;
  while (i <= text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    size_t b = i, e = j;  // trim spaces
    while (b < e && text[b] == ' ') ++b;
    while (e > b && text[e - 1] == ' ') --e;
    const std::string item(text.data() + b, e - b);
    if (item.empty()) Fail(flag, ": empty entry in '", text, "'");
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || errno != 0 || v < 0 || v > 0x7fffffff)
      Fail(flag, ": '", item, "' is not a non-negative integer token id");
    ids.push_back(static_cast<int>(v));
    i = j + 1;
  }
  return ids;
}

std::optional<DType> ParseWeightsFlag(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto t = ParseDType(text);
  if (!t) Fail("--weights: unknown type '", text, "' (expected f32, f16, bf16, q8_0 or q4_0)");
  return t;
}

DType ParseKvTypeFlag(const std::string& text) {
  const auto t = ParseDType(text);
  if (!t || (*t != DType::kF32 && *t != DType::kBF16 && *t != DType::kF16))
    Fail("--kv-type: unknown type '", text, "' (expected f32, bf16 or f16)");
  return *t;
}

std::string IdsToJson(const std::vector<int>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s.push_back(',');
    s.append(std::to_string(ids[i]));
  }
  s.push_back(']');
  return s;
}

CLI::Option* AddModelOption(CLI::App* cmd, std::string& model, const std::string& help) {
  return cmd->add_option("--model,-m", model, help);
}

CLI::Option* AddThreadsOption(CLI::App* cmd, int& threads) {
  return cmd
      ->add_option("--threads,-t", threads,
                   "Threads to compute with (default: all cores, or OMP_NUM_THREADS)")
      ->check(CLI::Range(1, 4096));
}

CLI::Option* AddContextOption(CLI::App* cmd, int& context, const std::string& help) {
  return cmd->add_option("--context,--ctx-size,-c", context, help)
      ->check(CLI::Range(1, std::numeric_limits<int>::max()));
}

void SetThreads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

std::string ReadInputText(const std::string& path) {
  if (path != "-") return ReadTextFile(path);
  std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  if (std::cin.bad()) Fail("error reading standard input (-)");
  return text;
}

void WarnIfBeyondTrainedContext(int context, int max_context_length) {
  static std::atomic<bool> warned{false};
  if (context <= max_context_length || max_context_length <= 0 || warned.exchange(true)) return;
  std::fprintf(stderr,
               "warning: --context %d is beyond the %d tokens this model was trained on "
               "(max_context_length): positions past %d use RoPE angles it never saw, and the "
               "output degrades there\n",
               context, max_context_length, max_context_length);
}

}  // namespace elm::cli
