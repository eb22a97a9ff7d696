// Reading a text file that may be compressed: gzip/zlib (.gz, e.g. CoreNet's .json.gz and
// .jsonl.gz corpora, through zlib) and Zstandard (.zst, through libzstd), recognised by their
// magic bytes, or plain. Read line by line without holding the whole file (docs/training.md,
// "Compressed data"). A corrupt or truncated stream is an elm::Error naming the file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

namespace elm {

enum class StreamCompression { kNone, kGzip, kZstd };

// The compression the file name says: ".gz" gzip, ".zst"/".zstd" Zstandard, else none.
StreamCompression CompressionOfName(std::string_view path);
// The name without a ".gz"/".zst"/".zstd" suffix ("a.jsonl.gz" -> "a.jsonl").
std::string_view StripCompressionSuffix(std::string_view path);

// Decompresses from an in-memory buffer or a file. The compression is detected from the first
// bytes (gzip 1f 8b, zstd 28 b5 2f fd); a name that says .gz/.zst over other bytes is an error.
class TextStream {
 public:
  explicit TextStream(const std::string& path);
  // `data` must outlive the stream; `name` appears in errors (the fuzz target reads this way).
  TextStream(std::string_view data, const std::string& name);
  ~TextStream();
  TextStream(const TextStream&) = delete;
  TextStream& operator=(const TextStream&) = delete;

  // The next line without its '\n' (a last line without one counts); false at the end.
  bool ReadLine(std::string& line);
  // Everything left.
  std::string ReadAll();
  StreamCompression compression() const { return kind_; }
  const std::string& name() const { return name_; }

 private:
  struct Codec;
  // Appends the next decompressed bytes to out_; false at the end of the stream.
  bool Refill();
  size_t ReadRaw(char* dst, size_t n);  // from the file or the buffer
  void Start();

  std::string name_;
  std::FILE* f_ = nullptr;
  std::string_view mem_;
  size_t mem_pos_ = 0;
  StreamCompression kind_ = StreamCompression::kNone;
  std::unique_ptr<Codec> codec_;
  std::string in_;  // compressed bytes not yet consumed
  size_t in_pos_ = 0;
  std::string out_;  // decompressed bytes not yet returned
  size_t out_pos_ = 0;
  std::string buf_;  // one chunk of input or output
  bool raw_eof_ = false, done_ = false;
  bool boundary_ = false;  // the decoder just finished a gzip member or zstd frame
  int64_t out_total_ = 0;
};

// ReadAll of a file (plain or compressed).
std::string ReadTextStreamFile(const std::string& path);

}  // namespace elm
