// llama.cpp's importance matrix (llama-imatrix's output, read by llama-quantize --imatrix): per
// weight matrix, the mean square of each input column over a calibration text. The quantizers
// weigh each column's error by it (base/kquant_write.h). Both of llama.cpp's file formats:
//   legacy .dat:  i32 n_entries, then per entry { i32 len; name[len]; i32 ncall; i32 nval;
//                 f32 values[nval] } (values are sums over ncall calls: divided by ncall), then
//                 optionally i32 chunks; i32 len; dataset[len]
//   GGUF:         tensors "<name>.in_sum2" [ne0, n_mat] and "<name>.counts" [n_mat]; the value is
//                 in_sum2 / count (1 where the count is 0), with imatrix.chunk_count and
//                 imatrix.datasets keys.
// docs/formats.md, "Importance matrices".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace elm {

struct ImportanceMatrix {
  std::string file;                                   // as given
  std::map<std::string, std::vector<float>> entries;  // GGUF tensor name -> per-column weights
  std::vector<std::string> datasets;                  // the calibration text(s), when recorded
  int chunks = 0;                                     // calibration chunks, 0 when unknown

  // The weights of `name`, or null when the file has none for it.
  const std::vector<float>* Find(const std::string& name) const;
};

// Reads either format (GGUF when the file starts with the GGUF magic). Throws elm::Error naming
// the file and the entry on malformed, truncated or non-finite data.
ImportanceMatrix ReadImportanceMatrix(const std::string& path);

}  // namespace elm
