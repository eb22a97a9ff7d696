#include "io/gguf_convert.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/gguf_writer.h"
#include "io/mlx_folder.h"
#include "io/safetensors.h"
#include "io/tensor_names.h"

namespace elm {
namespace fs = std::filesystem;
namespace {

std::string ReadIfExists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) ? ReadTextFile(p.string()) : std::string();
}

// Converts rows [r0, r0 + n) of `t` into `dst` as type `to`.
void ConvertRows(const SourceTensor& t, int64_t r0, int64_t n, DType to, uint8_t* dst) {
  const int64_t cols = t.cols();
  const size_t src_row = DTypeBytes(t.dtype, static_cast<size_t>(cols));
  const size_t dst_row = DTypeBytes(to, static_cast<size_t>(cols));
  const auto* src = static_cast<const uint8_t*>(t.data) + static_cast<size_t>(r0) * src_row;
  if (to == t.dtype) {
    std::memcpy(dst, src, static_cast<size_t>(n) * src_row);
    return;
  }
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      ToF32(t.dtype, src + static_cast<size_t>(r) * src_row, row.data(), row.size());
      FromF32(to, row.data(), dst + static_cast<size_t>(r) * dst_row, row.size());
    }
  }
}

ModelSource OpenGguf(const std::string& path) {
  auto file = std::make_shared<GgufFile>(path);
  ModelSource s;
  s.origin = path;
  s.format = "gguf";
  s.keepalive.push_back(file);
  s.config = ConfigFromGguf(*file);
  if (const GgufValue* j = file->Find(kGgufHfConfigKey))
    s.config_json = j->str;
  else
    s.config_json = ConfigToHfJson(s.config).dump(2);
  for (const GgufTensorFor& t : MapGgufTensors(*file, s.config)) {
    SourceTensor st{t.spec, *t.parts[0].tensor->dtype, t.parts[0].tensor->data};
    if (t.parts.size() == 2) {
      // proj_1 = ffn_gate rows then ffn_up rows; both halves share the type (checked).
      auto buf = std::make_shared<std::vector<uint8_t>>();
      for (const auto& p : t.parts)
        buf->insert(buf->end(), p.tensor->data, p.tensor->data + p.tensor->nbytes);
      st.data = buf->data();
      s.keepalive.push_back(buf);
    }
    s.tensors.push_back(std::move(st));
  }
  s.vocab = VocabFromGguf(*file);
  if (s.vocab && !s.vocab->hf_json.empty()) s.tokenizer_json = s.vocab->hf_json;
  if (file->Find("general.file_type")) {
    s.gguf_file_type = static_cast<uint32_t>(file->GetInt("general.file_type"));
    const auto ft = DTypeOfGgufFileType(*s.gguf_file_type);
    s.natural_type = ft && DTypeBlock(*ft) == 1 ? *ft : DType::kF32;
  }
  return s;
}

