// One client connection as cpp-httplib reads and writes it, with the limits httplib 0.11 lacks:
// its own SocketStream bounds each read and each write by a timeout, so a client trickling one
// byte every few seconds kept a connection thread forever (reliability defect D1). This stream
// bounds the whole request instead: the request line and headers must arrive within the header
// deadline of their first byte, the body within the body deadline (scaled by its announced size),
// the headers may not exceed a byte limit, and a connection that keeps its thread waiting on the
// client for more than a grace period counts against that client's address (ClientLimiter).
// Writing, it evicts a client that stopped reading: its unread bytes in the kernel (SIOCOUTQ)
// have not shrunk, or a write has made no progress, for the write timeout.
//
// Linux-specific (poll, SIOCOUTQ, MSG_NOSIGNAL). Used by GuardedHttpServer, one per connection,
// kept across the requests of a keep-alive connection (so pipelined bytes are not lost).
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "server/client_limiter.h"

namespace elm::server {

struct StreamLimits {
  using Duration = std::chrono::steady_clock::duration;
  Duration read_timeout = std::chrono::seconds(10);    // silence allowed within a request
  Duration write_timeout = std::chrono::seconds(10);   // a client not reading this long is dropped
  Duration header_timeout = std::chrono::seconds(10);  // request line + headers, from the 1st byte
  Duration body_timeout = std::chrono::seconds(10);    // the body, plus 1 s per body_bytes_per_s
  uint64_t body_bytes_per_s = 64 * 1024;
  uint64_t max_chunked_body = 4u << 20;           // what a chunked body's deadline is scaled by
  size_t max_header_bytes = 64 * 1024;            // request line and headers together
  Duration slow_after = std::chrono::seconds(1);  // waiting longer counts against the client
};

class DeadlineStream : public httplib::Stream {
 public:
  using Clock = std::chrono::steady_clock;
  // Why the connection must close (the first fault wins).
  enum class Fault {
    kNone,
    kSilent,           // no byte for read_timeout
    kDeadline,         // the headers or the body did not arrive in time
    kHeadersTooLarge,  // over max_header_bytes
    kTooManyWaiting,   // this client already has its share of waiting connections
    kStalled,          // the client stopped reading the response
    kStopped,          // the server is stopping
    kSocket,           // a socket error
  };

  // `stopping` is polled while waiting for the client; `limiter` must outlive the stream.
  DeadlineStream(int fd, const StreamLimits& limits, ClientLimiter& limiter,
                 std::function<bool()> stopping);
  ~DeadlineStream() override;
  DeadlineStream(const DeadlineStream&) = delete;
  DeadlineStream& operator=(const DeadlineStream&) = delete;

  // Waits up to `idle` for the next request's first byte (or a hang-up, which the next read
  // reports); then the header deadline starts. False when nothing came, or on a fault.
  bool WaitForRequest(Clock::duration idle);
  // The headers are in: the body deadline starts (`chunked`: scaled by max_chunked_body).
  void HeadersDone(uint64_t content_length, bool chunked);

  Fault fault() const { return fault_; }
  const std::string& client() const { return client_; }  // the peer's address

  bool is_readable() const override;
  bool is_writable() const override;
  ssize_t read(char* ptr, size_t size) override;
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override;
  void get_local_ip_and_port(std::string& ip, int& port) const override;
  socket_t socket() const override { return fd_; }

 private:
  enum class Phase { kIdle, kHeaders, kBody, kResponding };
  // 1: ready; 0: `until` passed; -1: a fault (set). Marks the connection waiting past the grace.
  int Wait(short events, Clock::time_point until, bool check_stop);
  void Fail(Fault f) {
    if (fault_ == Fault::kNone) fault_ = f;
  }
  void StopWaiting();  // leaves the limiter if counted
  void Respond();      // the response has begun: no more deadlines, eviction watch starts

  const int fd_;
  const StreamLimits limits_;
  ClientLimiter& limiter_;
  const std::function<bool()> stopping_;
  std::string client_;
  int client_port_ = 0;

  Phase phase_ = Phase::kIdle;
  Clock::time_point phase_start_;  // when the current wait or request began
  Clock::time_point deadline_;     // of the headers or the body
  size_t header_bytes_ = 0;
  bool counted_ = false;  // counted in limiter_ as waiting
  Fault fault_ = Fault::kNone;
  bool write_failed_ = false;
  int last_unread_ = 0;           // SIOCOUTQ after the last write
  Clock::time_point last_drain_;  // when the client was last seen reading

  char buf_[4096];
  size_t buf_pos_ = 0, buf_len_ = 0;
};

}  // namespace elm::server
