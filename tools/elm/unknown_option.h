// "Did you mean --x?" for a mistyped flag or subcommand (README.md, "Flags").
#pragma once

#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace elm::cli {

// When argv names a subcommand of `app` that does not exist, or holds an option that the chosen
// subcommand does not have, a one-line error naming it and the closest registered name ("did you
// mean --max-new-tokens?") where one is close; "" when every name is known (then CLI11's own
// message is the right one). Called after a parse error, so the mistyped name is reported before
// the errors it causes (a "--model is required" when -m was not known, or a value "not expected").
std::string UnknownOptionMessage(const CLI::App& app, int argc, const char* const* argv);

}  // namespace elm::cli
