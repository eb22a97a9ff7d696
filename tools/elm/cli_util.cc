#include "cli_util.h"

#include <cerrno>
#include <cstdlib>

#include "base/error.h"

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

}  // namespace elm::cli
