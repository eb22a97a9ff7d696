// "Did you mean ...?" for names typed by hand: command-line flags (tools/elm/main.cc) and the keys
// of elm's own config block (train/train_config.cc).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace elm {

// Levenshtein distance (insertions, deletions and substitutions each cost 1).
int EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `typed` by EditDistance, if it is close enough to be a likely typo
// (at most max(2, a third of the longer name) edits, or `typed` is a prefix of it); "" otherwise.
// Ties go to the earlier candidate.
std::string ClosestName(std::string_view typed, const std::vector<std::string>& candidates);

}  // namespace elm
