// cpp-httplib's Server with each connection served through a DeadlineStream: per-request header
// and body deadlines, a cap on the connections each client address may keep waiting, eviction of
// clients that stop reading a response, and rejection of requests whose body length is ambiguous
// (duplicate Content-Length, or Content-Length with Transfer-Encoding: a request-smuggling risk
// behind a proxy).
//
// Why a subclass: httplib 0.11 (Debian 12) offers only per-read and per-write timeouts, and none of
// its hooks (socket options, task queue, pre-routing handler) sees a connection before its headers
// have been read or knows its socket. The private virtual process_and_close_socket() is where
// httplib hands an accepted socket to a connection thread (SSLServer overrides it the same way),
// and the protected process_request() parses, routes and answers one request from any
// httplib::Stream. This class overrides the first with its own keep-alive loop around the second.
#pragma once

#include <httplib.h>

#include <cstddef>

#include "server/client_limiter.h"
#include "server/deadline_stream.h"

namespace elm::server {

struct ConnectionLimits {
  int header_timeout_s = 10;
  int body_timeout_s = 10;
  int max_waiting_per_client = 4;
};

class GuardedHttpServer : public httplib::Server {
 public:
  // Read, write and keep-alive timeouts and the body limit are httplib's setters, read per
  // connection; call them before listening.
  explicit GuardedHttpServer(const ConnectionLimits& limits);

  // Hides httplib's: `handler` runs after this class's own checks of the request.
  GuardedHttpServer& set_pre_routing_handler(HandlerWithResponse handler);

 private:
  bool process_and_close_socket(socket_t sock) override;
  StreamLimits StreamLimitsNow() const;

  const ConnectionLimits limits_;
  ClientLimiter limiter_;
  HandlerWithResponse pre_routing_;
};

}  // namespace elm::server
