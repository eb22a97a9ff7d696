// libcurl and libcrypto for `elm pull`, loaded on first use (dlopen) rather than linked, as
// OpenBLAS is (kernels/blas.h): the dozens of libraries libcurl pulls in (TLS, Kerberos, LDAP,
// SSH...) would otherwise be mapped by every elm command and count in its resident memory
// (~5 MB; docs/architecture.md, "Dependencies"). Only the functions the hub client calls are
// bound; a missing library is an error that says what to install.
#pragma once

#include <curl/curl.h>
#include <openssl/evp.h>

namespace elm {

struct CurlLib {
  decltype(&curl_global_init) global_init;
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_setopt) easy_setopt;
  decltype(&curl_easy_perform) easy_perform;
  decltype(&curl_easy_getinfo) easy_getinfo;
  decltype(&curl_easy_cleanup) easy_cleanup;
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;
};

struct CryptoLib {
  decltype(&EVP_MD_CTX_new) md_ctx_new;
  decltype(&EVP_MD_CTX_free) md_ctx_free;
  decltype(&EVP_DigestInit_ex) digest_init;
  decltype(&EVP_DigestUpdate) digest_update;
  decltype(&EVP_DigestFinal_ex) digest_final;
  decltype(&EVP_sha1) sha1;
  decltype(&EVP_sha256) sha256;
};

// Loaded once per process (thread-safe); Fail()s naming the library and the Debian package.
const CurlLib& Curl();
const CryptoLib& Crypto();

}  // namespace elm
