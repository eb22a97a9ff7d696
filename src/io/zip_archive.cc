#include "io/zip_archive.h"

#include <array>
#include <cstring>

#include "base/error.h"

namespace elm {
namespace {

constexpr uint32_t kLocalHeader = 0x04034b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kEndOfCentral = 0x06054b50;
constexpr uint32_t kZip64End = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;

// Little-endian reads bounded by the archive: every offset is checked before it is read.
class Bytes {
 public:
  Bytes(const uint8_t* d, size_t n, const std::string& origin) : d_(d), n_(n), origin_(origin) {}
  void Need(uint64_t off, uint64_t len, const char* what) const {
    if (off > n_ || len > n_ - off)
      Fail(origin_, ": not a valid zip archive (", what, " at byte ", off,
           " runs past the end of the file, ", n_, " bytes; truncated?)");
  }
  uint64_t Read(uint64_t off, int len) const {
    uint64_t v = 0;
    for (int i = len - 1; i >= 0; --i) v = v << 8 | d_[off + static_cast<uint64_t>(i)];
    return v;
  }
  const uint8_t* at(uint64_t off) const { return d_ + off; }
  size_t size() const { return n_; }

 private:
  const uint8_t* d_;
  size_t n_;
  const std::string& origin_;
};

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

}  // namespace

uint32_t Crc32(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool LooksLikeZip(const uint8_t* data, size_t size) {
  return size >= 4 && data[0] == 'P' && data[1] == 'K' && data[2] == 3 && data[3] == 4;
}

ZipArchive::ZipArchive(const uint8_t* data, size_t size, std::string origin)
    : origin_(std::move(origin)) {
  const Bytes b(data, size, origin_);
  // The end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes.
  if (size < 22) Fail(origin_, ": not a valid zip archive (", size, " bytes; truncated?)");
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t off = size - 22;; --off) {
    if (b.Read(off, 4) == kEndOfCentral && off + 22 + b.Read(off + 20, 2) == size) {
      eocd = off;
      break;
    }
    if (off == lowest) break;
  }
  if (eocd == UINT64_MAX)
    Fail(origin_, ": not a valid zip archive (no end-of-central-directory record; truncated?)");
  if (b.Read(eocd + 4, 2) != 0 || b.Read(eocd + 6, 2) != 0)
    Fail(origin_, ": split (multi-part) zip archives are not supported");
  uint64_t count = b.Read(eocd + 10, 2);
  uint64_t cd_size = b.Read(eocd + 12, 4);
  uint64_t cd_off = b.Read(eocd + 16, 4);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
    if (eocd < 20 || b.Read(eocd - 20, 4) != kZip64Locator)
      Fail(origin_, ": not a valid zip archive (ZIP64 locator missing)");
    const uint64_t z = b.Read(eocd - 20 + 8, 8);
    b.Need(z, 56, "the ZIP64 end record");
    if (b.Read(z, 4) != kZip64End)
      Fail(origin_, ": not a valid zip archive (bad ZIP64 end record at byte ", z, ")");
    count = b.Read(z + 32, 8);
    cd_size = b.Read(z + 40, 8);
    cd_off = b.Read(z + 48, 8);
  }
  b.Need(cd_off, cd_size, "the central directory");
  uint64_t p = cd_off;
  for (uint64_t i = 0; i < count; ++i) {
    b.Need(p, 46, "a central directory entry");
    if (b.Read(p, 4) != kCentralHeader)
      Fail(origin_, ": not a valid zip archive (central directory entry ", i, " at byte ", p,
           " has a bad signature)");
    const uint64_t flags = b.Read(p + 8, 2), method = b.Read(p + 10, 2);
    const auto crc = static_cast<uint32_t>(b.Read(p + 16, 4));
    uint64_t csize = b.Read(p + 20, 4), usize = b.Read(p + 24, 4);
    const uint64_t name_len = b.Read(p + 28, 2), extra_len = b.Read(p + 30, 2);
    const uint64_t comment_len = b.Read(p + 32, 2);
    uint64_t local = b.Read(p + 42, 4);
    b.Need(p + 46, name_len + extra_len + comment_len, "a central directory entry");
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(b.at(p + 46)), name_len);
    // ZIP64 extra field: the 64-bit values of the fields saturated at 0xFFFFFFFF, in order.
    for (uint64_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = b.Read(x, 2), len = b.Read(x + 2, 2);
      if (x + 4 + len > p + 46 + name_len + extra_len) break;
      if (id == 1) {
        uint64_t q = x + 4;
        auto next = [&](uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          if (q + 8 > x + 4 + len)
            Fail(origin_, ": zip entry '", e.name, "' has a short ZIP64 extra field");
          field = b.Read(q, 8);
          q += 8;
        };
        next(usize);
        next(csize);
        next(local);
      }
      x += 4 + len;
    }
    if (flags & 1) Fail(origin_, ": zip entry '", e.name, "' is encrypted");
    if (method != 0)
      Fail(origin_, ": zip entry '", e.name, "' is compressed (method ", method,
           "); torch.save stores entries uncompressed and elm reads only those");
    if (csize != usize)
      Fail(origin_, ": zip entry '", e.name, "' is stored with ", csize, " bytes but declares ",
           usize);
    b.Need(local, 30, "a local file header");
    if (b.Read(local, 4) != kLocalHeader)
      Fail(origin_, ": zip entry '", e.name, "': bad local header at byte ", local);
    const uint64_t start = local + 30 + b.Read(local + 26, 2) + b.Read(local + 28, 2);
    b.Need(start, usize, ("the data of zip entry '" + e.name + "'").c_str());
    e.data = b.at(start);
    e.size = usize;
    e.crc32 = crc;
    if (entries_.count(e.name)) Fail(origin_, ": zip entry '", e.name, "' appears twice");
    entries_.emplace(e.name, e);
    p += 46 + name_len + extra_len + comment_len;
  }
}

const ZipEntry* ZipArchive::Find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

const ZipEntry& ZipArchive::GetChecked(const std::string& name) const {
  const ZipEntry* e = Find(name);
  if (e == nullptr) Fail(origin_, ": the archive has no entry '", name, "'");
  if (Crc32(e->data, e->size) != e->crc32)
    Fail(origin_, ": zip entry '", name, "' is corrupt (its CRC-32 does not match)");
  return *e;
}

}  // namespace elm
