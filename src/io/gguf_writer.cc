#include "io/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm {
namespace {

// A temp file beside the destination that becomes `path` on Commit(); removed if never committed.
class AtomicOutput {
 public:
  explicit AtomicOutput(const std::string& path) : path_(path), tmp_(TempPathFor(path)) {
    RemoveStaleTemps(path);  // left by a killed earlier run
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) Fail(tmp_, ": cannot create: ", std::strerror(errno));
  }
  ~AtomicOutput() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  void Write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        Fail(tmp_, ": write failed: ", std::strerror(errno));
      }
      p += w;
      n -= static_cast<size_t>(w);
      written_ += static_cast<size_t>(w);
    }
  }
  size_t written() const { return written_; }

  void Commit() {
    if (::fsync(fd_) != 0) Fail(tmp_, ": flush failed: ", std::strerror(errno));
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) Fail(tmp_, ": close failed: ", std::strerror(errno));
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
      Fail(path_, ": cannot rename temp file into place: ", std::strerror(errno));
    committed_ = true;
    SyncDirectory(std::filesystem::path(path_).parent_path().string());
  }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

class Buffer {
 public:
  template <typename T>
  void Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void PutString(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void PutValue(const GgufValue& v) {
    switch (v.type) {
      case GgufType::kString:
        PutString(v.str);
        return;
      case GgufType::kArray:
        Put<uint32_t>(static_cast<uint32_t>(v.elem));
        Put<uint64_t>(v.size());
        if (v.elem == GgufType::kArray) {
          for (const auto& it : v.items) PutValue(it);
        } else if (v.elem == GgufType::kString) {
          for (size_t i = 0; i < v.size(); ++i) PutString(std::string(v.StrAt(i)));
        } else {
          bytes.insert(bytes.end(), v.str.begin(), v.str.end());  // packed little-endian
        }
        return;
      case GgufType::kU8:
      case GgufType::kI8:
      case GgufType::kBool:
        Put<uint8_t>(static_cast<uint8_t>(v.bits));
        return;
      case GgufType::kU16:
      case GgufType::kI16:
        Put<uint16_t>(static_cast<uint16_t>(v.bits));
        return;
      case GgufType::kU32:
      case GgufType::kI32:
      case GgufType::kF32:
        Put<uint32_t>(static_cast<uint32_t>(v.bits));
        return;
      case GgufType::kU64:
      case GgufType::kI64:
      case GgufType::kF64:
        Put<uint64_t>(v.bits);
        return;
    }
  }
  std::vector<uint8_t> bytes;
};

size_t AlignUp(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

size_t GgmlTensorBytes(uint32_t ggml_type, const std::vector<int64_t>& ne) {
  const GgmlTypeInfo* t = FindGgmlType(ggml_type);
  ELM_CHECK(t != nullptr && !ne.empty() && ne[0] % t->block == 0);
  size_t n = 1;
  for (int64_t d : ne) n *= static_cast<size_t>(d);
  return n / t->block * t->block_size;
}

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  ELM_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0);
  if (alignment != 32) Set("general.alignment", GgufValue::U32(alignment));
}

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (const auto& [k, v] : kv_) ELM_CHECK(k != key);
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::Remove(const std::string& key) {
  std::erase_if(kv_, [&](const auto& kv) { return kv.first == key; });
}

void GgufWriter::AddTensor(const std::string& name, std::vector<int64_t> ne, uint32_t ggml_type,
                           FillFn fill) {
  for (const auto& t : tensors_) ELM_CHECK(t.name != name);
  const size_t nbytes = GgmlTensorBytes(ggml_type, ne);
  tensors_.push_back({name, std::move(ne), ggml_type, nbytes, std::move(fill)});
}

void GgufWriter::AddTensor(const std::string& name, std::vector<int64_t> ne, uint32_t ggml_type,
                           const void* data) {
  const size_t nbytes = GgmlTensorBytes(ggml_type, ne);
  AddTensor(name, std::move(ne), ggml_type,
            [data, nbytes](uint8_t* dst) { std::memcpy(dst, data, nbytes); });
}

void GgufWriter::Write(const std::string& path, const WriteProgressFn& progress) const {
  Buffer h;
  h.bytes.insert(h.bytes.end(), {'G', 'G', 'U', 'F'});
  h.Put<uint32_t>(3);
  h.Put<uint64_t>(tensors_.size());
  h.Put<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    h.PutString(k);
    h.Put<uint32_t>(static_cast<uint32_t>(v.type));
    h.PutValue(v);
  }
  size_t offset = 0;
  for (const auto& t : tensors_) {
    h.PutString(t.name);
    h.Put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) h.Put<uint64_t>(static_cast<uint64_t>(d));
    h.Put<uint32_t>(t.ggml_type);
    h.Put<uint64_t>(offset);
    offset = AlignUp(offset + t.nbytes, alignment_);
  }
  h.bytes.resize(AlignUp(h.bytes.size(), alignment_), 0);

  AtomicOutput out(path);
  out.Write(h.bytes.data(), h.bytes.size());
  const size_t data_start = out.written();
  std::vector<uint8_t> buf;
  for (const auto& t : tensors_) {
    buf.assign(AlignUp(t.nbytes, alignment_), 0);
    t.fill(buf.data());
    out.Write(buf.data(), buf.size());
    if (progress)
      progress(static_cast<int64_t>(out.written() - data_start), static_cast<int64_t>(offset));
  }
  ELM_CHECK(out.written() - data_start == offset);
  out.Commit();
}

}  // namespace elm
