// Hub names and `elm pull` (docs/formats.md, "Hub names and elm pull"): the local Hugging Face
// cache is resolved like transformers resolves it, and pull downloads into that layout from a
// loopback server started here that answers the hub's paths and headers (the API's sha and
// siblings, X-Repo-Commit, ETag / X-Linked-Etag / X-Linked-Size, a redirect to a CDN path,
// Range, 401/404, a cut connection, corrupt bytes).
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "hub/hub_client.h"
#include "io/hf_cache.h"
#include "io/model_source.h"
#include "test_util.h"

namespace elm {
namespace hub_test {
namespace fs = std::filesystem;

const char* kCommit = "0123456789abcdef0123456789abcdef01234567";

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string Hex(const unsigned char* md, unsigned len) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len; ++i) {
    s += kHex[md[i] >> 4];
    s += kHex[md[i] & 15];
  }
  return s;
}

std::string Digest(const std::string& bytes, bool git_blob) {
  std::string data = bytes;
  if (git_blob) data = "blob " + std::to_string(bytes.size()) + std::string(1, '\0') + bytes;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, git_blob ? EVP_sha1() : EVP_sha256(), nullptr);
  return Hex(md, len);
}

// An environment variable set for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A fake hub: repositories of files; LFS files (*.safetensors, *.gguf) redirect to /cdn/<sha256>.
class FakeHub {
 public:
  struct File {
    std::string bytes;
    bool lfs = false;
  };
  std::map<std::string, std::map<std::string, File>> repos;  // repo → name → file
  std::string gated_repo, token;                             // gated_repo needs this token
  std::atomic<int> cut_next{0};                              // cut this many CDN bodies halfway
  std::atomic<bool> corrupt{false};                          // serve flipped bytes from the CDN
  std::atomic<int> range_requests{0}, cdn_gets{0};