ModelSource OpenFolder(const std::string& path) {
  ModelSource s;
  s.origin = path;
  s.format = "hf";
  const fs::path dir(path);
  const std::string cfg_path = (dir / "config.json").string();
  if (!fs::exists(cfg_path)) Fail(path, ": no config.json in this folder");
  s.config_json = ReadTextFile(cfg_path);
  s.config = LoadHfConfig(cfg_path);
  auto store = std::make_shared<TensorStore>(path);
  s.keepalive.push_back(store);
  std::shared_ptr<MlxDequantizedStore> mlx;
  if (const auto q = MlxQuantizationOfFile(cfg_path)) {
    s.format = "mlx";
    mlx = std::make_shared<MlxDequantizedStore>(*store, *q);
    s.keepalive.push_back(mlx);
  }
  for (const TensorSpec& spec : ExpectedTensors(s.config)) {
    const TensorView* v = mlx ? mlx->Find(spec.name) : nullptr;
    if (v == nullptr) v = &store->Get(spec.name);
    if (!v->dtype || DTypeBlock(*v->dtype) != 1)
      Fail(path, ": tensor '", spec.name, "' has dtype ", v->dtype_name,
           "; elm converts F32, F16 and BF16 (and MLX-quantized) tensors");
    if (v->shape != spec.shape)
      Fail(path, ": tensor '", spec.name, "' has shape ", ShapeString(v->shape),
           " but config.json implies ", ShapeString(spec.shape));
    s.tensors.push_back({spec, *v->dtype, v->data});
    if (mlx) {
      // Conversions default to the float type the quantized model was made from.
      const std::string base = spec.name.substr(0, spec.name.rfind(".weight"));
      const TensorView* scales = store->Find(base + ".scales");
      if (scales != nullptr && scales->dtype) s.natural_type = *scales->dtype;
    }
  }
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

std::string DefaultName(const std::string& origin) {
  fs::path p = fs::path(origin);
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

}  // namespace

int64_t SourceTensor::cols() const {
  if (spec.shape.size() < 2) return spec.shape.empty() ? 1 : spec.shape[0];
  int64_t c = 1;
  for (size_t i = 1; i < spec.shape.size(); ++i) c *= spec.shape[i];
  return c;
}

size_t SourceTensor::nbytes() const {
  const int64_t r = is_matrix() ? rows() : 1;
  return DTypeBytes(dtype, static_cast<size_t>(r * cols()));
}

std::optional<DType> ModelSource::matrix_type() const {
  std::optional<DType> t;
  for (const auto& st : tensors) {
    if (!st.is_matrix()) continue;
    if (t && *t != st.dtype) return std::nullopt;
    t = st.dtype;
  }
  return t;
}

ModelSource OpenModelSource(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) Fail(path, ": no such model folder or file");
  if (fs::is_directory(path, ec)) return OpenFolder(path);
  if (IsGgufFile(path)) return OpenGguf(path);
  Fail(path, ": expected a model folder (config.json + model.safetensors) or a GGUF file");
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

void WriteGgufModel(const ModelSource& src, const std::string& path, std::optional<DType> type,
                    const std::string& name, bool verbose) {
  const ModelConfig& c = src.config;
  // llama.cpp's converter writes tensors in the order of the sorted HF names.
  std::vector<const SourceTensor*> order;
  for (const auto& t : src.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->spec.name < b->spec.name; });

  std::map<std::string, DType> out_type;
  int64_t n_params = 0;
  std::map<DType, int64_t> matrix_elems;
  for (const auto* t : order) {
    n_params += t->spec.shape.size() < 2 ? t->cols() : t->rows() * t->cols();
    DType to = DType::kF32;  // vectors (norms) are F32, as llama.cpp writes them
    if (t->is_matrix()) {
      to = type.value_or(src.format == "mlx" && src.natural_type ? *src.natural_type : t->dtype);
      if (t->cols() % static_cast<int64_t>(DTypeBlock(to)) != 0) {
        std::fprintf(stderr, "warning: %s: %lld columns do not fill %s blocks; writing F16\n",
                     t->spec.name.c_str(), static_cast<long long>(t->cols()), DTypeName(to));
        to = DType::kF16;
      }
      matrix_elems[to] += t->rows() * t->cols();
    }
    out_type[t->spec.name] = to;
  }
  uint32_t file_type = kFileAllF32;
  if (type) {
    file_type = GgufFileTypeFor(*type);
  } else if (src.gguf_file_type) {
    file_type = *src.gguf_file_type;
  } else if (!matrix_elems.empty()) {
    const auto most =
        std::max_element(matrix_elems.begin(), matrix_elems.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    file_type = GgufFileTypeFor(most->first);
  }

  GgufWriter w;
  AddOpenElmMetadata(w, c, name.empty() ? DefaultName(src.origin) : name, n_params, file_type);
  if (src.vocab) {
    AddVocabToGguf(w, *src.vocab);
  } else {
    std::fprintf(stderr,
                 "warning: %s: no tokenizer matches the model's %d-token vocabulary; the GGUF "
                 "carries none (llama.cpp needs one to load it)\n",
                 src.origin.c_str(), c.vocab_size);
  }
  w.Set("general.quantization_version", GgufValue::U32(2));
  w.Set(kGgufHfConfigKey, GgufValue::String(src.config_json));

  for (const auto* t : order) {
    const DType to = out_type[t->spec.name];
    for (const GgufNamePart& np : HfToGguf(t->spec.name, c.ffn_with_glu)) {
      std::vector<int64_t> ne(t->spec.shape.rbegin(), t->spec.shape.rend());
      int64_t r0 = 0, n = t->is_matrix() ? t->rows() : 1;
      if (np.part != RowPart::kAll) {
        n /= 2;
        ne.back() = n;
        if (np.part == RowPart::kSecondHalf) r0 = n;
      }
      w.AddTensor(np.gguf, std::move(ne), GgmlTypeOf(to),
                  [t, r0, n, to](uint8_t* dst) { ConvertRows(*t, r0, n, to, dst); });
    }
  }
  w.Write(path);
  if (verbose) std::fprintf(stderr, "wrote %s\n", path.c_str());
}

void ConvertModel(const ModelSource& source, const ConvertOptions& opt, bool verbose) {
  if (opt.output.empty()) Fail("convert: an output path is required");
  if (opt.mlx_quant && opt.to != "mlx")
    Fail("convert: MLX group quantization applies to --to mlx only");
  if (opt.to == "gguf") {
    WriteGgufModel(source, opt.output, opt.type, opt.name, verbose);
    return;
  }
  if (opt.to != "mlx" && opt.to != "hf")
    Fail("convert: unknown target '", opt.to, "' (expected gguf, mlx or hf)");
  if (opt.type && DTypeBlock(*opt.type) != 1)
    Fail("convert: --to ", opt.to, " stores F32, F16 or BF16",
         opt.to == "mlx" ? " (use --q-bits for MLX quantization)" : "");
  FolderOptions fo;
  fo.mlx = opt.to == "mlx";
  fo.type = opt.type ? opt.type : source.natural_type;
  fo.quant = opt.mlx_quant;
  WriteModelFolder(source, opt.output, fo, verbose);
}

}  // namespace elm
