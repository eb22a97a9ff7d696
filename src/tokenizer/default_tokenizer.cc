// The Llama-2 tokenizer built into the library, so OpenELM works with no tokenizer file at hand
// (Apple's checkpoints ship without one). data/tokenizer/llama2/*.json are assembled into
// read-only data with .incbin; CMake recompiles this file when they change (OBJECT_DEPENDS).
// Licence and provenance: data/tokenizer/llama2/LICENSE-NOTICE.md.
#include <string_view>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

#ifndef ELM_SOURCE_DIR
#error "ELM_SOURCE_DIR (the repository root) must be defined to locate the embedded tokenizer"
#endif

// clang-format off
// Each blob is followed by an "_end" symbol; the trailing NUL byte keeps the end symbol inside
// the section even for an empty file.
#if defined(__APPLE__)
#define ELM_EMBED_SECTION ".section __TEXT,__const\n"
#define ELM_EMBED_SYMBOL(name) "_" #name
#define ELM_EMBED_TYPE(name) ""
#else
#define ELM_EMBED_SECTION ".section .rodata\n"
#define ELM_EMBED_SYMBOL(name) #name
#define ELM_EMBED_TYPE(name) ".type " #name ", @object\n"
#endif

#define ELM_EMBED_FILE(name, path)                         \
  asm(ELM_EMBED_SECTION                                    \
      ".global " ELM_EMBED_SYMBOL(name) "\n"               \
      ELM_EMBED_TYPE(name)                                 \
      ".balign 16\n"                                       \
      ELM_EMBED_SYMBOL(name) ":\n"                         \
      ".incbin \"" ELM_SOURCE_DIR path "\"\n"              \
      ".global " ELM_EMBED_SYMBOL(name##_end) "\n"         \
      ELM_EMBED_SYMBOL(name##_end) ":\n"                   \
      ".byte 0\n"                                          \
      ".previous\n")

ELM_EMBED_FILE(elm_llama2_tokenizer_json, "/data/tokenizer/llama2/tokenizer.json");
ELM_EMBED_FILE(elm_llama2_tokenizer_config_json, "/data/tokenizer/llama2/tokenizer_config.json");
// clang-format on

extern "C" {
extern const char elm_llama2_tokenizer_json[];
extern const char elm_llama2_tokenizer_json_end[];
extern const char elm_llama2_tokenizer_config_json[];
extern const char elm_llama2_tokenizer_config_json_end[];
}

namespace elm {

Tokenizer Tokenizer::Default() {
  // Parsed on first use (tens of milliseconds), once per process; copies share the tables.
  static const Tokenizer tok = [] {
    const std::string_view json(
        elm_llama2_tokenizer_json,
        static_cast<size_t>(elm_llama2_tokenizer_json_end - elm_llama2_tokenizer_json));
    const std::string_view config(elm_llama2_tokenizer_config_json,
                                  static_cast<size_t>(elm_llama2_tokenizer_config_json_end -
                                                      elm_llama2_tokenizer_config_json));
    return FromJson(json, "<built-in llama2 tokenizer.json>", config);
  }();
  return tok;
}

}  // namespace elm
