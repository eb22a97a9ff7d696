// The few Python string semantics that lm-evaluation-harness relies on, on UTF-8 text: which
// characters str.isspace()/re's \s accept, len() in code points, rstrip/lstrip, and the word
// count of its perplexity tasks. Getting these exactly right is what makes request strings and
// acc_norm lengths match the harness byte for byte.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace elm::text {

// Python's str.isspace() for one code point (also what re's \s matches in str patterns).
bool IsPySpace(char32_t c);

// len(s) in Python: the number of code points (UTF-8 continuation bytes are not counted).
size_t CodePointCount(std::string_view s);

// Bytes taken by the trailing Python whitespace of `s` (len(s) - len(s.rstrip()), in bytes).
size_t TrailingSpaceBytes(std::string_view s);

// s.lstrip() / s.strip() with Python's whitespace set.
std::string_view PyLStrip(std::string_view s);
std::string_view PyStrip(std::string_view s);

// len(re.split(r"\s+", s)): one more than the number of maximal whitespace runs, so leading and
// trailing whitespace each add an (empty) word, as in lm-eval's word_perplexity.
size_t LmEvalWordCount(std::string_view s);

}  // namespace elm::text
