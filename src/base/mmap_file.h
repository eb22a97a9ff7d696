// Read-only memory mapping of a whole file (RAII). Weights are mmapped, never copied, so a
// model's resident memory is what the pages actually touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace elm {

class MmapFile {
 public:
  // Throws elm::Error naming the path if it cannot be opened or mapped.
  explicit MmapFile(const std::string& path);
  ~MmapFile();
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops the pages of [p, p + n) from this process's memory (they are re-read from the file if
  // touched again): used after a tensor was converted into an owned buffer.
  void Evict(const void* p, size_t n) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Drops the whole pages inside [p, p + n) of a read-only file mapping from this process's memory.
void EvictPages(const void* p, size_t n);

// n bytes of zeroed anonymous memory, 2 MiB-aligned and advised to use transparent huge pages
// (weights streamed every token miss the TLB far less). Freed when the last owner goes.
std::shared_ptr<uint8_t> AllocateHugePages(size_t n);

// Reads a whole (small) file into a string; throws elm::Error naming the path on failure.
std::string ReadTextFile(const std::string& path);

// Writes `data` to `path` atomically: a temp file `<path>.tmp.<pid>` in the same folder, fsync,
// rename, then fsync of the folder (the new name survives a power loss once this returns). On
// failure nothing is left at `path` (an existing file there is untouched). Stale temps of dead
// processes beside `path` are removed first (RemoveStaleTemps).
void WriteFileAtomic(const std::string& path, const void* data, size_t size);

// The temp name elm writes `path` under before renaming it into place: `<path>.tmp.<pid>`.
std::string TempPathFor(const std::string& path);

// fsync of a written file (its data reaches the disk). Throws elm::Error naming it on failure.
void SyncFile(const std::string& path);

// fsync of a folder, so that renames and creations in it are durable. Throws elm::Error naming
// the folder on an I/O error; file systems that cannot sync folders (EINVAL) are accepted.
void SyncDirectory(const std::string& dir);

// Removes `<path>.tmp.<pid>` files and folders left by processes that are no longer running
// (killed mid-write: kill -9, power loss); temps of live processes, this one included, are kept.
// Each removal is reported on stderr. Returns how many were removed.
int RemoveStaleTemps(const std::string& path);

}  // namespace elm
