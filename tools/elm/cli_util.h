// Small helpers shared by the CLI subcommands.
#pragma once

#include <string>
#include <vector>

namespace elm::cli {

// Parses "1,5,9" (spaces allowed) into ids; throws elm::Error naming `flag` on bad input.
std::vector<int> ParseIdList(const std::string& text, const std::string& flag);
// "[1,5,9]"
std::string IdsToJson(const std::vector<int>& ids);

}  // namespace elm::cli
