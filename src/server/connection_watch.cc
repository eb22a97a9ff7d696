#include "server/connection_watch.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace elm::server {

namespace {

// An address as /proc/net/tcp{,6} spells it: each 32-bit word of the network-order bytes printed
// with %08X as a host-order integer, then ":%04X" of the port. Empty if `addr` is not numeric.
std::string KernelEndpoint(const std::string& addr, int port, bool* v6) {
  unsigned char bytes[16];
  int words = 0;
  if (inet_pton(AF_INET, addr.c_str(), bytes) == 1) {
    words = 1;
    *v6 = false;
  } else if (inet_pton(AF_INET6, addr.c_str(), bytes) == 1) {
    words = 4;
    *v6 = true;
  } else {
    return {};
  }
  std::string out;
  char buf[16];
  for (int i = 0; i < words; ++i) {
    uint32_t w;
    std::memcpy(&w, bytes + 4 * i, 4);
    std::snprintf(buf, sizeof(buf), "%08X", w);
    out += buf;
  }
  std::snprintf(buf, sizeof(buf), ":%04X", static_cast<unsigned>(port));
  return out + buf;
}

// Inode of the TCP socket with this address pair, or 0.
unsigned long FindSocketInode(const std::string& local_addr, int local_port,
                              const std::string& remote_addr, int remote_port) {
  bool local_v6 = false, remote_v6 = false;
  const std::string local = KernelEndpoint(local_addr, local_port, &local_v6);
  const std::string remote = KernelEndpoint(remote_addr, remote_port, &remote_v6);
  if (local.empty() || remote.empty() || local_v6 != remote_v6) return 0;
  std::ifstream table(local_v6 ? "/proc/net/tcp6" : "/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    std::istringstream fields(line);
    std::string sl, l, r, st, queues, timer, retransmits, uid, timeout;
    unsigned long inode = 0;
    fields >> sl >> l >> r >> st >> queues >> timer >> retransmits >> uid >> timeout >> inode;
    if (l == local && r == remote) return inode;
  }
  return 0;
}

}  // namespace

// The socket is looked up by name only (the TCP table, then the /proc/self/fd links): calling
// fstat/getpeername on every descriptor would touch sockets that other threads are opening and
// closing, which is harmless to the kernel but a data race to ThreadSanitizer's fd model.
ConnectionWatch::ConnectionWatch(const std::string& local_addr, int local_port,
                                 const std::string& remote_addr, int remote_port) {
  if (local_port <= 0 || remote_port <= 0) return;
  const unsigned long inode = FindSocketInode(local_addr, local_port, remote_addr, remote_port);
  if (inode == 0) return;
  const std::string want = "socket:[" + std::to_string(inode) + "]";
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  char target[64];
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0 || want.compare(0, std::string::npos, target, static_cast<size_t>(n)) != 0) continue;
    fd_ = std::atoi(e->d_name);
    break;
  }
  closedir(dir);
}

bool ConnectionWatch::Closed() const {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  // POLLIN alone is a pipelined next request, not a hang-up; RDHUP/HUP/ERR mean the peer is gone.
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace elm::server
