// Shared by the libFuzzer targets here: the one rule every target checks (a rejection is an
// elm::Error whose message is not an ELM_CHECK "internal error"; anything else aborts the run so
// libFuzzer saves the input), and scratch files for the parsers that only read paths.
#pragma once

#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "base/error.h"

namespace elm_fuzz {

// Prints `message` where sanitizer reports go: stderr, or libFuzzer's copy of it when the run
// closes the target's stderr (-close_fd_mask=2, as smoke.sh does), then aborts.
[[noreturn]] inline void Abort(const std::string& message) {
  __sanitizer_report_error_summary(message.c_str());
  std::abort();
}

// Runs `body`; an elm::Error (or a subclass such as the server's ApiError) is the expected way to
// reject an input. ELM_CHECK failures and every other exception abort.
template <typename F>
void ExpectOnlyElmErrors(F&& body) {
  try {
    body();
  } catch (const elm::Error& e) {
    if (std::strncmp(e.what(), "internal error:", 15) == 0) {
      Abort(std::string("ELM_CHECK reached by an input: ") + e.what());
    }
  } catch (const std::exception& e) {
    Abort(std::string("escaped exception that is not elm::Error: ") + e.what());
  }
}

// A scratch folder for this process, removed at exit: /tmp/elm_fuzz.<pid>.
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("elm_fuzz." + std::to_string(getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchDir(), ec);
    });
    return d;
  }();
  return dir;
}

// Writes `bytes` to ScratchDir()/name (replacing it) and returns the path.
inline std::string WriteScratch(const std::string& name, std::string_view bytes) {
  const std::filesystem::path p = ScratchDir() / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    Abort("cannot write " + p.string());
  }
  return p.string();
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace elm_fuzz
