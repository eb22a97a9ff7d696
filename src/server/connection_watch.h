// Notices when an HTTP client hangs up while its request is still being worked on, so that the
// generation can be cancelled and the slot freed instead of computing text nobody will read.
//
// cpp-httplib 0.11 (Debian 12's) neither exposes a request's socket nor has
// Request::is_connection_closed (added in later versions), and a write to a closed peer only
// fails once the kernel has seen the peer's reset. So the watch finds the socket itself: the
// connection's address pair (local and remote address and port, which httplib does report) names
// one entry of the kernel's TCP table (/proc/net/tcp), whose inode names one link in
// /proc/self/fd. The handler's thread owns that connection until the response is sent, so the
// descriptor found cannot be closed or reused meanwhile. Closed() then asks the kernel, without
// reading anything, whether the peer has shut its end down.
//
// Linux-specific (/proc, POLLRDHUP). Where the socket cannot be found, Closed() is always false
// and streaming responses still stop at the first failed write.
#pragma once

#include <string>

namespace elm::server {

class ConnectionWatch {
 public:
  ConnectionWatch(const std::string& local_addr, int local_port, const std::string& remote_addr,
                  int remote_port);

  bool found() const { return fd_ >= 0; }
  // True once the client closed or reset the connection. Cheap (one poll(2) with no timeout).
  bool Closed() const;

 private:
  int fd_ = -1;
};

}  // namespace elm::server
