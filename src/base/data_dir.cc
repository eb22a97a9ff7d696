#include "base/data_dir.h"

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace elm {

namespace fs = std::filesystem;

std::string ExecutableDir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.parent_path().string();
}

std::string FindDataDir(std::string_view sub) {
  std::error_code ec;
  if (const char* env = std::getenv("ELM_DATA_DIR"); env && *env) {
    const fs::path p = fs::path(env) / sub;
    return fs::is_directory(p, ec) ? p.string() : "";
  }
  const std::string exe_dir = ExecutableDir();
  if (exe_dir.empty()) return "";
  const fs::path installed = fs::path(exe_dir).parent_path() / "share" / "elm" / sub;
  if (fs::is_directory(installed, ec)) return installed.string();
  for (fs::path dir = exe_dir; !dir.empty(); dir = dir.parent_path()) {
    const fs::path p = dir / "data" / sub;
    if (fs::is_directory(p, ec)) return p.string();
    if (dir == dir.parent_path()) break;
  }
  return "";
}

}  // namespace elm
