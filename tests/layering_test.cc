// The module layering of docs/architecture.md, checked against the includes of the tree. The
// document's ```layers block lists, for every module (a folder of src/, plus `tools` for
// tools/elm), the modules it includes directly. This test fails when
//   - a file includes a module its own module may not reach (not in the transitive closure of the
//     declared dependencies): a wrong-way include;
//   - the declared graph has a cycle, or names a module that does not exist;
//   - a folder of src/ is not declared, or a declared arrow is not used by any include (the
//     document would no longer be the code's).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace layering_test {

namespace fs = std::filesystem;
using Graph = std::map<std::string, std::set<std::string>>;

const fs::path kRoot = ELM_SOURCE_DIR;

// Parses the ```layers block: lines "module: dep dep ...".
Graph DeclaredLayers(std::string* error) {
  std::ifstream in(kRoot / "docs" / "architecture.md");
  if (!in) {
    *error = "cannot read docs/architecture.md";
    return {};
  }
  Graph g;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside) {
      inside = line == "```layers";
      continue;
    }
    if (line == "```") break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream deps(line.substr(colon + 1));
    std::set<std::string>& out = g[line.substr(0, colon)];
    for (std::string d; deps >> d;) out.insert(d);
  }
  if (g.empty()) *error = "docs/architecture.md has no ```layers block";
  return g;
}

// The modules `m` may include: the closure of its declared dependencies. Sets `cycle` when the
// walk comes back to `m`.
std::set<std::string> Reachable(const Graph& g, const std::string& m, bool* cycle) {
  std::set<std::string> seen;
  std::vector<std::string> todo(g.at(m).begin(), g.at(m).end());
  while (!todo.empty()) {
    const std::string n = todo.back();
    todo.pop_back();
    if (n == m) *cycle = true;
    if (!seen.insert(n).second || !g.count(n)) continue;
    todo.insert(todo.end(), g.at(n).begin(), g.at(n).end());
  }
  return seen;
}

bool IsAllowed(const Graph& g, const std::string& from, const std::string& to) {
  bool cycle = false;
  return Reachable(g, from, &cycle).count(to) > 0;
}

struct Include {
  std::string file;  // relative to the repository root
  int line = 0;
  std::string module;  // the included file's module
};

// Every `#include "module/..."` of the C++ files below `dir`, keyed by the including module.
void ScanIncludes(const fs::path& dir, const std::string& fixed_module,
                  std::map<std::string, std::vector<Include>>* out) {
  static const std::regex kInclude(R"re(^\s*#\s*include\s+"([a-z0-9_]+)/)re");
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string ext = e.path().extension().string();
    if (!e.is_regular_file() || (ext != ".cc" && ext != ".h" && ext != ".inc")) continue;
    const fs::path rel = fs::relative(e.path(), kRoot);
    const std::string module =
        fixed_module.empty() ? (*std::next(rel.begin())).string() : fixed_module;
    std::ifstream in(e.path());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      if (std::regex_search(line, m, kInclude) && fs::is_directory(kRoot / "src" / m[1].str()))
        (*out)[module].push_back({rel.string(), n, m[1].str()});
    }
  }
}

TEST(Layering, IncludesFollowTheDeclaredModuleOrder) {
  std::string error;
  const Graph declared = DeclaredLayers(&error);
  ASSERT_TRUE(error.empty()) << error;

  std::map<std::string, std::vector<Include>> includes;
  ScanIncludes(kRoot / "src", "", &includes);
  ScanIncludes(kRoot / "tools" / "elm", "tools", &includes);

  std::vector<std::string> problems;
  for (const auto& e : fs::directory_iterator(kRoot / "src"))
    if (e.is_directory() && !declared.count(e.path().filename().string()))
      problems.push_back("src/" + e.path().filename().string() +
                         "/ is not declared in docs/architecture.md's layers block");
  for (const auto& [m, deps] : declared) {
    for (const std::string& d : deps)
      if (!declared.count(d)) problems.push_back(m + " declares unknown module " + d);
    bool cycle = false;
    Reachable(declared, m, &cycle);
    if (cycle) problems.push_back(m + " depends on itself through its declared dependencies");
  }
  ASSERT_TRUE(problems.empty()) << ::testing::PrintToString(problems);

  Graph used;
  for (const auto& [m, list] : includes) {
    if (!declared.count(m)) continue;  // reported above
    bool cycle = false;
    const std::set<std::string> allowed = Reachable(declared, m, &cycle);
    for (const Include& inc : list) {
      if (inc.module == m) continue;
      used[m].insert(inc.module);
      if (!allowed.count(inc.module))
        problems.push_back(inc.file + ":" + std::to_string(inc.line) + " includes " + inc.module +
                           "/, which module " + m + " may not depend on");
    }
  }
  for (const auto& [m, deps] : declared)
    for (const std::string& d : deps)
      if (!used[m].count(d))
        problems.push_back("docs/architecture.md declares " + m + " -> " + d + ", but no file of " +
                           m + " includes " + d + "/");
  for (const auto& [m, deps] : used)
    for (const std::string& d : deps)
      if (declared.count(m) && !declared.at(m).count(d) && IsAllowed(declared, m, d))
        problems.push_back(m + " includes " + d + "/ (allowed through the closure) but " +
                           "docs/architecture.md does not list the arrow " + m + " -> " + d);
  EXPECT_TRUE(problems.empty()) << [&] {
    std::string s;
    for (const std::string& p : problems) s += "\n  " + p;
    return s;
  }();
}

// The sanitizer stages build the tests as a unity build (docs/architecture.md, "Unity builds"),
// which compiles several test files as one: a helper in an anonymous namespace (kTiny, ErrorOf)
// would then clash with another file's. Each test file keeps its helpers in a namespace named
// after the file instead.
TEST(Layering, TestFilesKeepHelpersInAFileNamedNamespace) {
  static const std::regex kAnonymous(R"re(^\s*namespace\s*\{)re");
  std::vector<std::string> problems;
  for (const auto& e : fs::directory_iterator(kRoot / "tests")) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name.size() < 8 || name.substr(name.size() - 8) != "_test.cc")
      continue;
    std::ifstream in(e.path());
    std::string line;
    for (int n = 1; std::getline(in, line); ++n)
      if (std::regex_search(line, kAnonymous))
        problems.push_back("tests/" + name + ":" + std::to_string(n) +
                           ": an anonymous namespace; name it after the file (namespace " +
                           name.substr(0, name.size() - 3) + " {)");
  }
  EXPECT_TRUE(problems.empty()) << [&] {
    std::string s;
    for (const std::string& p : problems) s += "\n  " + p;
    return s;
  }();
}

}  // namespace layering_test
