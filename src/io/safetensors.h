// safetensors: reader (mmap, strict header validation) and atomic writer.
// Format: u64 little-endian header length N, N bytes of JSON header, then the data section.
// Header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//          "__metadata__": {"k": "v"}} with offsets relative to the data section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/mmap_file.h"

namespace elm {

// "[2, 3]": a shape as error messages print it.
std::string ShapeString(const std::vector<int64_t>& shape);

// A read-only view of one stored tensor. `data` points into an mmapped file (or an owned buffer
// kept alive by whoever produced the view).
struct TensorView {
  std::string name;
  std::string dtype_name;      // as stored ("F32", "BF16", "I64", ...)
  std::optional<DType> dtype;  // set when elm can compute with it
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  int64_t dim(size_t i) const { return shape.at(i); }
};

// `v` itself when it is F32, F16 or BF16 with shape `shape`; otherwise throws naming `origin` and
// tensor `name` ("... has shape [a, b] but config.json implies [c, d]" followed by `note`).
const TensorView& CheckWidenable(const TensorView& v, const std::string& origin,
                                 const std::string& name, const std::vector<int64_t>& shape,
                                 const std::string& note = "");

class SafetensorsFile {
 public:
  // Maps and validates the file; throws elm::Error naming the file (and tensor) on any problem.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorView* Find(const std::string& name) const;
  const MmapFile& file() const { return file_; }

 private:
  MmapFile file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Size in bytes of one element of a safetensors dtype name, or 0 if the name is unknown.
size_t SafetensorsDTypeSize(const std::string& name);

// One tensor to write. `data` holds numel * DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Pads a safetensors JSON header with spaces (which the format allows) so the data section
// starts on a 64-byte boundary: mapped weights are then aligned for SIMD loads.
void PadSafetensorsHeader(std::string& header);

// Writes a safetensors file atomically (temp file + rename). Tensors are written in the given
// order; the header is padded so the data starts 64-byte aligned.
void WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// All tensors of a checkpoint folder: `model.safetensors`, or the shards listed in
// `model.safetensors.index.json`. A single .safetensors file path is accepted too.
class TensorStore {
 public:
  explicit TensorStore(const std::string& path);
  const TensorView* Find(const std::string& name) const;
  // Like Find but throws an error naming the checkpoint and tensor when absent.
  const TensorView& Get(const std::string& name) const;
  const std::map<std::string, const TensorView*>& all() const { return index_; }
  const std::string& origin() const { return origin_; }
  // Releases the memory pages behind a tensor of this store (see MmapFile::Evict).
  void Evict(const TensorView& v) const;

 private:
  std::string origin_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace elm
