// Embeddings (src/generation/embedding.h, `elm embed`, POST /v1/embeddings; docs/server.md
// "Embeddings"): the vector is the final hidden states of Session::Forward pooled as documented
// (mean or last token) and L2-normalized; the CLI and the server give the same vector; the
// server takes OpenAI's input shapes and encodings and the official openai npm client reads it.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "generation/embedding.h"
#include "model/model.h"
#include "model/session.h"
#include "server/embedding_route.h"
#include "server/http_server.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace elm {
namespace embedding_test {

using nlohmann::json;

const std::string kTinyDir = std::string(ELM_SOURCE_DIR) + "/models/tiny-random-32k";

std::shared_ptr<const Model> Tiny() {
  static const auto model = Model::Load(kTinyDir);
  return model;
}

const Tokenizer& Tok() {
  static const Tokenizer tok = Tokenizer::Default();
  return tok;
}

// The reference: one forward with hidden_states in a fresh session, its last entry pooled.
std::vector<float> Reference(const std::vector<int>& ids, Pooling pooling, bool normalize) {
  Session s(Tiny(), static_cast<int>(ids.size()));
  std::vector<float> logits, hidden;
  ForwardOptions fo;
  fo.hidden_states = &hidden;
  s.Forward(ids, logits, fo);
  const auto& c = Tiny()->config();
  const size_t T = ids.size(), D = static_cast<size_t>(c.dim);
  const float* final = hidden.data() + static_cast<size_t>(c.n_layers) * T * D;
  std::vector<float> v(D, 0.0f);
  for (size_t i = 0; i < D; ++i) {
    if (pooling == Pooling::kLast) {
      v[i] = final[(T - 1) * D + i];
    } else {
      double sum = 0;
      for (size_t t = 0; t < T; ++t) sum += final[t * D + i];
      v[i] = static_cast<float>(sum / double(T));
    }
  }
  if (normalize) {
    double n = 0;
    for (float x : v) n += double(x) * x;
    for (float& x : v) x = static_cast<float>(x / std::sqrt(n));
  }
  return v;
}

double MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    m = std::max(m, double(std::abs(a[i] - b[i])));
  return m;
}

double Norm(const std::vector<float>& v) {
  double n = 0;
  for (float x : v) n += double(x) * x;
  return std::sqrt(n);
}

std::vector<float> Floats(const json& j) {
  return j.get<std::vector<float>>();
}

TEST(Embedding, IsThePooledFinalHiddenStates) {
  const auto ids = Tok().Encode("The cat sat on the mat, and the dog sat on the log.", true);
  Session s(Tiny(), 64);
  for (Pooling p : {Pooling::kMean, Pooling::kLast}) {
    for (bool normalize : {true, false}) {
      const auto v = Embed(s, ids, EmbedOptions{p, normalize});
      ASSERT_EQ(v.size(), static_cast<size_t>(Tiny()->config().dim));
      EXPECT_LT(MaxDiff(v, Reference(ids, p, normalize)), 1e-6) << PoolingName(p);
      if (normalize) {
        EXPECT_NEAR(Norm(v), 1.0, 1e-5);
      }
    }
  }
  EXPECT_EQ(s.position(), 0);  // the session is left empty
  // Mean and last differ; an input longer than one batch runs in batches with the same result.
  EXPECT_GT(MaxDiff(Embed(s, ids, {}), Embed(s, ids, EmbedOptions{Pooling::kLast, true})), 1e-3);
  std::vector<int> long_ids;
  while (long_ids.size() < Session::kMaxBatch + 40)
    long_ids.insert(long_ids.end(), ids.begin(), ids.end());
  Session big(Tiny(), static_cast<int>(long_ids.size()));
  EXPECT_LT(MaxDiff(Embed(big, long_ids, {}), Reference(long_ids, Pooling::kMean, true)), 1e-4);
  // Bad input is an error, not a crash.
  EXPECT_THROW(Embed(s, std::vector<int>{}, {}), Error);
  EXPECT_THROW(Embed(s, long_ids, {}), Error);  // longer than the session
  EXPECT_THROW(ParsePooling("max", "--pooling"), Error);
}

TEST(Embedding, CliPrintsTheSameVector) {
  std::string out, err;
  ASSERT_EQ(test::RunElm("embed --model " + kTinyDir + " -p 'Hello world' -p 'Second text'" +
                             " --pooling last",
                         &out, &err),
            0)
      << err;
  std::istringstream lines(out);
  std::string line;
  std::vector<std::vector<float>> got;
  while (std::getline(lines, line)) got.push_back(Floats(json::parse(line)));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_LT(MaxDiff(got[0], Reference(Tok().Encode("Hello world", true), Pooling::kLast, true)),
            1e-5);
  EXPECT_NE(test::RunElm("embed --model " + kTinyDir + " -p x --pooling max", &out, &err), 0);
  EXPECT_NE(err.find("--pooling"), std::string::npos) << err;
}

