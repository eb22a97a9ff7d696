#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm {
namespace {

// Arrays of arrays could otherwise recurse once per 12 bytes of input.
constexpr int kMaxArrayDepth = 4;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr uint32_t kDefaultAlignment = 32;

size_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

bool KnownType(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::kF64);
}

// The smallest number of bytes one value of type `t` can occupy (a bound for array counts).
size_t MinValueSize(GgufType t) {
  if (t == GgufType::kString) return 8;
  if (t == GgufType::kArray) return 12;
  return ScalarSize(t);
}

// Bounds-checked little-endian cursor over the file's bytes. `what` describes the item being
// read for error messages ("key 'general.name'", "tensor 'token_embd.weight'").
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& origin) : p_(p), n_(n), origin_(origin) {}

  size_t pos() const { return pos_; }
  size_t left() const { return n_ - pos_; }

  template <typename T>
  T Read(const std::string& what) {
    Need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string ReadString(const std::string& what) {
    const uint64_t len = Read<uint64_t>(what);
    if (len > left())
      Fail(origin_, ": ", what, ": string length ", len, " runs past the end of the file (", left(),
           " bytes left)");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return s;
  }
  // The next `n` bytes (checked), and moves past them.
  const uint8_t* Take(size_t n, const std::string& what) {
    Need(n, what);
    const uint8_t* q = p_ + pos_;
    pos_ += n;
    return q;
  }
  void Need(size_t n, const std::string& what) const {
    if (n > left())
      Fail(origin_, ": ", what, ": truncated (need ", n, " bytes at offset ", pos_, ", file has ",
           left(), " left)");
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& origin_;
};

// The memory the parsed metadata may take: a small multiple of the file, so that a hostile file
// cannot make the reader allocate far more than its own size (elements of nested arrays are the
// only ones that cost more than their bytes in the file).
class MemoryBudget {
 public:
  MemoryBudget(size_t file_size, const std::string& origin)
      : left_(file_size > (std::numeric_limits<size_t>::max() - kSlack) / 4
                  ? std::numeric_limits<size_t>::max()
                  : 4 * file_size + kSlack),
        limit_(left_),
        origin_(origin) {}
  void Take(size_t n, const std::string& what) {
    if (n > left_)
      Fail(origin_, ": ", what, ": the metadata would need more than ", limit_,
           " bytes of memory (4x the file); nested arrays this large are not supported");
    left_ -= n;
  }

 private:
  static constexpr size_t kSlack = size_t{1} << 20;
  size_t left_;
  size_t limit_;
  const std::string& origin_;
};

uint64_t LoadLE(const uint8_t* p, size_t n) {
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) bits |= static_cast<uint64_t>(p[i]) << (8 * i);
  return bits;
}

GgufValue ReadValue(Cursor& c, GgufType type, const std::string& what, const std::string& origin,
                    int depth, MemoryBudget& budget) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::kString:
      v.str = c.ReadString(what);
      budget.Take(v.str.size(), what);
      return v;
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) Fail(origin, ": ", what, ": arrays nested too deeply");
      const uint32_t et = c.Read<uint32_t>(what);
      if (!KnownType(et)) Fail(origin, ": ", what, ": unknown array element type ", et);
      v.elem = static_cast<GgufType>(et);
      const uint64_t n = c.Read<uint64_t>(what);
      const size_t min = MinValueSize(v.elem);
      if (n > c.left() / min)
        Fail(origin, ": ", what, ": array count ", n, " does not fit in the ", c.left(),
             " bytes left in the file");
      const auto count = static_cast<size_t>(n);
      if (v.elem == GgufType::kArray) {
        budget.Take(count * sizeof(GgufValue), what);
        v.items.reserve(count);
        for (size_t i = 0; i < count; ++i)
          v.items.push_back(ReadValue(c, v.elem, what, origin, depth + 1, budget));
      } else if (v.elem == GgufType::kString) {
        budget.Take(count * sizeof(uint64_t), what);
        v.ends.reserve(count);
        for (size_t i = 0; i < count; ++i) {
          const uint64_t len = c.Read<uint64_t>(what);
          if (len > c.left())
            Fail(origin, ": ", what, ": string ", i, " length ", len,
                 " runs past the end of the file (", c.left(), " bytes left)");
          const auto* p = c.Take(static_cast<size_t>(len), what);
          budget.Take(2 * static_cast<size_t>(len), what);  // the blob grows by doubling
          v.str.append(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
          v.ends.push_back(v.str.size());
        }
      } else {
        const size_t bytes = count * min;  // count <= left / min: no overflow
        budget.Take(bytes, what);
        const uint8_t* p = c.Take(bytes, what);
        if (v.elem == GgufType::kBool)
          for (size_t i = 0; i < count; ++i)
            if (p[i] > 1)
              Fail(origin, ": ", what, ": bool element ", i, " is ", int{p[i]},
                   ", neither 0 nor 1");
        v.str.assign(reinterpret_cast<const char*>(p), bytes);
      }
      return v;
    }
    default: {
      const size_t sz = ScalarSize(type);
      v.bits = LoadLE(c.Take(sz, what), sz);
      if (type == GgufType::kBool && v.bits > 1)
        Fail(origin, ": ", what, ": bool value ", v.bits, " is neither 0 nor 1");
      return v;
    }
  }
}

