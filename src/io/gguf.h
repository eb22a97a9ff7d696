// GGUF (llama.cpp's single-file model format, versions 2 and 3): metadata values, the GGML
// tensor-type table and a strict reader. The writer is in gguf_writer.h; the OpenELM mapping
// (keys, tensor names) in gguf_model.h. Layout, all little-endian (docs/formats.md):
//
//   "GGUF"  u32 version  u64 n_tensors  u64 n_kv
//   n_kv      x { str key; u32 value_type; value }      str = u64 byte length + bytes, no NUL
//   n_tensors x { str name; u32 n_dims; u64 ne[n_dims]; u32 ggml_type; u64 offset }
//   zero padding to general.alignment (default 32), then the data section. Tensor offsets are
//   relative to the data section and multiples of the alignment. ne[0] is the innermost
//   (fastest-varying) dimension, i.e. PyTorch's last one.
//
// The reader trusts nothing: every count, length, type id and offset is checked against the
// bytes actually present before anything is allocated or dereferenced, and each failure throws
// elm::Error naming the file and the key or tensor at fault.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/dtype.h"

namespace elm {

class MmapFile;

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* GgufTypeName(GgufType t);  // "u32", "string", "array", ...

// One metadata value with its exact stored type. Arrays hold elements of one type (nested arrays
// are legal GGUF and are read, though OpenELM files use none). Arrays of scalars and of strings
// are stored packed (the element bytes, or the strings' bytes and their end offsets), so that an
// array costs about what it takes in the file rather than a GgufValue per element; only nested
// arrays keep one GgufValue per element in `items`. Read elements with size()/At()/StrAt().
struct GgufValue {
  GgufType type = GgufType::kU8;
  uint64_t bits = 0;              // numeric and bool scalars: the stored bytes, zero-extended
  std::string str;                // kString; kArray of scalars or strings: the packed bytes
  GgufType elem = GgufType::kU8;  // kArray: the element type
  std::vector<GgufValue> items;   // kArray of arrays: the elements
  std::vector<uint64_t> ends;     // kArray of strings: where each string ends in `str`

  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue I64(int64_t v);
  static GgufValue U64(uint64_t v);
  static GgufValue F32(float v);
  static GgufValue F64(double v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue Array(GgufType elem, const std::vector<GgufValue>& items);
  static GgufValue I32Array(const std::vector<int>& v);
  static GgufValue F32Array(const std::vector<float>& v);
  static GgufValue StringArray(const std::vector<std::string>& v);

  bool is_integer() const;  // u8..i64 (not bool)
  bool is_float() const { return type == GgufType::kF32 || type == GgufType::kF64; }
  // Numeric conversions; callers check the type first (GgufFile's getters do).
  int64_t AsInt() const;    // integer types; u64 above INT64_MAX saturates
  double AsDouble() const;  // integer and float types
  bool AsBool() const { return bits != 0; }
  // kArray: the element count, element `i` as a value, and a string element's bytes (elem
  // kString only). `i` must be below size().
  size_t size() const;
  GgufValue At(size_t i) const;
  std::string_view StrAt(size_t i) const;
  // Bytes of memory the value holds beyond sizeof(GgufValue) (the reader bounds it).
  size_t HeapBytes() const;
  // Short human-readable rendering ("32000 strings: '<unk>', '<s>', ...").
  std::string ToString(size_t max_items = 8) const;
};

// GGML tensor types that can appear in a GGUF file: id, name and block geometry. elm computes
// with F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K … Q6_K and IQ4_XS (the DTypes);
// the others are listed so that any llama.cpp file can be validated and inspected.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  uint32_t block;       // elements per block
  uint32_t block_size;  // bytes per block
};
const GgmlTypeInfo* FindGgmlType(uint32_t id);  // nullptr for unknown ids
uint32_t GgmlTypeOf(DType t);
std::optional<DType> DTypeOfGgml(uint32_t id);

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGML order: ne[0] innermost
  uint32_t ggml_type = 0;
  std::optional<DType> dtype;  // set when elm can compute with the type
  uint64_t offset = 0;         // relative to the data section
  size_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the file's bytes

  int64_t numel() const;
  // PyTorch order (ne reversed): [rows, cols] for a matrix.
  std::vector<int64_t> torch_shape() const;
  const char* type_name() const;
};

class GgufFile {
 public:
  // Maps and parses `path`; throws elm::Error naming the file on any problem.
  explicit GgufFile(const std::string& path);
  // Parses a copy of `bytes` (tests and the fuzz target); `origin` names it in errors.
  static std::unique_ptr<GgufFile> FromBytes(const void* bytes, size_t size,
                                             const std::string& origin);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& origin() const { return origin_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // start of the data section in the file
  size_t file_size() const { return size_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(const std::string& key) const;
  // Typed getters: throw elm::Error naming the file and key when the key is missing or has
  // another type. Integer getters accept any integer type whose value fits.
  const GgufValue& Get(const std::string& key) const;
  int64_t GetInt(const std::string& key) const;
  double GetFloat(const std::string& key) const;  // f32/f64 (integers accepted too)
  bool GetBool(const std::string& key) const;
  const std::string& GetString(const std::string& key) const;
  // An integer array, or one integer repeated `n` times when the key holds a scalar (llama.cpp
  // accepts both for per-layer values). The array length must be `n`.
  std::vector<int64_t> GetIntPerLayer(const std::string& key, size_t n) const;
  const GgufValue& GetArray(const std::string& key, GgufType elem) const;

  // Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;
  const GgufTensorInfo& GetTensor(const std::string& name) const;  // throws naming the file
  // Drops the mapped pages of a tensor (after it was converted into an owned buffer).
  void Evict(const GgufTensorInfo& t) const;
  // Frees the parsed key-value pairs (a Llama vocabulary is ~8 MB of them) for a caller that
  // keeps the file only for its tensors; metadata() is empty and Find() finds nothing after.
  void DropMetadata();

 private:
  GgufFile() = default;
  void Parse();

  std::string origin_;
  std::unique_ptr<MmapFile> file_;
  std::vector<uint8_t> owned_;
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// True if the file at `path` starts with the GGUF magic (a cheap sniff; no validation).
bool IsGgufFile(const std::string& path);

}  // namespace elm
