#include "hub/hub_libs.h"

#include <dlfcn.h>

#include <mutex>

#include "base/error.h"

#ifndef ELM_CURL_LIBRARY
#define ELM_CURL_LIBRARY "libcurl.so.4"
#endif
#ifndef ELM_CRYPTO_LIBRARY
#define ELM_CRYPTO_LIBRARY "libcrypto.so.3"
#endif

namespace elm {
namespace {

void* OpenHubLibrary(const char* name, const char* package) {
  void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr)
    Fail("cannot load ", name, ": ", dlerror(), "; `elm pull` needs it (Debian: apt install ",
         package, ")");
  return lib;
}

template <typename Fn>
void BindHubSymbol(void* lib, const char* lib_name, const char* symbol, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (fn == nullptr) Fail(lib_name, " has no ", symbol);
}

}  // namespace

const CurlLib& Curl() {
  static CurlLib api{};
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = OpenHubLibrary(ELM_CURL_LIBRARY, "libcurl4");
    const char* n = ELM_CURL_LIBRARY;
    BindHubSymbol(lib, n, "curl_global_init", api.global_init);
    BindHubSymbol(lib, n, "curl_easy_init", api.easy_init);
    BindHubSymbol(lib, n, "curl_easy_setopt", api.easy_setopt);
    BindHubSymbol(lib, n, "curl_easy_perform", api.easy_perform);
    BindHubSymbol(lib, n, "curl_easy_getinfo", api.easy_getinfo);
    BindHubSymbol(lib, n, "curl_easy_cleanup", api.easy_cleanup);
    BindHubSymbol(lib, n, "curl_easy_strerror", api.easy_strerror);
    BindHubSymbol(lib, n, "curl_slist_append", api.slist_append);
    BindHubSymbol(lib, n, "curl_slist_free_all", api.slist_free_all);
  });
  return api;
}

const CryptoLib& Crypto() {
  static CryptoLib api{};
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = OpenHubLibrary(ELM_CRYPTO_LIBRARY, "libssl3");
    const char* n = ELM_CRYPTO_LIBRARY;
    BindHubSymbol(lib, n, "EVP_MD_CTX_new", api.md_ctx_new);
    BindHubSymbol(lib, n, "EVP_MD_CTX_free", api.md_ctx_free);
    BindHubSymbol(lib, n, "EVP_DigestInit_ex", api.digest_init);
    BindHubSymbol(lib, n, "EVP_DigestUpdate", api.digest_update);
    BindHubSymbol(lib, n, "EVP_DigestFinal_ex", api.digest_final);
    BindHubSymbol(lib, n, "EVP_sha1", api.sha1);
    BindHubSymbol(lib, n, "EVP_sha256", api.sha256);
  });
  return api;
}

}  // namespace elm
