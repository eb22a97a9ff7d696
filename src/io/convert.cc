#include "io/convert.h"

#include <cctype>
#include <filesystem>

#include "base/error.h"
#include "io/gguf_convert.h"
#include "io/hf_cache.h"
#include "io/mlx_folder.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

// The type most of the matrices will have in the output.
std::string OutputTypeName(const ModelSource& src, const ConvertOptions& opt) {
  if (opt.llama_preset) {
    std::string name = opt.llama_preset->name;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return name;
  }
  std::optional<DType> t = opt.type;
  if (!t && src.natural_type) t = src.natural_type;
  if (!t) {
    for (const auto& st : src.tensors)
      if (st.is_matrix()) {
        t = st.dtype;
        break;
      }
  }
  std::string name = DTypeName(t.value_or(DType::kF32));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace

std::string DefaultConvertOutput(const ModelSource& src, const ConvertOptions& opt) {
  fs::path in = fs::path(src.origin).lexically_normal();
  if (in.filename().empty()) in = in.parent_path();
  std::string base = HfRepoNameOf(src.origin);
  fs::path dir = base.empty() ? in.parent_path() : fs::path();  // hub snapshot: the current folder
  if (base.empty()) base = fs::is_directory(in) ? in.filename().string() : in.stem().string();
  std::string name;
  if (opt.to == "gguf") {
    name = base + "-" + OutputTypeName(src, opt) + ".gguf";
  } else if (opt.to == "mlx" && opt.mlx_quant) {
    name = base + "-mlx-" + std::to_string(opt.mlx_quant->bits) + "bit";
  } else {
    name = base + "-" + opt.to + "-" + OutputTypeName(src, opt);
  }
  const fs::path out = dir / name;
  std::error_code ec;
  if (fs::equivalent(out, in, ec))
    Fail(src.origin, ": the default output name is the input itself; pass --output");
  if (fs::exists(out, ec))
    Fail(out.string(), ": already exists (the default output name); pass --output, or remove it");
  return out.string();
}

void ConvertModel(const ModelSource& source, const ConvertOptions& opt, bool verbose) {
  if (opt.output.empty()) Fail("convert: an output path is required");
  if (source.config_json.empty())
    Fail(source.origin, ": opened for loading only; conversions need it opened for conversion");
  if (opt.mlx_quant && opt.to != "mlx")
    Fail("convert: MLX group quantization applies to --to mlx only");
  if ((opt.pure || !opt.imatrix.empty()) && !opt.llama_preset)
    Fail("convert: --pure and --imatrix apply to llama-quantize's types (", QuantPresetList(), ")");
  if (opt.llama_preset && opt.to != "gguf")
    Fail("convert: ", opt.llama_preset->name, " is a GGUF type; use --to gguf");
  if (opt.llama_preset && opt.type) Fail("convert: give one type");
  if (opt.to == "gguf") {
    std::optional<ImportanceMatrix> imatrix;
    if (!opt.imatrix.empty()) imatrix = ReadImportanceMatrix(opt.imatrix);
    std::optional<GgufQuantMix> mix;
    if (opt.llama_preset)
      mix = GgufQuantMix{*opt.llama_preset, opt.pure, imatrix ? &*imatrix : nullptr};
    WriteGgufModel(source, opt.output, opt.type, opt.name, opt.chat_template, verbose, opt.progress,
                   mix ? &*mix : nullptr);
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
  fo.chat_template = opt.chat_template;
  fo.progress = opt.progress;
  WriteModelFolder(source, opt.output, fo, verbose);
}

}  // namespace elm
