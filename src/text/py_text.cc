#include "text/py_text.h"

namespace elm::text {
namespace {

// Decodes the code point starting at s[i] and sets *len to its byte length. Malformed bytes
// decode as themselves (length 1): they are never whitespace, which is all that matters here.
char32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const auto b = static_cast<unsigned char>(s[i]);
  int n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
  if (i + n > s.size()) n = 1;
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (int k = 1; k < n; ++k) {
    const auto cb = static_cast<unsigned char>(s[i + k]);
    if ((cb & 0xC0) != 0x80) {
      *len = 1;
      return b;
    }
    c = (c << 6) | (cb & 0x3F);
  }
  *len = static_cast<size_t>(n);
  return c;
}

bool IsContinuation(char ch) {
  return (static_cast<unsigned char>(ch) & 0xC0) == 0x80;
}

}  // namespace

bool IsPySpace(char32_t c) {
  // CPython's _PyUnicode_IsWhitespace: bidirectional types WS, B, S and category Zs.
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (char ch : s) n += IsContinuation(ch) ? 0 : 1;
  return n;
}

size_t TrailingSpaceBytes(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t start = end - 1;  // back up to the first byte of the last code point
    while (start > 0 && IsContinuation(s[start]) && end - start < 4) --start;
    size_t len = 0;
    const char32_t c = DecodeAt(s, start, &len);
    if (start + len != end) break;  // malformed tail: not whitespace
    if (!IsPySpace(c)) break;
    end = start;
  }
  return s.size() - end;
}

std::string_view PyLStrip(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    if (!IsPySpace(DecodeAt(s, i, &len))) break;
    i += len;
  }
  return s.substr(i);
}

std::string_view PyStrip(std::string_view s) {
  s = PyLStrip(s);
  return s.substr(0, s.size() - TrailingSpaceBytes(s));
}

size_t LmEvalWordCount(std::string_view s) {
  size_t runs = 0;
  bool in_space = false;
  for (size_t i = 0; i < s.size();) {
    size_t len = 0;
    const bool sp = IsPySpace(DecodeAt(s, i, &len));
    if (sp && !in_space) ++runs;
    in_space = sp;
    i += len;
  }
  return runs + 1;
}

}  // namespace elm::text
