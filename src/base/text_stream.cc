#include "base/text_stream.h"

#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"

namespace elm {

namespace {
constexpr size_t kTextStreamChunk = 1 << 16;

bool NameEndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
}  // namespace

StreamCompression CompressionOfName(std::string_view path) {
  if (NameEndsWith(path, ".gz")) return StreamCompression::kGzip;
  if (NameEndsWith(path, ".zst") || NameEndsWith(path, ".zstd")) return StreamCompression::kZstd;
  return StreamCompression::kNone;
}

std::string_view StripCompressionSuffix(std::string_view path) {
  for (std::string_view s : {".gz", ".zst", ".zstd"})
    if (NameEndsWith(path, s)) return path.substr(0, path.size() - s.size());
  return path;
}

struct TextStream::Codec {
  z_stream z{};
  bool z_open = false;
  ZSTD_DCtx* zstd = nullptr;
  ~Codec() {
    if (z_open) inflateEnd(&z);
    if (zstd != nullptr) ZSTD_freeDCtx(zstd);
  }
};

TextStream::TextStream(const std::string& path) : name_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (f_ == nullptr) Fail(path, ": cannot open: ", std::strerror(errno));
  try {
    Start();
  } catch (...) {
    std::fclose(f_);
    throw;
  }
}

TextStream::TextStream(std::string_view data, const std::string& name) : name_(name), mem_(data) {
  Start();
}

TextStream::~TextStream() {
  if (f_ != nullptr) std::fclose(f_);
}

size_t TextStream::ReadRaw(char* dst, size_t n) {
  if (f_ == nullptr) {
    const size_t k = std::min(n, mem_.size() - mem_pos_);
    if (k > 0) std::memcpy(dst, mem_.data() + mem_pos_, k);  // an empty view may be null
    mem_pos_ += k;
    return k;
  }
  const size_t k = std::fread(dst, 1, n, f_);
  if (k < n && std::ferror(f_)) Fail(name_, ": read error: ", std::strerror(errno));
  return k;
}

void TextStream::Start() {
  buf_.resize(kTextStreamChunk);
  // The first bytes decide the format.
  in_.resize(kTextStreamChunk);
  in_.resize(ReadRaw(in_.data(), in_.size()));
  raw_eof_ = in_.size() < kTextStreamChunk;
  const auto byte = [&](size_t i) { return i < in_.size() ? static_cast<uint8_t>(in_[i]) : -1; };
  if (byte(0) == 0x1f && byte(1) == 0x8b)
    kind_ = StreamCompression::kGzip;
  else if (byte(0) == 0x28 && byte(1) == 0xb5 && byte(2) == 0x2f && byte(3) == 0xfd)
    kind_ = StreamCompression::kZstd;
  const StreamCompression named = CompressionOfName(name_);
  if (named != StreamCompression::kNone && named != kind_)
    Fail(name_, ": the name says ", named == StreamCompression::kGzip ? "gzip" : "zstd",
         " but the file does not start with its magic bytes (",
         in_.empty() ? "the file is empty" : "not a compressed stream, or cut short", ")");
  codec_ = std::make_unique<Codec>();
  if (kind_ == StreamCompression::kGzip) {
    if (inflateInit2(&codec_->z, 15 + 16) != Z_OK) Fail(name_, ": zlib could not start");
    codec_->z_open = true;
  } else if (kind_ == StreamCompression::kZstd) {
    codec_->zstd = ZSTD_createDCtx();
    if (codec_->zstd == nullptr) Fail(name_, ": libzstd could not start");
  } else {
    out_ = std::move(in_);  // plain: the bytes read are the text
    in_.clear();
  }
}