std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += ch;
    }
  }
  return out + "'";
}

// Table from ggml.c's type traits (ids are stable; 4, 5 and 31-33 were removed upstream).
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},
};

}  // namespace

const char* GgufTypeName(GgufType t) {
  switch (t) {
    case GgufType::kU8:
      return "u8";
    case GgufType::kI8:
      return "i8";
    case GgufType::kU16:
      return "u16";
    case GgufType::kI16:
      return "i16";
    case GgufType::kU32:
      return "u32";
    case GgufType::kI32:
      return "i32";
    case GgufType::kF32:
      return "f32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kU64:
      return "u64";
    case GgufType::kI64:
      return "i64";
    case GgufType::kF64:
      return "f64";
  }
  return "?";
}

// ---- GgufValue ----

GgufValue GgufValue::U32(uint32_t v) {
  GgufValue g;
  g.type = GgufType::kU32;
  g.bits = v;
  return g;
}
GgufValue GgufValue::I32(int32_t v) {
  GgufValue g;
  g.type = GgufType::kI32;
  g.bits = static_cast<uint32_t>(v);
  return g;
}
GgufValue GgufValue::U64(uint64_t v) {
  GgufValue g;
  g.type = GgufType::kU64;
  g.bits = v;
  return g;
}
GgufValue GgufValue::F32(float v) {
  GgufValue g;
  g.type = GgufType::kF32;
  uint32_t b;
  std::memcpy(&b, &v, 4);
  g.bits = b;
  return g;
}
GgufValue GgufValue::F64(double v) {
  GgufValue g;
  g.type = GgufType::kF64;
  std::memcpy(&g.bits, &v, 8);
  return g;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue g;
  g.type = GgufType::kBool;
  g.bits = v;
  return g;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue g;
  g.type = GgufType::kString;
  g.str = std::move(v);
  return g;
}
GgufValue GgufValue::I64(int64_t v) {
  GgufValue g;
  g.type = GgufType::kI64;
  g.bits = static_cast<uint64_t>(v);
  return g;
}
GgufValue GgufValue::Array(GgufType elem, const std::vector<GgufValue>& items) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem = elem;
  for (const auto& it : items) {
    ELM_CHECK(it.type == elem);
    if (elem == GgufType::kArray) {
      g.items.push_back(it);
    } else if (elem == GgufType::kString) {
      g.str += it.str;
      g.ends.push_back(g.str.size());
    } else {
      const size_t sz = ScalarSize(elem);
      for (size_t i = 0; i < sz; ++i) g.str.push_back(static_cast<char>(it.bits >> (8 * i)));
    }
  }
  return g;
}
GgufValue GgufValue::I32Array(const std::vector<int>& v) {
  std::vector<GgufValue> items;
  for (int x : v) items.push_back(I32(x));
  return Array(GgufType::kI32, items);
}
GgufValue GgufValue::F32Array(const std::vector<float>& v) {
  std::vector<GgufValue> items;
  for (float x : v) items.push_back(F32(x));
  return Array(GgufType::kF32, items);
}
GgufValue GgufValue::StringArray(const std::vector<std::string>& v) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem = GgufType::kString;
  for (const auto& s : v) {
    g.str += s;
    g.ends.push_back(g.str.size());
  }
  return g;
}

size_t GgufValue::size() const {
  if (type != GgufType::kArray) return 0;
  if (elem == GgufType::kArray) return items.size();
  if (elem == GgufType::kString) return ends.size();
  return str.size() / ScalarSize(elem);
}

