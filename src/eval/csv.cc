#include "eval/csv.h"

#include "base/error.h"

namespace elm::eval {

std::vector<CsvRecord> ParseCsv(std::string_view text, const std::string& path) {
  std::vector<CsvRecord> out;
  size_t i = 0;
  int line = 1;
  while (i < text.size()) {
    CsvRecord rec;
    rec.line = line;
    // A blank line (LF or CRLF alone) holds no record.
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    bool end_of_record = false;
    while (!end_of_record) {
      std::string field;
      if (i < text.size() && text[i] == '"') {
        const int start_line = line;
        ++i;
        while (true) {
          if (i >= text.size()) Fail(path, ":", start_line, ": unterminated quoted field");
          const char c = text[i++];
          if (c == '"') {
            if (i < text.size() && text[i] == '"') {
              field += '"';
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n') ++line;
          field += c;
        }
        if (i < text.size() && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          Fail(path, ":", line, ": text after a closing quote");
      } else {
        while (i < text.size() && text[i] != ',' && text[i] != '\n' &&
               !(text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')) {
          if (text[i] == '"') Fail(path, ":", line, ": quote inside an unquoted field");
          field += text[i++];
        }
      }
      rec.fields.push_back(std::move(field));
      if (i >= text.size()) {
        end_of_record = true;
      } else if (text[i] == ',') {
        ++i;
      } else {
        if (text[i] == '\r') ++i;
        if (i < text.size() && text[i] == '\n') ++i;
        ++line;
        end_of_record = true;
      }
    }
    out.push_back(std::move(rec));
  }
  return out;
}

}  // namespace elm::eval
