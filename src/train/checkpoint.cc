#include "train/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"

namespace elm {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr int kFormatVersion = 1;

// The step of a checkpoint folder's name ("step_00000100" → 100), or -1 for any other name. A
// folder that looks like one but whose number does not fit (step_<20 digits>) is not elm's: it
// is ignored, with a warning once per path.
int64_t StepOf(const fs::path& p) {
  const std::string n = p.filename().string();
  if (n.rfind("step_", 0) != 0 || n.size() <= 5) return -1;
  for (size_t i = 5; i < n.size(); ++i)
    if (n[i] < '0' || n[i] > '9') return -1;
  int64_t step = -1;
  const char* end = n.data() + n.size();
  const auto [ptr, ec] = std::from_chars(n.data() + 5, end, step);
  if (ec == std::errc() && ptr == end) return step;
  static std::set<std::string> warned;
  if (warned.insert(p.string()).second)
    std::fprintf(stderr, "warning: ignoring %s: not an elm checkpoint (step number out of range)\n",
                 p.c_str());
  return -1;
}

bool Complete(const fs::path& p) {
  return fs::exists(p / "DONE");
}

void WriteText(const fs::path& p, const std::string& text) {
  WriteFileAtomic(p.string(), text.data(), text.size());
}

// trainer_state.json, then DONE.
void WriteState(const fs::path& dir, const TrainerState& st);
// trainer_state.json of a complete checkpoint.
TrainerState ReadState(const std::string& dir);

// A fresh folder for step st.step under root (an older one of the same step is removed, DONE
// first, so a crash in between never leaves a "complete" mix).
fs::path FreshStepFolder(const std::string& root, const TrainerState& st) {
  const fs::path dir = fs::path(root) / CheckpointName(st.step);
  if (fs::exists(dir)) {
    fs::remove(dir / "DONE");
    fs::remove_all(dir);
  }
  fs::create_directories(dir);
  return dir;
}

}  // namespace

std::string CheckpointName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string SaveCheckpoint(const std::string& root, const TrainSlab& slab, const TrainerState& st,
                           const std::string& tokenizer_json) {
  const fs::path dir = FreshStepFolder(root, st);
  slab.WriteWeights(dir.string(), tokenizer_json);
  std::vector<uint16_t> scratch;
  std::vector<TensorToWrite> opt = SlabTensors(slab, slab.m.data(), "m.", DType::kF32, scratch);
  const auto v = SlabTensors(slab, slab.v.data(), "v.", DType::kF32, scratch);
  opt.insert(opt.end(), v.begin(), v.end());
  WriteSafetensors((dir / "optimizer.safetensors").string(), opt,
                   {{"step", std::to_string(st.step)}});
  WriteState(dir, st);
  SyncDirectory(root);  // the step folder's own entry (its files were synced as written)
  return dir.string();
}

int RemoveIncompleteCheckpoints(const std::string& root) {
  if (!fs::is_directory(root)) return 0;
  int removed = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory() || StepOf(e.path()) < 0 || Complete(e.path())) continue;
    std::error_code ec;
    fs::remove_all(e.path(), ec);
    if (ec) continue;
    std::fprintf(stderr, "note: removed %s, a checkpoint interrupted while being written\n",
                 e.path().c_str());
    ++removed;
  }
  return removed;
}

namespace {
void WriteState(const fs::path& dir, const TrainerState& st) {
  json j;
  j["format"] = "elm-train-checkpoint";
  j["format_version"] = kFormatVersion;
  j["step"] = st.step;
  j["data_epoch"] = st.data.epoch;
  j["data_index"] = st.data.index;
  j["seed"] = st.seed;
  j["tokens_seen"] = st.tokens_seen;
  j["loss"] = st.loss;
  j["fingerprint"] = st.fingerprint;
  j["world_size"] = st.world_size;
  WriteText(dir / "trainer_state.json", j.dump(2) + "\n");
  WriteText(dir / "DONE", "step " + std::to_string(st.step) + "\n");
}

TrainerState ReadState(const std::string& dir) {
  if (!Complete(dir))
    Fail(dir, ": incomplete checkpoint (no DONE file): it was interrupted while being written");
  const std::string state_path = (fs::path(dir) / "trainer_state.json").string();
  json j;
  try {
    j = json::parse(ReadTextFile(state_path));
  } catch (const json::exception& e) {
    Fail(state_path, ": not valid JSON: ", e.what());
  }
  if (j.value("format", "") != "elm-train-checkpoint")
    Fail(state_path, ": not an elm training checkpoint");
  if (j.value("format_version", 0) != kFormatVersion)
    Fail(state_path, ": checkpoint format version ", j.value("format_version", 0),
         " is not supported by this elm (it reads version ", kFormatVersion, ")");
  TrainerState st;
  try {
    st.step = j.at("step").get<int64_t>();
    st.data.epoch = j.at("data_epoch").get<int64_t>();
    st.data.index = j.at("data_index").get<int64_t>();
    st.seed = j.at("seed").get<uint64_t>();
    st.tokens_seen = j.at("tokens_seen").get<int64_t>();
    st.loss = j.at("loss").get<double>();
    st.fingerprint = j.at("fingerprint").get<std::string>();
    st.world_size = j.value("world_size", 1);
  } catch (const json::exception& e) {
    Fail(state_path, ": ", e.what());
  }
  return st;
}
}  // namespace

TrainerState LoadCheckpoint(const std::string& dir, TrainSlab& slab) {
  const TrainerState st = ReadState(dir);
  slab.ReadWeights(dir);
  slab.AllocateTrainingState();
  const TensorStore opt((fs::path(dir) / "optimizer.safetensors").string());
  LoadSlab(slab, opt, "m.", slab.m.data());
  LoadSlab(slab, opt, "v.", slab.v.data());
  return st;
}

std::vector<std::string> ListCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(root)) return {};
  for (const auto& e : fs::directory_iterator(root)) {
    const int64_t s = StepOf(e.path());
    if (e.is_directory() && s >= 0 && Complete(e.path())) found.emplace_back(s, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::string FindLatestCheckpoint(const std::string& path) {
  if (StepOf(path) >= 0 && Complete(path)) return path;
  for (const fs::path& root : {fs::path(path), fs::path(path) / "checkpoints"}) {
    const auto list = ListCheckpoints(root.string());
    if (!list.empty()) return list.back();
  }
  return "";
}

void PruneCheckpoints(const std::string& root, int keep_last) {
  const auto list = ListCheckpoints(root);
  if (list.empty()) return;
  const int64_t newest = StepOf(list.back());
  if (keep_last > 0)
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < list.size(); ++i) {
      fs::remove(fs::path(list[i]) / "DONE");
      fs::remove_all(list[i]);
    }
  for (const auto& e : fs::directory_iterator(root)) {
    const int64_t s = StepOf(e.path());
    if (e.is_directory() && s >= 0 && s < newest && !Complete(e.path())) fs::remove_all(e.path());
  }
}

}  // namespace elm
