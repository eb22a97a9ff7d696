// Recoverable errors. Every failure a user can cause (bad file, bad flag, bad request) is thrown
// as elm::Error with a message that names the file/field at fault; the CLI prints it and exits
// non-zero, the server turns it into an HTTP error. Programming errors use ELM_CHECK.
#pragma once

#include <stdexcept>
#include <string>

namespace elm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Concatenates the arguments with operator<< and throws elm::Error.
template <typename... Args>
[[noreturn]] void Fail(const Args&... args);

}  // namespace elm

#include <sstream>

namespace elm {
template <typename... Args>
[[noreturn]] void Fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}
}  // namespace elm

// Internal invariant; unlike assert() it stays on in release builds.
#define ELM_CHECK(cond)                                                                      \
  do {                                                                                       \
    if (!(cond)) ::elm::Fail("internal error: ", #cond, " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)
