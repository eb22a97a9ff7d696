#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace elm::test {
namespace fs = std::filesystem;

std::string DataDir() { return ELM_TEST_DATA_DIR; }

std::string SharedConformanceDir() {
  const fs::path p = fs::path(ELM_SOURCE_DIR).parent_path() / "shared" / "conformance";
  return fs::exists(p) ? p.string() : std::string();
}

std::vector<float> ReadFloats(const std::string& path, uint64_t offset, uint64_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<float> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * 4));
  if (!in) throw std::runtime_error("short read from " + path);
  return v;
}

std::string TempDir(const std::string& tag) {
  std::random_device rd;
  const fs::path p = fs::temp_directory_path() /
                     ("elm_test_" + tag + "_" + std::to_string(::getpid()) + "_" +
                      std::to_string(rd()));
  fs::create_directories(p);
  return p.string();
}

int RunElm(const std::string& args, std::string* out, std::string* err) {
  const std::string errfile = TempDir("stderr") + "/err.txt";
  const std::string cmd = std::string(ELM_BINARY) + " " + args + " 2>" + errfile;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
  const int status = ::pclose(p);
  if (out) *out = s;
  if (err) {
    std::ifstream e(errfile);
    std::stringstream ss;
    ss << e.rdbuf();
    *err = ss.str();
  }
  fs::remove_all(fs::path(errfile).parent_path());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

}  // namespace elm::test
