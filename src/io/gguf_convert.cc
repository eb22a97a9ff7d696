#include "io/gguf_convert.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "base/kquant_write.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/gguf_writer.h"
#include "io/hf_cache.h"
#include "io/tensor_names.h"

namespace elm {
namespace fs = std::filesystem;
namespace {

std::string DefaultName(const std::string& origin) {
  if (std::string repo = HfRepoNameOf(origin); !repo.empty()) return repo;
  fs::path p = fs::path(origin);
  if (p.filename().empty()) p = p.parent_path();
  return p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
}

// The rows [r0, r0 + n) of `t`, widened to f32 and quantized as llama-quantize does (one row at a
// time: the quantizers are row-wise; `importance` has one weight per column or is null).
void QuantizeSourceRows(const SourceTensor& t, int64_t r0, int64_t n, DType to,
                        const float* importance, uint8_t* dst) {
  const size_t dst_row = DTypeBytes(to, static_cast<size_t>(t.cols()));
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(t.cols()));
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < n; ++r) {
      ToF32(t.dtype, t.row(r0 + r), row.data(), row.size());
      uint8_t* out = dst + static_cast<size_t>(r) * dst_row;
      if (DTypeBlock(to) == 1) {
        FromF32(to, row.data(), out, row.size());
      } else {
        QuantizeRowsLikeGgml(to, row.data(), out, 1, t.cols(), importance);
      }
    }
  }
}

// The importance weights of GGUF tensor `name` (ne0 columns), as llama-quantize looks them up:
// none when the file has no entry; an entry of another size is an error (a warning for
// token_embd, which llama.cpp's imatrix never covers).
const float* ImportanceFor(const GgufQuantMix& mix, const std::string& name, int64_t ne0) {
  if (!mix.imatrix) return nullptr;
  const std::vector<float>* v = mix.imatrix->Find(name);
  if (!v) {
    std::fprintf(stderr, "%s: no importance matrix entry for %s\n", mix.imatrix->file.c_str(),
                 name.c_str());
    return nullptr;
  }
  if (static_cast<int64_t>(v->size()) != ne0) {
    if (name == "token_embd.weight") {
      std::fprintf(stderr, "%s: importance matrix entry %s has %zu values, not %lld; ignored\n",
                   mix.imatrix->file.c_str(), name.c_str(), v->size(), static_cast<long long>(ne0));
      return nullptr;
    }
    Fail(mix.imatrix->file, ": importance matrix entry '", name, "' has ", v->size(),
         " values; the tensor has ", ne0, " columns");
  }
  return v->data();
}

}  // namespace

