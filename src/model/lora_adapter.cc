#include "model/lora_adapter.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/mmap_file.h"
#include "io/safetensors.h"

namespace elm {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "base_model.model.";

// The HF module path of (layer, target), without the ".weight" suffix.
std::string ModulePath(int layer, LoraTarget t) {
  if (t == LoraTarget::kEmbeddings) return "transformer.token_embeddings";
  const std::string p = "transformer.layers." + std::to_string(layer) + ".";
  switch (t) {
    case LoraTarget::kQkv:
      return p + "attn.qkv_proj";
    case LoraTarget::kOut:
      return p + "attn.out_proj";
    case LoraTarget::kProj1:
      return p + "ffn.proj_1";
    default:
      return p + "ffn.proj_2";
  }
}

// [out, in] of a targeted matrix; for the embeddings [V, D].
std::pair<int64_t, int64_t> BaseShape(const ModelConfig& c, int layer, LoraTarget t) {
  switch (t) {
    case LoraTarget::kEmbeddings:
      return {c.vocab_size, c.dim};
    case LoraTarget::kQkv:
      return {c.qkv_out(layer), c.dim};
    case LoraTarget::kOut:
      return {c.dim, static_cast<int64_t>(c.layers[layer].n_heads) * c.head_dim};
    case LoraTarget::kProj1:
      return {c.proj1_out(layer), c.dim};
    default:
      return {c.dim, c.layers[layer].ffn_dim};
  }
}

}  // namespace

std::vector<std::string> LoraSettings::target_names() const {
  std::vector<std::string> out;
  for (int k = 0; k < kLoraTargetCount; ++k)
    if (targets[static_cast<size_t>(k)])
      out.emplace_back(LoraTargetName(static_cast<LoraTarget>(k)));
  return out;
}

const char* LoraTargetName(LoraTarget t) {
  static const char* const kNames[kLoraTargetCount] = {"token_embeddings", "qkv_proj", "out_proj",
                                                       "proj_1", "proj_2"};
  return kNames[static_cast<int>(t)];
}

bool LoraSettings::enabled() const {
  for (bool b : targets)
    if (b) return true;
  return false;
}

float LoraSettings::scaling() const {
  return static_cast<float>(rslora ? alpha / std::sqrt(static_cast<double>(rank))
                                   : alpha / static_cast<double>(rank));
}

LoraLayout::LoraLayout(const ModelConfig& cfg, const LoraSettings& s) : n_layers_(cfg.n_layers) {
  index_.assign(static_cast<size_t>(n_layers_ + 1) * kLoraTargetCount * 2, -1);
  mag_index_.assign(static_cast<size_t>(n_layers_ + 1) * kLoraTargetCount, -1);
  const int64_t r = s.rank;
  auto add = [&](int layer, LoraTarget t) {
    if (!s.has(t)) return;
    const auto [out, in] = BaseShape(cfg, layer, t);
    const std::string m = std::string(kPrefix) + ModulePath(layer, t);
    const bool emb = t == LoraTarget::kEmbeddings;
    for (const bool a : {true, false}) {
      LoraTensor x;
      x.name = m + (emb ? (a ? ".lora_embedding_A" : ".lora_embedding_B")
                        : (a ? ".lora_A.weight" : ".lora_B.weight"));
      // Embedding: A [r, V], B [D, r] (out = D, in = V in the table's sense).
      x.shape = emb ? (a ? std::vector<int64_t>{r, out} : std::vector<int64_t>{in, r})
                    : (a ? std::vector<int64_t>{r, in} : std::vector<int64_t>{out, r});
      x.numel = static_cast<size_t>(x.shape[0] * x.shape[1]);
      x.offset = size_;
      x.layer = layer;
      x.target = t;
      x.is_a = a;
      size_ += x.numel;
      index_[(static_cast<size_t>(layer + 1) * kLoraTargetCount + static_cast<size_t>(t)) * 2 +
             (a ? 0 : 1)] = static_cast<int>(tensors_.size());
      tensors_.push_back(std::move(x));
    }
    if (s.dora && !emb) {
      LoraTensor x;
      x.name = m + ".lora_magnitude_vector";
      x.shape = {out};
      x.numel = static_cast<size_t>(out);
      x.offset = size_;
      x.layer = layer;
      x.target = t;
      x.is_a = false;
      x.is_magnitude = true;
      size_ += x.numel;
      mag_index_[static_cast<size_t>(layer + 1) * kLoraTargetCount + static_cast<size_t>(t)] =
          static_cast<int>(tensors_.size());
      tensors_.push_back(std::move(x));
    }
  };
  add(-1, LoraTarget::kEmbeddings);
  for (int l = 0; l < cfg.n_layers; ++l)
    for (LoraTarget t :
         {LoraTarget::kQkv, LoraTarget::kOut, LoraTarget::kProj1, LoraTarget::kProj2})
      add(l, t);
}

