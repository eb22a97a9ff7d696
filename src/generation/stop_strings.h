// Stop strings over streamed text: text is released only once it can no longer be the start of
// a stop string, so a client never sees part of one.
#pragma once

#include <string>
#include <vector>

namespace elm {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  // Adds generated text; returns what is safe to show. Sets *stopped when a stop string completes
  // (the stop string and anything after it are dropped).
  std::string Push(const std::string& text, bool* stopped);
  // End of generation: whatever was held back.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace elm
