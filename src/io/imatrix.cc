#include "io/imatrix.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/mmap_file.h"
#include "io/gguf.h"

namespace elm {

namespace {

constexpr int32_t kMaxNameLen = 4096;

// A bounds-checked little-endian reader over the file's bytes.
class ImatrixReader {
 public:
  ImatrixReader(const std::string& path, const uint8_t* p, size_t n) : path_(path), p_(p), n_(n) {}
  bool at_end() const { return pos_ == n_; }
  int32_t I32(const std::string& what) {
    int32_t v;
    Bytes(&v, 4, what);
    return v;
  }
  void Bytes(void* dst, size_t n, const std::string& what) {
    if (n > n_ - pos_) Fail(path_, ": truncated importance matrix: ", what, " missing");
    std::memcpy(dst, p_ + pos_, n);
    pos_ += n;
  }

 private:
  std::string path_;
  const uint8_t* p_;
  size_t n_, pos_ = 0;
};

void CheckFinite(const std::string& path, const std::string& name, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      Fail(path, ": importance matrix entry '", name, "' has a non-finite value at ", i);
}

ImportanceMatrix ReadLegacy(const std::string& path) {
  const MmapFile file(path);
  ImatrixReader in(path, file.data(), file.size());
  ImportanceMatrix m;
  m.file = path;
  const int32_t n_entries = in.I32("the entry count");
  if (n_entries < 1) Fail(path, ": importance matrix has no entries (count ", n_entries, ")");
  for (int32_t i = 0; i < n_entries; ++i) {
    const std::string what = "entry " + std::to_string(i + 1);
    const int32_t len = in.I32(what + "'s name length");
    if (len < 1 || len > kMaxNameLen) Fail(path, ": ", what, " has a bad name length ", len);
    std::string name(static_cast<size_t>(len), '\0');
    in.Bytes(name.data(), name.size(), what + "'s name");
    const int32_t ncall = in.I32("'" + name + "' call count");
    const int32_t nval = in.I32("'" + name + "' value count");
    if (nval < 1) Fail(path, ": importance matrix entry '", name, "' has ", nval, " values");
    std::vector<float> v(static_cast<size_t>(nval));
    in.Bytes(v.data(), v.size() * 4, "'" + name + "' values");
    if (ncall > 0)
      for (float& x : v) x /= static_cast<float>(ncall);
    CheckFinite(path, name, v);
    if (!m.entries.emplace(name, std::move(v)).second)
      Fail(path, ": importance matrix entry '", name, "' appears twice");
  }
  if (!in.at_end()) {  // newer files: the chunk count and the calibration file's name
    m.chunks = in.I32("the chunk count");
    const int32_t len = in.I32("the dataset name length");
    if (len < 0 || len > kMaxNameLen) Fail(path, ": bad dataset name length ", len);
    std::string dataset(static_cast<size_t>(len), '\0');
    in.Bytes(dataset.data(), dataset.size(), "the dataset name");
    if (!dataset.empty()) m.datasets.push_back(dataset);
  }
  return m;
}

bool StripSuffix(const std::string& s, const std::string& suffix, std::string* stem) {
  if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  *stem = s.substr(0, s.size() - suffix.size());
  return true;
}

ImportanceMatrix ReadGguf(const std::string& path) {
  const GgufFile f(path);
  ImportanceMatrix m;
  m.file = path;
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> sums_counts;
  for (const GgufTensorInfo& t : f.tensors()) {
    std::string stem;
    if (StripSuffix(t.name, ".in_sum2", &stem)) {
      sums_counts[stem].first = &t;
    } else if (StripSuffix(t.name, ".counts", &stem)) {
      sums_counts[stem].second = &t;
    }
  }
  if (sums_counts.empty()) Fail(path, ": no importance matrix tensors (*.in_sum2, *.counts)");
  for (const auto& [name, sc] : sums_counts) {
    const GgufTensorInfo* sums = sc.first;
    const GgufTensorInfo* counts = sc.second;
    if (!sums || !counts)
      Fail(path, ": importance matrix entry '", name, "' lacks ", sums ? "counts" : "in_sum2");
    if (sums->dtype != DType::kF32 || counts->dtype != DType::kF32)
      Fail(path, ": importance matrix entry '", name, "' is not F32");
    const int64_t ne0 = sums->ne.empty() ? 0 : sums->ne[0];
    const int64_t n_mat = sums->numel() / std::max<int64_t>(ne0, 1);
    if (ne0 < 1 || counts->numel() != n_mat)
      Fail(path, ": importance matrix entry '", name, "': ", counts->numel(), " counts for ", n_mat,
           " matrices");
    std::vector<float> s(static_cast<size_t>(sums->numel())), c(static_cast<size_t>(n_mat));
    std::memcpy(s.data(), sums->data, s.size() * 4);
    std::memcpy(c.data(), counts->data, c.size() * 4);
    std::vector<float> v(s.size());
    for (int64_t j = 0; j < n_mat; ++j)
      for (int64_t i = 0; i < ne0; ++i) {
        const size_t k = static_cast<size_t>(j * ne0 + i);
        v[k] = c[static_cast<size_t>(j)] > 0.0f ? s[k] / c[static_cast<size_t>(j)] : 1.0f;
      }
    CheckFinite(path, name, v);
    m.entries.emplace(name, std::move(v));
  }
  if (const GgufValue* n = f.Find("imatrix.chunk_count"); n && n->is_integer())
    m.chunks = static_cast<int>(n->AsInt());
  if (const GgufValue* d = f.Find("imatrix.datasets");
      d && d->type == GgufType::kArray && d->elem == GgufType::kString)
    for (size_t i = 0; i < d->size(); ++i) m.datasets.emplace_back(d->StrAt(i));
  return m;
}

}  // namespace

const std::vector<float>* ImportanceMatrix::Find(const std::string& name) const {
  const auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}

ImportanceMatrix ReadImportanceMatrix(const std::string& path) {
  return IsGgufFile(path) ? ReadGguf(path) : ReadLegacy(path);
}

}  // namespace elm
