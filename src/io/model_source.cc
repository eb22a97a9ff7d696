#include "io/model_source.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "base/error.h"
#include "base/kquant.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/hf_cache.h"
#include "io/mlx_quant.h"
#include "io/pytorch_checkpoint.h"
#include "io/safetensors.h"

namespace elm {
namespace fs = std::filesystem;
namespace {

std::string ReadIfExists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) ? ReadTextFile(p.string()) : std::string();
}

std::string LayerNote(const TensorSpec& spec) {
  return spec.layer >= 0 ? " (layer " + std::to_string(spec.layer) + ")" : std::string();
}

}  // namespace

int64_t SourceTensor::cols() const {
  if (spec.shape.size() < 2) return spec.shape.empty() ? 1 : spec.shape[0];
  int64_t c = 1;
  for (size_t i = 1; i < spec.shape.size(); ++i) c *= spec.shape[i];
  return c;
}

const uint8_t* SourceTensor::row(int64_t r) const {
  const int64_t per_part = (is_matrix() ? rows() : 1) / static_cast<int64_t>(parts.size());
  const auto* base = static_cast<const uint8_t*>(parts.at(static_cast<size_t>(r / per_part)));
  return base + static_cast<size_t>(r % per_part) * row_bytes();
}

SourceTensor ModelSource::Fetch(size_t i) const {
  SourceTensor t = tensors.at(i);
  // GGUF blocks: an inf or NaN scale would poison every product it enters; refuse it here.
  for (const GgufTensorInfo* g : backing_.at(i).gguf) {
    if (!g->dtype || DTypeBlock(*g->dtype) == 1) continue;
    const size_t blocks = g->nbytes / DTypeSize(*g->dtype);
    const int64_t b = FirstNonFiniteScale(*g->dtype, g->data, blocks);
    if (b >= 0) {
      const int64_t per_row = g->ne[0] / static_cast<int64_t>(DTypeBlock(*g->dtype));
      Fail(origin, ": tensor '", g->name, "' (", g->type_name(), "): block ", b, " of row ",
           b / per_row, " has an infinite or NaN scale");
    }
  }
  if (!t.parts.empty()) return t;
  // An MLX-quantized matrix: dequantized now, its shape checked like a stored tensor's.
  const TensorView* v = mlx_ ? mlx_->Find(t.spec.name) : nullptr;
  ELM_CHECK(v != nullptr);
  CheckWidenable(*v, origin, t.spec.name, t.spec.shape, LayerNote(t.spec));
  t.parts = {v->data};
  return t;
}

void ModelSource::Release(size_t i) const {
  const Backing& b = backing_.at(i);
  if (b.view != nullptr && store_) store_->Evict(*b.view);
  if (b.view != nullptr && pt_) pt_->Evict(*b.view);
  if (mlx_) mlx_->Release(tensors.at(i).spec.name);
  for (const GgufTensorInfo* g : b.gguf) gguf_->Evict(*g);
}

ModelSource ModelSource::OpenGguf(const std::string& path, const SourceOptions& opt) {
  auto file = std::make_shared<GgufFile>(path);
  ModelSource s;
  s.origin = path;
  s.format = "gguf";
  s.gguf_ = file;
  s.config = opt.for_conversion ? HfConfigFromGguf(*file) : ConfigFromGguf(*file);
  if (const GgufValue* j = file->Find(kGgufHfConfigKey))
    s.config_json = j->str;
  else if (opt.for_conversion)
    s.config_json = ConfigToHfJson(s.config).dump(2);
  for (const GgufTensorFor& t : MapGgufTensors(*file, s.config)) {
    SourceTensor st{t.spec, *t.parts[0].tensor->dtype, {}};
    Backing b;
    // proj_1 with GLU: ffn_gate's rows then ffn_up's; both halves share the type (checked).
    for (const auto& p : t.parts) {
      st.parts.push_back(p.tensor->data);
      b.gguf.push_back(p.tensor);
    }
    s.tensors.push_back(std::move(st));
    s.backing_.push_back(std::move(b));
  }
  if (const GgufValue* n = file->Find("general.name"); n && n->type == GgufType::kString)
    s.gguf_name = n->str;
  if (file->Find("general.file_type")) {
    s.gguf_file_type = static_cast<uint32_t>(file->GetInt("general.file_type"));
    const auto ft = DTypeOfGgufFileType(*s.gguf_file_type);
    s.natural_type = ft && DTypeBlock(*ft) == 1 ? *ft : DType::kF32;
  }
  if (opt.for_conversion) {
    s.vocab = VocabFromGguf(*file);
    if (s.vocab && !s.vocab->hf_json.empty()) s.tokenizer_json = s.vocab->hf_json;
  } else {
    file->DropMetadata();  // the tensors are all a model needs from here on
  }
  return s;
}

