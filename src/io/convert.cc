#include "io/convert.h"

#include "base/error.h"
#include "io/gguf_convert.h"
#include "io/mlx_folder.h"

namespace elm {

void ConvertModel(const ModelSource& source, const ConvertOptions& opt, bool verbose) {
  if (opt.output.empty()) Fail("convert: an output path is required");
  if (source.config_json.empty())
    Fail(source.origin, ": opened for loading only; conversions need it opened for conversion");
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
