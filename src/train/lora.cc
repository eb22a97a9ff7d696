#include "train/lora.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <numbers>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/rng.h"
#include "config/hf_config.h"
#include "io/safetensors.h"
#include "train/params.h"

namespace elm {
namespace fs = std::filesystem;

namespace {
// A strong 64-bit mix (SplitMix64's finalizer) of one word.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

LoraParams::LoraParams(const ModelConfig& cfg, LoraSettings s)
    : settings_(std::move(s)), layout_(cfg, settings_) {
  for (const LoraTensor& t : layout_.tensors()) {
    Add({t.name, t.shape, t.layer}, true);
    ELM_CHECK(tensors().back().offset == t.offset);
  }
}

float* LoraParams::Slot(float* slab, int layer, LoraTarget t, bool a) const {
  const LoraTensor* x = layout_.Get(layer, t, a);
  return x == nullptr ? nullptr : slab + x->offset;
}

void LoraParams::Init(uint64_t seed) {
  const auto& ts = layout_.tensors();
  for (size_t k = 0; k < ts.size(); ++k) {
    const LoraTensor& t = ts[k];
    float* p = params.data() + t.offset;
    const bool emb = t.target == LoraTarget::kEmbeddings;
    uint64_t mix = seed ^ (0xA24BAED4963EE407ull * static_cast<uint64_t>(k + 1));
    Rng rng(SplitMix64(mix));
    if (t.is_magnitude) {  // DoRA: ‖W + s·B·A‖ = ‖W‖, set by TrainModel::InitDoraMagnitudes
      std::fill(p, p + t.numel, 1.0f);
    } else if (emb == t.is_a) {  // linear B, embedding A: zero
      std::fill(p, p + t.numel, 0.0f);
    } else if (!emb) {  // linear A [r, in]: U(−1/√in, 1/√in)
      const double bound = 1.0 / std::sqrt(static_cast<double>(t.shape[1]));
      for (size_t i = 0; i < t.numel; ++i)
        p[i] = static_cast<float>((2.0 * rng.NextDouble() - 1.0) * bound);
    } else {  // embedding B: N(0, 1)
      for (size_t i = 0; i < t.numel; i += 2) {
        const double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        const double r = std::sqrt(-2.0 * std::log(u1));
        p[i] = static_cast<float>(r * std::cos(2.0 * std::numbers::pi * u2));
        if (i + 1 < t.numel)
          p[i + 1] = static_cast<float>(r * std::sin(2.0 * std::numbers::pi * u2));
      }
    }
  }
}

void LoraParams::WriteWeights(const std::string& dir, const std::string&) const {
  SaveLoraAdapter(dir, settings_, layout_, params.data());
}

void LoraParams::ReadWeights(const std::string& dir) {
  const fs::path file = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(file))
    Fail(dir, ": not a LoRA checkpoint (no adapter_model.safetensors); it was written by a full ",
         "training run");
  LoadSlab(*this, TensorStore(file.string()), "", params.data());
}

uint64_t LoraDropoutKey(uint64_t seed, int64_t step, int64_t global_micro) {
  uint64_t h = Mix(seed ^ 0x4C6F5241ull);  // "LoRA"
  h = Mix(h ^ static_cast<uint64_t>(step));
  return Mix(h ^ static_cast<uint64_t>(global_micro));
}

float LoraDropoutScale(uint64_t key, int layer, LoraTarget t, uint64_t i, float p) {
  const uint64_t h =
      Mix(Mix(key ^ (static_cast<uint64_t>(layer + 1) << 8 | static_cast<uint64_t>(t))) ^ i);
  const float u = static_cast<float>(h >> 40) * 0x1.0p-24f;  // [0, 1)
  return u < p ? 0.0f : 1.0f / (1.0f - p);
}

void FakeQuantizeBase(ParamSet& ps, DType t) {
  if (t == DType::kF32) return;
  const size_t block = DTypeBlock(t);
  for (const ParamTensor& pt : ps.tensors()) {
    if (pt.spec.shape.size() != 2) continue;  // norms stay f32, as at inference
    const auto cols = static_cast<size_t>(pt.spec.shape[1]);
    if (cols % block != 0)
      Fail("elm.lora_base_weights ", DTypeName(t), ": tensor '", pt.spec.name, "' has ", cols,
           " columns, not a multiple of the ", block, "-element block");
    float* p = ps.params.data() + pt.offset;
    std::vector<uint8_t> q(DTypeBytes(t, pt.numel));
    FromF32(t, p, q.data(), pt.numel);
    ToF32(t, q.data(), p, pt.numel);
  }
}

DType MergeLoraCheckpoint(const std::string& base, const std::string& adapter,
                          const std::string& out, std::optional<DType> dtype) {
  const ModelSource src = OpenModelSource(base);  // HF, MLX or GGUF
  const ModelConfig& cfg = src.config;
  const LoraAdapter ad = LoadLoraAdapter(adapter, cfg);
  const DType emb_type = src.tensors.at(0).dtype;  // the layout starts with the embedding
  if (!dtype) dtype = emb_type == DType::kBF16 || emb_type == DType::kF16 ? emb_type : DType::kF32;
  if (*dtype != DType::kF32 && *dtype != DType::kBF16 && *dtype != DType::kF16)
    Fail("merge-lora: the output type must be f32, bf16 or f16");
  ModelConfig oc = cfg;
  if (cfg.tied_embeddings && ad.settings.has(LoraTarget::kEmbeddings)) oc.tied_embeddings = false;
  ParamSet ps(oc);
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < src.tensors.size(); ++i) index[src.tensors[i].spec.name] = i;
  for (const ParamTensor& t : ps.tensors()) {
    // A tied base's embedding also fills the untied lm_head.
    const bool head = t.spec.name == "lm_head.weight" && cfg.tied_embeddings;
    const size_t i = index.at(head ? "transformer.token_embeddings.weight" : t.spec.name);
    const SourceTensor st = src.Fetch(i);
    ELM_CHECK(st.spec.shape == t.spec.shape);
    const std::vector<uint8_t> f32 = ConvertTensor(st, DType::kF32);
    src.Release(i);
    float* p = ps.params.data() + t.offset;
    std::memcpy(p, f32.data(), f32.size());
    if (!head && t.spec.shape.size() == 2)
      MergeLora(ad, t.spec.name, p, t.spec.shape[0], t.spec.shape[1]);
  }
  fs::path dst = fs::path(out).lexically_normal();
  if (!dst.has_filename()) dst = dst.parent_path();  // "merged/" → "merged"
  if (dst.empty()) Fail("merge-lora: the output folder name is empty");
  if (fs::exists(dst) && !(fs::is_directory(dst) && fs::is_empty(dst)))
    Fail(out, ": already exists; give a new folder for the merged model");
  RemoveStaleTemps(dst.string());  // left by a killed earlier merge
  const fs::path tmp = TempPathFor(dst.string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  WriteModelFolder(tmp.string(), ps, *dtype);
  if (!src.tokenizer_json.empty())
    WriteFileAtomic((tmp / "tokenizer.json").string(), src.tokenizer_json.data(),
                    src.tokenizer_json.size());
  if (fs::exists(dst)) fs::remove(dst);  // an empty folder
  SyncDirectory(tmp.string());
  fs::rename(tmp, dst);
  SyncDirectory(dst.parent_path().string());
  return *dtype;
}

}  // namespace elm