ModelSource ModelSource::OpenPyTorch(const std::string& path, const SourceOptions& opt) {
  if (!opt.config)
    Fail(path,
         ": a PyTorch checkpoint carries no model config; give one (elm convert --config "
         "CONFIG: a CoreNet YAML naming a preset or spelling out the shape, or an HF config.json)");
  auto ckpt = std::make_shared<PyTorchCheckpoint>(path);
  ModelSource s;
  s.origin = path;
  s.format = "pytorch";
  s.pt_ = ckpt;
  s.config = *opt.config;
  s.config_json = opt.config_json.empty() ? ConfigToHfJson(s.config).dump(2) : opt.config_json;
  const CoreNetStateDict sd = FindCoreNetStateDict(*ckpt, opt.pt_weights);
  std::map<std::string, const PyValue*> by_name;
  for (const auto& [name, v] : sd.tensors)
    if (!by_name.emplace(HfNameOfCoreNet(name), v).second)
      Fail(path, ": ", sd.where, " holds '", name, "' twice (with and without 'module.')");
  const std::vector<TensorSpec> specs = ExpectedTensors(s.config);
  s.pt_views_ = std::make_shared<std::vector<TensorView>>();
  s.pt_views_->reserve(specs.size());  // backing_ points into it: no reallocation
  std::set<std::string> expected;
  for (const TensorSpec& spec : specs) {
    expected.insert(spec.name);
    auto it = by_name.find(spec.name);
    if (it == by_name.end())
      Fail(path, ": ", sd.where, " has no tensor '", CoreNetNameOfHf(spec.name), "' (HF '",
           spec.name, "'", LayerNote(spec), ") that the config implies");
    TensorView v = ckpt->View(*it->second, spec.name);
    // CoreNet trains with 32128 embedding rows (docs/openelm.md §6.2); a config with fewer (HF's
    // 32000) takes the first rows, as Apple's HF checkpoints do.
    const bool embedding =
        spec.name == "transformer.token_embeddings.weight" || spec.name == "lm_head.weight";
    if (embedding && v.shape.size() == 2 && spec.shape.size() == 2 && v.shape[0] > spec.shape[0] &&
        v.shape[1] == spec.shape[1]) {
      std::fprintf(stderr, "note: %s: using the first %lld of the %lld rows of '%s'\n",
                   path.c_str(), static_cast<long long>(spec.shape[0]),
                   static_cast<long long>(v.shape[0]), CoreNetNameOfHf(spec.name).c_str());
      v.nbytes = v.nbytes / static_cast<size_t>(v.shape[0]) * static_cast<size_t>(spec.shape[0]);
      v.shape[0] = spec.shape[0];
    }
    s.pt_views_->push_back(std::move(v));
    const TensorView& kept = s.pt_views_->back();
    CheckWidenable(kept, path, CoreNetNameOfHf(spec.name), spec.shape, LayerNote(spec));
    s.tensors.push_back({spec, *kept.dtype, {kept.data}});
    s.backing_.push_back({&kept, {}});
  }
  for (const auto& [name, v] : by_name) {
    if (expected.count(name)) continue;
    if (name == "lm_head.weight" && s.config.tied_embeddings) continue;
    std::fprintf(stderr, "warning: %s: ignoring unexpected tensor '%s'\n", path.c_str(),
                 CoreNetNameOfHf(name).c_str());
  }
  if (opt.for_conversion) {
    const Tokenizer tok = Tokenizer::Default();
    if (tok.vocab_size() == s.config.vocab_size) s.vocab = VocabFromTokenizer(tok);
  }
  return s;
}

