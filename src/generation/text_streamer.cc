#include "generation/text_streamer.h"

#include <utility>

namespace elm {

TextStreamer::TextStreamer(const Tokenizer& tok, std::vector<std::string> stops, bool continuation)
    : decoder_(tok, /*skip_special=*/true, continuation), stops_(std::move(stops)) {}

std::string TextStreamer::Push(int id, bool* stopped) {
  return stops_.Push(decoder_.Push(id), stopped);
}

std::string TextStreamer::Finish(bool* stopped) {
  std::string text = stops_.Push(decoder_.Flush(), stopped);
  if (!*stopped) text += stops_.Flush();
  return text;
}

}  // namespace elm
