// How many connections each client address has waiting on it: a request arriving slowly, or an
// idle keep-alive connection. A connection thread waiting on a client is a thread no other client
// can use, so one address may hold only a few of them (docs/server.md, "Hostile input and slow
// clients"); fast requests never wait and are never counted.
#pragma once

#include <mutex>
#include <string>
#include <unordered_map>

namespace elm::server {

class ClientLimiter {
 public:
  explicit ClientLimiter(int max_waiting_per_client) : max_(max_waiting_per_client) {}

  // Counts one more waiting connection of `client`, unless it already has the maximum.
  bool TryEnter(const std::string& client);
  void Leave(const std::string& client);
  int waiting(const std::string& client) const;

 private:
  const int max_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> waiting_;
};

}  // namespace elm::server
