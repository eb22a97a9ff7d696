#include "train/dataset.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>

#include "base/error.h"
#include "text/nfc.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

constexpr char kCacheMagic[8] = {'E', 'L', 'M', 'S', 'M', 'P', 'L', '1'};
constexpr size_t kCacheHeader = 64;  // magic, u32 width, u32 reserved, u64 n, 3 × u64 stats

uint64_t Fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
uint64_t Fnv1a(uint64_t h, const std::string& s) {
  return Fnv1a(Fnv1a(h, s.data(), s.size()), "|", 1);
}

std::string CacheKey(const std::vector<SourceFile>& sources, const Tokenizer& tok,
                     const DatasetOptions& o) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = Fnv1a(h, "elm-samples-v1");
  h = Fnv1a(h, std::to_string(o.seq_len) + (o.packed ? "packed" : "documents") +
                   std::to_string(o.nfc) + std::to_string(o.append_sot) +
                   std::to_string(o.append_eot) + std::to_string(o.min_tokens_per_text) + "," +
                   std::to_string(o.min_characters_per_text) + "," +
                   std::to_string(o.document_split_size));
  // The tokenizer: size, specials and a sample of pieces spread over the vocabulary.
  h = Fnv1a(h, std::to_string(tok.vocab_size()) + "," + std::to_string(tok.bos_id()) + "," +
                   std::to_string(tok.eos_id()));
  for (int id = 0; id < tok.vocab_size(); id += 97) h = Fnv1a(h, tok.Piece(id));
  for (const auto& s : sources) {
    struct stat st {};
    if (::stat(s.path.c_str(), &st) != 0) Fail(s.path, ": cannot stat");
    h = Fnv1a(h, fs::absolute(s.path).lexically_normal().string() + "," + s.text_key + "," +
                     std::to_string(st.st_size) + "," + std::to_string(st.st_mtim.tv_sec) + "." +
                     std::to_string(st.st_mtim.tv_nsec));
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void WriteCache(const std::string& path, const std::vector<int32_t>& data, int width,
                const DatasetStats& st) {
  std::string buf(kCacheHeader + data.size() * 4, '\0');
  std::memcpy(buf.data(), kCacheMagic, 8);
  const auto w = static_cast<uint32_t>(width);
  const uint64_t head[4] = {data.size() / static_cast<size_t>(width),
                            static_cast<uint64_t>(st.documents), static_cast<uint64_t>(st.dropped),
                            static_cast<uint64_t>(st.tokens)};
  std::memcpy(buf.data() + 8, &w, 4);
  std::memcpy(buf.data() + 16, head, sizeof head);
  if (!data.empty()) std::memcpy(buf.data() + kCacheHeader, data.data(), data.size() * 4);
  WriteFileAtomic(path, buf.data(), buf.size());
}

class SampleBuilder {
 public:
  SampleBuilder(const Tokenizer& tok, const DatasetOptions& o) : tok_(tok), o_(o) {}

  // One document's ids with BOS/EOS as configured.
  std::vector<int32_t> Encode(const std::string& text) const {
    const std::vector<int> ids = tok_.Encode(o_.nfc ? NfcNormalize(text) : text, false);
    std::vector<int32_t> out;
    out.reserve(ids.size() + 2);
    if (o_.append_sot && tok_.bos_id() >= 0) out.push_back(tok_.bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    if (o_.append_eot && tok_.eos_id() >= 0) out.push_back(tok_.eos_id());
    return out;
  }

  void AddDocument(std::string&& text) {
    if (o_.packed) {
      ++stats_.documents;
      const auto ids = Encode(text);
      stream_.insert(stream_.end(), ids.begin(), ids.end());
      return;
    }
    // CoreNet: split, filter on characters, tokenize, filter on tokens, truncate and pad.
    std::vector<std::string> pieces = SplitDocument(text, o_.document_split_size);
    std::vector<std::vector<int32_t>> encoded(pieces.size());
    std::vector<char> keep(pieces.size(), 0);
    const auto n = static_cast<int64_t>(pieces.size());
    // An exception must not leave an OpenMP region (std::terminate): the first error of the
    // pieces (e.g. invalid UTF-8) is kept and rethrown after the loop.
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < n; ++i) {
      try {
        if (FilterLength(pieces[i]) < o_.min_characters_per_text) continue;
        encoded[i] = Encode(pieces[i]);
        keep[i] = static_cast<int>(encoded[i].size()) >= o_.min_tokens_per_text;
      } catch (...) {
#pragma omp critical(elm_dataset_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    const int width = o_.seq_len + 1;
    for (int64_t i = 0; i < n; ++i) {
      ++stats_.documents;
      if (!keep[i]) {
        ++stats_.dropped;
        continue;
      }
      auto& ids = encoded[i];
      if (static_cast<int>(ids.size()) > width) ids.resize(width);
      stats_.tokens += static_cast<int64_t>(ids.size());
      ids.resize(width, kPadToken);
      samples_.insert(samples_.end(), ids.begin(), ids.end());
    }
  }
  void AddTokens(const std::vector<int32_t>& tokens) {
    // A shard is a stream that already holds BOS/EOS; documents mode cuts it at each BOS.
    if (o_.packed) {
      stream_.insert(stream_.end(), tokens.begin(), tokens.end());
      ++stats_.documents;
      return;
    }
    const int width = o_.seq_len + 1;
    size_t i = 0;
    while (i < tokens.size()) {
      size_t j = i + 1;
      while (j < tokens.size() && tokens[j] != tok_.bos_id()) ++j;
      ++stats_.documents;
      if (static_cast<int>(j - i) < o_.min_tokens_per_text) {
        ++stats_.dropped;
      } else {
        std::vector<int32_t> s(
            tokens.begin() + static_cast<std::ptrdiff_t>(i),
            tokens.begin() + static_cast<std::ptrdiff_t>(std::min(j, i + width)));
        stats_.tokens += static_cast<int64_t>(s.size());
        s.resize(width, kPadToken);
        samples_.insert(samples_.end(), s.begin(), s.end());
      }
      i = j;
    }
  }
  std::vector<int32_t> Finish() {
    if (o_.packed) {
      const size_t T = static_cast<size_t>(o_.seq_len);
      for (size_t start = 0; start + T + 1 <= stream_.size(); start += T)
        samples_.insert(samples_.end(), stream_.begin() + static_cast<std::ptrdiff_t>(start),
                        stream_.begin() + static_cast<std::ptrdiff_t>(start + T + 1));
      stats_.tokens = static_cast<int64_t>(stream_.size());
    }
    return std::move(samples_);
  }
  const DatasetStats& stats() const {
    return stats_;
  }

 private:
  const Tokenizer& tok_;
  const DatasetOptions& o_;
  std::vector<int32_t> stream_, samples_;
  DatasetStats stats_;
};

}  // namespace

SampleSet::SampleSet(std::vector<int32_t> data, int width)
    : owned_(std::make_shared<std::vector<int32_t>>(std::move(data))), width_(width) {
  data_ = owned_->data();
  n_ = static_cast<int64_t>(owned_->size()) / width;
}

std::shared_ptr<SampleSet> SampleSet::FromCache(const std::string& path) {
  auto s = std::make_shared<SampleSet>();
  s->file_ = std::make_shared<MmapFile>(path);
  const MmapFile& f = *s->file_;
  if (f.size() < kCacheHeader || std::memcmp(f.data(), kCacheMagic, 8) != 0)
    Fail(path, ": not an elm sample cache (delete it to rebuild)");
  uint32_t w;
  uint64_t head[4];
  std::memcpy(&w, f.data() + 8, 4);
  std::memcpy(head, f.data() + 16, sizeof head);
  // Division, not head[0] * w * 4: a corrupt count must not wrap the product into a size that
  // matches the file.
  const uint64_t row_bytes = uint64_t{w} * 4;
  const uint64_t body = f.size() - kCacheHeader;
  if (w == 0 || w > static_cast<uint32_t>(std::numeric_limits<int>::max()) ||
      body % row_bytes != 0 || body / row_bytes != head[0])
    Fail(path, ": corrupt or truncated sample cache: header says ", head[0], " samples of ", w,
         " tokens, the file holds ", body, " bytes of tokens (delete it to rebuild)");
  if (head[1] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      head[2] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      head[3] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    Fail(path, ": corrupt sample cache: statistics out of range (delete it to rebuild)");
  s->width_ = static_cast<int>(w);
  s->n_ = static_cast<int64_t>(head[0]);
  s->stats.documents = static_cast<int64_t>(head[1]);
  s->stats.dropped = static_cast<int64_t>(head[2]);
  s->stats.tokens = static_cast<int64_t>(head[3]);
  s->data_ = reinterpret_cast<const int32_t*>(f.data() + kCacheHeader);
  return s;
}

std::shared_ptr<SampleSet> SampleSet::Slice(const std::shared_ptr<SampleSet>& self, int64_t begin,
                                            int64_t end) const {
  ELM_CHECK(self.get() == this && begin >= 0 && begin <= end && end <= n_);
  auto s = std::make_shared<SampleSet>(*this);
  s->data_ = data_ + begin * width_;
  s->n_ = end - begin;
  return s;
}

std::shared_ptr<SampleSet> BuildSamples(const std::vector<SourceFile>& sources,
                                        const Tokenizer& tok, const DatasetOptions& opt) {
  std::string cache_path;
  if (!opt.cache_dir.empty()) {
    cache_path = (fs::path(opt.cache_dir) / (CacheKey(sources, tok, opt) + ".samples")).string();
    if (fs::exists(cache_path)) {
      auto s = SampleSet::FromCache(cache_path);
      if (s->width() != opt.seq_len + 1)
        Fail(cache_path, ": corrupt sample cache: samples of ", s->width(), " tokens, expected ",
             opt.seq_len + 1, " (delete it to rebuild)");
      const int64_t vocab = tok.vocab_size();
      const int32_t* d = s->size() > 0 ? s->sample(0) : nullptr;
      const int64_t count = s->size() * s->width();
      for (int64_t i = 0; i < count && vocab > 0; ++i)
        if (d[i] < kPadToken || d[i] >= vocab)
          Fail(cache_path, ": corrupt sample cache: token ", d[i], " at position ", i,
               " is outside the tokenizer's vocabulary (delete it to rebuild)");
      if (opt.verbose)
        std::fprintf(stderr, "data: %lld samples from the token cache %s\n",
                     static_cast<long long>(s->size()), cache_path.c_str());
      return s;
    }
  }
  SampleBuilder b(tok, opt);
  for (const auto& src : sources) {
    if (opt.verbose) std::fprintf(stderr, "data: tokenizing %s\n", src.path.c_str());
    if (src.kind == SourceKind::kTokens) {
      const auto tokens = ReadTokenShard(src.path);
      for (int32_t t : tokens)
        if (t >= tok.vocab_size() && tok.vocab_size() > 0)
          Fail(src.path, ": token ", t, " is outside the tokenizer's vocabulary");
      b.AddTokens(tokens);
    } else {
      int64_t n = 0;
      ForEachDocument(src, [&](std::string&& doc) {
        ++n;
        try {
          b.AddDocument(std::move(doc));
        } catch (const Error& e) {  // e.g. invalid UTF-8: say where
          Fail(src.path, ": document ", n, ": ", e.what());
        }
      });
    }
  }
  std::vector<int32_t> data = b.Finish();
  const int width = opt.seq_len + 1;
  if (!cache_path.empty()) {
    fs::create_directories(opt.cache_dir);
    WriteCache(cache_path, data, width, b.stats());
    return SampleSet::FromCache(cache_path);
  }
  auto s = std::make_shared<SampleSet>(std::move(data), width);
  s->stats = b.stats();
  return s;
}

DataSplits LoadDataSplits(const TrainConfig& cfg, const Tokenizer& tok, bool verbose) {
  const auto train_src = ResolveSources(cfg.train_data, cfg.base_dir,
                                        "dataset.language_modeling.general_lm.train_data_info");
  const auto val_src = ResolveSources(cfg.val_data, cfg.base_dir,
                                      "dataset.language_modeling.general_lm.val_data_info");
  DataSplits out;
  out.packed = cfg.packing == Packing::kPacked;
  if (cfg.packing == Packing::kAuto) {
    out.packed = true;
    for (const auto& s : train_src) out.packed &= s.kind == SourceKind::kText;
  }
  DatasetOptions o;
  o.verbose = verbose;
  o.seq_len = cfg.seq_len;
  o.packed = out.packed;
  o.nfc = cfg.nfc;
  o.append_sot = cfg.append_sot;
  o.append_eot = cfg.append_eot;
  o.min_tokens_per_text = cfg.min_tokens_per_text;
  o.min_characters_per_text = cfg.min_characters_per_text;
  o.document_split_size = cfg.document_split_size;
  o.cache_dir =
      cfg.cache_dir.empty() ? (fs::path(cfg.results_loc) / "token_cache").string() : cfg.cache_dir;
  auto all = BuildSamples(train_src, tok, o);
  if (all->size() == 0)
    Fail("the training data gives no samples of ", cfg.seq_len + 1, " tokens (",
         all->stats.documents, " documents, ", all->stats.dropped,
         " dropped by the filters); use more text, a shorter sequence_length or lower filters");
  if (!val_src.empty()) {
    out.train = all;
    out.val = BuildSamples(val_src, tok, o);
    return out;
  }
  auto n_val = static_cast<int64_t>(static_cast<double>(all->size()) * cfg.val_fraction + 0.5);
  if (cfg.val_fraction > 0 && n_val == 0) n_val = 1;
  if (n_val >= all->size()) n_val = all->size() - 1;
  out.train = all->Slice(all, 0, all->size() - n_val);
  out.val = all->Slice(all, all->size() - n_val, all->size());
  out.train->stats = all->stats;
  return out;
}

}  // namespace elm
