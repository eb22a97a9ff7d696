// libFuzzer target for what `elm pull` reads from the Hugging Face hub (src/hub/hub_api.h): byte 0
// even = a model description (GET /api/models/{repo}/revision/{rev}; with --include '*.gguf' when
// byte 0 is 2 mod 4), odd = header values, one per line (each an ETag, then a size). A rejection
// must be an elm::Error; an accepted description never names a file outside the snapshot folder.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "hub/hub_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(elm_fuzz::AsText(data + 1, size - 1));
  if (data[0] % 2 == 0) {
    const std::vector<std::string> include =
        data[0] % 4 == 2 ? std::vector<std::string>{"*.gguf"} : std::vector<std::string>{};
    elm_fuzz::ExpectOnlyElmErrors([&] {
      const elm::HubModelInfo info = elm::ParseHubModelInfo(text, "fuzz", include);
      if (!elm::IsLowerHex(info.commit, 40))
        elm_fuzz::Abort("accepted a commit that is not a hash");
      for (const std::string& f : info.files)
        if (f.empty() || f[0] == '/' || f.find("..") != std::string::npos)
          elm_fuzz::Abort("accepted an unsafe file name: " + f);
    });
    return 0;
  }
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    const std::string etag = elm::NormalizeEtag(line);
    elm_fuzz::ExpectOnlyElmErrors([&] {
      elm::CheckEtag(etag, "fuzz");
      if (etag.find('/') != std::string::npos) elm_fuzz::Abort("accepted an ETag with '/'");
    });
    if (elm::ParseSizeHeader(line) < -1) elm_fuzz::Abort("negative size");
    start = end + 1;
  }
  return 0;
}