const LoraTensor* LoraLayout::Get(int layer, LoraTarget t, bool a) const {
  if (layer < -1 || layer >= n_layers_ || index_.empty()) return nullptr;
  const int k =
      index_[(static_cast<size_t>(layer + 1) * kLoraTargetCount + static_cast<size_t>(t)) * 2 +
             (a ? 0 : 1)];
  return k < 0 ? nullptr : &tensors_[static_cast<size_t>(k)];
}

const LoraTensor* LoraLayout::Magnitude(int layer, LoraTarget t) const {
  if (layer < -1 || layer >= n_layers_ || mag_index_.empty()) return nullptr;
  const int k =
      mag_index_[static_cast<size_t>(layer + 1) * kLoraTargetCount + static_cast<size_t>(t)];
  return k < 0 ? nullptr : &tensors_[static_cast<size_t>(k)];
}

bool LoraTargetOf(const std::string& n, int* layer, LoraTarget* target) {
  if (n == "transformer.token_embeddings.weight") {
    *layer = -1;
    *target = LoraTarget::kEmbeddings;
    return true;
  }
  const std::string p = "transformer.layers.";
  if (n.rfind(p, 0) != 0) return false;
  size_t i = p.size();
  int l = 0;
  bool digits = false;
  while (i < n.size() && n[i] >= '0' && n[i] <= '9') {
    l = l * 10 + (n[i++] - '0');
    digits = true;
  }
  if (!digits) return false;
  const std::string rest = n.substr(i);
  LoraTarget t;
  if (rest == ".attn.qkv_proj.weight")
    t = LoraTarget::kQkv;
  else if (rest == ".attn.out_proj.weight")
    t = LoraTarget::kOut;
  else if (rest == ".ffn.proj_1.weight")
    t = LoraTarget::kProj1;
  else if (rest == ".ffn.proj_2.weight")
    t = LoraTarget::kProj2;
  else
    return false;
  *layer = l;
  *target = t;
  return true;
}

LoraAdapter LoadLoraAdapter(const std::string& dir, const ModelConfig& cfg) {
  if (!fs::is_directory(dir))
    Fail(dir, ": no such LoRA adapter folder (expected adapter_config.json and ",
         "adapter_model.safetensors)");
  const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
  const std::string st_path = (fs::path(dir) / "adapter_model.safetensors").string();
  if (!fs::exists(cfg_path)) Fail(dir, ": no adapter_config.json in this folder");
  if (!fs::exists(st_path)) Fail(dir, ": no adapter_model.safetensors in this folder");
  json j;
  try {
    j = json::parse(ReadTextFile(cfg_path));
  } catch (const json::exception& e) {
    Fail(cfg_path, ": not valid JSON: ", e.what());
  }
  if (!j.is_object()) Fail(cfg_path, ": expected a JSON object");
  LoraAdapter ad;
  ad.origin = dir;
  LoraSettings& s = ad.settings;
  auto field = [&](const char* key, auto& v, bool required) {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) Fail(cfg_path, ": missing field '", key, "'");
      return;
    }
    try {
      j[key].get_to(v);
    } catch (const json::exception&) {
      Fail(cfg_path, ": field '", key, "' has the wrong type (", j[key].dump(), ")");
    }
  };
  std::string peft_type = "LORA";
  field("peft_type", peft_type, false);
  if (peft_type != "LORA") Fail(cfg_path, ": peft_type is '", peft_type, "'; elm reads LORA");
  field("r", s.rank, true);
  field("lora_alpha", s.alpha, true);
  field("lora_dropout", s.dropout, false);
  field("use_rslora", s.rslora, false);
  field("base_model_name_or_path", s.base_model, false);
  if (s.rank <= 0) Fail(cfg_path, ": field 'r' must be positive, got ", s.rank);
  field("use_dora", s.dora, false);
  bool flag = false;
  field("fan_in_fan_out", flag, false);
  if (flag) Fail(cfg_path, ": fan_in_fan_out is true; OpenELM's linears are [out, in]");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    if (j.contains(k) && !j[k].is_null() && !j[k].empty())
      Fail(cfg_path, ": '", k, "' is set; elm supports one rank and alpha for every module");

  // The targets are the modules the file holds tensors for; each must be complete.
  const TensorStore store(st_path);
  for (const auto& [name, view] : store.all()) {
    (void)view;
    if (name.rfind(kPrefix, 0) != 0)
      Fail(st_path, ": tensor '", name, "' is not a LoRA tensor of an OpenELM model (expected ",
           kPrefix, "transformer....lora_A.weight / lora_B.weight)");
    std::string module = name.substr(std::string(kPrefix).size());
    for (const char* suffix : {".lora_A.weight", ".lora_B.weight", ".lora_embedding_A",
                               ".lora_embedding_B", ".lora_magnitude_vector"}) {
      const std::string sx(suffix);
      if (module.size() > sx.size() &&
          module.compare(module.size() - sx.size(), sx.size(), sx) == 0) {
        module = module.substr(0, module.size() - sx.size());
        if (sx == ".lora_magnitude_vector" && !s.dora)
          Fail(st_path, ": tensor '", name, "' is a DoRA magnitude but ", cfg_path,
               " does not set use_dora");
        int layer = 0;
        LoraTarget t;
        if (!LoraTargetOf(module + ".weight", &layer, &t) || layer >= cfg.n_layers)
          Fail(st_path, ": tensor '", name, "' targets a module elm does not adapt or that this ",
               "model (", cfg.n_layers, " layers) does not have; LoRA targets are ",
               "token_embeddings, qkv_proj, out_proj, proj_1 and proj_2");
        s.targets[static_cast<int>(t)] = true;
        module.clear();
        break;
      }
    }
    if (!module.empty())
      Fail(st_path, ": tensor '", name, "' is not a LoRA A/B tensor or DoRA magnitude (bias and ",
           "modules_to_save are not supported)");
  }
  if (!s.enabled()) Fail(st_path, ": no LoRA tensors in this file");
  ad.layout = LoraLayout(cfg, s);
  ad.weights.assign(ad.layout.size(), 0.0f);
  for (const LoraTensor& t : ad.layout.tensors()) {
    const TensorView* v = store.Find(t.name);
    if (v == nullptr)
      Fail(st_path, ": missing tensor '", t.name, "' (the file adapts ", LoraTargetName(t.target),
           " in some layers; elm needs every layer's A and B", s.dora ? " and magnitude" : "", ")");
    if (!v->dtype)
      Fail(st_path, ": tensor '", t.name, "' has dtype ", v->dtype_name,
           "; elm reads F32, F16 and BF16");
    if (v->shape != t.shape)
      Fail(st_path, ": tensor '", t.name, "' has shape ", ShapeString(v->shape),
           " but r = ", s.rank, " and the model's config imply ", ShapeString(t.shape));
    ToF32(*v->dtype, v->data, ad.weights.data() + t.offset, t.numel);
  }
  return ad;
}

