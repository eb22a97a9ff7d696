// GGUF reader and writer: every value type, alignment, and the error paths of malformed files
// (each must name the file and the key or tensor), plus random mutations of a valid file that
// must only ever raise elm::Error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/model_config.h"
#include "io/convert.h"
#include "io/gguf.h"
#include "io/gguf_convert.h"
#include "io/gguf_model.h"
#include "io/gguf_tokenizer.h"
#include "io/gguf_writer.h"
#include "model/model.h"
#include "test_util.h"

namespace elm {
namespace formats_gguf_test {
namespace fs = std::filesystem;

// Hand-assembled GGUF bytes, for files the writer would never produce.
class Raw {
 public:
  template <typename T>
  Raw& Put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Raw& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return Put<uint32_t>(version).Put<uint64_t>(n_tensors).Put<uint64_t>(n_kv);
  }
  Raw& KvU32(const std::string& k, uint32_t v) { return Str(k).Put<uint32_t>(4).Put<uint32_t>(v); }
  Raw& Tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    Str(name).Put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) Put<uint64_t>(d);
    return Put<uint32_t>(type).Put<uint64_t>(off);
  }
  Raw& PadTo(size_t a) {
    b.resize((b.size() + a - 1) / a * a, 0);
    return *this;
  }
  Raw& Zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
  std::vector<uint8_t> b;
};