ModelSource ModelSource::OpenFolder(const std::string& path, const SourceOptions& opt) {
  ModelSource s;
  s.origin = path;
  s.format = "hf";
  const fs::path dir(path);
  const std::string cfg_path = (dir / "config.json").string();
  if (!fs::exists(cfg_path)) Fail(path, ": no config.json in this folder");
  s.config_json = ReadTextFile(cfg_path);
  s.config = LoadHfConfig(cfg_path);
  s.store_ = std::make_shared<TensorStore>(path);
  const TensorStore& store = *s.store_;
  // MLX-quantized folders (mlx-lm's layout): matrices are dequantized to F32 when fetched.
  if (const auto q = MlxQuantizationOfFile(cfg_path)) {
    s.format = "mlx";
    s.mlx_ = std::make_shared<MlxDequantizedStore>(store, *q);
  }
  std::set<std::string> expected;
  for (const TensorSpec& spec : ExpectedTensors(s.config)) {
    expected.insert(spec.name);
    const TensorView& v = store.Get(spec.name);
    if (s.mlx_ && v.dtype_name == "U32") {
      // Conversions default to the float type the quantized model was made from.
      const std::string base = spec.name.substr(0, spec.name.rfind(".weight"));
      const TensorView* scales = store.Find(base + ".scales");
      if (scales != nullptr && scales->dtype) s.natural_type = *scales->dtype;
      s.tensors.push_back({spec, DType::kF32, {}});
      s.backing_.push_back({});
      continue;
    }
    CheckWidenable(v, store.origin(), spec.name, spec.shape, LayerNote(spec));
    s.tensors.push_back({spec, *v.dtype, {v.data}});
    s.backing_.push_back({&v, {}});
  }
  // transformer.classifier.weight exists in some checkpoints and is never used by Apple's code.
  for (const auto& [name, view] : store.all()) {
    if (expected.count(name) || name == "transformer.classifier.weight") continue;
    if (s.mlx_ && MlxDequantizedStore::IsCompanion(name)) continue;
    if (name == "lm_head.weight" && s.config.tied_embeddings) continue;  // tied: the embedding
    std::fprintf(stderr, "warning: %s: ignoring unexpected tensor '%s'\n", path.c_str(),
                 name.c_str());
  }
  if (!opt.for_conversion) return s;
  s.tokenizer_json = ReadIfExists(dir / "tokenizer.json");
  s.tokenizer_config_json = ReadIfExists(dir / "tokenizer_config.json");
  s.special_tokens_map_json = ReadIfExists(dir / "special_tokens_map.json");
  const Tokenizer tok =
      s.tokenizer_json.empty()
          ? Tokenizer::Default()
          : Tokenizer::FromJson(s.tokenizer_json, (dir / "tokenizer.json").string(),
                                s.tokenizer_config_json);
  if (tok.vocab_size() == s.config.vocab_size) {
    s.vocab = VocabFromTokenizer(tok);
    // A tokenizer other than the built-in one travels whole, so GGUF -> HF restores it exactly.
    s.vocab->hf_json = s.tokenizer_json;
  }
  return s;
}

ModelSource OpenModelSource(const std::string& name, const SourceOptions& opt) {
  std::error_code ec;
  const std::string path = ResolveModelPath(name);  // a path, or a hub id in the local cache
  if (fs::is_directory(path, ec)) return ModelSource::OpenFolder(path, opt);
  if (fs::path(path).extension() == ".gguf" || IsGgufFile(path))
    return ModelSource::OpenGguf(path, opt);
  if (IsPyTorchFile(path)) return ModelSource::OpenPyTorch(path, opt);
  Fail(path,
       ": expected a model folder (config.json + model.safetensors), a GGUF file or a PyTorch "
       ".pt checkpoint");
}

void ConvertRows(const SourceTensor& t, int64_t r0, int64_t n, DType to, uint8_t* dst) {
  const size_t src_row = t.row_bytes();
  const size_t dst_row = DTypeBytes(to, static_cast<size_t>(t.cols()));
  if (to == t.dtype) {  // whole stretches of rows within each part
    const int64_t per_part = (t.is_matrix() ? t.rows() : 1) / static_cast<int64_t>(t.parts.size());
    for (int64_t r = 0; r < n;) {
      const int64_t k = std::min(n - r, per_part - (r0 + r) % per_part);
      std::memcpy(dst + static_cast<size_t>(r) * dst_row, t.row(r0 + r),
                  static_cast<size_t>(k) * src_row);
      r += k;
    }
    return;
  }
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(t.cols()));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      ToF32(t.dtype, t.row(r0 + r), row.data(), row.size());
      FromF32(to, row.data(), dst + static_cast<size_t>(r) * dst_row, row.size());
    }
  }
}

std::vector<uint8_t> ConvertTensor(const SourceTensor& t, DType to) {
  const int64_t rows = t.is_matrix() ? t.rows() : 1;
  if (t.cols() % static_cast<int64_t>(DTypeBlock(to)) != 0)
    Fail("cannot convert tensor '", t.spec.name, "' to ", DTypeName(to), ": its ", t.cols(),
         " columns are not a multiple of ", DTypeBlock(to));
  std::vector<uint8_t> out(DTypeBytes(to, static_cast<size_t>(rows * t.cols())));
  ConvertRows(t, 0, rows, to, out.data());
  return out;
}

}  // namespace elm
