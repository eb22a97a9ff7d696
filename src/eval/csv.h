// RFC 4180 CSV, as the original releases of MMLU (data/{dev,test}/<subject>_<split>.csv, written
// by pandas) and CrowS-Pairs (crows_pairs_anonymized.csv) store their rows: comma-separated
// fields, double-quoted where they hold commas, quotes ("" inside) or line breaks; records end
// at LF or CRLF outside quotes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace elm::eval {

struct CsvRecord {
  int line = 0;  // 1-based line where the record starts
  std::vector<std::string> fields;
};

// Every record of `text` (blank lines skipped). Throws elm::Error naming `path` and the line
// of an unterminated quoted field or of text after a closing quote.
std::vector<CsvRecord> ParseCsv(std::string_view text, const std::string& path);

}  // namespace elm::eval
