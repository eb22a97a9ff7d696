// A bounded load generator for `elm serve`: for each client count it sends a fixed number of
// completion requests over loopback from that many concurrent clients and reports throughput,
// latency percentiles, errors and the server's resident memory before and after.
//
//   server_load --port 8080 [--host 127.0.0.1] [--clients 1,2,8] [--requests 48]
//               [--max-tokens 32] [--prompt TEXT] [--chat] [--stream] [--pid SERVER_PID]
//               [--time-limit 300] [--api-key KEY]
//
// Every request uses temperature 0 and ignore_eos, so each one generates exactly --max-tokens
// tokens and runs are comparable. Refuses non-loopback hosts: it is a test tool, not a stressor.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::vector<int> clients = {1, 2, 8};
  int requests = 48;
  int max_tokens = 32;
  std::string prompt = "The history of the city begins";
  bool chat = false;
  bool stream = false;
  int pid = 0;
  double time_limit_s = 300;
  std::string api_key;
};

[[noreturn]] void Usage(const char* msg) {
  std::fprintf(stderr, "server_load: %s\n", msg);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = std::atoi(value().c_str());
    else if (a == "--requests")
      o.requests = std::atoi(value().c_str());
    else if (a == "--max-tokens")
      o.max_tokens = std::atoi(value().c_str());
    else if (a == "--prompt")
      o.prompt = value();
    else if (a == "--chat")
      o.chat = true;
    else if (a == "--stream")
      o.stream = true;
    else if (a == "--pid")
      o.pid = std::atoi(value().c_str());
    else if (a == "--time-limit")
      o.time_limit_s = std::atof(value().c_str());
    else if (a == "--api-key")
      o.api_key = value();
    else if (a == "--clients") {
      o.clients.clear();
      std::stringstream ss(value());
      for (std::string item; std::getline(ss, item, ',');)
        o.clients.push_back(std::atoi(item.c_str()));
    } else {
      Usage(("unknown argument " + a).c_str());
    }
  }
  if (o.host != "127.0.0.1" && o.host != "localhost" && o.host != "::1")
    Usage("only loopback hosts (127.0.0.1, localhost, ::1) are allowed");
  if (o.requests < 1 || o.requests > 10000) Usage("--requests must be in [1, 10000]");
  for (int c : o.clients)
    if (c < 1 || c > 256) Usage("--clients entries must be in [1, 256]");
  return o;
}

// VmRSS of a process in KiB, or -1.
long RssKiB(int pid) {
  if (pid <= 0) return -1;
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

struct Outcome {
  bool ok = false;
  double seconds = 0;
  int tokens = 0;
  std::string error;
};

Outcome OneRequest(const Options& o, httplib::Client& cli) {
  json body = {
      {"max_tokens", o.max_tokens}, {"temperature", 0}, {"ignore_eos", true}, {"stream", o.stream}};
  if (o.stream) body["stream_options"] = {{"include_usage", true}};
  std::string path;
  if (o.chat) {
    body["messages"] = {{{"role", "user"}, {"content", o.prompt}}};
    path = "/v1/chat/completions";
  } else {
    body["prompt"] = o.prompt;
    path = "/v1/completions";
  }
  Outcome out;
  const auto t0 = Clock::now();
  auto r = cli.Post(path, body.dump(), "application/json");
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) {
    out.error = "transport: " + httplib::to_string(r.error());
    return out;
  }
  if (r->status != 200) {
    out.error = "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 200);
    return out;
  }
  json usage;
  if (o.stream) {
    const size_t at = r->body.rfind("\"usage\"");
    const size_t start = r->body.rfind("data: ", at);
    if (at == std::string::npos || start == std::string::npos) {
      out.error = "stream without usage";
      return out;
    }
    usage = json::parse(r->body.substr(start + 6, r->body.find("\n\n", at) - start - 6))["usage"];
  } else {
    usage = json::parse(r->body)["usage"];
  }
  out.tokens = usage["completion_tokens"].get<int>();
  out.ok = true;
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  const auto deadline = Clock::now() + std::chrono::duration<double>(o.time_limit_s);
  auto make_client = [&] {
    auto c = std::make_unique<httplib::Client>(o.host, o.port);
    c->set_keep_alive(true);
    c->set_read_timeout(120, 0);
    if (!o.api_key.empty()) c->set_bearer_token_auth(o.api_key);
    return c;
  };
  {  // warm-up: page in the weights, check the server answers
    auto c = make_client();
    const Outcome w = OneRequest(o, *c);
    if (!w.ok) {
      std::fprintf(stderr, "server_load: warm-up failed: %s\n", w.error.c_str());
      return 1;
    }
  }
  const long rss_start = RssKiB(o.pid);
  std::printf(
      "| clients | requests | errors | wall s | req/s | gen tokens/s | p50 ms | p99 ms "
      "| server RSS MiB before -> after |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  int total_errors = 0;
  for (const int n : o.clients) {
    const long rss_before = RssKiB(o.pid);
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<double> latencies;
    int errors = 0, tokens = 0;
    std::string first_error;
    const auto t0 = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < n; ++c)
      threads.emplace_back([&] {
        auto cli = make_client();
        while (next.fetch_add(1) < o.requests && Clock::now() < deadline) {
          const Outcome r = OneRequest(o, *cli);
          std::lock_guard<std::mutex> lock(mu);
          if (r.ok) {
            latencies.push_back(r.seconds * 1000);
            tokens += r.tokens;
          } else {
            ++errors;
            if (first_error.empty()) first_error = r.error;
          }
        }
      });
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const long rss_after = RssKiB(o.pid);
    total_errors += errors;
    std::printf("| %d | %zu | %d | %.2f | %.2f | %.0f | %.1f | %.1f | %.1f -> %.1f |\n", n,
                latencies.size() + errors, errors, wall, latencies.size() / wall, tokens / wall,
                Percentile(latencies, 0.50), Percentile(latencies, 0.99), rss_before / 1024.0,
                rss_after / 1024.0);
    std::fflush(stdout);
    if (!first_error.empty()) std::fprintf(stderr, "first error: %s\n", first_error.c_str());
  }
  if (o.pid > 0)
    std::printf("\nserver RSS: %.1f MiB after warm-up, %.1f MiB at the end\n", rss_start / 1024.0,
                RssKiB(o.pid) / 1024.0);
  return total_errors == 0 ? 0 : 1;
}
