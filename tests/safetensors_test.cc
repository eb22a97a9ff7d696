// safetensors reading/writing and every bad-checkpoint error path.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "base/error.h"
#include "base/mmap_file.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test_util.h"

namespace elm {
namespace safetensors_test {
namespace fs = std::filesystem;

void WriteRaw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string buf(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(buf.data(), &n, 8);
  buf += header;
  buf += std::string(data_bytes, '\0');
  std::ofstream(path, std::ios::binary).write(buf.data(), static_cast<std::streamsize>(buf.size()));
}

std::string ErrorOf(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, WriteReadRoundTrip) {
  const std::string dir = test::TempDir("st");
  const float a[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t b[3] = {F32ToBF16(1.5f), F32ToBF16(-2.0f), F32ToBF16(0.25f)};
  WriteSafetensors(dir + "/x.safetensors",
                   {{"a", DType::kF32, {2, 3}, a}, {"b", DType::kBF16, {3}, b}}, {{"k", "v"}});
  SafetensorsFile f(dir + "/x.safetensors");
  ASSERT_NE(f.Find("a"), nullptr);
  EXPECT_EQ(f.Find("a")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(f.Find("a")->data, a, sizeof a), 0);
  EXPECT_EQ(*f.Find("b")->dtype, DType::kBF16);
  EXPECT_EQ(f.metadata().at("k"), "v");
  fs::remove_all(dir);
}

TEST(Safetensors, MalformedFilesGiveNamedErrors) {
  const std::string dir = test::TempDir("stbad");
  const std::string p = dir + "/bad.safetensors";
  std::ofstream(p) << "abc";
  EXPECT_NE(ErrorOf(p).find("bad.safetensors"), std::string::npos);

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  EXPECT_NE(ErrorOf(p).find("truncated"), std::string::npos) << ErrorOf(p);

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  EXPECT_NE(ErrorOf(p).find("does not match"), std::string::npos) << ErrorOf(p);

  WriteRaw(p, R"({"w":{"dtype":"Q9","shape":[4],"data_offsets":[0,16]}})", 16);
  EXPECT_NE(ErrorOf(p).find("unknown dtype"), std::string::npos) << ErrorOf(p);

  WriteRaw(p,
           R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
           R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
           24);
  EXPECT_NE(ErrorOf(p).find("overlap"), std::string::npos) << ErrorOf(p);

  WriteRaw(p,
           R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
           R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           8);
  EXPECT_NE(ErrorOf(p).find("duplicate"), std::string::npos) << ErrorOf(p);

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", 16);
  EXPECT_NE(ErrorOf(p).find("reversed"), std::string::npos) << ErrorOf(p);

  WriteRaw(p, R"({"w": nope})", 0);
  EXPECT_NE(ErrorOf(p).find("JSON"), std::string::npos) << ErrorOf(p);

  // Header length larger than the file.
  {
    std::string buf(8, '\0');
    const uint64_t n = 1000;
    std::memcpy(buf.data(), &n, 8);
    buf += "{}";
    std::ofstream(p, std::ios::binary).write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  EXPECT_NE(ErrorOf(p).find("truncated"), std::string::npos) << ErrorOf(p);
  fs::remove_all(dir);
}

// Copies a conformance checkpoint, optionally replacing its weights file.
std::string CopyTiny(const std::string& tag) {
  const std::string dir = test::TempDir(tag);
  const std::string src = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  fs::copy_file(src + "/config.json", dir + "/config.json");
  fs::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  return dir;
}

std::string LoadError(const std::string& dir) {
  try {
    Model::Load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelLoad, TruncatedCheckpoint) {
  const std::string dir = CopyTiny("trunc");
  fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 100);
  const std::string e = LoadError(dir);
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  fs::remove_all(dir);
}

TEST(ModelLoad, WrongDtypeAndShape) {
  const std::string dir = CopyTiny("dtype");
  SafetensorsFile orig(test::DataDir() + "/conformance/a_tiny_qknorm_tied/model.safetensors");
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, v] : orig.tensors()) tensors.push_back({name, *v.dtype, v.shape, v.data});
  {  // A shape that disagrees with config.json.
    std::vector<TensorToWrite> t2 = tensors;
    for (auto& t : t2)
      if (t.name == "transformer.layers.1.attn.qkv_proj.weight") t.shape = {64, 128};
    WriteSafetensors(dir + "/model.safetensors", t2);
    const std::string e = LoadError(dir);
    EXPECT_NE(e.find("transformer.layers.1.attn.qkv_proj.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("shape"), std::string::npos) << e;
  }
  {
    // Replace the header dtype of one tensor with I32 (same byte size as F32).
    std::string bytes =
        ReadTextFile(test::DataDir() + "/conformance/a_tiny_qknorm_tied/model.safetensors");
    uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    std::string header = bytes.substr(8, n);
    auto j = nlohmann::json::parse(header);
    j["transformer.norm.weight"]["dtype"] = "I32";
    std::string h2 = j.dump();
    while (h2.size() < n) h2.push_back(' ');
    ASSERT_EQ(h2.size(), n);
    bytes.replace(8, n, h2);
    std::ofstream(dir + "/model.safetensors", std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    const std::string e = LoadError(dir);
    EXPECT_NE(e.find("transformer.norm.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("I32"), std::string::npos) << e;
  }
  fs::remove_all(dir);
}

TEST(ModelLoad, MissingTensorAndFiles) {
  const std::string dir = CopyTiny("missing");
  SafetensorsFile orig(test::DataDir() + "/conformance/a_tiny_qknorm_tied/model.safetensors");
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, v] : orig.tensors())
    if (name != "transformer.layers.0.ffn.proj_2.weight")
      tensors.push_back({name, *v.dtype, v.shape, v.data});
  WriteSafetensors(dir + "/model.safetensors", tensors);
  EXPECT_NE(LoadError(dir).find("transformer.layers.0.ffn.proj_2.weight"), std::string::npos);
  fs::remove(dir + "/model.safetensors");
  EXPECT_NE(LoadError(dir).find("model.safetensors"), std::string::npos);
  fs::remove(dir + "/config.json");
  EXPECT_NE(LoadError(dir).find("config.json"), std::string::npos);
  EXPECT_NE(LoadError(dir + "/nope").find("no such"), std::string::npos);
  fs::remove_all(dir);
}

TEST(ModelLoad, ShardedCheckpointAndBf16) {
  // Split the tiny model into two shards, stored as BF16, with an index.
  const std::string dir = test::TempDir("shard");
  const std::string src = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  fs::copy_file(src + "/config.json", dir + "/config.json");
  SafetensorsFile orig(src + "/model.safetensors");
  std::vector<std::vector<uint16_t>> keep;
  std::vector<TensorToWrite> s1, s2;
  nlohmann::json index;
  int i = 0;
  for (const auto& [name, v] : orig.tensors()) {
    keep.emplace_back(static_cast<size_t>(v.numel()));
    FromF32(DType::kBF16, static_cast<const float*>(v.data), keep.back().data(),
            keep.back().size());
    const bool first = (i++ % 2) == 0;
    (first ? s1 : s2).push_back({name, DType::kBF16, v.shape, keep.back().data()});
    index["weight_map"][name] =
        first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  WriteSafetensors(dir + "/model-00001-of-00002.safetensors", s1);
  WriteSafetensors(dir + "/model-00002-of-00002.safetensors", s2);
  const std::string idx = index.dump();
  WriteFileAtomic(dir + "/model.safetensors.index.json", idx.data(), idx.size());
  auto m = Model::Load(dir);
  EXPECT_EQ(m->weights_dtype(), "BF16");
  EXPECT_EQ(m->config().n_layers, 2);
  fs::remove_all(dir);
}

}  // namespace safetensors_test
}  // namespace elm

namespace elm {
namespace safetensors_test {

// Mutation fuzzing of the reader: random byte flips in the header and random truncations of a
// valid file must end in success or elm::Error — never a crash, hang or other exception.
TEST(Safetensors, MutationFuzzOnlyThrowsElmError) {
  const std::string src =
      ReadTextFile(test::DataDir() + "/conformance/a_tiny_qknorm_tied/model.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, src.data(), 8);
  const std::string dir = test::TempDir("stfuzz");
  const std::string path = dir + "/f.safetensors";
  std::mt19937 rng(1234);
  int errors = 0, ok = 0;
  for (int iter = 0; iter < 1500; ++iter) {
    std::string bytes = src;
    const int mode = iter % 3;
    if (mode == 0) {  // flip 1-4 bytes inside the length field or the JSON header
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const size_t pos = rng() % (8 + header_len);
        bytes[pos] = static_cast<char>(rng() & 0xff);
      }
    } else if (mode == 1) {  // truncate anywhere
      bytes.resize(rng() % bytes.size());
    } else {  // replace a digit of the header with another digit (offsets and shapes change)
      for (int tries = 0; tries < 50; ++tries) {
        const size_t pos = 8 + rng() % header_len;
        if (bytes[pos] >= '0' && bytes[pos] <= '9') {
          bytes[pos] = static_cast<char>('0' + rng() % 10);
          break;
        }
      }
    }
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    try {
      SafetensorsFile f(path);
      ++ok;
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);
  std::printf("[fuzz] safetensors: %d rejected with elm::Error, %d accepted\n", errors, ok);
  fs::remove_all(dir);
}

}  // namespace safetensors_test
}  // namespace elm
