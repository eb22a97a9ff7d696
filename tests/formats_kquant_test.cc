// llama.cpp's K-quant, IQ4 and legacy-quant GGUFs (../shared/conformance/gguf_kquant and any other
// folder in that format, described in its README): every tensor dequantizes bit for bit as ggml
// does, every file loads, and the logits and perplexity match llama.cpp's within the folder's
// tolerances. The GGUFs come as one .tar.xz, unpacked once into the build tree.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <span>

#include "base/dtype.h"
#include "base/error.h"
#include "base/kquant.h"
#include "base/mmap_file.h"
#include "io/gguf.h"
#include "io/gguf_convert.h"
#include "io/gguf_tokenizer.h"
#include "io/model_source.h"
#include "model/model.h"
#include "model/session.h"
#include "test_util.h"

namespace elm {
namespace formats_kquant_test {
namespace fs = std::filesystem;
using nlohmann::json;

// ---- SHA-256 (FIPS 180-4), for the reference hashes ----

class Sha256 {
 public:
  void Update(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    len_ += n;
    while (n > 0) {
      const size_t take = std::min(n, size_t{64} - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ == 64) {
        Block(buf_);
        fill_ = 0;
      }
    }
  }
  std::string Hex() {
    const uint64_t bits = len_ * 8;
    const uint8_t one = 0x80, zero = 0;
    Update(&one, 1);
    while (fill_ != 56) Update(&zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; ++i) lenb[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    Update(lenb, 8);
    std::string out;
    char tmp[9];
    for (uint32_t v : h_) {
      std::snprintf(tmp, sizeof(tmp), "%08x", v);
      out += tmp;
    }
    return out;
  }

 private:
  static uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void Block(const uint8_t* b) {
    static constexpr uint32_t kK[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t{b[4 * i]} << 24) | (uint32_t{b[4 * i + 1]} << 16) |
             (uint32_t{b[4 * i + 2]} << 8) | b[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6],
             h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 =
          h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
      const uint32_t t2 =
          (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = bb;
      bb = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += bb;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf_[64] = {};
  size_t fill_ = 0;
  uint64_t len_ = 0;
};

std::string Sha256Hex(const void* data, size_t n) {
  Sha256 s;
  s.Update(data, n);
  return s.Hex();
}

TEST(KquantSha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- Dequantization of a small copied fixture (tests/data/kquant, no shared data needed) ----

// blocks.json lists, per type, 512 values of a tensor from llama.cpp's files: the raw blocks and
// ggml's dequantize_row_* output, both in blocks.bin.
TEST(KquantBlocks, DequantizeBitForBitLikeGgml) {
  const std::string dir = test::DataDir() + "/kquant";
  std::ifstream jf(dir + "/blocks.json");
  const json index = json::parse(jf);
  const MmapFile bin(dir + "/blocks.bin");
  int types = 0;
  for (const json& e : index["entries"]) {
    const std::string type = e["type"];
    const auto dtype = DTypeOfGgml([&] {
      for (uint32_t id = 0; id < 40; ++id)
        if (const GgmlTypeInfo* t = FindGgmlType(id); t && type == t->name) return id;
      return 0u;
    }());
    ASSERT_TRUE(dtype.has_value()) << type;
    EXPECT_STREQ(DTypeName(*dtype), type.c_str());
    const auto n = e["elements"].get<size_t>();
    ASSERT_EQ(DTypeBytes(*dtype, n), e["raw_bytes"].get<size_t>()) << type;
    std::vector<float> got(n);
    // At an odd address too: mapped files put tensors where they like.
    std::vector<uint8_t> shifted(e["raw_bytes"].get<size_t>() + 1);
    std::memcpy(shifted.data() + 1, bin.data() + e["raw_offset"].get<size_t>(), shifted.size() - 1);
    for (const uint8_t* src : {bin.data() + e["raw_offset"].get<size_t>(),
                               static_cast<const uint8_t*>(shifted.data() + 1)}) {
      ToF32(*dtype, src, got.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), bin.data() + e["f32_offset"].get<size_t>(), n * 4), 0)
          << type;
    }
    ++types;
  }
  EXPECT_EQ(types, 10);
}

// Random weights in llama.cpp's types (what `elm bench --preset-dtype q4_k` runs): finite scales,
// finite logits.
TEST(KquantBlocks, RandomModelsInEveryType) {
  ModelConfig c = OpenModelSource(test::DataDir() + "/conformance/a_tiny_qknorm_tied").config;
  for (DType t : {DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL}) {
    const auto m = Model::Random(c, t, 1);
    EXPECT_EQ(m->weights_dtype(), DTypeName(t));
    EXPECT_EQ(FirstNonFiniteScale(t, m->embeddings().data,
                                  static_cast<size_t>(m->embeddings().rows * c.dim / 32)),
              -1);
    for (const int n : {1, 5}) {  // decode and prefill
      const std::vector<float> l = test::AllLogits(m, std::vector<int>(n, 3));
      EXPECT_TRUE(std::all_of(l.begin(), l.end(), [](float v) { return std::isfinite(v); }))
          << DTypeName(t);
    }
  }
  // The 256-element types need rows of 256: the tiny model's 64 columns are refused clearly.
  try {
    (void)Model::Random(c, DType::kQ4_K, 1);
    ADD_FAILURE() << "64 columns accepted for Q4_K";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the Q4_K block"), std::string::npos)
        << e.what();
  }
}

// ---- Malformed blocks (hand-made files; no shared data needed) ----

// The tiny conformance model as a Q4_0 GGUF (every matrix has 64 or 32·k columns), in memory.
std::vector<uint8_t> TinyQ4_0Gguf() {
  ModelSource src = OpenModelSource(test::DataDir() + "/conformance/a_tiny_qknorm_tied");
  GgufVocab v;
  for (int i = 0; i < src.config.vocab_size; ++i) {
    v.tokens.push_back("t" + std::to_string(i));
    v.types.push_back(kTokenNormal);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  src.vocab = v;
  const std::string dir = test::TempDir("kquant_tiny");
  WriteGgufModel(src, dir + "/m.gguf", DType::kQ4_0, "tiny", "", false);
  const MmapFile f(dir + "/m.gguf");
  std::vector<uint8_t> bytes(f.data(), f.data() + f.size());
  fs::remove_all(dir);
  return bytes;
}

// Byte offset of tensor `name`'s GGML type field in the header.
size_t TypeFieldOf(const std::vector<uint8_t>& b, const std::string& name) {
  std::string key(8, '\0');
  const uint64_t len = name.size();
  std::memcpy(key.data(), &len, 8);
  key += name;
  const auto it = std::search(b.begin(), b.end(), key.begin(), key.end());
  EXPECT_NE(it, b.end()) << name;
  const size_t at = static_cast<size_t>(it - b.begin()) + key.size();
  uint32_t n_dims;
  std::memcpy(&n_dims, b.data() + at, 4);
  return at + 4 + 8 * n_dims;
}

std::string LoadError(const std::vector<uint8_t>& bytes) {
  const std::string dir = test::TempDir("kquant_bad");
  const std::string path = dir + "/bad.gguf";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  std::string err;
  try {
    (void)Model::Load(path);
  } catch (const Error& e) {
    err = e.what();
  }
  fs::remove_all(dir);
  return err;
}

constexpr uint32_t kGgmlQ4_0 = 2, kGgmlQ5_1 = 7, kGgmlQ4_K = 12, kGgmlIq4Nl = 20;

TEST(KquantGguf, MalformedBlocksGiveErrorsNamingTheTensor) {
  const std::vector<uint8_t> q4 = TinyQ4_0Gguf();
  const std::string name = "blk.1.attn_output.weight";  // 64 columns: 2 blocks a row
  const size_t field = TypeFieldOf(q4, name);
  uint32_t type;
  std::memcpy(&type, q4.data() + field, 4);
  ASSERT_EQ(type, kGgmlQ4_0);
  auto with_type = [&](uint32_t t) {
    std::vector<uint8_t> b = q4;
    std::memcpy(b.data() + field, &t, 4);
    return b;
  };
  // IQ4_NL blocks are Q4_0's size with the f16 scale first: the same bytes load and run.
  std::vector<uint8_t> nl = with_type(kGgmlIq4Nl);
  EXPECT_EQ(LoadError(nl), "");
  {
    // ... until a scale is infinite or NaN.
    const auto f = GgufFile::FromBytes(nl.data(), nl.size(), "nl.gguf");
    const GgufTensorInfo& t = f->GetTensor(name);
    const size_t data = f->data_offset() + t.offset;
    for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfe00}}) {
      std::vector<uint8_t> b = nl;
      std::memcpy(b.data() + data + 3 * 18, &bad, 2);  // block 3: row 1 of 2 blocks per row
      const std::string err = LoadError(b);
      EXPECT_NE(err.find(name), std::string::npos) << err;
      EXPECT_NE(err.find("block 3 of row 1 has an infinite or NaN scale"), std::string::npos)
          << err;
    }
  }
  // A K-quant whose rows (64 columns) do not fill its 256-element super-blocks.
  {
    const std::vector<uint8_t> b = with_type(kGgmlQ4_K);
    const std::string err = LoadError(b);
    EXPECT_NE(err.find(name), std::string::npos) << err;
    EXPECT_NE(err.find("not a multiple of the Q4_K block size 256"), std::string::npos) << err;
  }
  // Larger blocks than the data holds: the tensor runs into the next one (or past the end).
  {
    const std::vector<uint8_t> b = with_type(kGgmlQ5_1);
    const std::string err = LoadError(b);
    EXPECT_NE(err.find(name), std::string::npos) << err;
  }
  // Cut inside the last tensor's blocks: truncated.
  {
    std::vector<uint8_t> b = q4;
    b.resize(b.size() - 40);
    const std::string err = LoadError(b);
    EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  }
}

// ---- The reference folders ----

struct Folder {
  fs::path dir;       // in ../shared: reference.json, the .bin files
  fs::path unpacked;  // the GGUFs, in the build tree
  json ref;
};

// Every folder of ../shared/conformance with a reference.json in this format and its archive of
// GGUFs, unpacked (gguf_kquant, and any further one).
const std::vector<Folder>& Folders(std::string* skip) {
  static std::vector<Folder> folders;
  static std::string why;
  static bool done = false;
  if (!done) {
    done = true;
    const std::string shared = test::SharedConformanceDir();
    if (shared.empty()) why = "../shared/conformance not found";
    std::vector<fs::path> dirs;
    if (!shared.empty())
      for (const auto& e : fs::directory_iterator(shared)) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    const fs::path build = fs::path(ELM_BINARY).parent_path() / "fixtures";
    for (const fs::path& d : dirs) {
      if (!fs::exists(d / "reference.json") || !fs::exists(d / "dequant_samples.bin")) continue;
      fs::path archive;
      for (const auto& e : fs::directory_iterator(d))
        if (e.path().string().ends_with("-ggufs.tar.xz")) archive = e.path();
      if (archive.empty()) continue;
      std::ifstream in(d / "reference.json");
      json ref = json::parse(in);
      if (!ref.contains("files") || !ref.contains("samples")) continue;
      Folder f{d, build / d.filename(), std::move(ref)};
      if (!test::UnpackOnce(archive.string(), f.unpacked.string(), &why)) continue;
      folders.push_back(std::move(f));
    }
    if (folders.empty() && why.empty())
      why = "no K-quant reference folder in ../shared/conformance";
  }
  *skip = why;
  return folders;
}

#define REQUIRE_FOLDERS(v)                           \
  std::string skip_why;                              \
  const std::vector<Folder>& v = Folders(&skip_why); \
  if (v.empty()) GTEST_SKIP() << skip_why << ": skipped"

// The whole tensor as ggml's to_float fills it.
std::vector<float> Dequantized(const GgufTensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  EXPECT_TRUE(t.dtype.has_value()) << t.name << " " << t.type_name();
  if (t.dtype) ToF32(*t.dtype, t.data, out.data(), out.size());
  return out;
}

// ---- Dequantization ----

TEST(KquantGguf, DequantSamplesMatchBitForBit) {
  REQUIRE_FOLDERS(folders);
  for (const Folder& f : folders) {
    const std::string bin = (f.dir / "dequant_samples.bin").string();
    for (const json& s : f.ref["samples"]) {
      const std::string file = s["files"][0];
      const GgufFile g((f.unpacked / file).string());
      const GgufTensorInfo& t = g.GetTensor(s["tensor"]);
      ASSERT_EQ(t.type_name(), s["type"].get<std::string>());
      const int64_t r0 = s["rows"][0], r1 = s["rows"][1], cols = t.ne[0];
      const std::vector<float> all = Dequantized(t);
      const std::vector<float> want =
          test::ReadFloats(bin, s["offset_bytes"], static_cast<uint64_t>((r1 - r0) * cols));
      const float* got = all.data() + r0 * cols;
      size_t first_bad = want.size();
      for (size_t i = 0; i < want.size() && first_bad == want.size(); ++i)
        if (std::memcmp(&got[i], &want[i], 4) != 0) first_bad = i;
      EXPECT_EQ(first_bad, want.size())
          << f.dir.filename() << " sample " << s["id"] << " (" << s["type"] << " " << s["tensor"]
          << "): first differing value at " << first_bad << ": "
          << (first_bad < want.size() ? got[first_bad] : 0) << " vs "
          << (first_bad < want.size() ? want[first_bad] : 0);
      EXPECT_EQ(Sha256Hex(got, want.size() * 4), s["f32_sha256"].get<std::string>());
    }
  }
}

TEST(KquantGguf, EveryTensorParsesAndDequantizesExactly) {
  REQUIRE_FOLDERS(folders);
  int files = 0;
  for (const Folder& f : folders) {
    for (const auto& [name, entry] : f.ref["files"].items()) {
      const fs::path path = f.unpacked / entry["file"].get<std::string>();
      if (!fs::exists(path)) continue;  // the source f32 GGUF is not shipped
      ++files;
      const GgufFile g(path.string());
      ASSERT_EQ(g.tensors().size(), entry["tensors"].size()) << name;
      for (const json& want : entry["tensors"]) {
        SCOPED_TRACE(name + " " + want["name"].get<std::string>());
        const GgufTensorInfo& t = g.GetTensor(want["name"]);
        EXPECT_EQ(t.type_name(), want["type"].get<std::string>());
        EXPECT_EQ(t.ne, want["ne"].get<std::vector<int64_t>>());
        EXPECT_EQ(t.nbytes, want["n_bytes"].get<size_t>());
        EXPECT_EQ(g.data_offset() + t.offset, want["data_offset"].get<size_t>());
        EXPECT_EQ(Sha256Hex(t.data, t.nbytes), want["raw_sha256"].get<std::string>());
        const std::vector<float> y = Dequantized(t);
        EXPECT_EQ(Sha256Hex(y.data(), y.size() * 4), want["f32_sha256"].get<std::string>());
      }
    }
  }
  EXPECT_GT(files, 0);
}

// ---- Logits and perplexity ----

std::vector<int> Tokens(const json& ref, const std::string& seq) {
  return ref["sequences"][seq]["tokens"].get<std::vector<int>>();
}

struct Diff {
  double max_abs = 0, rms = 0, kld = 0;  // KLD(reference ‖ ours), mean over rows
};

Diff Compare(const std::vector<std::vector<float>>& ours, const std::vector<float>& ref, size_t V) {
  Diff d;
  double sq = 0;
  for (size_t r = 0; r < ours.size(); ++r) {
    const float* a = ours[r].data();
    const float* b = ref.data() + r * V;
    double ma = -1e30, mb = -1e30;
    for (size_t i = 0; i < V; ++i) {
      const double e = std::fabs(static_cast<double>(a[i]) - b[i]);
      d.max_abs = std::max(d.max_abs, e);
      sq += e * e;
      ma = std::max(ma, static_cast<double>(a[i]));
      mb = std::max(mb, static_cast<double>(b[i]));
    }
    double sa = 0, sb = 0;
    for (size_t i = 0; i < V; ++i) {
      sa += std::exp(a[i] - ma);
      sb += std::exp(b[i] - mb);
    }
    const double la = ma + std::log(sa), lb = mb + std::log(sb);
    double kl = 0;
    for (size_t i = 0; i < V; ++i) {
      const double pb = std::exp(b[i] - lb);
      kl += pb * ((b[i] - lb) - (a[i] - la));
    }
    d.kld += kl / static_cast<double>(ours.size());
  }
  d.rms = std::sqrt(sq / static_cast<double>(ours.size() * V));
  return d;
}

// llama-perplexity's chunks (the folder README): chunk i is tokens[64i, 64i + 64) with its first
// token replaced by BOS, decoded alone; positions 32..62 score the next token.
double Perplexity(const std::shared_ptr<const Model>& m, const std::vector<int>& tokens, int n_ctx,
                  int n_chunk, int bos) {
  double nll = 0;
  int count = 0;
  const auto V = static_cast<size_t>(m->config().vocab_size);
  for (int c = 0; c < n_chunk; ++c) {
    std::vector<int> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    chunk[0] = bos;
    const std::vector<float> logits = test::AllLogits(m, chunk);
    for (int t = n_ctx / 2; t < n_ctx - 1; ++t) {
      const float* row = logits.data() + static_cast<size_t>(t) * V;
      double mx = -1e30, s = 0;
      for (size_t i = 0; i < V; ++i) mx = std::max(mx, static_cast<double>(row[i]));
      for (size_t i = 0; i < V; ++i) s += std::exp(row[i] - mx);
      nll += mx + std::log(s) - row[chunk[t + 1]];
      ++count;
    }
  }
  return std::exp(nll / count);
}

TEST(KquantGguf, EveryFileLoadsWithLlamaCppLogitsAndPerplexity) {
  REQUIRE_FOLDERS(folders);
  int files = 0;
  for (const Folder& f : folders) {
    const json& ref = f.ref;
    const std::string bin = (f.dir / ref["logits_file"]["file"].get<std::string>()).string();
    const auto V = ref["logits_file"]["row_length"].get<size_t>();
    const json& rows = ref["logits_file"]["rows"];
    const json& ppl_text = ref["perplexity_text"];
    const auto ppl_tokens = ppl_text["tokens_first_n_chunk_x_n_ctx"].get<std::vector<int>>();
    for (const auto& [name, entry] : ref["files"].items()) {
      const fs::path path = f.unpacked / entry["file"].get<std::string>();
      if (!fs::exists(path)) continue;
      ++files;
      SCOPED_TRACE(f.dir.filename().string() + " " + name);
      const auto m = Model::Load(path.string());
      LoadOptions exact_options;
      exact_options.exact = true;
      const auto m_exact = Model::Load(path.string(), exact_options);
      // The reference rows: (sequence, position) pairs, each sequence run once through the
      // default path (prefill: bf16 panels) and once through --exact's f32 math.
      auto rows_of = [&](const std::shared_ptr<const Model>& model) {
        std::map<std::string, std::vector<float>> logits;
        std::vector<std::vector<float>> out;
        for (const json& r : rows) {
          const std::string seq = r["sequence"];
          if (!logits.count(seq)) logits[seq] = test::AllLogits(model, Tokens(ref, seq));
          const auto t = r["position"].get<size_t>();
          const float* row = logits[seq].data() + t * V;
          out.emplace_back(row, row + V);
        }
        return out;
      };
      const std::vector<std::vector<float>> ours = rows_of(m), ours_exact = rows_of(m_exact);
      const json& lg = entry["logits"];
      const auto n = static_cast<uint64_t>(rows.size() * V);
      // (a) --exact: f32 math on the dequantized weights = llama.cpp on its own f32 copy of them.
      const Diff copy = Compare(
          ours_exact, test::ReadFloats(bin, lg["dequantized_f32_copy"]["rows_offset_bytes"], n), V);
      EXPECT_LE(copy.max_abs, 1e-4) << "--exact vs llama.cpp on the dequantized F32 copy";
      // (b) llama.cpp on the quantized file (8-bit activations there).
      const Diff file = Compare(ours, test::ReadFloats(bin, lg["file"]["rows_offset_bytes"], n), V);
      EXPECT_LE(file.max_abs, 0.15) << "vs llama.cpp on the file";
      EXPECT_LE(file.rms, 0.03) << "vs llama.cpp on the file";
      EXPECT_LE(file.kld, 3e-4) << "vs llama.cpp on the file";
      std::printf("%-12s vs f32 copy: max %.2e | vs file: max %.4f rms %.4f kld %.2e\n",
                  name.c_str(), copy.max_abs, file.max_abs, file.rms, file.kld);
      // Decoding one token at a time (the decode kernels, Q8_K activations for the K-quants as
      // in llama.cpp): the rows of the first sequence, against llama.cpp on the file.
      {
        const std::string seq = rows[0]["sequence"];
        const std::vector<int> ids = Tokens(ref, seq);
        Session s(m, static_cast<int>(ids.size()));
        std::vector<float> step;
        std::vector<std::vector<float>> dec;
        size_t n_rows = 0;
        for (size_t t = 0; t < ids.size(); ++t) {
          s.Forward(std::span<const int>(&ids[t], 1), step);
          if (n_rows < rows.size() && rows[n_rows]["sequence"] == seq &&
              rows[n_rows]["position"].get<size_t>() == t) {
            dec.push_back(step);
            ++n_rows;
          }
        }
        const Diff d =
            Compare(dec, test::ReadFloats(bin, lg["file"]["rows_offset_bytes"], n_rows * V), V);
        EXPECT_LE(d.max_abs, 0.15) << "decoding, vs llama.cpp on the file";
        EXPECT_LE(d.rms, 0.03) << "decoding, vs llama.cpp on the file";
        EXPECT_LE(d.kld, 3e-4) << "decoding, vs llama.cpp on the file";
        std::printf("%-12s decoding vs file: max %.4f rms %.4f kld %.2e\n", name.c_str(), d.max_abs,
                    d.rms, d.kld);
      }
      if (entry.contains("perplexity")) {
        const json& p = entry["perplexity"];
        const double ppl = Perplexity(m, ppl_tokens, ppl_text["n_ctx"], ppl_text["n_chunk"], 1);
        const double ppl_exact =
            Perplexity(m_exact, ppl_tokens, ppl_text["n_ctx"], ppl_text["n_chunk"], 1);
        const double exact_copy = p["dequantized_f32_copy_exact"]["ppl"];
        EXPECT_NEAR(ppl_exact / exact_copy, 1.0, 2e-5)
            << "--exact perplexity " << ppl_exact << " vs " << exact_copy;
        for (const char* k : {"default", "exact"})
          EXPECT_NEAR(ppl / p[k]["ppl"].get<double>(), 1.0, 3e-3) << "perplexity vs " << k;
        std::printf("%-12s perplexity %.4f (llama.cpp exact %.4f, f32 copy %.4f)\n", name.c_str(),
                    ppl, p["exact"]["ppl"].get<double>(), exact_copy);
      }
    }
  }
  EXPECT_GT(files, 0);
}

// Weights read into memory (--no-mmap) and converted at load (--weights f32, bf16, q8_0) from a
// K-quant file: the copy computes the same logits; the conversions start from the exact
// dequantization.
TEST(KquantGguf, NoMmapAndConversionsAtLoad) {
  REQUIRE_FOLDERS(folders);
  const fs::path path = folders[0].unpacked / "k_dim256_vocab32k.llamacpp-Q4_K_M.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not in the folder";
  const std::vector<int> ids = Tokens(folders[0].ref, "seq2");
  const auto mapped = Model::Load(path.string());
  const std::vector<float> ref = test::AllLogits(mapped, ids);
  LoadOptions lo;
  lo.mmap = false;
  EXPECT_EQ(test::AllLogits(Model::Load(path.string(), lo), ids), ref);
  // F32 weights compute f32 math, which the K-quant file gives with --exact.
  LoadOptions exact_options;
  exact_options.exact = true;
  const std::vector<float> ref_exact =
      test::AllLogits(Model::Load(path.string(), exact_options), ids);
  lo.weights = DType::kF32;
  const auto f32 = Model::Load(path.string(), lo);
  EXPECT_EQ(f32->weights_dtype(), "F32");
  EXPECT_LE(test::MaxAbsDiff(test::AllLogits(f32, ids).data(), ref_exact.data(), ref.size()),
            1e-5f);
  lo.weights = DType::kQ8_0;
  EXPECT_EQ(Model::Load(path.string(), lo)->weights_dtype(), "Q8_0");
}

}  // namespace formats_kquant_test
}  // namespace elm
