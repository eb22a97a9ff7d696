// The tokens of replies this program generated, looked up by their text. A chat client sends the
// conversation back every turn, with each earlier reply as text; encoding that text again need not
// give the tokens that were sampled (a model can emit "▁a" "b" where the tokenizer would write
// "▁ab"), and the KV a slot or `elm chat` holds was computed for the sampled ones. The chat
// template (generation/chat_template.h) feeds an assistant message whose content is a remembered
// reply as its sampled tokens: the model sees what it generated, as in one continuous session
// (llama.cpp's interactive mode, `elm chat --raw`), and the prefix cache matches the whole
// conversation instead of stopping at the first token that re-encodes differently
// (docs/server.md "Replies fed back as sampled").
//
// Bounded: the least recently used reply goes first. Thread-safe.
#pragma once

#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace elm {

class ReplyMemo {
 public:
  explicit ReplyMemo(size_t capacity) : capacity_(capacity) {}

  // Remembers that the reply `text` was generated as `ids`: the sampled tokens without the EOS
  // that ended it, whose decoded text is `text` exactly (a reply cut by a stop string is not one:
  // its ids run past its text). Empty text, or a memo of capacity 0, remembers nothing.
  void Remember(const std::string& text, std::vector<int> ids);

  // The ids of a remembered reply whose text is `text`, which becomes the most recently used.
  std::optional<std::vector<int>> Find(const std::string& text) const;

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    std::string text;
    std::vector<int> ids;
  };
  const size_t capacity_;
  mutable std::mutex mu_;
  mutable std::list<Entry> lru_;  // most recent first
  std::unordered_map<std::string_view, std::list<Entry>::iterator> by_text_;
};

}  // namespace elm