void WriteGgufModel(const ModelSource& src, const std::string& path, std::optional<DType> type,
                    const std::string& name, const std::string& chat_template, bool verbose,
                    const WriteProgressFn& progress, const GgufQuantMix* mix) {
  const ModelConfig& c = src.config;
  ELM_CHECK(!(mix && type));
  // llama.cpp's converter writes tensors in the order of the sorted HF names.
  std::vector<const SourceTensor*> order;
  for (const auto& t : src.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->spec.name < b->spec.name; });
  auto index_of = [&](const SourceTensor* t) {
    return static_cast<size_t>(t - src.tensors.data());
  };

  // One entry per GGUF tensor (HF's proj_1 is two: ffn_gate and ffn_up).
  struct Out {
    std::string name;
    std::vector<int64_t> ne;
    size_t source;
    int64_t r0, n;
    DType to;
  };
  std::vector<Out> outs;
  int64_t n_params = 0;
  std::map<DType, int64_t> matrix_elems;
  QuantMixModel mix_model;
  mix_model.n_layer = c.n_layers;
  mix_model.tied_embeddings = c.tied_embeddings;
  if (!c.layers.empty() && c.layers[0].n_kv_heads > 0)
    mix_model.n_gqa = c.layers[0].n_heads / c.layers[0].n_kv_heads;
  QuantMixOptions mix_opt;
  if (mix) {
    mix_opt.pure = mix->pure;
    mix_opt.has_imatrix = mix->imatrix != nullptr;
  }
  bool requantize = false;
  for (const auto* t : order) {
    n_params += t->spec.shape.size() < 2 ? t->cols() : t->rows() * t->cols();
    DType to = DType::kF32;  // vectors (norms) are F32, as llama.cpp writes them
    if (t->is_matrix() && !mix) {
      to = type.value_or(src.format == "mlx" && src.natural_type ? *src.natural_type : t->dtype);
      if (t->cols() % static_cast<int64_t>(DTypeBlock(to)) != 0) {
        std::fprintf(stderr, "warning: %s: %lld columns do not fill %s blocks; writing F16\n",
                     t->spec.name.c_str(), static_cast<long long>(t->cols()), DTypeName(to));
        to = DType::kF16;
      }
      matrix_elems[to] += t->rows() * t->cols();
    }
    if (mix && t->is_matrix() && DTypeBlock(t->dtype) > 1) requantize = true;
    for (const GgufNamePart& np : HfToGguf(t->spec.name, c.ffn_with_glu)) {
      std::vector<int64_t> ne(t->spec.shape.rbegin(), t->spec.shape.rend());
      int64_t r0 = 0, n = t->is_matrix() ? t->rows() : 1;
      if (np.part != RowPart::kAll) {
        n /= 2;
        ne.back() = n;
        if (np.part == RowPart::kSecondHalf) r0 = n;
      }
      DType out = to;
      if (mix && t->is_matrix()) {
        bool fell_back = false;
        out = QuantMixType(mix->preset, np.gguf, t->cols(), mix_model, mix_opt, &fell_back);
        if (fell_back)
          std::fprintf(stderr, "warning: %s: %lld columns do not fill K-quant blocks; writing %s\n",
                       np.gguf.c_str(), static_cast<long long>(t->cols()), DTypeName(out));
      }
      outs.push_back({np.gguf, std::move(ne), index_of(t), r0, n, out});
    }
  }
  if (requantize)
    std::fprintf(stderr,
                 "warning: %s: requantizing already quantized weights (as llama-quantize "
                 "--allow-requantize); quality is lower than quantizing the original weights\n",
                 src.origin.c_str());
  uint32_t file_type = kFileAllF32;
  if (mix) {
    file_type = mix->preset.file_type;
  } else if (type) {
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
  // llama-quantize keeps a GGUF source's general.name.
  std::string gname = name;
  if (gname.empty())
    gname = mix && !src.gguf_name.empty() ? src.gguf_name : DefaultName(src.origin);
  AddOpenElmMetadata(w, c, gname, n_params, file_type);
  if (src.vocab) {
    GgufVocab vocab = *src.vocab;
    if (vocab.chat_template.empty()) vocab.chat_template = chat_template;
    AddVocabToGguf(w, vocab);
  } else {
    std::fprintf(stderr,
                 "warning: %s: no tokenizer matches the model's %d-token vocabulary; the GGUF "
                 "carries none (llama.cpp needs one to load it)\n",
                 src.origin.c_str(), c.vocab_size);
  }
  w.Set("general.quantization_version", GgufValue::U32(2));
  w.Set(kGgufHfConfigKey, GgufValue::String(src.config_json));
  if (mix) {
    // llama-quantize copies the source's keys, then sets these two (moving them to the end).
    w.Remove("general.quantization_version");
    w.Remove("general.file_type");
    w.Set("general.quantization_version", GgufValue::U32(2));
    w.Set("general.file_type", GgufValue::U32(file_type));
    if (const ImportanceMatrix* im = mix->imatrix) {
      w.Set("quantize.imatrix.file", GgufValue::String(im->file.substr(0, 127)));
      if (!im->datasets.empty())
        w.Set("quantize.imatrix.dataset", GgufValue::String(im->datasets[0].substr(0, 127)));
      w.Set("quantize.imatrix.entries_count",
            GgufValue::U32(static_cast<uint32_t>(im->entries.size())));
      if (im->chunks > 0)
        w.Set("quantize.imatrix.chunks_count", GgufValue::U32(static_cast<uint32_t>(im->chunks)));
    }
    std::stable_sort(outs.begin(), outs.end(),
                     [](const Out& a, const Out& b) { return LlamaQuantizeOrder(a.name, b.name); });
  }

  for (const Out& o : outs) {
    const size_t i = o.source;
    const int64_t r0 = o.r0, n = o.n;
    const DType to = o.to;
    const float* importance = nullptr;
    if (mix && DTypeBlock(to) > 1) {
      importance = ImportanceFor(*mix, o.name, o.ne[0]);
      // Q2_K_S's Q2_K tensors need importance weights (llama-quantize refuses without them).
      if (!importance && mix->preset.file_type == 21 && to == DType::kQ2_K &&
          o.name != "token_embd.weight" && o.name != "output.weight")
        Fail(src.origin, ": ", o.name, ": ", mix->preset.name,
             " needs an importance matrix (--imatrix) with an entry for this tensor");
    }
    const bool mixed = mix != nullptr;
    w.AddTensor(o.name, o.ne, GgmlTypeOf(to),
                [&src, i, r0, n, to, importance, mixed](uint8_t* dst) {
                  const SourceTensor& t = src.Fetch(i);
                  if (mixed && !(t.dtype == DType::kF32 && to == DType::kF32)) {
                    QuantizeSourceRows(t, r0, n, to, importance, dst);
                  } else {
                    ConvertRows(t, r0, n, to, dst);
                  }
                });
  }
  w.Write(path, progress);
  if (verbose) std::fprintf(stderr, "wrote %s\n", path.c_str());
}

}  // namespace elm