TEST(Embedding, Base64IsLittleEndianFloat32) {
  EXPECT_EQ(server::EmbeddingBase64({}), "");
  EXPECT_EQ(server::EmbeddingBase64({1.0f}), "AACAPw==");  // 00 00 80 3f
  EXPECT_EQ(server::EmbeddingBase64({1.0f, -2.0f}), "AACAPwAAAMA=");
}

class EmbeddingServer {
 public:
  EmbeddingServer() {
    server::ServerOptions opt;
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<server::Server>(Tiny(), Tokenizer::Default(), opt);
    server_->Start();
  }
  int port() const { return server_->port(); }
  std::pair<int, json> Post(const json& body) const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    const auto r = c.Post("/v1/embeddings", body.dump(), "application/json");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

 private:
  std::unique_ptr<server::Server> server_;
};

std::vector<float> FromBase64(const std::string& s) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : s) {
    if (ch == '=') break;
    acc = (acc << 6) | static_cast<uint32_t>(kAlphabet.find(ch));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

TEST(Embedding, ServerTakesOpenAiShapes) {
  const EmbeddingServer srv;
  const auto hello = Tok().Encode("Hello world", true);
  const auto ref = Reference(hello, Pooling::kMean, true);
  // A string.
  auto [status, body] = srv.Post({{"input", "Hello world"}, {"model", "x"}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_EQ(body["object"], "list");
  ASSERT_EQ(body["data"].size(), 1u);
  EXPECT_EQ(body["data"][0]["object"], "embedding");
  EXPECT_EQ(body["data"][0]["index"], 0);
  EXPECT_LT(MaxDiff(Floats(body["data"][0]["embedding"]), ref), 1e-6);
  EXPECT_EQ(body["usage"]["prompt_tokens"], hello.size());
  EXPECT_EQ(body["usage"]["total_tokens"], hello.size());
  // An array of strings and token arrays, base64, last-token pooling.
  std::tie(status, body) = srv.Post({{"input", json::array({"Hello world", hello, "Hi"})},
                                     {"encoding_format", "base64"},
                                     {"pooling", "last"}});
  ASSERT_EQ(status, 200) << body.dump();
  ASSERT_EQ(body["data"].size(), 3u);
  const auto last = Reference(hello, Pooling::kLast, true);
  EXPECT_LT(MaxDiff(FromBase64(body["data"][0]["embedding"]), last), 1e-6);
  EXPECT_LT(MaxDiff(FromBase64(body["data"][1]["embedding"]), last), 1e-6);
  EXPECT_EQ(body["data"][2]["index"], 2);
  // One token array.
  std::tie(status, body) = srv.Post({{"input", hello}});
  ASSERT_EQ(status, 200) << body.dump();
  EXPECT_LT(MaxDiff(Floats(body["data"][0]["embedding"]), ref), 1e-6);
  // Bad requests name their field.
  for (const json& bad :
       {json{{"model", "x"}}, json{{"input", json::array()}}, json{{"input", 5}},
        json{{"input", json::array({1, 99999999})}}, json{{"input", ""}},
        json{{"input", "x"}, {"encoding_format", "hex"}}, json{{"input", "x"}, {"pooling", "max"}},
        json{{"input", "x"}, {"dimensions", 8}}}) {
    std::tie(status, body) = srv.Post(bad);
    EXPECT_EQ(status, 400) << bad.dump() << " -> " << body.dump();
    EXPECT_TRUE(body["error"]["param"].is_string()) << body.dump();
  }
}

TEST(Embedding, OfficialOpenAiNpmClient) {
  const std::string dir = std::string(ELM_SOURCE_DIR) + "/tests/openai_client";
  std::string out;
  if (test::RunShell("command -v node >/dev/null && test -d " + dir + "/node_modules/openai",
                     &out) != 0)
    GTEST_SKIP() << "node or the openai package is missing (npm ci --prefix tests/openai_client)";
  const EmbeddingServer srv;
  std::string err;
  ASSERT_EQ(test::RunShell("node " + dir + "/embeddings.mjs http://127.0.0.1:" +
                               std::to_string(srv.port()) + "/v1",
                           &out, &err),
            0)
      << out << err;
  const json r = json::parse(out);
  EXPECT_EQ(r["object"], "list");
  const auto ref = Reference(Tok().Encode("The cat sat on the mat.", true), Pooling::kMean, true);
  ASSERT_EQ(r["float"].size(), 2u);
  ASSERT_EQ(r["base64"].size(), 2u);
  EXPECT_LT(MaxDiff(Floats(r["float"][0]), ref), 1e-6);
  EXPECT_LT(MaxDiff(Floats(r["base64"][0]), ref), 1e-6);  // decoded by the client
  EXPECT_LT(MaxDiff(Floats(r["base64"][1]), Floats(r["float"][1])), 1e-7);
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 0);
}

}  // namespace embedding_test
}  // namespace elm
