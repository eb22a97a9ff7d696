#include "io/pytorch_checkpoint.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "base/error.h"

namespace elm {
namespace {

const char* DTypeNameOf(const PtScalarType& t) {
  static const std::pair<const char*, const char*> kNames[] = {
      {"float", "F32"}, {"half", "F16"},  {"bfloat16", "BF16"}, {"double", "F64"}, {"long", "I64"},
      {"int", "I32"},   {"short", "I16"}, {"char", "I8"},       {"byte", "U8"},    {"bool", "BOOL"},
  };
  for (const auto& [pt, st] : kNames)
    if (t.name == pt) return st;
  return "?";
}

// The legacy format starts with a pickled magic number: PROTO 2, LONG1 of 10 bytes.
bool IsLegacy(const uint8_t* d, size_t n) {
  return n >= 4 && d[0] == 0x80 && d[1] == 0x02 && d[2] == 0x8a && d[3] == 0x0a;
}

int64_t CheckedMul(int64_t a, int64_t b, const std::string& origin, const std::string& what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) Fail(origin, ": ", what, " overflows");
  return r;
}

}  // namespace

bool IsPyTorchFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint8_t head[4] = {};
  f.read(reinterpret_cast<char*>(head), 4);
  return f.gcount() == 4 && (LooksLikeZip(head, 4) || IsLegacy(head, 4));
}

PyTorchCheckpoint::PyTorchCheckpoint(const std::string& path) : origin_(path) {
  file_ = std::make_unique<MmapFile>(path);
  Open(file_->data(), file_->size());
}

PyTorchCheckpoint::PyTorchCheckpoint(const uint8_t* bytes, size_t size, const std::string& origin)
    : origin_(origin) {
  Open(bytes, size);
}

void PyTorchCheckpoint::Open(const uint8_t* bytes, size_t size) {
  if (IsLegacy(bytes, size))
    Fail(origin_,
         ": a legacy torch.save file (PyTorch before 1.6, or _use_new_zipfile_serialization="
         "False); elm reads the zip format: re-save it with torch.save(torch.load(f), f2)");
  if (!LooksLikeZip(bytes, size))
    Fail(origin_, ": not a PyTorch checkpoint (expected the zip archive torch.save writes)");
  zip_ = std::make_unique<ZipArchive>(bytes, size, origin_);
  for (const auto& [name, e] : zip_->entries()) {
    const size_t slash = name.find('/');
    if (slash == std::string::npos || name.compare(slash, std::string::npos, "/data.pkl") != 0)
      continue;
    if (!prefix_.empty())
      Fail(origin_, ": holds two pickles ('", prefix_, "data.pkl' and '", name, "')");
    prefix_ = name.substr(0, slash + 1);
  }
  if (prefix_.empty())
    Fail(origin_, ": a zip archive without <archive>/data.pkl: not a torch.save file");
  if (const ZipEntry* bo = zip_->Find(prefix_ + "byteorder")) {
    const std::string order(reinterpret_cast<const char*>(bo->data), bo->size);
    if (order != "little")
      Fail(origin_, ": stored in '", order, "' byte order; elm reads little-endian checkpoints");
  }
  const ZipEntry& pkl = zip_->GetChecked(prefix_ + "data.pkl");
  pickle_ = std::make_unique<Pickle>(pkl.data, pkl.size, origin_ + ": " + prefix_ + "data.pkl");
  // Every storage and every view, checked now.
  std::map<std::string, const PtStorage*> seen;
  for (size_t i = 0; i < pickle_->size(); ++i) {
    const PyValue& v = pickle_->at(i);
    if (v.kind == PyValue::Kind::kStorage) {
      const PtStorage& s = v.storage;
      auto [it, fresh] = seen.emplace(s.key, &s);
      if (!fresh && (it->second->type.name != s.type.name || it->second->numel != s.numel))
        Fail(origin_, ": storage '", s.key, "' is declared twice, as ", it->second->numel, " ",
             it->second->type.name, " and as ", s.numel, " ", s.type.name);
      const ZipEntry& rec = Record(s);
      const int64_t want = CheckedMul(s.numel, static_cast<int64_t>(s.type.size), origin_,
                                      "storage '" + s.key + "'");
      if (rec.size != static_cast<uint64_t>(want))
        Fail(origin_, ": storage '", s.key, "' (record ", prefix_, "data/", s.key, ") holds ",
             rec.size, " bytes but data.pkl declares ", s.numel, " elements of ", s.type.name, " (",
             want, " bytes)");
    } else if (v.kind == PyValue::Kind::kTensor) {
      const PtTensor& t = v.tensor;
      const PtStorage& s = pickle_->at(t.storage).storage;
      const std::string what = "a tensor of storage '" + s.key + "'";
      if (t.offset < 0) Fail(origin_, ": ", what, " has a negative storage offset");
      int64_t last = t.offset, numel = 1;
      for (size_t k = 0; k < t.shape.size(); ++k) {
        if (t.shape[k] < 0 || t.stride[k] < 0)
          Fail(origin_, ": ", what, " has a negative size or stride");
        numel = CheckedMul(numel, t.shape[k], origin_, what + "'s size");
        if (t.shape[k] > 0 &&
            __builtin_add_overflow(last, CheckedMul(t.shape[k] - 1, t.stride[k], origin_, what),
                                   &last))
          Fail(origin_, ": ", what, " overflows");
      }
      CheckedMul(numel, static_cast<int64_t>(s.type.size), origin_, what + "'s size");
      if (numel > 0 && last >= s.numel)
        Fail(origin_, ": ", what, " (shape ", ShapeString(t.shape), ", offset ", t.offset,
             ") reaches element ", last, " but the storage holds ", s.numel);
    }
  }
}

