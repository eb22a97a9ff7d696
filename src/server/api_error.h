// Errors as OpenAI's API reports them: an HTTP status plus {"error": {"message", "type", "param",
// "code"}}. Request parsing and the routes throw ApiError; the HTTP layer turns it into the
// response, so existing OpenAI clients see the shapes they already handle.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace elm::server {

class ApiError : public Error {
 public:
  // `param` and `code` may be empty (sent as null).
  ApiError(int status, const std::string& message, std::string type = "invalid_request_error",
           std::string param = {}, std::string code = {})
      : Error(message),
        status_(status),
        type_(std::move(type)),
        param_(std::move(param)),
        code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& type() const { return type_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }

 private:
  int status_;
  std::string type_, param_, code_;
};

// 400 invalid_request_error naming the offending field.
[[noreturn]] inline void BadParam(const std::string& param, const std::string& message) {
  throw ApiError(400, message, "invalid_request_error", param);
}

// {"error": {...}}; empty param/code become null.
inline nlohmann::json ErrorJson(const std::string& message, const std::string& type,
                                const std::string& param = {}, const std::string& code = {}) {
  nlohmann::json e = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return {{"error", e}};
}

inline nlohmann::json ErrorJson(const ApiError& e) {
  return ErrorJson(e.what(), e.type(), e.param(), e.code());
}

// Serializes JSON for the wire. Text the model produced can hold bytes that are not valid UTF-8
// (a lone byte-fallback token in a logprobs list); those become U+FFFD instead of an exception.
inline std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace elm::server
