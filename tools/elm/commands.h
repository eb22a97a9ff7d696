// Each file tools/elm/cmd_*.cc adds one group of subcommands to the CLI by defining a
// registration function and registering it with ELM_REGISTER_COMMAND. Commands are thin: they
// parse flags, call the library, and print. Errors are thrown as elm::Error and reported by main.
#pragma once

#include <CLI/CLI.hpp>
#include <vector>

namespace elm::cli {

using RegisterFn = void (*)(CLI::App& app);

// Registration order decides the order in `elm --help`; `order` sorts it (lower first).
struct CommandRegistry {
  struct Entry {
    int order;
    RegisterFn fn;
  };
  static std::vector<Entry>& entries() {
    static std::vector<Entry> e;
    return e;
  }
  CommandRegistry(int order, RegisterFn fn) { entries().push_back({order, fn}); }
};

}  // namespace elm::cli

#define ELM_REGISTER_COMMAND(order, fn)                        \
  static const ::elm::cli::CommandRegistry elm_register_##fn { \
    order, fn                                                  \
  }