GgufValue GgufValue::At(size_t i) const {
  ELM_CHECK(type == GgufType::kArray && i < size());
  if (elem == GgufType::kArray) return items[i];
  if (elem == GgufType::kString) return String(std::string(StrAt(i)));
  GgufValue g;
  g.type = elem;
  const size_t sz = ScalarSize(elem);
  g.bits = LoadLE(reinterpret_cast<const uint8_t*>(str.data()) + i * sz, sz);
  return g;
}

std::string_view GgufValue::StrAt(size_t i) const {
  ELM_CHECK(type == GgufType::kArray && elem == GgufType::kString && i < ends.size());
  const size_t begin = i == 0 ? 0 : static_cast<size_t>(ends[i - 1]);
  return std::string_view(str).substr(begin, static_cast<size_t>(ends[i]) - begin);
}

size_t GgufValue::HeapBytes() const {
  size_t n =
      str.capacity() + ends.capacity() * sizeof(uint64_t) + items.capacity() * sizeof(GgufValue);
  for (const auto& it : items) n += it.HeapBytes();
  return n;
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

int64_t GgufValue::AsInt() const {
  switch (type) {
    case GgufType::kI8:
      return static_cast<int8_t>(bits);
    case GgufType::kI16:
      return static_cast<int16_t>(bits);
    case GgufType::kI32:
      return static_cast<int32_t>(bits);
    case GgufType::kI64:
      return static_cast<int64_t>(bits);
    case GgufType::kU64:
      return bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                 ? std::numeric_limits<int64_t>::max()
                 : static_cast<int64_t>(bits);
    default:
      return static_cast<int64_t>(bits);
  }
}

double GgufValue::AsDouble() const {
  if (type == GgufType::kF32) {
    float f;
    const auto b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (type == GgufType::kF64) {
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  if (type == GgufType::kU64) return static_cast<double>(bits);
  return static_cast<double>(AsInt());
}

std::string GgufValue::ToString(size_t max_items) const {
  switch (type) {
    case GgufType::kString: {
      std::string s = str.size() > 120 ? str.substr(0, 120) + "..." : str;
      return Quoted(s);
    }
    case GgufType::kBool:
      return bits ? "true" : "false";
    case GgufType::kF32:
    case GgufType::kF64: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", AsDouble());
      return buf;
    }
    case GgufType::kU64:
      return std::to_string(bits);
    case GgufType::kArray: {
      const size_t n = size();
      std::string s = "[" + std::to_string(n) + " x " + GgufTypeName(elem) + ":";
      for (size_t i = 0; i < n && i < max_items; ++i)
        s += (i ? ", " : " ") + At(i).ToString(max_items);
      if (n > max_items) s += ", ...";
      return s + "]";
    }
    default:
      return std::to_string(AsInt());
  }
}

// ---- GGML types ----

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const auto& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

namespace {
// DType ↔ GGML type id, for every type elm computes with.
constexpr std::pair<DType, uint32_t> kDTypeIds[] = {
    {DType::kF32, 0},     {DType::kF16, 1},     {DType::kQ4_0, 2},  {DType::kQ4_1, 3},
    {DType::kQ5_0, 6},    {DType::kQ5_1, 7},    {DType::kQ8_0, 8},  {DType::kQ2_K, 10},
    {DType::kQ3_K, 11},   {DType::kQ4_K, 12},   {DType::kQ5_K, 13}, {DType::kQ6_K, 14},
    {DType::kIQ4_NL, 20}, {DType::kIQ4_XS, 23}, {DType::kBF16, 30},
};
}  // namespace

uint32_t GgmlTypeOf(DType t) {
  for (const auto& [d, id] : kDTypeIds)
    if (d == t) return id;
  return 0;
}

std::optional<DType> DTypeOfGgml(uint32_t id) {
  for (const auto& [d, i] : kDTypeIds)
    if (i == id) return d;
  return std::nullopt;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

std::vector<int64_t> GgufTensorInfo::torch_shape() const {
  return {ne.rbegin(), ne.rend()};
}

const char* GgufTensorInfo::type_name() const {
  const GgmlTypeInfo* t = FindGgmlType(ggml_type);
  return t ? t->name : "?";
}

// ---- GgufFile ----

GgufFile::GgufFile(const std::string& path) : origin_(path) {
  file_ = std::make_unique<MmapFile>(path);
  bytes_ = file_->data();
  size_ = file_->size();
  Parse();
  // The header (the tokenizer's ~0.8 MB of strings for a Llama-2 vocabulary) was copied into
  // kv_: its pages need not stay resident beside the weights (docs/performance.md, peak RSS).
  file_->Evict(bytes_, data_offset_);
}

GgufFile::~GgufFile() = default;

std::unique_ptr<GgufFile> GgufFile::FromBytes(const void* bytes, size_t size,
                                              const std::string& origin) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->origin_ = origin;
  f->owned_.assign(static_cast<const uint8_t*>(bytes), static_cast<const uint8_t*>(bytes) + size);
  f->bytes_ = f->owned_.data();
  f->size_ = size;
  f->Parse();
  return f;
}

void GgufFile::Parse() {
  const std::string& o = origin_;
  Cursor c(bytes_, size_, o);
  if (size_ < 4 || std::memcmp(bytes_, "GGUF", 4) != 0) {
    std::string got = size_ >= 4 ? Quoted(std::string(reinterpret_cast<const char*>(bytes_), 4))
                                 : "a " + std::to_string(size_) + "-byte file";
    Fail(o, ": not a GGUF file (expected magic 'GGUF', got ", got, ")");
  }
  c.Read<uint32_t>("magic");
  version_ = c.Read<uint32_t>("header version");
  if (version_ == 0x03000000u || version_ == 0x02000000u)
    Fail(o, ": big-endian GGUF files are not supported");
  if (version_ != 2 && version_ != 3)
    Fail(o, ": unsupported GGUF version ", version_, " (elm reads versions 2 and 3)");
  const uint64_t n_tensors = c.Read<uint64_t>("header tensor count");
  const uint64_t n_kv = c.Read<uint64_t>("header metadata count");
  // A key-value pair takes at least 13 bytes, a tensor record at least 25.
  if (n_kv > c.left() / 13)
    Fail(o, ": header metadata count ", n_kv, " does not fit in a ", size_, "-byte file");
  if (n_tensors > c.left() / 25)
    Fail(o, ": header tensor count ", n_tensors, " does not fit in a ", size_, "-byte file");

  MemoryBudget budget(size_, o);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.ReadString("metadata entry " + std::to_string(i) + " key");
    if (key.empty()) Fail(o, ": metadata entry ", i, " has an empty key");
    const std::string what = "key " + Quoted(key);
    if (kv_index_.count(key)) Fail(o, ": ", what, " appears twice");
    const uint32_t t = c.Read<uint32_t>(what);
    if (!KnownType(t)) Fail(o, ": ", what, ": unknown value type ", t);
    GgufValue v = ReadValue(c, static_cast<GgufType>(t), what, o, 0, budget);
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = Find("general.alignment")) {
    if (a->type != GgufType::kU32)
      Fail(o, ": key 'general.alignment' must be u32, got ", GgufTypeName(a->type));
    if (a->bits == 0 || (a->bits & (a->bits - 1)) != 0)
      Fail(o, ": key 'general.alignment' is ", a->bits, ", not a power of two");
    alignment_ = static_cast<uint32_t>(a->bits);
  } else {
    alignment_ = kDefaultAlignment;
  }

  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.ReadString("tensor record " + std::to_string(i) + " name");
    const std::string what = "tensor " + Quoted(t.name);
    if (t.name.empty()) Fail(o, ": tensor record ", i, " has an empty name");
    if (tensor_index_.count(t.name)) Fail(o, ": ", what, " appears twice");
    const uint32_t n_dims = c.Read<uint32_t>(what);
    if (n_dims == 0 || n_dims > kMaxDims)
      Fail(o, ": ", what, ": ", n_dims, " dimensions (GGUF allows 1 to ", kMaxDims, ")");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.Read<uint64_t>(what);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (ne != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne))
        Fail(o, ": ", what, ": dimension ", d, " (", ne, ") overflows the element count");
      numel *= ne;
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.ggml_type = c.Read<uint32_t>(what);
    const GgmlTypeInfo* ti = FindGgmlType(t.ggml_type);
    if (ti == nullptr) Fail(o, ": ", what, ": unknown GGML type id ", t.ggml_type);
    t.dtype = DTypeOfGgml(t.ggml_type);
    if (t.ne[0] % ti->block != 0)
      Fail(o, ": ", what, ": innermost dimension ", t.ne[0], " is not a multiple of the ", ti->name,
           " block size ", ti->block);
    const uint64_t blocks = numel / ti->block;
    if (blocks > std::numeric_limits<uint64_t>::max() / ti->block_size)
      Fail(o, ": ", what, ": byte size overflows");
    t.nbytes = static_cast<size_t>(blocks * ti->block_size);
    t.offset = c.Read<uint64_t>(what);
    if (t.offset % alignment_ != 0)
      Fail(o, ": ", what, ": data offset ", t.offset, " is not a multiple of the alignment ",
           alignment_);
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  const size_t header_end = c.pos();
  data_offset_ = (header_end + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && !tensors_.empty())
    Fail(o, ": truncated: the data section would start at ", data_offset_, " but the file has ",
         size_, " bytes");
  const uint64_t data_size = size_ > data_offset_ ? size_ - data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      Fail(o, ": tensor ", Quoted(t.name), ": data [", t.offset, ", ", t.offset + t.nbytes,
           ") runs past the end of the data section (", data_size, " bytes; file truncated?)");
    t.data = bytes_ + data_offset_ + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->offset < b->offset; });
  const GgufTensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const auto* b : by_offset) {
    if (b->nbytes == 0) continue;
    if (last != nullptr && last->offset + last->nbytes > b->offset)
      Fail(o, ": tensors ", Quoted(last->name), " and ", Quoted(b->name), " overlap in the file");
    if (last == nullptr || b->offset + b->nbytes > last->offset + last->nbytes) last = b;
  }
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::Get(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (v == nullptr) Fail(origin_, ": missing metadata key '", key, "'");
  return *v;
}

