// Reading training data: file-name patterns of CoreNet's train_data_info, plain text and JSONL
// documents, llm.c token shards, and CoreNet's document splitting and character filter
// (corenet/data/datasets/language_modeling/{base_lm,general_lm}.py, docs/openelm.md §6.6).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "train/train_config.h"

namespace elm {

enum class SourceKind { kText, kJsonl, kTokens };

struct SourceFile {
  std::string path;
  SourceKind kind = SourceKind::kText;
  std::string text_key = "text";
};

// Expands $VARS and "{file_id:05d}" fields over file_id_range, resolves relative paths (against
// the working directory, then `base_dir`) and infers the kind from the extension: .txt/.text (or
// anything else) plain text, .jsonl/.json JSON lines, .bin llm.c token shards; a further .gz or
// .zst suffix is read through zlib/libzstd (base/text_stream.h). Missing files and unsupported
// formats (parquet, arrow, compressed .bin) are errors naming `key`.
std::vector<SourceFile> ResolveSources(const std::vector<DataSourceInfo>& infos,
                                       const std::string& base_dir, const std::string& key);

// Calls fn(document) for each document of a text source: a plain-text file is one document, a
// JSONL file one per line (its `text_key` string field), decompressed as it is read.
void ForEachDocument(const SourceFile& src, const std::function<void(std::string&&)>& fn);

// llm.c token shard (.bin): 256 int32 header words (magic 20240520, version 1, token count), then
// the tokens as uint16 little-endian.
std::vector<int32_t> ReadTokenShard(const std::string& path);
void WriteTokenShard(const std::string& path, const std::vector<int32_t>& tokens);

// CoreNet's split of a document into pieces of at most `max_words` space-separated words
// (text.split(" ") regrouped and re-joined with " ").
std::vector<std::string> SplitDocument(std::string_view text, int max_words);
// Length of CoreNet's filter text: lowercase, ASCII punctuation removed, whitespace collapsed
// (the SlimPajama rule). Pieces shorter than min_characters_per_text are dropped.
int64_t FilterLength(std::string_view text);

}  // namespace elm