std::vector<TensorToWrite> LoraTensorsToWrite(const LoraLayout& layout, const float* slab,
                                              const std::string& prefix) {
  std::vector<TensorToWrite> out;
  for (const LoraTensor& t : layout.tensors())
    out.push_back({prefix + t.name, DType::kF32, t.shape, slab + t.offset});
  return out;
}

void SaveLoraAdapter(const std::string& dir, const LoraSettings& s, const LoraLayout& layout,
                     const float* weights) {
  fs::create_directories(dir);
  WriteSafetensors((fs::path(dir) / "adapter_model.safetensors").string(),
                   LoraTensorsToWrite(layout, weights), {{"format", "pt"}});
  json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["r"] = s.rank;
  j["lora_alpha"] = s.alpha;
  j["lora_dropout"] = s.dropout;
  j["use_rslora"] = s.rslora;
  j["use_dora"] = s.dora;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  j["target_modules"] = s.target_names();
  j["base_model_name_or_path"] = s.base_model;
  j["modules_to_save"] = nullptr;
  const std::string text = j.dump(2) + "\n";
  WriteFileAtomic((fs::path(dir) / "adapter_config.json").string(), text.data(), text.size());
}

bool MergeLora(const LoraAdapter& ad, const std::string& base_tensor, float* w, int64_t rows,
               int64_t cols) {
  int layer = 0;
  LoraTarget t;
  if (!LoraTargetOf(base_tensor, &layer, &t)) return false;
  const LoraTensor* ta = ad.layout.Get(layer, t, true);
  const LoraTensor* tb = ad.layout.Get(layer, t, false);
  if (ta == nullptr || tb == nullptr) return false;
  const float* A = ad.weights.data() + ta->offset;
  const float* B = ad.weights.data() + tb->offset;
  const int64_t r = ad.settings.rank;
  const double s = ad.settings.scaling();
  const bool emb = t == LoraTarget::kEmbeddings;
  // Linear: W[o, i] += s Σ_k B[o, k] A[k, i]   (A [r, in], B [out, r]).
  // Embedding: E[v, d] += s Σ_k A[k, v] B[d, k] (A [r, V], B [D, r]).
  ELM_CHECK(emb ? (ta->shape[1] == rows && tb->shape[0] == cols)
                : (tb->shape[0] == rows && ta->shape[1] == cols));
#pragma omp parallel for schedule(static) if (rows * cols >= (1 << 16))
  for (int64_t o = 0; o < rows; ++o) {
    float* row = w + o * cols;
    for (int64_t i = 0; i < cols; ++i) {
      double acc = 0;
      for (int64_t k = 0; k < r; ++k)
        acc += emb ? static_cast<double>(A[k * rows + o]) * B[i * r + k]
                   : static_cast<double>(B[o * r + k]) * A[k * cols + i];
      row[i] += static_cast<float>(s * acc);
    }
    if (const LoraTensor* tm = ad.layout.Magnitude(layer, t); tm != nullptr) {
      double n2 = 0;  // ‖W + s·B·A‖ of this row, then the row scaled to magnitude m
      for (int64_t i = 0; i < cols; ++i) n2 += static_cast<double>(row[i]) * row[i];
      const float scale =
          static_cast<float>(ad.weights[tm->offset + static_cast<size_t>(o)] / std::sqrt(n2));
      for (int64_t i = 0; i < cols; ++i) row[i] *= scale;
    }
  }
  return true;
}

}  // namespace elm