const ZipEntry& PyTorchCheckpoint::Record(const PtStorage& s) const {
  const ZipEntry* e = zip_->Find(prefix_ + "data/" + s.key);
  if (e == nullptr)
    Fail(origin_, ": storage '", s.key, "' has no record ", prefix_, "data/", s.key,
         " in the archive (truncated?)");
  return *e;
}

size_t PyTorchCheckpoint::CopyBytes(const PyValue& v) const {
  ELM_CHECK(v.kind == PyValue::Kind::kTensor);
  const PtTensor& t = v.tensor;
  int64_t expect = 1, numel = 1;
  bool contiguous = true;
  for (size_t k = t.shape.size(); k-- > 0;) {
    if (t.shape[k] != 1 && t.stride[k] != expect) contiguous = false;
    expect *= t.shape[k];
    numel *= t.shape[k];
  }
  if (contiguous || numel == 0) return 0;
  return static_cast<size_t>(numel) * pickle_->at(t.storage).storage.type.size;
}

TensorView PyTorchCheckpoint::View(const PyValue& v, const std::string& name) const {
  ELM_CHECK(v.kind == PyValue::Kind::kTensor);
  const PtTensor& t = v.tensor;
  const PtStorage& s = pickle_->at(t.storage).storage;
  const size_t es = s.type.size;
  TensorView view;
  view.name = name;
  view.dtype_name = DTypeNameOf(s.type);
  if (s.type.name == "float") view.dtype = DType::kF32;
  if (s.type.name == "half") view.dtype = DType::kF16;
  if (s.type.name == "bfloat16") view.dtype = DType::kBF16;
  view.shape = t.shape;
  const int64_t numel = view.numel();
  view.nbytes = static_cast<size_t>(numel) * es;
  const uint8_t* base = Record(s).data;
  const size_t copy = CopyBytes(v);
  if (copy == 0) {
    view.data = base + (numel > 0 ? static_cast<size_t>(t.offset) * es : 0);
    return view;
  }
  // A strided view: gather its elements in row-major order.
  auto buf = std::make_unique<std::vector<uint8_t>>(copy);
  const size_t nd = t.shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t src = t.offset;
  for (int64_t e = 0; e < numel; ++e) {
    std::memcpy(buf->data() + static_cast<size_t>(e) * es, base + static_cast<size_t>(src) * es,
                es);
    for (size_t k = nd; k-- > 0;) {  // odometer over the indices
      if (++idx[k] < t.shape[k]) {
        src += t.stride[k];
        break;
      }
      src -= (t.shape[k] - 1) * t.stride[k];
      idx[k] = 0;
    }
  }
  view.data = buf->data();
  copies_.push_back(std::move(buf));
  return view;
}

void PyTorchCheckpoint::Evict(const TensorView& v) const {
  if (!file_) return;
  const auto* p = static_cast<const uint8_t*>(v.data);
  if (p >= file_->data() && p < file_->data() + file_->size()) file_->Evict(p, v.nbytes);
}

}  // namespace elm
