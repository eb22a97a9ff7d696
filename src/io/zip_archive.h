// A reader for the zip archives torch.save writes (docs/formats.md, "PyTorch .pt checkpoints"):
// entries stored without compression (PyTorch's writer never compresses, and pads each record so
// its data starts 64-byte aligned), ZIP64 records for archives or entries over 4 GiB. Entries
// are viewed in place in the caller's bytes (an mmapped file); nothing is copied. A compressed or
// encrypted entry, a split archive, or offsets and sizes that leave the bytes are errors naming
// the archive and the entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace elm {

struct ZipEntry {
  std::string name;
  const uint8_t* data = nullptr;  // inside the archive's bytes
  uint64_t size = 0;
  uint32_t crc32 = 0;  // as the central directory records it
};

class ZipArchive {
 public:
  // Parses the central directory of [data, data + size); `origin` names the archive in errors.
  ZipArchive(const uint8_t* data, size_t size, std::string origin);

  const std::map<std::string, ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(const std::string& name) const;
  // The entry's data, its CRC-32 checked against the central directory (errors name the entry).
  const ZipEntry& GetChecked(const std::string& name) const;
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::map<std::string, ZipEntry> entries_;
};

// Whether `data` starts like a zip archive (a local file header, "PK\3\4").
bool LooksLikeZip(const uint8_t* data, size_t size);

// CRC-32 (ISO 3309, the zip checksum) of n bytes.
uint32_t Crc32(const void* data, size_t n);

}  // namespace elm
