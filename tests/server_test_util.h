// Helpers shared by the server's HTTP test files (they need cpp-httplib, which test_util.h
// does not pull in).
#pragma once

#include <httplib.h>

#include <string>

namespace elm::test {

// The value of Prometheus metric `name` on the server's /metrics page (-1 when absent).
inline double MetricValue(httplib::Client& c, const std::string& name) {
  auto m = c.Get("/metrics");
  if (!m || m->status != 200) return -1;
  const size_t at = m->body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(m->body.substr(at + name.size() + 2));
}

}  // namespace elm::test