std::string ErrorOf(const std::vector<uint8_t>& bytes) {
  try {
    GgufFile::FromBytes(bytes.data(), bytes.size(), "test.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_GGUF_ERROR(bytes, text)                                \
  do {                                                                \
    const std::string err_ = ErrorOf(bytes);                          \
    EXPECT_NE(err_.find("test.gguf"), std::string::npos) << err_;     \
    EXPECT_NE(err_.find(text), std::string::npos) << "got: " << err_; \
  } while (0)

TEST(GgufFormat, WriteReadEveryValueType) {
  const std::string dir = test::TempDir("gguf_rw");
  GgufWriter w(64);
  w.Set("u8", GgufValue{GgufType::kU8, 200, {}, GgufType::kU8, {}, {}});
  w.Set("i8", GgufValue{GgufType::kI8, 0xFF, {}, GgufType::kU8, {}, {}});
  w.Set("u16", GgufValue{GgufType::kU16, 65535, {}, GgufType::kU8, {}, {}});
  w.Set("i16", GgufValue{GgufType::kI16, 0x8000, {}, GgufType::kU8, {}, {}});
  w.Set("u32", GgufValue::U32(4000000000u));
  w.Set("i32", GgufValue::I32(-7));
  w.Set("f32", GgufValue::F32(0.1f));
  w.Set("bool", GgufValue::Bool(true));
  w.Set("str", GgufValue::String("héllo"));
  w.Set("u64", GgufValue::U64(1ull << 60));
  w.Set("i64", GgufValue::I64(-5));
  w.Set("f64", GgufValue::F64(1e-300));
  w.Set("arr", GgufValue::I32Array({1, -2, 3}));
  w.Set("strs", GgufValue::StringArray({"a", "", "c"}));
  w.Set("nested", GgufValue::Array(GgufType::kArray,
                                   {GgufValue::I32Array({1}), GgufValue::I32Array({2, 3})}));
  const float m[6] = {1, 2, 3, 4, 5, 6};
  w.AddTensor("m", {3, 2}, GgmlTypeOf(DType::kF32), m);  // PyTorch [2, 3]
  std::vector<float> v32(32, 0.5f);
  std::vector<uint8_t> q(DTypeBytes(DType::kQ8_0, 32));
  FromF32(DType::kQ8_0, v32.data(), q.data(), 32);
  w.AddTensor("q", {32}, GgmlTypeOf(DType::kQ8_0), q.data());
  const std::string path = dir + "/all.gguf";
  w.Write(path);

  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.GetInt("u8"), 200);
  EXPECT_EQ(f.GetInt("i8"), -1);
  EXPECT_EQ(f.GetInt("u16"), 65535);
  EXPECT_EQ(f.GetInt("i16"), -32768);
  EXPECT_EQ(f.GetInt("u32"), 4000000000ll);
  EXPECT_EQ(f.GetInt("i32"), -7);
  EXPECT_FLOAT_EQ(static_cast<float>(f.GetFloat("f32")), 0.1f);
  EXPECT_TRUE(f.GetBool("bool"));
  EXPECT_EQ(f.GetString("str"), "héllo");
  EXPECT_EQ(f.GetInt("u64"), 1ll << 60);
  EXPECT_EQ(f.GetInt("i64"), -5);
  EXPECT_EQ(f.GetFloat("f64"), 1e-300);
  EXPECT_EQ(f.GetIntPerLayer("arr", 3), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.GetIntPerLayer("u8", 2), (std::vector<int64_t>{200, 200}));
  EXPECT_EQ(f.GetArray("strs", GgufType::kString).StrAt(2), "c");
  EXPECT_EQ(f.GetArray("strs", GgufType::kString).StrAt(1), "");
  EXPECT_EQ(f.Get("nested").items[1].At(1).AsInt(), 3);
  EXPECT_EQ(f.Get("arr").At(1).AsInt(), -2);
  EXPECT_EQ(f.metadata()[0].first, "general.alignment");
  const GgufTensorInfo& t = f.GetTensor("m");
  EXPECT_EQ(t.torch_shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(t.data, m, sizeof m), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.GetTensor("q").data) % 64, 0u);
  EXPECT_EQ(f.GetTensor("q").nbytes, 34u);
  EXPECT_EQ(*f.GetTensor("q").dtype, DType::kQ8_0);

  // Typed getters name the key.
  auto err = [&](auto fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err([&] { f.GetInt("str"); }).find("key 'str' must be an integer"), std::string::npos);
  EXPECT_NE(err([&] { f.GetString("nope"); }).find("missing metadata key 'nope'"),
            std::string::npos);
  EXPECT_NE(err([&] { f.GetIntPerLayer("arr", 4); }).find("3 entries"), std::string::npos);
  EXPECT_NE(err([&] { f.GetTensor("x"); }).find("missing tensor 'x'"), std::string::npos);
  fs::remove_all(dir);
}

TEST(GgufFormat, AcceptsMinimalHandWrittenFile) {
  Raw r;
  r.Header(1, 1).KvU32("general.alignment", 16).Tensor("t", {4}, 0, 0).PadTo(16).Zeros(16);
  const auto f = GgufFile::FromBytes(r.b.data(), r.b.size(), "test.gguf");
  EXPECT_EQ(f->alignment(), 16u);
  EXPECT_EQ(f->tensors().size(), 1u);
}

TEST(GgufFormat, MalformedFilesGiveNamedErrors) {
  {
    Raw r;
    r.b = {'G', 'G', 'U'};
    EXPECT_GGUF_ERROR(r.b, "not a GGUF file");
    r.b = {'G', 'G', 'M', 'L', 3, 0, 0, 0};
    EXPECT_GGUF_ERROR(r.b, "expected magic 'GGUF'");
  }
  {
    Raw r;
    r.Header(0, 0, 1);
    EXPECT_GGUF_ERROR(r.b, "unsupported GGUF version 1");
    Raw r4;
    r4.Header(0, 0, 4);
    EXPECT_GGUF_ERROR(r4.b, "unsupported GGUF version 4");
    Raw be;
    be.Header(0, 0, 0x03000000u);
    EXPECT_GGUF_ERROR(be.b, "big-endian");
  }
  {
    Raw r;
    r.Header(0, 0);
    r.b.resize(r.b.size() - 3);
    EXPECT_GGUF_ERROR(r.b, "truncated");
  }
  {  // huge counts are rejected before anything is allocated
    Raw r;
    r.Header(0, 1ull << 62);
    EXPECT_GGUF_ERROR(r.b, "metadata count");
    Raw t;
    t.Header(1ull << 40, 0);
    EXPECT_GGUF_ERROR(t.b, "tensor count");
  }
  {
    Raw r;
    r.Header(0, 1).Put<uint64_t>(1ull << 50).Zeros(16);
    EXPECT_GGUF_ERROR(r.b, "string length");
  }
  {
    Raw r;
    r.Header(0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(4).Put<uint64_t>(1ull << 61);
    EXPECT_GGUF_ERROR(r.b, "key 'a': array count");
  }
  {
    Raw r;
    r.Header(0, 1).Str("a").Put<uint32_t>(13).Put<uint32_t>(0);
    EXPECT_GGUF_ERROR(r.b, "key 'a': unknown value type 13");
  }
  {
    Raw r;
    r.Header(0, 1).Str("a").Put<uint32_t>(9).Put<uint32_t>(77).Put<uint64_t>(0);
    EXPECT_GGUF_ERROR(r.b, "unknown array element type 77");
  }
  {
    Raw r;
    r.Header(0, 1).Str("b").Put<uint32_t>(7).Put<uint8_t>(2);
    EXPECT_GGUF_ERROR(r.b, "bool value 2");
  }
  {
    Raw r;
    r.Header(0, 2).KvU32("k", 1).KvU32("k", 2);
    EXPECT_GGUF_ERROR(r.b, "key 'k' appears twice");
  }
  {
    Raw r;
    r.Header(0, 1).KvU32("general.alignment", 24);
    EXPECT_GGUF_ERROR(r.b, "not a power of two");
  }
  {
    Raw r;
    r.Header(0, 1).Str("general.alignment").Put<uint32_t>(10).Put<uint64_t>(32);
    EXPECT_GGUF_ERROR(r.b, "'general.alignment' must be u32");
  }
  {  // arrays nested without end
    Raw r;
    r.Header(0, 1).Str("n");
    r.Put<uint32_t>(9);
    for (int i = 0; i < 10; ++i) r.Put<uint32_t>(9).Put<uint64_t>(1);
    r.Put<uint32_t>(4).Put<uint64_t>(0);
    EXPECT_GGUF_ERROR(r.b, "nested too deeply");
  }
  auto tensor_file = [](std::vector<uint64_t> ne, uint32_t type, uint64_t off, size_t data) {
    Raw r;
    r.Header(1, 0).Tensor("w", std::move(ne), type, off).PadTo(32).Zeros(data);
    return r.b;
  };
  EXPECT_GGUF_ERROR(tensor_file({4}, 99, 0, 16), "tensor 'w': unknown GGML type id 99");
  EXPECT_GGUF_ERROR(tensor_file({4}, 0, 8, 64), "tensor 'w': data offset 8 is not a multiple");
  EXPECT_GGUF_ERROR(tensor_file({4}, 0, 0, 8), "runs past the end");
  EXPECT_GGUF_ERROR(tensor_file({4}, 0, 1ull << 62, 16), "runs past the end");
  EXPECT_GGUF_ERROR(tensor_file({16}, 8, 0, 64), "not a multiple of the Q8_0 block size 32");
  EXPECT_GGUF_ERROR(tensor_file({1ull << 40, 1ull << 40}, 0, 0, 16), "overflows");
  EXPECT_GGUF_ERROR(tensor_file({1, 1, 1, 1, 1}, 0, 0, 16), "5 dimensions");
  {
    Raw r;
    r.Header(2, 0).Tensor("a", {8}, 0, 0).Tensor("a", {8}, 0, 32);
    EXPECT_GGUF_ERROR(r.b, "tensor 'a' appears twice");
    Raw o;
    o.Header(2, 0).Tensor("a", {16}, 0, 0).Tensor("b", {8}, 0, 32).PadTo(32).Zeros(96);
    EXPECT_GGUF_ERROR(o.b, "overlap");
  }
}

// llama.cpp's files carry only per-layer numbers: the released sizes' multipliers come back.
TEST(GgufConfig, RebuildsTheReleasedConfigsFromLlamaCppKeys) {
  const std::string dir = test::TempDir("gguf_presets");
  for (const std::string& name : PresetNames()) {
    SCOPED_TRACE(name);
    const ModelConfig p = PresetConfig(name);
    GgufWriter w;
    std::vector<int> ffn, heads, kv;
    for (const auto& l : p.layers) {
      ffn.push_back(l.ffn_dim);
      heads.push_back(l.n_heads);
      kv.push_back(l.n_kv_heads);
    }
    w.Set("general.architecture", GgufValue::String("openelm"));
    w.Set("openelm.block_count", GgufValue::U32(static_cast<uint32_t>(p.n_layers)));
    w.Set("openelm.context_length", GgufValue::U32(2048));
    w.Set("openelm.embedding_length", GgufValue::U32(static_cast<uint32_t>(p.dim)));
    w.Set("openelm.feed_forward_length", GgufValue::I32Array(ffn));
    w.Set("openelm.attention.head_count", GgufValue::I32Array(heads));
    w.Set("openelm.attention.head_count_kv", GgufValue::I32Array(kv));
    w.Set("openelm.attention.key_length", GgufValue::U32(static_cast<uint32_t>(p.head_dim)));
    w.Set("openelm.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-6f));
    // Only the metadata matters here: a one-token embedding, and the marker tensors whose
    // presence says QK-norm and GLU.
    std::vector<float> zeros(static_cast<size_t>(p.dim), 0.0f);
    w.AddTensor("token_embd.weight", {p.dim, 1}, 0, zeros.data());
    w.AddTensor("blk.0.attn_q_norm.weight", {p.head_dim}, 0, zeros.data());
    w.AddTensor("blk.0.ffn_gate.weight", {32, 1}, 0, zeros.data());
    w.Write(dir + "/p.gguf");
    const ModelConfig c = HfConfigFromGguf(GgufFile(dir + "/p.gguf"));
    EXPECT_EQ(c.qkv_multipliers, p.qkv_multipliers);
    EXPECT_EQ(c.gqa_groups, p.gqa_groups);
    for (int i = 0; i < p.n_layers; ++i) {
      EXPECT_EQ(c.layers[i].n_heads, p.layers[i].n_heads) << i;
      EXPECT_EQ(c.layers[i].n_kv_heads, p.layers[i].n_kv_heads) << i;
      EXPECT_EQ(c.layers[i].ffn_dim, p.layers[i].ffn_dim) << i;
      EXPECT_EQ(c.layers[i].ffn_multiplier, p.layers[i].ffn_multiplier) << i;
    }
    EXPECT_EQ(c.ffn_dim_divisor, p.ffn_dim_divisor);
  }
  fs::remove_all(dir);
}

// Loading uses a llama.cpp file's per-layer counts as stored; only a config.json (conversions)
// needs OpenELM multipliers, so a file whose counts no multiplier derives still loads.
TEST(GgufConfig, LoadingReadsThePerLayerCountsAsStored) {
  const std::string dir = test::TempDir("gguf_counts");
  GgufWriter w;
  w.Set("general.architecture", GgufValue::String("openelm"));
  w.Set("openelm.block_count", GgufValue::U32(2));
  w.Set("openelm.context_length", GgufValue::U32(64));
  w.Set("openelm.embedding_length", GgufValue::U32(16));
  w.Set("openelm.feed_forward_length", GgufValue::I32Array({32, 48}));
  // 11 and 12 heads of 16 in a 16-wide model: more than any multiplier up to 10 derives.
  w.Set("openelm.attention.head_count", GgufValue::I32Array({11, 12}));
  w.Set("openelm.attention.head_count_kv", GgufValue::I32Array({11, 12}));
  w.Set("openelm.attention.key_length", GgufValue::U32(16));
  w.Set("openelm.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-6f));
  std::vector<float> zeros(16, 0.0f);
  w.AddTensor("token_embd.weight", {16, 1}, 0, zeros.data());
  w.Write(dir + "/c.gguf");
  const GgufFile f(dir + "/c.gguf");
  const ModelConfig c = ConfigFromGguf(f);
  ASSERT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.layers[0].n_heads, 11);
  EXPECT_EQ(c.layers[1].n_kv_heads, 12);
  EXPECT_EQ(c.layers[1].ffn_dim, 48);
  EXPECT_EQ(c.qkv_out(1), 36 * 16);
  EXPECT_TRUE(c.qkv_multipliers.empty());
  std::string e;
  try {
    (void)HfConfigFromGguf(f);
  } catch (const Error& x) {
    e = x.what();
  }
  EXPECT_NE(e.find("cannot be expressed as OpenELM multipliers"), std::string::npos) << e;
  fs::remove_all(dir);
}

// A small valid OpenELM GGUF in memory: the tiny conformance model plus a made-up 256-token
// vocabulary, so that metadata, tokenizer and tensor paths are all exercised.
std::vector<uint8_t> SmallModelGguf() {
  ModelSource src = OpenModelSource(test::DataDir() + "/conformance/a_tiny_qknorm_tied");
  GgufVocab v;
  for (int i = 0; i < src.config.vocab_size; ++i) {
    v.tokens.push_back(i == 0   ? "<unk>"
                       : i == 1 ? "<s>"
                       : i == 2 ? "</s>"
                                : "t" + std::to_string(i));
    v.types.push_back(i == 0 ? kTokenUnknown : i < 3 ? kTokenControl : kTokenNormal);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  src.vocab = v;
  const std::string dir = test::TempDir("gguf_small");
  WriteGgufModel(src, dir + "/m.gguf", DType::kQ8_0, "tiny", "", false);
  const MmapFile f(dir + "/m.gguf");
  std::vector<uint8_t> bytes(f.data(), f.data() + f.size());
  fs::remove_all(dir);
  return bytes;
}

// Everything elm does with a GGUF's bytes short of running the model.
void ReadEverything(const std::vector<uint8_t>& bytes) {
  const auto f = GgufFile::FromBytes(bytes.data(), bytes.size(), "mutant.gguf");
  for (const auto& [k, v] : f->metadata()) (void)v.ToString();
  const ModelConfig c = HfConfigFromGguf(*f);
  (void)MapGgufTensors(*f, c);
  (void)MapGgufTensors(*f, ConfigFromGguf(*f));
  (void)TokenizerFromGguf(*f);
}

TEST(GgufFormat, RandomMutationsOnlyThrowElmErrors) {
  const std::vector<uint8_t> valid = SmallModelGguf();
  ASSERT_NO_THROW(ReadEverything(valid));
  const auto good = GgufFile::FromBytes(valid.data(), valid.size(), "valid.gguf");
  const size_t header = good->data_offset();
  std::mt19937_64 rng(20240611);
  int accepted = 0, rejected = 0;
  const int kRuns = 3000;
  for (int run = 0; run < kRuns; ++run) {
    std::vector<uint8_t> b = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      // Mostly the header, where the structure is.
      const size_t limit = rng() % 10 == 0 ? b.size() : std::min(header, b.size());
      if (limit == 0) break;
      const size_t at = rng() % limit;
      switch (rng() % 6) {
        case 0:
          b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 1:
          b[at] = static_cast<uint8_t>(rng());
          break;
        case 2:
          b.resize(at);
          break;
        case 3: {  // a little-endian u64 field set to something extreme
          const uint64_t vals[] = {0, 1, 0xFFFFFFFFull, 1ull << 32, ~0ull, 1ull << 62};
          const uint64_t v = vals[rng() % 6];
          for (size_t i = 0; i < 8 && at + i < b.size(); ++i)
            b[at + i] = static_cast<uint8_t>(v >> (8 * i));
          break;
        }
        case 4:
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(rng()));
          break;
        default:
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
          break;
      }
    }
    try {
      ReadEverything(b);
      ++accepted;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& ex) {
      ADD_FAILURE() << "run " << run << ": non-elm exception: " << ex.what();
    }
  }
  std::printf("[gguf mutations] %d runs: %d rejected with elm::Error, %d still valid\n", kRuns,
              rejected, accepted);
  EXPECT_GT(rejected, kRuns / 2);
}

TEST(GgufFormat, MutatedModelsFailCleanlyOnLoad) {
  const std::vector<uint8_t> valid = SmallModelGguf();
  const auto good = GgufFile::FromBytes(valid.data(), valid.size(), "valid.gguf");
  const std::string dir = test::TempDir("gguf_mut");
  std::mt19937_64 rng(7);
  for (int run = 0; run < 200; ++run) {
    std::vector<uint8_t> b = valid;
    const size_t at = rng() % good->data_offset();
    b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    const std::string path = dir + "/m" + std::to_string(run % 4) + ".gguf";
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    try {
      (void)Model::Load(path);
    } catch (const Error&) {
    } catch (const std::exception& ex) {
      ADD_FAILURE() << "run " << run << ": non-elm exception: " << ex.what();
    }
  }
  fs::remove_all(dir);
}

}  // namespace formats_gguf_test
}  // namespace elm
