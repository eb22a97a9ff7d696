#include "server/client_limiter.h"

namespace elm::server {

bool ClientLimiter::TryEnter(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  int& n = waiting_[client];
  if (n >= max_) {
    if (n == 0) waiting_.erase(client);
    return false;
  }
  ++n;
  return true;
}

void ClientLimiter::Leave(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = waiting_.find(client);
  if (it == waiting_.end()) return;
  if (--it->second <= 0) waiting_.erase(it);  // the map holds only addresses with waiters
}

int ClientLimiter::waiting(const std::string& client) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = waiting_.find(client);
  return it == waiting_.end() ? 0 : it->second;
}

}  // namespace elm::server
