#include "train/run_folder.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "base/error.h"

namespace elm {
namespace fs = std::filesystem;
namespace {

// The names a run writes in its folder (trainer.cc), and the temporary files of their atomic
// writes (base/mmap_file.h: "<name>.tmp.<pid>").
bool IsRunFile(const std::string& name) {
  for (const char* own : {"checkpoints", "train_log.jsonl", "config.yaml"}) {
    const std::string o = own;
    if (name == o || name.rfind(o + ".tmp.", 0) == 0) return true;
  }
  return false;
}

std::vector<std::string> Entries(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    names.push_back(it->path().filename().string());
  if (ec && fs::exists(dir)) Fail(dir.string(), ": cannot list the run folder: ", ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string RunFolderContents(const std::string& run_dir) {
  const fs::path dir(run_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  std::vector<std::string> shown;
  for (const std::string& name : Entries(dir)) {
    if (name == "checkpoints" && fs::is_directory(dir / name, ec)) {
      const auto steps = Entries(dir / name);
      for (const std::string& s : steps) shown.push_back("checkpoints/" + s);
      continue;
    }
    shown.push_back(name);
  }
  std::string out;
  const size_t show = std::min<size_t>(shown.size(), 4);
  for (size_t i = 0; i < show; ++i) out += (i ? ", " : "") + shown[i];
  if (shown.size() > show) out += " and " + std::to_string(shown.size() - show) + " more";
  return out;
}

void PrepareRunFolder(const std::string& run_dir, bool resuming, bool overwrite) {
  if (resuming) return;
  const std::string contents = RunFolderContents(run_dir);
  if (contents.empty()) return;
  if (!overwrite)
    Fail("the run folder ", run_dir, " already holds a run (", contents, "); pass --resume ",
         run_dir, " to continue it, or --overwrite to delete it and start ",
         "over (or set common.run_label / common.results_loc to train into another folder)");
  std::vector<std::string> foreign;
  for (const std::string& name : Entries(run_dir))
    if (!IsRunFile(name)) foreign.push_back(name);
  if (!foreign.empty()) {
    std::string list;
    for (const auto& f : foreign) list += (list.empty() ? "" : ", ") + f;
    Fail("--overwrite: the run folder ", run_dir, " holds files elm did not write (", list,
         "); elm deletes only its own run files: move those away or choose another folder");
  }
  for (const std::string& name : Entries(run_dir)) {
    std::error_code ec;
    fs::remove_all(fs::path(run_dir) / name, ec);
    if (ec)
      Fail("--overwrite: cannot remove ", (fs::path(run_dir) / name).string(), ": ", ec.message());
  }
}

}  // namespace elm
