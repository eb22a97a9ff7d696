#include "train/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
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

std::string PrepareCheckpoint(const std::string& root, int64_t step) {
  TrainerState st;
  st.step = step;
  return FreshStepFolder(root, st).string();
}

std::string MomentShardName(int rank, int world) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "optimizer-%05d-of-%05d.safetensors", rank, world);
  return buf;
}

void WriteMomentShard(const std::string& dir, const TrainSlab& slab, int rank, int world) {
  const size_t begin = slab.moments_begin, end = begin + slab.m.size();
  std::vector<TensorToWrite> opt;
  for (const char* which : {"m.", "v."})
    for (const SlabTensor& t : slab.tensors()) {
      if (t.offset < begin || t.offset + t.numel > end) continue;
      TensorToWrite w;
      w.name = which + t.spec.name;
      w.dtype = DType::kF32;
      w.shape = t.spec.shape;
      w.data = (which[0] == 'm' ? slab.m.data() : slab.v.data()) + (t.offset - begin);
      opt.push_back(std::move(w));
    }
  // Fault injection for the tests (docs/training.md, "Sharded checkpoints"): with
  // ELM_TEST_KILL_RANK_IN_CHECKPOINT=RANK:STEP that rank dies as kill -9 would end it, before
  // its shard of that step's checkpoint is written.
  if (const char* kill = std::getenv("ELM_TEST_KILL_RANK_IN_CHECKPOINT"); kill != nullptr) {
    const std::string k = kill;
    const size_t colon = k.find(':');
    if (colon != std::string::npos && std::atoi(k.c_str()) == rank &&
        fs::path(dir).filename().string() == CheckpointName(std::atoll(k.c_str() + colon + 1)))
      std::raise(SIGKILL);
  }
  WriteSafetensors((fs::path(dir) / MomentShardName(rank, world)).string(), opt,
                   {{"rank", std::to_string(rank)}, {"world_size", std::to_string(world)}});
}

std::string SaveCheckpoint(const std::string& root, const TrainSlab& slab, const TrainerState& st,
                           const std::string& tokenizer_json, int moment_shards) {
  const fs::path dir =
      moment_shards > 0 ? fs::path(root) / CheckpointName(st.step) : FreshStepFolder(root, st);
  slab.WriteWeights(dir.string(), tokenizer_json);
  if (moment_shards > 0) {
    // Every shard is in place (each rank wrote its own atomically): name them, then DONE.
    json manifest;
    manifest["format"] = "elm-train-checkpoint-shards";
    manifest["world_size"] = moment_shards;
    json shards = json::array();
    for (int r = 0; r < moment_shards; ++r) {
      const fs::path f = dir / MomentShardName(r, moment_shards);
      if (!fs::exists(f)) Fail(f.string(), ": rank ", r, "'s optimizer shard is missing");
      shards.push_back({{"rank", r}, {"file", f.filename().string()}, {"bytes", fs::file_size(f)}});
    }
    manifest["moment_shards"] = shards;
    WriteText(dir / "manifest.json", manifest.dump(2) + "\n");
  } else {
    std::vector<uint16_t> scratch;
    std::vector<TensorToWrite> opt = SlabTensors(slab, slab.m.data(), "m.", DType::kF32, scratch);
    const auto v = SlabTensors(slab, slab.v.data(), "v.", DType::kF32, scratch);
    opt.insert(opt.end(), v.begin(), v.end());
    WriteSafetensors((dir / "optimizer.safetensors").string(), opt,
                     {{"step", std::to_string(st.step)}});
  }
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
  LoadMoments(dir, slab);
  return st;
}

void LoadMoments(const std::string& dir, TrainSlab& slab) {
  std::vector<std::unique_ptr<TensorStore>> stores;
  const fs::path manifest_path = fs::path(dir) / "manifest.json";
  if (fs::exists(manifest_path)) {
    json manifest;
    try {
      manifest = json::parse(ReadTextFile(manifest_path.string()));
      for (const json& s : manifest.at("moment_shards"))
        stores.push_back(std::make_unique<TensorStore>(
            (fs::path(dir) / s.at("file").get<std::string>()).string()));
    } catch (const json::exception& e) {
      Fail(manifest_path.string(), ": ", e.what());
    }
  } else {
    stores.push_back(
        std::make_unique<TensorStore>((fs::path(dir) / "optimizer.safetensors").string()));
  }
  const size_t begin = slab.moments_begin, end = begin + slab.m.size();
  for (const SlabTensor& t : slab.tensors()) {
    if (t.offset < begin || t.offset + t.numel > end) continue;
    for (const char* which : {"m.", "v."}) {
      const std::string name = which + t.spec.name;
      const TensorView* found = nullptr;
      for (const auto& s : stores)
        if ((found = s->Find(name)) != nullptr) break;
      if (found == nullptr)
        Fail(dir, ": no optimizer tensor '", name, "' in its ",
             stores.size() > 1 ? "shards" : "optimizer.safetensors",
             " (written for another model shape, or other LoRA targets or rank)");
      if (found->shape != t.spec.shape || found->dtype != DType::kF32)
        Fail(dir, ": optimizer tensor '", name, "' is ", ShapeString(found->shape), " ",
             found->dtype_name, "; this run expects ", ShapeString(t.spec.shape), " F32");
      float* dst = (which[0] == 'm' ? slab.m.data() : slab.v.data()) + (t.offset - begin);
      ToF32(DType::kF32, found->data, dst, t.numel);
    }
  }
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
