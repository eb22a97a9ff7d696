// StreamDecoder: Tokenizer::Decode one id at a time, for printing tokens as they are generated.
#include "base/error.h"
#include "text/utf8.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_data.h"

namespace elm {

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special, bool continuation)
    : tok_(tok),
      skip_special_(skip_special),
      strip_left_(continuation ? 0 : tok.data_->strip_start) {}

std::string StreamDecoder::Push(int id) {
  tok_.CheckId(id);
  const tokenizer_internal::TokenizerData& d = *tok_.data_;
  const auto i = static_cast<size_t>(id);
  std::string out;
  // A skipped special token is invisible, exactly as in Decode: it does not even end a run of
  // byte tokens.
  if (skip_special_ && d.special[i]) return out;
  if (d.byte_of[i] >= 0) {
    pending_.push_back(static_cast<char>(d.byte_of[i]));
    DrainBytes(/*final=*/false, &out);
    return out;
  }
  DrainBytes(/*final=*/true, &out);
  Emit(d.texts[i], &out);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out;
  DrainBytes(/*final=*/true, &out);
  return out;
}

// Emits the complete characters at the front of pending_. A byte that cannot start or continue a
// valid character becomes U+FFFD at once; a valid but unfinished character waits for more bytes
// unless the run of byte tokens is over (`final`), when each of its bytes becomes U+FFFD.
// (Decode, following HF, turns a whole invalid run into U+FFFDs; a stream cannot wait for the end
// of the run, so for invalid bytes the two can differ. For valid UTF-8 they agree.)
void StreamDecoder::DrainBytes(bool final, std::string* out) {
  std::string text;
  size_t i = 0;
  while (i < pending_.size()) {
    int len = 1;
    const utf8::Prefix p = utf8::ClassifyPrefix(std::string_view(pending_).substr(i), &len);
    if (p == utf8::Prefix::kComplete) {
      text.append(pending_, i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    } else if (p == utf8::Prefix::kIncomplete && !final) {
      break;
    } else {
      text += utf8::kReplacementChar;
      ++i;
    }
  }
  pending_.erase(0, i);
  Emit(text, out);
}

// Appends `text`, applying the Strip decoder to the very start of the stream only.
void StreamDecoder::Emit(std::string_view text, std::string* out) {
  const std::string& c = tok_.data_->strip_content;
  while (strip_left_ > 0 && !text.empty()) {
    if (text.starts_with(c)) {
      text.remove_prefix(c.size());
      --strip_left_;
    } else {
      strip_left_ = 0;
    }
  }
  out->append(text);
}

}  // namespace elm
