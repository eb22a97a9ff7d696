#include "unknown_option.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <string_view>
#include <vector>

#include "base/spelling.h"

namespace elm::cli {
namespace {

// The options of `cmd` and of its option groups (nameless subcommands), help flags included.
void CollectOptions(const CLI::App* cmd, std::vector<const CLI::Option*>& out) {
  for (const CLI::Option* o : cmd->get_options()) out.push_back(o);
  for (const CLI::App* sub : cmd->get_subcommands([](const CLI::App*) { return true; }))
    if (sub->get_name().empty()) CollectOptions(sub, out);
}

// "-5", "-0.5", "-1e3": a negative number given as a value, not a flag.
bool IsNumber(std::string_view s) {
  return s.size() > 1 && s[0] == '-' &&
         (std::isdigit(static_cast<unsigned char>(s[1])) != 0 || s[1] == '.');
}

struct Lookup {
  std::vector<const CLI::Option*> options;
  const CLI::Option* Find(std::string_view flag) const {  // "--name" or "-n"
    for (const CLI::Option* o : options) {
      if (flag.rfind("--", 0) == 0) {
        for (const auto& n : o->get_lnames())
          if (flag.substr(2) == n) return o;
      } else {
        for (const auto& n : o->get_snames())
          if (flag.substr(1) == n) return o;
      }
    }
    return nullptr;
  }
  // The long names: a one-letter flag is one edit from every other, so it suggests nothing.
  std::vector<std::string> LongNames() const {
    std::vector<std::string> names;
    for (const CLI::Option* o : options)
      for (const auto& n : o->get_lnames()) names.push_back("--" + n);
    return names;
  }
};

std::string Suggest(std::string_view typed, const std::vector<std::string>& names) {
  const std::string best = ClosestName(typed, names);
  return best.empty() ? std::string() : "; did you mean " + best + "?";
}

}  // namespace

std::string UnknownOptionMessage(const CLI::App& app, int argc, const char* const* argv) {
  // The subcommand: the first argument that is not an option of elm itself.
  int i = 1;
  while (i < argc && argv[i][0] == '-') ++i;
  if (i >= argc) return "";
  const std::string name = argv[i];
  const CLI::App* cmd = nullptr;
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name().empty()) continue;
    commands.push_back(sub->get_name());
    if (sub->get_name() == name) cmd = sub;
  }
  if (cmd == nullptr)
    return "unknown command '" + name + "'" + Suggest(name, commands) + " (elm --help lists them)";
  if (cmd->get_prefix_command()) return "";  // `elm serve` hands its arguments to elm-serve
  Lookup lookup;
  CollectOptions(cmd, lookup.options);
  const std::string where = "elm " + cmd->get_name();
  for (++i; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-' || IsNumber(arg)) continue;
    const size_t eq = arg.find('=');
    std::string_view flag = arg.substr(0, eq);
    std::string_view attached;  // -n10: a short flag with its value attached
    if (flag.rfind("--", 0) != 0 && flag.size() > 2) {
      attached = flag.substr(2);
      flag = flag.substr(0, 2);
    }
    const CLI::Option* o = lookup.Find(flag);
    if (o == nullptr)
      return "unknown option '" + std::string(flag) + "' for " + where +
             (flag.rfind("--", 0) == 0 ? Suggest(flag, lookup.LongNames()) : std::string()) + " (" +
             where + " --help lists them)";
    // Its value is the next argument, which may itself start with '-' (a prompt, a number).
    if (eq == std::string_view::npos && attached.empty() && o->get_items_expected_min() > 0) ++i;
  }
  return "";
}

}  // namespace elm::cli
