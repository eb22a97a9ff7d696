#include "server/guarded_http_server.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "server/api_error.h"

namespace elm::server {

namespace {

// Why the request being served on this thread is refused before its body is read (empty: it is
// not). A connection is served on one thread from its first byte to its close, and httplib calls
// the request check and then the pre-routing handler on that thread, in that order.
thread_local std::string t_rejection;

bool AllDigits(const std::string& s) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in uint64_t
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// The body's length must be unambiguous: a proxy in front that read it differently from httplib
// (which takes the first Content-Length) would let a client smuggle a second request inside the
// first one's body. RFC 9112 §6.3 says to reject such requests.
std::string Ambiguity(const httplib::Request& req) {
  const size_t lengths = req.get_header_value_count("Content-Length");
  if (lengths > 1) return "The request has more than one Content-Length header.";
  if (lengths == 1 && req.has_header("Transfer-Encoding"))
    return "The request has both Content-Length and Transfer-Encoding headers.";
  if (lengths == 1 && !AllDigits(req.get_header_value("Content-Length")))
    return "The request's Content-Length is not a number.";
  return {};
}

// Closes a connection. If the client sent bytes nobody read (the body of a rejected request, a
// trickling client past its deadline), close() alone would answer them with a reset, which can
// destroy the error response still in flight; so the response is finished with a FIN and what
// the client sends meanwhile is discarded for a short while first.
void CloseConnection(int sock) {
  int unread = 0;
  if (ioctl(sock, FIONREAD, &unread) == 0 && unread > 0 && shutdown(sock, SHUT_WR) == 0) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    char buf[4096];
    for (size_t drained = 0; drained < (256u << 10);) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      pollfd p{sock, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      const ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
  }
  shutdown(sock, SHUT_RDWR);
  close(sock);
}

}  // namespace

GuardedHttpServer::GuardedHttpServer(const ConnectionLimits& limits)
    : limits_(limits), limiter_(limits.max_waiting_per_client) {
  httplib::Server::set_pre_routing_handler([this](const httplib::Request& req,
                                                  httplib::Response& res) {
    if (!t_rejection.empty()) {
      res.status = 400;
      res.set_header("Connection", "close");
      res.set_content(Dump(ErrorJson(t_rejection, "invalid_request_error")), "application/json");
      return HandlerResponse::Handled;
    }
    return pre_routing_ ? pre_routing_(req, res) : HandlerResponse::Unhandled;
  });
}

GuardedHttpServer& GuardedHttpServer::set_pre_routing_handler(HandlerWithResponse handler) {
  pre_routing_ = std::move(handler);
  return *this;
}

StreamLimits GuardedHttpServer::StreamLimitsNow() const {
  using std::chrono::microseconds;
  using std::chrono::seconds;
  StreamLimits l;
  l.read_timeout = seconds(read_timeout_sec_) + microseconds(read_timeout_usec_);
  l.write_timeout = seconds(write_timeout_sec_) + microseconds(write_timeout_usec_);
  l.header_timeout = seconds(limits_.header_timeout_s);
  l.body_timeout = seconds(limits_.body_timeout_s);
  l.max_chunked_body = payload_max_length_;
  return l;
}

bool GuardedHttpServer::process_and_close_socket(socket_t sock) {
  bool ok = false;
  {
    DeadlineStream strm(sock, StreamLimitsNow(), limiter_,
                        [this] { return svr_sock_ == INVALID_SOCKET; });
    const auto idle = std::chrono::seconds(keep_alive_timeout_sec_);
    for (size_t left = keep_alive_max_count_; left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
      if (!strm.WaitForRequest(idle)) break;
      t_rejection.clear();
      bool connection_closed = false;
      ok = process_request(strm, /*close_connection=*/left == 1, connection_closed,
                           [&strm](httplib::Request& req) {
                             t_rejection = Ambiguity(req);
                             const bool chunked = req.has_header("Transfer-Encoding");
                             const std::string len = req.get_header_value("Content-Length");
                             strm.HeadersDone(AllDigits(len) ? std::stoull(len) : 0, chunked);
                           });
      const bool rejected = !t_rejection.empty();
      t_rejection.clear();
      if (!ok || connection_closed || rejected || strm.fault() != DeadlineStream::Fault::kNone)
        break;
    }
  }
  CloseConnection(sock);
  return ok;
}

}  // namespace elm::server
