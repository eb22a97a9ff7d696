// Generated ids to streamed text: text is released only as complete UTF-8 characters (a character
// split over byte-fallback tokens comes out once its last byte arrives) and only once it can no
// longer be the start of a stop string, so a reader never sees half a character nor part of a
// stop string.
#pragma once

#include <string>
#include <vector>

#include "generation/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace elm {

class TextStreamer {
 public:
  // Empty stop strings are ignored. `continuation`: StreamDecoder's (keep a leading space).
  TextStreamer(const Tokenizer& tok, std::vector<std::string> stops, bool continuation = false);

  // The text that `id` makes safe to show (possibly empty). Sets *stopped once a stop string
  // completed; the stop string and anything after it are never shown.
  std::string Push(int id, bool* stopped);
  // End of generation: the rest (incomplete UTF-8 bytes become U+FFFD). Sets *stopped if that
  // completes a stop string.
  std::string Finish(bool* stopped);

 private:
  StreamDecoder decoder_;
  StopStringMatcher stops_;
};

}  // namespace elm
