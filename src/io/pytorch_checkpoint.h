// PyTorch's .pt files (torch.save since PyTorch 1.6; docs/formats.md, "PyTorch .pt
// checkpoints"): a zip archive (io/zip_archive.h) holding <archive>/data.pkl, the pickled object
// (read by the safe unpickler, io/pytorch_pickle.h), and one record <archive>/data/<key> per
// storage, the raw little-endian elements. A tensor is a view of a storage: an element offset,
// a shape and strides; several tensors may share one storage. Everything is checked when the
// file is opened — each storage's record exists and holds exactly its elements, each tensor's
// view stays inside its storage, a storage key is not declared twice with different types — so
// later reads cannot fail. Contiguous tensors are viewed in place in the mapped file; other
// views (transposes, strided slices) are gathered into a copy owned by the checkpoint.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/mmap_file.h"
#include "io/pytorch_pickle.h"
#include "io/safetensors.h"
#include "io/zip_archive.h"

namespace elm {

class PyTorchCheckpoint {
 public:
  // Maps and validates `path`; errors name the file and the record, global or tensor at fault.
  explicit PyTorchCheckpoint(const std::string& path);
  // The same from bytes already in memory (tests, the fuzzer); `bytes` must outlive this.
  PyTorchCheckpoint(const uint8_t* bytes, size_t size, const std::string& origin);

  const std::string& origin() const { return origin_; }
  const Pickle& pickle() const { return *pickle_; }
  const PyValue& root() const { return pickle_->root(); }

  // Tensor value `v` as a TensorView named `name`: dtype_name "F32", "F16", "BF16", "F64",
  // "I64", "I32", "I16", "I8", "U8" or "BOOL" (dtype set for the first three), PyTorch's shape,
  // data row-major (in place when the view is contiguous, else a copy that lives as long as
  // this object).
  TensorView View(const PyValue& v, const std::string& name) const;
  // Bytes the view of `v` would copy (0 when it is contiguous and read in place).
  size_t CopyBytes(const PyValue& v) const;
  // Releases the mapped pages behind a view returned by View (nothing for a copy).
  void Evict(const TensorView& v) const;

 private:
  void Open(const uint8_t* bytes, size_t size);
  const ZipEntry& Record(const PtStorage& s) const;

  std::string origin_;
  std::unique_ptr<MmapFile> file_;
  std::unique_ptr<ZipArchive> zip_;
  std::string prefix_;  // "<archive>/"
  std::unique_ptr<Pickle> pickle_;
  mutable std::vector<std::unique_ptr<std::vector<uint8_t>>> copies_;
};

// Whether `path` is a torch.save zip archive (the zip magic and a */data.pkl entry are checked
// by the constructor; this looks only at the first bytes) or a legacy (pre-1.6) torch.save file.
bool IsPyTorchFile(const std::string& path);

}  // namespace elm