  FakeHub() {
    auto authorized = [this](const httplib::Request& req, const std::string& repo) {
      return repo != gated_repo || req.get_header_value("Authorization") == "Bearer " + token;
    };
    auto deny = [](httplib::Response& res, int status, const char* code) {
      res.status = status;
      res.set_header("X-Error-Code", code);
      res.set_content("{\"error\":\"denied\"}", "application/json");
    };
    srv_.Get(R"(/api/models/([^/]+/[^/]+)/revision/([^/]+))",
             [this, authorized, deny](const httplib::Request& req, httplib::Response& res) {
               const std::string repo = req.matches[1];
               std::lock_guard lock(mu_);
               if (!repos.count(repo)) return deny(res, 404, "RepoNotFound");
               if (!authorized(req, repo)) return deny(res, 401, "GatedRepo");
               nlohmann::json j;
               j["id"] = repo;
               j["sha"] = kCommit;
               j["siblings"] = nlohmann::json::array();
               for (const auto& [name, f] : repos[repo])
                 j["siblings"].push_back({{"rfilename", name}});
               res.set_content(j.dump(), "application/json");
             });
    srv_.Get(R"(/([^/]+/[^/]+)/resolve/([^/]+)/(.+))",
             [this, authorized, deny](const httplib::Request& req, httplib::Response& res) {
               const std::string repo = req.matches[1], file = req.matches[3];
               std::lock_guard lock(mu_);
               if (!repos.count(repo) || !repos[repo].count(file))
                 return deny(res, 404, "EntryNotFound");
               if (!authorized(req, repo)) return deny(res, 401, "GatedRepo");
               const File& f = repos[repo][file];
               res.set_header("X-Repo-Commit", kCommit);
               if (f.lfs) {
                 const std::string sha = Digest(f.bytes, false);
                 res.status = 302;
                 res.set_header("Location", "/cdn/" + sha);
                 res.set_header("X-Linked-Etag", "\"" + sha + "\"");
                 res.set_header("X-Linked-Size", std::to_string(f.bytes.size()));
                 return;
               }
               res.set_header("ETag", "\"" + Digest(f.bytes, true) + "\"");
               res.set_content(f.bytes, "application/octet-stream");
             });
    srv_.Get(R"(/cdn/([0-9a-f]{64}))", [this](const httplib::Request& req, httplib::Response& res) {
      ++cdn_gets;
      if (req.has_header("Range")) ++range_requests;
      std::string bytes;
      {
        std::lock_guard lock(mu_);
        for (const auto& [repo, files] : repos)
          for (const auto& [name, f] : files)
            if (f.lfs && Digest(f.bytes, false) == req.matches[1].str()) bytes = f.bytes;
      }
      if (corrupt) bytes[bytes.size() / 2] ^= 1;
      if (cut_next > 0 && !req.has_header("Range")) {
        --cut_next;
        // Announce the whole length, send half, drop the connection.
        const size_t n = bytes.size();
        res.set_content_provider(n, "application/octet-stream",
                                 [bytes, n](size_t offset, size_t, httplib::DataSink& sink) {
                                   if (offset >= n / 2) return false;
                                   sink.write(bytes.data() + offset, n / 2 - offset);
                                   return true;
                                 });
        return;
      }
      res.set_content(bytes, "application/octet-stream");  // httplib answers Range with 206
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeHub() {
    srv_.stop();
    thread_.join();
  }
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server srv_;
  std::mutex mu_;
  int port_ = 0;
  std::thread thread_;
};

class HubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = test::TempDir("hub_cache");
    const std::string tiny = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";
    hub_.repos["owner/tiny"] = {
        {"config.json", {ReadAll(tiny + "/config.json"), false}},
        {"model.safetensors", {ReadAll(tiny + "/model.safetensors"), true}},
        {"README.md", {"# tiny\n", false}},
        {"tiny-q8_0.gguf", {std::string(3000, 'g'), true}},
    };
    opt_.endpoint = hub_.endpoint();
    opt_.cache_dir = cache_;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(cache_, ec);
  }
  PullResult Pull(const std::string& repo, std::vector<std::string> include = {}) {
    PullRequest req;
    req.repo = repo;
    req.include = std::move(include);
    return PullModel(req, opt_);
  }
  std::string ErrorOf(const std::string& repo) {
    try {
      Pull(repo);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  FakeHub hub_;
  HubOptions opt_;
  std::string cache_;
};

TEST(HfCache, RepoIdsAndCacheFolder) {
  EXPECT_TRUE(IsHfRepoId("apple/OpenELM-270M-Instruct"));
  EXPECT_TRUE(IsHfRepoId("a_b/c.d"));
  for (const char* bad : {"apple", "./x", "a/b/c", "/a/b", "a/", "../x", "a/..", "a b/c", ".a/b"})
    EXPECT_FALSE(IsHfRepoId(bad)) << bad;
  EXPECT_EQ(HfRepoCacheDir("/c", "apple/OpenELM-270M"), "/c/models--apple--OpenELM-270M");
  {
    ScopedEnv a("HF_HUB_CACHE", "/x/hub");
    EXPECT_EQ(HfHubCacheDir(), "/x/hub");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", "");
    ScopedEnv b("HF_HOME", "/h");
    EXPECT_EQ(HfHubCacheDir(), "/h/hub");
  }
  {
    ScopedEnv a("HF_HUB_CACHE", "");
    ScopedEnv b("HF_HOME", "");
    ScopedEnv c("XDG_CACHE_HOME", "");
    ScopedEnv d("HOME", "/home/u");
    EXPECT_EQ(HfHubCacheDir(), "/home/u/.cache/huggingface/hub");
  }
  EXPECT_EQ(HfRepoNameOf("/c/models--apple--OpenELM-270M/snapshots/" + std::string(kCommit) +
                         "/config.json"),
            "OpenELM-270M");
  EXPECT_EQ(HfRepoNameOf("/data/OpenELM-270M"), "");
  const auto plain = ParseHfModelRef("apple/OpenELM-270M");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->repo, "apple/OpenELM-270M");
  EXPECT_EQ(plain->revision, "main");
  const auto tagged = ParseHfModelRef("apple/OpenELM-270M@refs/pr/1");
  ASSERT_TRUE(tagged);
  EXPECT_EQ(tagged->repo, "apple/OpenELM-270M");
  EXPECT_EQ(tagged->revision, "refs/pr/1");
  for (const char* bad : {"apple/x@", "apple/x@..", "apple/x@a/../b", "apple/x@/a", "apple@v1"})
    EXPECT_FALSE(ParseHfModelRef(bad)) << bad;
}

TEST(HfCache, MissingHubNameSaysHowToGetIt) {
  const std::string cache = test::TempDir("hub_empty");
  ScopedEnv env("HF_HUB_CACHE", cache);
  try {
    OpenModelSource("apple/OpenELM-no-such-model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("elm pull apple/OpenELM-no-such-model"), std::string::npos)
        << e.what();
  }
  try {
    OpenModelSource("no/such/folder");  // not a hub id: the plain message
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no such model folder or file"), std::string::npos);
  }
}

// libcurl and libcrypto are loaded by `elm pull` only (hub/hub_libs.h): the dynamic loader maps
// neither, nor anything they pull in, when elm starts (LD_TRACE_LOADED_OBJECTS lists what it
// would map, as ldd does, without running elm).
TEST(HubLibraries, ElmStartsWithoutMappingLibcurlOrLibcrypto) {
  std::string out;
  ASSERT_EQ(test::RunShell("LD_TRACE_LOADED_OBJECTS=1 " + std::string(ELM_BINARY), &out), 0);
  EXPECT_NE(out.find("libstdc++"), std::string::npos) << out;  // the listing worked
  for (const char* lib : {"libcurl", "libcrypto", "libssl", "libgnutls"})
    EXPECT_EQ(out.find(lib), std::string::npos) << lib << " is linked:\n" << out;
}

TEST_F(HubTest, PullsIntoTheCacheLayoutAndOpensByName) {
  const PullResult r = Pull("owner/tiny");
  EXPECT_EQ(r.commit, kCommit);
  EXPECT_EQ(r.files, (std::vector<std::string>{"config.json", "model.safetensors"}));
  const fs::path repo = HfRepoCacheDir(cache_, "owner/tiny");
  EXPECT_EQ(ReadAll(repo / "refs" / "main"), kCommit);
  const fs::path snap = repo / "snapshots" / kCommit;
  ASSERT_TRUE(fs::is_symlink(snap / "model.safetensors"));
  const std::string sha = Digest(hub_.repos["owner/tiny"]["model.safetensors"].bytes, false);
  EXPECT_EQ(fs::read_symlink(snap / "model.safetensors"), fs::path("../../blobs") / sha);
  EXPECT_EQ(ReadAll(snap / "model.safetensors"),
            hub_.repos["owner/tiny"]["model.safetensors"].bytes);
  EXPECT_EQ(ReadAll(snap / "config.json"), hub_.repos["owner/tiny"]["config.json"].bytes);
  EXPECT_FALSE(fs::exists(snap / "README.md"));
  EXPECT_FALSE(fs::exists(snap / "tiny-q8_0.gguf"));

  // Opened by its hub name, as transformers would.
  ScopedEnv env("HF_HUB_CACHE", cache_);
  const ModelSource src = OpenModelSource("owner/tiny");
  EXPECT_EQ(src.origin, snap.string());
  EXPECT_EQ(src.config.n_layers, 2);

  // A second pull downloads nothing.
  EXPECT_EQ(Pull("owner/tiny").downloaded_bytes, 0);
  EXPECT_EQ(hub_.cdn_gets, 1);
}

TEST_F(HubTest, IncludeAddsGgufFiles) {
  const PullResult r = Pull("owner/tiny", {"*.gguf"});
  EXPECT_EQ(r.files.size(), 3u);
  EXPECT_EQ(ReadAll(fs::path(r.snapshot) / "tiny-q8_0.gguf"), std::string(3000, 'g'));
}

TEST_F(HubTest, ResumesACutDownloadWithARange) {
  hub_.cut_next = 1;
  const PullResult r = Pull("owner/tiny");
  EXPECT_EQ(hub_.range_requests, 1);
  EXPECT_EQ(ReadAll(fs::path(r.snapshot) / "model.safetensors"),
            hub_.repos["owner/tiny"]["model.safetensors"].bytes);
  for (const auto& e : fs::directory_iterator(HfRepoCacheDir(cache_, "owner/tiny") + "/blobs"))
    EXPECT_EQ(e.path().extension(), "") << e.path();  // no .incomplete left
}

TEST_F(HubTest, ResumesAnIncompleteFileLeftByAnEarlierPull) {
  const std::string& bytes = hub_.repos["owner/tiny"]["model.safetensors"].bytes;
  const fs::path blobs = fs::path(HfRepoCacheDir(cache_, "owner/tiny")) / "blobs";
  fs::create_directories(blobs);
  std::ofstream(blobs / (Digest(bytes, false) + ".incomplete"), std::ios::binary)
      << bytes.substr(0, 1000);
  const PullResult r = Pull("owner/tiny");
  EXPECT_EQ(hub_.range_requests, 1);
  EXPECT_EQ(r.downloaded_bytes,
            static_cast<int64_t>(bytes.size() - 1000) +
                static_cast<int64_t>(hub_.repos["owner/tiny"]["config.json"].bytes.size()));
  EXPECT_EQ(ReadAll(fs::path(r.snapshot) / "model.safetensors"), bytes);
}

TEST_F(HubTest, AnInterruptedPullResumesInTheNextOne) {
  opt_.max_attempts = 1;
  hub_.cut_next = 1;
  const std::string err = ErrorOf("owner/tiny");
  EXPECT_NE(err.find("run elm pull again to resume"), std::string::npos) << err;
  const fs::path repo = HfRepoCacheDir(cache_, "owner/tiny");
  EXPECT_FALSE(fs::exists(repo / "refs" / "main"));  // nothing half-placed
  opt_.max_attempts = 5;
  const PullResult r = Pull("owner/tiny");
  EXPECT_EQ(hub_.range_requests, 1);
  EXPECT_EQ(ReadAll(fs::path(r.snapshot) / "model.safetensors"),
            hub_.repos["owner/tiny"]["model.safetensors"].bytes);
}

TEST_F(HubTest, CorruptBytesFailTheShaCheck) {
  hub_.corrupt = true;
  const std::string err = ErrorOf("owner/tiny");
  EXPECT_NE(err.find("sha256"), std::string::npos) << err;
  EXPECT_NE(err.find("does not match"), std::string::npos) << err;
  const fs::path blobs = fs::path(HfRepoCacheDir(cache_, "owner/tiny")) / "blobs";
  const std::string sha = Digest(hub_.repos["owner/tiny"]["model.safetensors"].bytes, false);
  EXPECT_FALSE(fs::exists(blobs / sha));
  EXPECT_FALSE(fs::exists(blobs / (sha + ".incomplete")));
}

TEST_F(HubTest, GatedRepoNeedsTheToken) {
  hub_.repos["owner/gated"] = hub_.repos["owner/tiny"];
  hub_.gated_repo = "owner/gated";
  hub_.token = "hf_secret";
  std::string err;
  {
    ScopedEnv env("HF_TOKEN", "");
    err = ErrorOf("owner/gated");
  }
  EXPECT_NE(err.find("HTTP 401"), std::string::npos) << err;
  EXPECT_NE(err.find("HF_TOKEN"), std::string::npos) << err;
  opt_.token = "hf_secret";
  EXPECT_EQ(Pull("owner/gated").files.size(), 2u);
}

TEST_F(HubTest, UnknownRepoIs404WithTheName) {
  const std::string err = ErrorOf("owner/nothing");
  EXPECT_NE(err.find("owner/nothing"), std::string::npos) << err;
  EXPECT_NE(err.find("404"), std::string::npos) << err;
}

TEST_F(HubTest, GgufOnlyRepoSaysToInclude) {
  hub_.repos["owner/gguf-only"] = {{"m-q8_0.gguf", {"gguf bytes", true}}};
  const std::string err = ErrorOf("owner/gguf-only");
  EXPECT_NE(err.find("--include 'm-q8_0.gguf'"), std::string::npos) << err;
  const PullResult r = Pull("owner/gguf-only", {"m-q8_0.gguf"});
  // A snapshot with one GGUF and no config.json resolves to that file.
  ScopedEnv env("HF_HUB_CACHE", cache_);
  EXPECT_EQ(ResolveModelPath("owner/gguf-only"), r.snapshot + "/m-q8_0.gguf");
}

TEST_F(HubTest, CliPullThenModelByName) {
  std::string out, err;
  const std::string env = "HF_ENDPOINT=" + hub_.endpoint() + " HF_HUB_CACHE=" + cache_ + " ";
  ASSERT_EQ(test::RunShell(env + ELM_BINARY " pull owner/tiny", &out, &err), 0) << err;
  EXPECT_NE(out.find(kCommit), std::string::npos) << out;
  ASSERT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/tiny", &out, &err), 0) << err;
  EXPECT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/missing", &out, &err), 1);
  EXPECT_NE(err.find("elm pull owner/missing"), std::string::npos) << err;
}

TEST_F(HubTest, CliPullOfARevisionOpensAsNameAtRevision) {
  std::string out, err;
  const std::string env = "HF_ENDPOINT=" + hub_.endpoint() + " HF_HUB_CACHE=" + cache_ + " ";
  ASSERT_EQ(test::RunShell(env + ELM_BINARY " pull owner/tiny --revision v1.0", &out, &err), 0)
      << err;
  EXPECT_NE(out.find("--model owner/tiny@v1.0"), std::string::npos) << out;
  // Only refs/v1.0 exists: the plain name (revision main) says which revision the cache holds.
  EXPECT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/tiny", &out, &err), 1);
  EXPECT_NE(err.find("owner/tiny@v1.0"), std::string::npos) << err;
  EXPECT_NE(err.find("elm pull owner/tiny)"), std::string::npos) << err;
  ASSERT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/tiny@v1.0", &out, &err), 0) << err;
  ASSERT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/tiny@" + kCommit, &out, &err), 0)
      << err;
  EXPECT_EQ(test::RunShell(env + ELM_BINARY " info --model owner/tiny@v2", &out, &err), 1);
  EXPECT_NE(err.find("elm pull owner/tiny --revision v2"), std::string::npos) << err;
}

}  // namespace hub_test
}  // namespace elm
