// GGUF v3 writer: metadata in insertion order, then tensor records, then the aligned data
// section. Tensor bytes are produced one tensor at a time at write time (a 3B model never needs
// to sit in memory twice), and the file appears atomically: it is written to a temp file beside
// `path`, synced and renamed, so a failure leaves nothing at `path`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/write_progress.h"

namespace elm {

class GgufWriter {
 public:
  // Fills `dst` (exactly the tensor's byte size) with the tensor's data.
  using FillFn = std::function<void(uint8_t* dst)>;

  explicit GgufWriter(uint32_t alignment = 32);

  // Adds a metadata entry (keys must be unique; general.alignment is written from the
  // constructor argument when it differs from the default).
  void Set(const std::string& key, GgufValue value);
  // Removes a metadata entry when present (llama-quantize moves the keys it sets to the end:
  // Remove, then Set).
  void Remove(const std::string& key);
  // Adds a tensor. `ne` is in GGML order (ne[0] innermost = PyTorch's last dimension).
  void AddTensor(const std::string& name, std::vector<int64_t> ne, uint32_t ggml_type, FillFn fill);
  // Convenience: a tensor whose bytes already exist (copied at write time).
  void AddTensor(const std::string& name, std::vector<int64_t> ne, uint32_t ggml_type,
                 const void* data);

  // `progress` (optional) is called after each tensor with the data bytes written.
  void Write(const std::string& path, const WriteProgressFn& progress = {}) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t ggml_type;
    size_t nbytes;
    FillFn fill;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

// Byte size of a tensor of GGML type `ggml_type` with dims `ne` (ne[0] a multiple of the block).
size_t GgmlTensorBytes(uint32_t ggml_type, const std::vector<int64_t>& ne);

}  // namespace elm