int64_t GgufFile::GetInt(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (!v.is_integer())
    Fail(origin_, ": key '", key, "' must be an integer, got ", GgufTypeName(v.type));
  if (v.type == GgufType::kU64 &&
      v.bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    Fail(origin_, ": key '", key, "' value ", v.bits, " is out of range");
  return v.AsInt();
}

double GgufFile::GetFloat(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (!v.is_float() && !v.is_integer())
    Fail(origin_, ": key '", key, "' must be a number, got ", GgufTypeName(v.type));
  return v.AsDouble();
}

bool GgufFile::GetBool(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kBool)
    Fail(origin_, ": key '", key, "' must be a bool, got ", GgufTypeName(v.type));
  return v.AsBool();
}

const std::string& GgufFile::GetString(const std::string& key) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kString)
    Fail(origin_, ": key '", key, "' must be a string, got ", GgufTypeName(v.type));
  return v.str;
}

const GgufValue& GgufFile::GetArray(const std::string& key, GgufType elem) const {
  const GgufValue& v = Get(key);
  if (v.type != GgufType::kArray || v.elem != elem)
    Fail(origin_, ": key '", key, "' must be an array of ", GgufTypeName(elem), ", got ",
         v.type == GgufType::kArray ? std::string("an array of ") + GgufTypeName(v.elem)
                                    : std::string(GgufTypeName(v.type)));
  return v;
}

