#include "eval/py_literal.h"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "base/error.h"
#include "text/utf8.h"

namespace elm::eval {
namespace {

using nlohmann::json;

class Parser {
 public:
  Parser(std::string_view s, const std::string& where) : s_(s), where_(where) {}

  json Document() {
    json v = Value(0);
    SkipSpace();
    if (i_ != s_.size()) Error("unexpected text after the literal");
    return v;
  }

 private:
  [[noreturn]] void Error(const char* what) const {
    Fail(where_, ": Python literal at byte ", i_, ": ", what);
  }
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    const size_t end = i_ + w.size();
    if (end < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[end])) || s_[end] == '_'))
      return false;
    i_ = end;
    return true;
  }

  json Value(int depth) {
    if (depth > 64) Error("nested deeper than 64");
    SkipSpace();
    if (i_ >= s_.size()) Error("unexpected end");
    const char c = s_[i_];
    if (c == '[' || c == '(') return Sequence(c == '[' ? ']' : ')', depth);
    if (c == '{') return Dict(depth);
    if (c == '\'' || c == '"') return String();
    if ((c == 'u' || c == 'U') && i_ + 1 < s_.size() && (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"')) {
      ++i_;
      return String();
    }
    if (Word("True")) return true;
    if (Word("False")) return false;
    if (Word("None")) return nullptr;
    if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) return Number();
    Error("expected a list, dict, string, number, True, False or None");
  }

  json Sequence(char close, int depth) {
    ++i_;
    json out = json::array();
    while (true) {
      if (Eat(close)) return out;
      out.push_back(Value(depth + 1));
      if (Eat(',')) continue;
      if (Eat(close)) return out;
      Error("expected ',' or the closing bracket");
    }
  }

  json Dict(int depth) {
    ++i_;
    json out = json::object();
    while (true) {
      if (Eat('}')) return out;
      const json key = Value(depth + 1);
      if (!key.is_string()) Error("elm reads only string dict keys");
      if (!Eat(':')) Error("expected ':'");
      out[key.get<std::string>()] = Value(depth + 1);
      if (Eat(',')) continue;
      if (Eat('}')) return out;
      Error("expected ',' or '}'");
    }
  }

  void AppendUtf8(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) Error("invalid code point escape");
    utf8::Append(out, cp);
  }

  uint32_t Hex(int n) {
    if (i_ + static_cast<size_t>(n) > s_.size()) Error("truncated escape");
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      const char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        v |= static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        v |= static_cast<uint32_t>(h - 'A' + 10);
      } else {
        Error("bad hex digit in escape");
      }
    }
    return v;
  }

  json String() {
    const char q = s_[i_];
    const bool triple = s_.substr(i_, 3) == std::string(3, q);
    i_ += triple ? 3 : 1;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) Error("unterminated string");
      const char c = s_[i_];
      if (c == q) {
        if (!triple) {
          ++i_;
          return out;
        }
        if (s_.substr(i_, 3) == std::string(3, q)) {
          i_ += 3;
          return out;
        }
      }
      if (c == '\n' && !triple) Error("newline in a string");
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) Error("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '\n':
          break;  // line continuation
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '0':
          out += '\0';
          break;
        case 'x':
          AppendUtf8(out, Hex(2));
          break;
        case 'u':
          AppendUtf8(out, Hex(4));
          break;
        case 'U':
          AppendUtf8(out, Hex(8));
          break;
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
  }

  json Number() {
    const size_t start = i_;
    if (s_[i_] == '-' || s_[i_] == '+') ++i_;
    bool is_float = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c >= '0' && c <= '9') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E' ||
                 ((c == '-' || c == '+') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E'))) {
        is_float = true;
        ++i_;
      } else {
        break;
      }
    }
    const std::string num(s_.substr(start, i_ - start));
    char* end = nullptr;
    if (!is_float) {
      errno = 0;
      const long long v = std::strtoll(num.c_str(), &end, 10);
      if (errno == 0 && end && *end == '\0') return v;
      Error("integer out of range or malformed");
    }
    const double v = std::strtod(num.c_str(), &end);
    if (!end || *end != '\0') Error("malformed number");
    return v;
  }

  std::string_view s_;
  const std::string& where_;
  size_t i_ = 0;
};

}  // namespace

json ParsePyLiteral(std::string_view text, const std::string& where) {
  return Parser(text, where).Document();
}

}  // namespace elm::eval
