// README.md's documentation list names every document in docs/ (a newcomer finds them there).
#include <gtest/gtest.h>

#include <filesystem>

#include "base/mmap_file.h"

namespace elm {
namespace readme_docs_test {
namespace fs = std::filesystem;

TEST(Readme, DocumentationListNamesEveryDoc) {
  const std::string readme = ReadTextFile(std::string(ELM_SOURCE_DIR) + "/README.md");
  const size_t list = readme.find("\n## Documentation\n");
  ASSERT_NE(list, std::string::npos) << "README.md has no \"## Documentation\" section";
  const std::string section = readme.substr(list, readme.find("\n## ", list + 1) - list);
  int docs = 0;
  for (const auto& e : fs::directory_iterator(std::string(ELM_SOURCE_DIR) + "/docs")) {
    if (e.path().extension() != ".md") continue;
    ++docs;
    const std::string name = "docs/" + e.path().filename().string();
    EXPECT_NE(section.find(name), std::string::npos) << name << " is not in README.md's list";
  }
  EXPECT_GT(docs, 0);
}

}  // namespace readme_docs_test
}  // namespace elm
