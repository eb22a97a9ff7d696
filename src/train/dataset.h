// Training samples from the configured sources, tokenized once and cached on disk.
//
// Two modes (docs/training.md):
//   packed     every document becomes [BOS] ids [EOS]; all of them are concatenated into one
//              stream cut into windows of T + 1 tokens (stride T). The default for plain text.
//   documents  CoreNet's pipeline (docs/openelm.md §6.6): documents split into ≤
//   document_split_size-word
//              pieces, pieces with fewer than min_characters_per_text filter characters dropped,
//              [BOS] ids [EOS] with fewer than min_tokens_per_text tokens dropped, the rest
//              truncated to T + 1 tokens and right-padded. No packing.
// A sample is T + 1 tokens; inputs are the first T, targets the last T. Padding is stored as
// kPadToken and mapped to the configured ids when a batch is formed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/mmap_file.h"
#include "tokenizer/tokenizer.h"
#include "train/text_sources.h"
#include "train/train_config.h"

namespace elm {

constexpr int32_t kPadToken = -1;

struct DatasetStats {
  int64_t documents = 0;  // documents (or pieces) read
  int64_t dropped = 0;    // pieces removed by the filters
  int64_t tokens = 0;     // non-pad tokens in the samples
};

// An immutable [n, T + 1] matrix of token ids (mmapped from the cache, or owned).
class SampleSet {
 public:
  SampleSet() = default;
  SampleSet(std::vector<int32_t> data, int width);
  static std::shared_ptr<SampleSet> FromCache(const std::string& path);

  int64_t size() const { return n_; }
  int width() const { return width_; }  // T + 1
  const int32_t* sample(int64_t i) const { return data_ + i * width_; }
  // Samples [begin, end) as a view sharing this set's storage.
  std::shared_ptr<SampleSet> Slice(const std::shared_ptr<SampleSet>& self, int64_t begin,
                                   int64_t end) const;
  DatasetStats stats;

 private:
  std::shared_ptr<MmapFile> file_;
  std::shared_ptr<std::vector<int32_t>> owned_;
  const int32_t* data_ = nullptr;
  int64_t n_ = 0;
  int width_ = 0;
};

struct DatasetOptions {
  int seq_len = 128;
  bool packed = true;
  bool nfc = true, append_sot = true, append_eot = true;
  int min_tokens_per_text = 0;
  int min_characters_per_text = 0;
  int document_split_size = 2048;
  std::string cache_dir;  // "" = no cache
  bool verbose = true;    // progress lines on stderr
};

// Tokenizes (or loads from the cache) every source into samples. The cache key covers the
// options, the tokenizer and each file's path, size and modification time.
std::shared_ptr<SampleSet> BuildSamples(const std::vector<SourceFile>& sources,
                                        const Tokenizer& tok, const DatasetOptions& opt);

// Training and validation samples for a config: the sources of train_data_info (and
// val_data_info, else the last val_fraction of the samples, which keeps the held-out text
// contiguous in packed mode).
struct DataSplits {
  std::shared_ptr<SampleSet> train, val;  // val may be empty (size 0)
  bool packed = true;
};
DataSplits LoadDataSplits(const TrainConfig& cfg, const Tokenizer& tok, bool verbose = true);

}  // namespace elm