bool TextStream::Refill() {
  if (done_) return false;
  if (kind_ == StreamCompression::kNone) {
    const size_t k = raw_eof_ ? 0 : ReadRaw(buf_.data(), buf_.size());
    if (k < buf_.size()) raw_eof_ = true;
    if (k == 0) {
      done_ = true;
      return false;
    }
    out_.append(buf_.data(), k);
    return true;
  }
  // Compressed: feed input until some output appears or the stream ends.
  char* buf = buf_.data();
  const size_t cap = buf_.size();
  for (;;) {
    if (in_pos_ == in_.size() && !raw_eof_) {
      in_.resize(kTextStreamChunk);
      in_.resize(ReadRaw(in_.data(), in_.size()));
      in_pos_ = 0;
      if (in_.size() < kTextStreamChunk) raw_eof_ = true;
    }
    const size_t avail = in_.size() - in_pos_;
    size_t produced = 0;
    bool frame_end = false;
    if (kind_ == StreamCompression::kGzip) {
      z_stream& z = codec_->z;
      z.next_in = reinterpret_cast<Bytef*>(in_.data() + in_pos_);
      z.avail_in = static_cast<uInt>(avail);
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = cap;
      const int ret = inflate(&z, Z_NO_FLUSH);
      in_pos_ += avail - z.avail_in;
      produced = cap - z.avail_out;
      if (ret == Z_STREAM_END) {
        frame_end = true;
        inflateReset(&z);  // a further gzip member may follow (concatenated .gz files)
      } else if (ret != Z_OK && ret != Z_BUF_ERROR) {
        Fail(name_, ": corrupt gzip data after ", out_total_ + static_cast<int64_t>(produced),
             " decompressed bytes: ", z.msg != nullptr ? z.msg : zError(ret));
      }
    } else {
      ZSTD_inBuffer in{in_.data() + in_pos_, avail, 0};
      ZSTD_outBuffer out{buf, cap, 0};
      const size_t ret = ZSTD_decompressStream(codec_->zstd, &out, &in);
      if (ZSTD_isError(ret))
        Fail(name_, ": corrupt zstd data after ", out_total_,
             " decompressed bytes: ", ZSTD_getErrorName(ret));
      in_pos_ += in.pos;
      produced = out.pos;
      frame_end = ret == 0;
    }
    if (frame_end)
      boundary_ = true;  // a complete member/frame: the stream may end here
    else if (avail > 0 && in_pos_ > in_.size() - avail)
      boundary_ = false;  // bytes of a further member were consumed
    out_.append(buf, produced);
    out_total_ += static_cast<int64_t>(produced);
    const bool input_left = in_pos_ < in_.size() || !raw_eof_;
    if (!input_left && produced < cap) {
      // Every input byte is consumed and the decoder has nothing more to give.
      if (!boundary_)
        Fail(name_, ": the ", kind_ == StreamCompression::kGzip ? "gzip" : "zstd",
             " stream is truncated (it ends after ", out_total_,
             " decompressed bytes, in the middle of a block): the file was cut short");
      done_ = true;
      return produced > 0;
    }
    if (produced > 0) return true;
  }
}

bool TextStream::ReadLine(std::string& line) {
  size_t scanned = out_pos_;
  for (;;) {
    const size_t nl = out_.find('\n', scanned);
    if (nl != std::string::npos) {
      line.assign(out_, out_pos_, nl - out_pos_);
      out_pos_ = nl + 1;
      return true;
    }
    scanned = out_.size();
    if (out_pos_ > 0 && out_pos_ >= out_.size() / 2) {  // drop what was returned
      out_.erase(0, out_pos_);
      scanned -= out_pos_;
      out_pos_ = 0;
    }
    if (!Refill()) break;
  }
  if (out_pos_ >= out_.size()) return false;
  line.assign(out_, out_pos_, std::string::npos);
  out_pos_ = out_.size();
  return true;
}

std::string TextStream::ReadAll() {
  while (Refill()) {
  }
  std::string all = out_.substr(out_pos_);
  out_.clear();
  out_pos_ = 0;
  return all;
}

std::string ReadTextStreamFile(const std::string& path) {
  return TextStream(path).ReadAll();
}

}  // namespace elm