std::vector<int64_t> GgufFile::GetIntPerLayer(const std::string& key, size_t n) const {
  const GgufValue& v = Get(key);
  if (v.is_integer()) return std::vector<int64_t>(n, GetInt(key));
  GgufValue probe;
  probe.type = v.elem;
  if (v.type != GgufType::kArray || !probe.is_integer())
    Fail(origin_, ": key '", key, "' must be an integer or an array of integers, got ",
         v.type == GgufType::kArray ? std::string("an array of ") + GgufTypeName(v.elem)
                                    : std::string(GgufTypeName(v.type)));
  if (v.size() != n)
    Fail(origin_, ": key '", key, "' has ", v.size(), " entries, expected one per layer (", n, ")");
  std::vector<int64_t> out;
  for (size_t i = 0; i < n; ++i) out.push_back(v.At(i).AsInt());
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::GetTensor(const std::string& name) const {
  const GgufTensorInfo* t = FindTensor(name);
  if (t == nullptr) Fail(origin_, ": missing tensor '", name, "'");
  return *t;
}

void GgufFile::Evict(const GgufTensorInfo& t) const {
  if (file_) file_->Evict(t.data, t.nbytes);
}

void GgufFile::DropMetadata() {
  std::vector<std::pair<std::string, GgufValue>>().swap(kv_);
  kv_index_.clear();
}

bool IsGgufFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace elm
