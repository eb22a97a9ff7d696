#include "io/gguf_convert.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

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

}  // namespace

void WriteGgufModel(const ModelSource& src, const std::string& path, std::optional<DType> type,
                    const std::string& name, const std::string& chat_template, bool verbose,
                    const WriteProgressFn& progress) {
  const ModelConfig& c = src.config;
  // llama.cpp's converter writes tensors in the order of the sorted HF names.
  std::vector<const SourceTensor*> order;
  for (const auto& t : src.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const auto* a, const auto* b) { return a->spec.name < b->spec.name; });
  auto index_of = [&](const SourceTensor* t) {
    return static_cast<size_t>(t - src.tensors.data());
  };

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

  for (const auto* t : order) {
    const DType to = out_type[t->spec.name];
    const size_t i = index_of(t);
    for (const GgufNamePart& np : HfToGguf(t->spec.name, c.ffn_with_glu)) {
      std::vector<int64_t> ne(t->spec.shape.rbegin(), t->spec.shape.rend());
      int64_t r0 = 0, n = t->is_matrix() ? t->rows() : 1;
      if (np.part != RowPart::kAll) {
        n /= 2;
        ne.back() = n;
        if (np.part == RowPart::kSecondHalf) r0 = n;
      }
      w.AddTensor(np.gguf, std::move(ne), GgmlTypeOf(to), [&src, i, r0, n, to](uint8_t* dst) {
        ConvertRows(src.Fetch(i), r0, n, to, dst);
      });
    }
  }
  w.Write(path, progress);
  if (verbose) std::fprintf(stderr, "wrote %s\n", path.c_str());
}

}  // namespace elm
