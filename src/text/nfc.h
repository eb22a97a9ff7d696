// Unicode NFC normalization (canonical decomposition, canonical ordering, canonical composition;
// UAX #15) without ICU, from tables generated out of Python's unicodedata
// (src/text/gen_nfc_tables.py, Unicode 14). CoreNet runs ftfy.fix_text(text, normalization=
// "NFC") before tokenizing; elm does the NFC part only — ftfy's other repairs (mojibake, HTML
// entities, curly quotes, ...) are not implemented (docs/training.md).
#pragma once

#include <string>
#include <string_view>

namespace elm {

// NFC of UTF-8 text. Text that is not valid UTF-8 is returned unchanged.
std::string NfcNormalize(std::string_view text);

}  // namespace elm
