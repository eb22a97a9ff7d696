// `elm serve` runs the elm-serve program built next to elm, with the same arguments and process id
// (exec). The HTTP server's libraries (cpp-httplib, and through it OpenSSL, brotli and zlib, which
// initialise themselves when loaded: ~4 MB resident) are then loaded only by the server, not by
// every `elm generate` or `elm bench` (docs/architecture.md).
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli_util.h"
#include "commands.h"

namespace elm::cli {
namespace {

void RegisterServeLauncher(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", kServeHelp);
  cmd->prefix_command();  // every argument after `serve`, --help included, goes to elm-serve
  cmd->set_help_flag();
  cmd->callback([cmd] {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec)
      Fail("elm serve: cannot find this program's folder (/proc/self/exe: ", ec.message(), ")");
    const std::string server = (self.parent_path() / "elm-serve").string();
    std::vector<std::string> args = {"elm", "serve"};
    for (const auto& a : cmd->remaining()) args.push_back(a);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(server.c_str(), argv.data());
    Fail("elm serve: cannot run ", server, ": ", std::strerror(errno),
         " (elm-serve is built next to elm; rebuild, or copy both)");
  });
}

}  // namespace

ELM_REGISTER_COMMAND(70, RegisterServeLauncher);

}  // namespace elm::cli
