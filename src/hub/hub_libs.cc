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

// The library `name` loaded once per Api, its functions bound by bind(lib, api).
template <typename Api, typename Bind>
const Api& LoadedOnce(const char* name, const char* package, Bind bind) {
  static Api api{};
  static std::once_flag once;
  std::call_once(once, [&] { bind(OpenHubLibrary(name, package), api); });
  return api;
}

}  // namespace

const CurlLib& Curl() {
  return LoadedOnce<CurlLib>(ELM_CURL_LIBRARY, "libcurl4", [](void* lib, CurlLib& a) {
    const auto bind = [lib](const char* symbol, auto& fn) {
      BindHubSymbol(lib, ELM_CURL_LIBRARY, symbol, fn);
    };
    bind("curl_global_init", a.global_init);
    bind("curl_easy_init", a.easy_init);
    bind("curl_easy_setopt", a.easy_setopt);
    bind("curl_easy_perform", a.easy_perform);
    bind("curl_easy_getinfo", a.easy_getinfo);
    bind("curl_easy_cleanup", a.easy_cleanup);
    bind("curl_easy_strerror", a.easy_strerror);
    bind("curl_slist_append", a.slist_append);
    bind("curl_slist_free_all", a.slist_free_all);
  });
}

const CryptoLib& Crypto() {
  return LoadedOnce<CryptoLib>(ELM_CRYPTO_LIBRARY, "libssl3", [](void* lib, CryptoLib& a) {
    const auto bind = [lib](const char* symbol, auto& fn) {
      BindHubSymbol(lib, ELM_CRYPTO_LIBRARY, symbol, fn);
    };
    bind("EVP_MD_CTX_new", a.md_ctx_new);
    bind("EVP_MD_CTX_free", a.md_ctx_free);
    bind("EVP_DigestInit_ex", a.digest_init);
    bind("EVP_DigestUpdate", a.digest_update);
    bind("EVP_DigestFinal_ex", a.digest_final);
    bind("EVP_sha1", a.sha1);
    bind("EVP_sha256", a.sha256);
  });
}

}  // namespace elm
