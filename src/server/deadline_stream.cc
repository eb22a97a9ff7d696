#include "server/deadline_stream.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace elm::server {

namespace {

using Clock = DeadlineStream::Clock;

// Longest single poll: waits are sliced so that a stopping server is noticed promptly.
constexpr auto kSlice = std::chrono::milliseconds(100);

int PollOnce(int fd, short events, Clock::duration timeout) {
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(timeout).count();
  pollfd p{fd, events, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(std::clamp<long long>(ms, 0, 1 << 30)));
  } while (r < 0 && errno == EINTR);
  return r;
}

void Endpoint(const sockaddr_storage& addr, std::string& ip, int& port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text));
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text));
    port = ntohs(a.sin6_port);
  }
  ip = text;
}

int Unread(int fd) {  // bytes sent but not yet taken by the peer; -1 if unknown
  int n = 0;
  return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : -1;
}

}  // namespace

DeadlineStream::DeadlineStream(int fd, const StreamLimits& limits, ClientLimiter& limiter,
                               std::function<bool()> stopping)
    : fd_(fd), limits_(limits), limiter_(limiter), stopping_(std::move(stopping)) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    Endpoint(addr, client_, client_port_);
  phase_start_ = Clock::now();
  deadline_ = phase_start_ + limits_.header_timeout;
}

DeadlineStream::~DeadlineStream() {
  StopWaiting();
}

void DeadlineStream::StopWaiting() {
  if (counted_) limiter_.Leave(client_);
  counted_ = false;
}

int DeadlineStream::Wait(short events, Clock::time_point until, bool check_stop) {
  while (true) {
    const auto now = Clock::now();
    if (now >= until) return 0;
    if (check_stop && stopping_ && stopping_()) {
      Fail(Fault::kStopped);
      return -1;
    }
    auto slice = std::min<Clock::duration>(until - now, kSlice);
    const bool receiving = phase_ != Phase::kResponding;
    if (receiving && !counted_) {
      const auto grace_end = phase_start_ + limits_.slow_after;
      if (now >= grace_end) {
        if (!limiter_.TryEnter(client_)) {
          Fail(Fault::kTooManyWaiting);
          return -1;
        }
        counted_ = true;
      } else {
        slice = std::min<Clock::duration>(slice, grace_end - now);
      }
    }
    const int r = PollOnce(fd_, events, slice);
    if (r > 0) return 1;  // ready, or hung up / in error: the recv or send says which
    if (r < 0) {
      Fail(Fault::kSocket);
      return -1;
    }
  }
}

bool DeadlineStream::WaitForRequest(Clock::duration idle) {
  if (fault_ != Fault::kNone) return false;
  StopWaiting();
  phase_ = Phase::kIdle;
  phase_start_ = Clock::now();
  if (buf_pos_ == buf_len_ && Wait(POLLIN, phase_start_ + idle, /*check_stop=*/true) <= 0)
    return false;
  StopWaiting();  // an idle wait that counted is over; the request gets its own grace
  phase_ = Phase::kHeaders;
  phase_start_ = Clock::now();
  deadline_ = phase_start_ + limits_.header_timeout;
  header_bytes_ = 0;
  return true;
}

void DeadlineStream::HeadersDone(uint64_t content_length, bool chunked) {
  phase_ = Phase::kBody;
  const uint64_t size = chunked ? limits_.max_chunked_body : content_length;
  const auto per_s = std::max<uint64_t>(1, limits_.body_bytes_per_s);
  deadline_ =
      Clock::now() + limits_.body_timeout +
      std::chrono::seconds(static_cast<int64_t>(std::min<uint64_t>(size / per_s, 1u << 30)));
}

void DeadlineStream::Respond() {
  if (phase_ == Phase::kResponding) return;
  phase_ = Phase::kResponding;
  StopWaiting();
  last_unread_ = 0;
  last_drain_ = Clock::now();
}

bool DeadlineStream::is_readable() const {
  if (buf_pos_ < buf_len_) return true;
  return PollOnce(fd_, POLLIN, limits_.read_timeout) > 0;
}

bool DeadlineStream::is_writable() const {
  return !write_failed_ && PollOnce(fd_, POLLOUT, limits_.write_timeout) > 0;
}

ssize_t DeadlineStream::read(char* ptr, size_t size) {
  if (fault_ != Fault::kNone) return -1;
  if (buf_pos_ == buf_len_) {
    // Reads happen only while a request arrives (WaitForRequest set the header deadline,
    // HeadersDone the body's); a body read after a "100 Continue" is still bound by it.
    const auto until = std::min(Clock::now() + limits_.read_timeout, deadline_);
    while (true) {
      const int w = Wait(POLLIN, until, /*check_stop=*/true);
      if (w < 0) return -1;
      if (w == 0) {
        Fail(Clock::now() >= deadline_ ? Fault::kDeadline : Fault::kSilent);
        return -1;
      }
      const ssize_t n = recv(fd_, buf_, sizeof(buf_), MSG_DONTWAIT);
      if (n > 0) {
        buf_pos_ = 0;
        buf_len_ = static_cast<size_t>(n);
        break;
      }
      if (n == 0) return 0;  // the client closed its end
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        Fail(Fault::kSocket);
        return -1;
      }
    }
  }
  const size_t n = std::min(size, buf_len_ - buf_pos_);
  if (phase_ == Phase::kHeaders) {
    header_bytes_ += n;
    if (header_bytes_ > limits_.max_header_bytes) {
      Fail(Fault::kHeadersTooLarge);
      return -1;
    }
  }
  std::memcpy(ptr, buf_ + buf_pos_, n);
  buf_pos_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t DeadlineStream::write(const char* ptr, size_t size) {
  if (write_failed_) return -1;
  Respond();
  const auto now = Clock::now();
  // Bytes the client has not taken yet that did not shrink since the last write, for the whole
  // write timeout: the client is not reading (its window is closed). A write to it would still
  // land in the kernel's send buffer, which can hold megabytes, so without this check a stream
  // nobody reads would keep its slot until the generation ended.
  const int unread = Unread(fd_);
  if (unread == 0 || (unread > 0 && unread < last_unread_)) {
    last_drain_ = now;
  } else if (unread > 0 && now - last_drain_ >= limits_.write_timeout) {
    write_failed_ = true;
    Fail(Fault::kStalled);
    return -1;
  }
  size_t sent = 0;
  auto progress = now;
  while (sent < size) {
    const int w = Wait(POLLOUT, progress + limits_.write_timeout, /*check_stop=*/false);
    if (w <= 0) {
      write_failed_ = true;
      Fail(w == 0 ? Fault::kStalled : Fault::kSocket);
      return -1;
    }
    const ssize_t n = send(fd_, ptr + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      write_failed_ = true;
      Fail(Fault::kSocket);
      return -1;
    }
    sent += static_cast<size_t>(n);
    progress = Clock::now();
  }
  last_unread_ = Unread(fd_);
  return static_cast<ssize_t>(size);
}

void DeadlineStream::get_remote_ip_and_port(std::string& ip, int& port) const {
  ip = client_;
  port = client_port_;
}

void DeadlineStream::get_local_ip_and_port(std::string& ip, int& port) const {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  port = 0;
  ip.clear();
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) Endpoint(addr, ip, port);
}

}  // namespace elm::server
