// Regression tests for the defects that hostile inputs and fault injection found (issue 19,
// docs/reliability.md): each test is built from the defect's reproducer.
#include <gtest/gtest.h>
#include <omp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/dtype.h"
#include "base/error.h"
#include "base/mmap_file.h"
#include "base/quant.h"
#include "generation/generator.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/mlx_quant.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "report/loss_plot.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/dataset.h"
#include "train/text_sources.h"
#include "train/train_config.h"
#include "train/train_log.h"

namespace elm {
namespace reliability_core_test {
namespace fs = std::filesystem;

[[maybe_unused]] std::string Repro(const std::string& name) {
  return test::DataDir() + "/reliability/" + name;
}

// The message of the elm::Error that `fn` throws ("" and a test failure when it throws none).
template <typename Fn>
[[maybe_unused]] std::string ErrorOf(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no elm::Error thrown";
  return "";
}

[[maybe_unused]] bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

[[maybe_unused]] std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

[[maybe_unused]] void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// A pid that is not running: a child that has exited and been reaped.
[[maybe_unused]] pid_t DeadPid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

[[maybe_unused]] int OpenFds() {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) n += e.path().empty() ? 0 : 1;
  return n;
}

template <typename T>
[[maybe_unused]] void Put(std::vector<uint8_t>& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}

// "GGUF" v3, no tensors, one key `name` holding an array of `n` elements of `elem`, each
// element's bytes made by `fill`.
[[maybe_unused]] std::vector<uint8_t> GgufWithArray(const std::string& name, GgufType elem,
                                                    uint64_t n, size_t elem_bytes, uint8_t fill) {
  std::vector<uint8_t> b = {'G', 'G', 'U', 'F'};
  Put<uint32_t>(b, 3);
  Put<uint64_t>(b, 0);  // tensors
  Put<uint64_t>(b, 1);  // metadata
  Put<uint64_t>(b, name.size());
  b.insert(b.end(), name.begin(), name.end());
  Put<uint32_t>(b, static_cast<uint32_t>(GgufType::kArray));
  Put<uint32_t>(b, static_cast<uint32_t>(elem));
  Put<uint64_t>(b, n);
  b.resize(b.size() + n * elem_bytes, fill);
  return b;
}

// D2: a u8 metadata array cost ~80x its size (a GgufValue per byte). Now scalar arrays are packed:
// the parsed value holds about the array's bytes, and the elements still read back.
TEST(ReliabilityD2, GgufScalarArrayCostsAboutItsSize) {
  const uint64_t n = 4u << 20;  // 4 MiB of u8 (the reproducer: 1 MB; 40 MB peaked at 3.3 GB)
  std::vector<uint8_t> bytes = GgufWithArray("x.big", GgufType::kU8, n, 1, 0);
  bytes[bytes.size() - 1] = 7;
  auto f = GgufFile::FromBytes(bytes.data(), bytes.size(), "u8_array.gguf");
  const GgufValue& v = f->GetArray("x.big", GgufType::kU8);
  EXPECT_EQ(v.size(), n);
  EXPECT_LE(v.HeapBytes(), n + 4096);
  EXPECT_EQ(v.At(n - 1).AsInt(), 7);
  EXPECT_EQ(v.At(0).AsInt(), 0);
}

TEST(ReliabilityD2, GgufStringAndFloatArraysPackedAndReadable) {
  // 1M empty strings: 8 bytes each in the file, 8 bytes each (an end offset) in memory.
  const uint64_t n = 1u << 20;
  std::vector<uint8_t> bytes = GgufWithArray("tokenizer.ggml.tokens", GgufType::kString, n, 8, 0);
  auto f = GgufFile::FromBytes(bytes.data(), bytes.size(), "strs.gguf");
  const GgufValue& v = f->GetArray("tokenizer.ggml.tokens", GgufType::kString);
  EXPECT_EQ(v.size(), n);
  EXPECT_LE(v.HeapBytes(), 2 * bytes.size());
  EXPECT_EQ(v.StrAt(n - 1), "");

  // f32 values survive the packed storage bit-exactly.
  std::vector<uint8_t> fb = GgufWithArray("s", GgufType::kF32, 3, 4, 0);
  const float vals[3] = {-1.5f, 0.25f, 3e38f};
  std::memcpy(fb.data() + fb.size() - sizeof vals, vals, sizeof vals);
  auto g = GgufFile::FromBytes(fb.data(), fb.size(), "f32.gguf");
  const GgufValue& s = g->GetArray("s", GgufType::kF32);
  ASSERT_EQ(s.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(static_cast<float>(s.At(i).AsDouble()), vals[i]);
}

TEST(ReliabilityD2, GgufNestedArrayBombRejectedWithinBudget) {
  // 1M empty nested arrays (12 bytes each in the file) would need a GgufValue (~120 bytes) each.
  const uint64_t n = 1u << 20;
  std::vector<uint8_t> b = GgufWithArray("x.nested", GgufType::kArray, n, 12, 0);
  try {
    GgufFile::FromBytes(b.data(), b.size(), "nested.gguf");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested.gguf"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("x.nested"), std::string::npos) << e.what();
  }
}

TEST(ReliabilityD2, GgufBoolArrayValuesChecked) {
  std::vector<uint8_t> b = GgufWithArray("flags", GgufType::kBool, 4, 1, 1);
  b.back() = 2;
  EXPECT_THROW(GgufFile::FromBytes(b.data(), b.size(), "bool.gguf"), Error);
}

// ---- D4: unaligned 16-bit loads ----

// Every element type read at an odd address gives the values read at an aligned one.
TEST(ReliabilityD4, ToF32ReadsOddOffsets) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  std::vector<float> x(256);
  for (auto& v : x) v = nd(rng);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const size_t bytes = DTypeBytes(t, x.size());
    std::vector<uint8_t> aligned(bytes), odd(bytes + 1);
    FromF32(t, x.data(), aligned.data(), x.size());
    std::memcpy(odd.data() + 1, aligned.data(), bytes);
    std::vector<float> a(x.size()), b(x.size());
    ToF32(t, aligned.data(), a.data(), a.size());
    ToF32(t, odd.data() + 1, b.data(), b.size());
    EXPECT_EQ(a, b) << DTypeName(t);
    // And FromF32 into an odd address writes the same bytes.
    FromF32(t, x.data(), odd.data() + 1, x.size());
    EXPECT_EQ(std::memcmp(odd.data() + 1, aligned.data(), bytes), 0) << DTypeName(t);
  }
}

// MLX-quantized rows (u32 words, f16 scales and biases) at odd offsets, as in
// mlx/known_misaligned.
TEST(ReliabilityD4, MlxDequantizeOddOffsets) {
  const MlxQuantization q{4, 32};
  const int64_t cols = 64;
  std::vector<uint32_t> words(static_cast<size_t>(cols / 8));
  for (size_t i = 0; i < words.size(); ++i) words[i] = 0x9E3779B9u * static_cast<uint32_t>(i + 1);
  std::vector<uint16_t> sb = {F32ToF16(0.5f), F32ToF16(-0.25f), F32ToF16(1.0f), F32ToF16(2.0f)};
  std::vector<uint8_t> raw(1 + words.size() * 4 + sb.size() * 2);
  std::memcpy(raw.data() + 1, words.data(), words.size() * 4);
  std::memcpy(raw.data() + 1 + words.size() * 4, sb.data(), sb.size() * 2);
  std::vector<float> a(cols), b(cols);
  MlxDequantizeRow(words.data(), sb.data(), sb.data() + 2, DType::kF16, cols, q, a.data());
  const uint8_t* p = raw.data() + 1;
  const void* packed = p;
  MlxDequantizeRow(static_cast<const uint32_t*>(packed), p + words.size() * 4,
                   p + words.size() * 4 + 4, DType::kF16, cols, q, b.data());
  EXPECT_EQ(a, b);
}

// safetensors/misaligned_model: a legal file whose header length is odd puts every tensor at an
// odd offset. Built here from the tiny test model stored as BF16: the model loads, its matrices
// are used from aligned memory, and its logits equal those of the aligned file bit for bit.
TEST(ReliabilityD4, OddHeaderSafetensorsModelMatchesAligned) {
  const std::string tiny = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  const std::string dir = test::TempDir("rel_d4");
  const std::string aligned = dir + "/aligned", odd = dir + "/odd";
  fs::create_directories(aligned);
  fs::create_directories(odd);
  {
    const SafetensorsFile src(tiny + "/model.safetensors");
    std::vector<std::vector<uint8_t>> bufs;
    std::vector<TensorToWrite> out;
    for (const auto& [name, v] : src.tensors()) {
      const auto n = static_cast<size_t>(v.numel());
      std::vector<float> f32(n);
      ToF32(*v.dtype, v.data, f32.data(), n);
      bufs.emplace_back(n * 2);
      FromF32(DType::kBF16, f32.data(), bufs.back().data(), n);
      out.push_back({name, DType::kBF16, v.shape, bufs.back().data()});
    }
    WriteSafetensors(aligned + "/model.safetensors", out);
  }
  fs::copy_file(tiny + "/config.json", aligned + "/config.json");
  fs::copy_file(tiny + "/config.json", odd + "/config.json");
  // The same file with one more space of header padding: data at 8 + N + 1, an odd offset.
  const std::string bytes = ReadAll(aligned + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string padded = bytes.substr(0, 8 + n) + " " + bytes.substr(8 + n);
  const uint64_t n1 = n + 1;
  std::memcpy(padded.data(), &n1, 8);
  ASSERT_EQ((8 + n1) % 2, 1u);
  WriteAll(odd + "/model.safetensors", padded);

  const auto ma = Model::Load(aligned), mo = Model::Load(odd);
  for (const MatRef* m : {&mo->embeddings(), &mo->layer(0).qkv, &mo->layer(0).out})
    EXPECT_EQ(reinterpret_cast<uintptr_t>(m->data) % 2, 0u);
  const std::vector<int> tokens = {1, 5, 9, 200, 31, 7};
  EXPECT_EQ(test::AllLogits(ma, tokens), test::AllLogits(mo, tokens));
}

// ---- D5: token cache size check ----

TEST(ReliabilityD5, CacheCountThatWrapsIsRejected) {
  for (const char* f : {"cache_count_overflow_oob.samples", "cache_count_bitflip.samples"}) {
    const std::string path = Repro(f);
    const std::string msg = ErrorOf([&] { SampleSet::FromCache(path); });
    EXPECT_TRUE(Has(msg, path)) << msg;
    EXPECT_TRUE(Has(msg, "sample cache")) << msg;
  }
}

// ---- D6: tokenizer.json number overflow ----

TEST(ReliabilityD6, TokenizerJsonNumberOverflowNamesFileAndField) {
  const std::string path = Repro("number_overflow_tokenizer.json");
  const std::string msg = ErrorOf([&] { Tokenizer::FromFile(path); });
  EXPECT_TRUE(Has(msg, path)) << msg;
  EXPECT_TRUE(Has(msg, "version")) << msg;
  const std::string nested =
      ErrorOf([] { Tokenizer::FromJson(R"({"model": {"vocab": {"a": 1e999}}})", "t.json"); });
  EXPECT_TRUE(Has(nested, "t.json: model.vocab.a")) << nested;
}

// ---- D7: complex YAML key ----

TEST(ReliabilityD7, ComplexYamlKeyNamesFileLineAndKey) {
  const std::string path = Repro("complex_yaml_key.yaml");
  const std::string msg = ErrorOf([&] { LoadTrainConfig(path); });
  EXPECT_TRUE(Has(msg, path)) << msg;
  EXPECT_TRUE(Has(msg, "line 48")) << msg;
  EXPECT_TRUE(Has(msg, "train_data_info[0]")) << msg;
  const std::string top = ErrorOf([] { ParseTrainConfig("? [a, b]\n: 1\n", "c.yaml", {}, false); });
  EXPECT_TRUE(Has(top, "c.yaml: line 1")) << top;
}

// ---- D8: training log writes and torn lines ----

TEST(ReliabilityD8, FailedLogWriteIsAnError) {
  const std::string path = test::TempDir("rel_d8") + "/train_log.jsonl";
  TrainLog log(path, -1);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 512;  // a full disk: writes past 512 bytes fail with EFBIG
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string msg;
  try {
    for (int step = 1; step <= 100; ++step) {
      StepRecord r;
      r.step = step;
      log.Step(r);
    }
  } catch (const Error& e) {
    msg = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, prev);
  EXPECT_TRUE(Has(msg, path)) << msg;
  EXPECT_TRUE(Has(msg, "cannot write the training log")) << msg;
}

TEST(ReliabilityD8, TornLineSkippedWithWarning) {
  const std::string torn = Repro("torn_train_log.jsonl");
  testing::internal::CaptureStderr();
  const LossSeries s = ReadLossSeries(torn);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(Has(err, "warning: " + torn + ":23:")) << err;
  EXPECT_GT(s.train_step.size(), 20u);

  // Resume keeps the valid lines through its step and warns about the torn one.
  const std::string path = test::TempDir("rel_d8_resume") + "/train_log.jsonl";
  fs::copy_file(torn, path);
  testing::internal::CaptureStderr();
  { TrainLog log(path, 1000000); }
  err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(Has(err, "warning: " + path + ":23:")) << err;
  std::ifstream in(path);
  int lines = 0, bad = 0;
  for (std::string l; std::getline(in, l); ++lines) bad += l.find("}{") != std::string::npos;
  EXPECT_GT(lines, 20);
  EXPECT_EQ(bad, 0);
}

// ---- D10 and durability: stale temps, fsync, no leaked descriptors ----

TEST(ReliabilityD10, StaleTempsOfDeadProcessesRemoved) {
  const std::string dir = test::TempDir("rel_d10");
  const std::string out = dir + "/model.gguf";
  const pid_t dead = DeadPid();
  const std::string stale_file = out + ".tmp." + std::to_string(dead);
  const std::string stale_folder = dir + "/mlx.tmp." + std::to_string(dead);
  const std::string live = out + ".tmp." + std::to_string(::getppid());
  WriteAll(stale_file, "partial");
  WriteAll(live, "someone else's, still running");
  fs::create_directories(stale_folder + "/sub");
  testing::internal::CaptureStderr();
  GgufWriter w;
  w.Set("general.architecture", GgufValue::String("x"));
  w.Write(out);  // a conversion's output: removes its own stale temps first
  EXPECT_EQ(RemoveStaleTemps(dir + "/mlx"), 1);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(fs::exists(stale_file));
  EXPECT_FALSE(fs::exists(stale_folder));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(out));
  EXPECT_TRUE(Has(err, stale_file)) << err;
}

TEST(ReliabilityD10, InterruptedCheckpointRemovedAtNextRun) {
  const std::string root = test::TempDir("rel_d10_ckpt") + "/checkpoints";
  fs::create_directories(root + "/step_00000002");
  WriteAll(root + "/step_00000002/DONE", "step 2\n");
  fs::create_directories(root + "/step_00000004");
  WriteAll(root + "/step_00000004/model.safetensors.tmp.12345", "partial");
  testing::internal::CaptureStderr();
  EXPECT_EQ(RemoveIncompleteCheckpoints(root), 1);
  testing::internal::GetCapturedStderr();
  EXPECT_FALSE(fs::exists(root + "/step_00000004"));
  EXPECT_TRUE(fs::exists(root + "/step_00000002/DONE"));
}

TEST(ReliabilityDurability, AtomicWriteSyncsAndNeverLeaksDescriptors) {
  const std::string dir = test::TempDir("rel_sync");
  WriteFileAtomic(dir + "/a.txt", "abc", 3);
  EXPECT_EQ(ReadAll(dir + "/a.txt"), "abc");
  EXPECT_NO_THROW(SyncDirectory(dir));
  EXPECT_NO_THROW(SyncFile(dir + "/a.txt"));
  EXPECT_THROW(SyncDirectory(dir + "/a.txt"), Error);  // not a folder
  // A write that fails (the file-size limit stands in for a full disk) leaves no temp, no file
  // and no open descriptor behind.
  const int before = OpenFds();
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* prev = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 16;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(4096, 'x');
  for (int i = 0; i < 8; ++i)
    EXPECT_THROW(WriteFileAtomic(dir + "/b.txt", big.data(), big.size()), Error);
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, prev);
  EXPECT_EQ(OpenFds(), before);
  EXPECT_FALSE(fs::exists(dir + "/b.txt"));
  EXPECT_FALSE(fs::exists(TempPathFor(dir + "/b.txt")));
}

// ---- D9: foreign checkpoint folders, --context, -n 0 ----

TEST(ReliabilityD9, ForeignStepFolderIgnored) {
  const std::string root = test::TempDir("rel_d9") + "/checkpoints";
  fs::create_directories(root + "/step_99999999999999999999");
  WriteAll(root + "/step_99999999999999999999/DONE", "x");
  fs::create_directories(root + "/step_00000004");
  WriteAll(root + "/step_00000004/DONE", "step 4\n");
  testing::internal::CaptureStderr();
  const auto list = ListCheckpoints(root);
  PruneCheckpoints(root, 1);
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(fs::path(list[0]).filename(), "step_00000004");
  EXPECT_TRUE(Has(err, "not an elm checkpoint")) << err;
  EXPECT_TRUE(fs::exists(root + "/step_99999999999999999999"));  // not ours: left alone
}

TEST(ReliabilityD9, ContextFlagsAreCheckedAndRatesNeverNegative) {
  const std::string tiny = test::DataDir() + "/conformance/a_tiny_qknorm_tied";
  for (const char* ctx : {"-5", "0"}) {
    std::string out, err;
    EXPECT_NE(
        test::RunElm("generate --model " + tiny + " --ids 1,5 -n 2 --context " + ctx, &out, &err),
        0);
    EXPECT_TRUE(Has(err, "--context")) << err;
  }
  std::string out, err;
  EXPECT_NE(
      test::RunElm("generate --model " + tiny + " --ids 1,5 -n 2 --context 2147483647", &out, &err),
      0);
  EXPECT_TRUE(Has(err, "KV cache")) << err;
  EXPECT_FALSE(Has(err, "bad_alloc")) << err;
  EXPECT_EQ(test::RunElm("generate --model " + tiny + " --ids 1,5 -n 0", &out, &err), 0) << err;
  EXPECT_FALSE(Has(err, "tokens, -")) << err;  // no negative tokens/s
  GenerateStats st;
  st.generated_tokens = 0;
  st.decode_seconds = 0.5;
  EXPECT_EQ(st.generated_tokens_per_s(), 0);
}

// ---- What the fuzz targets found beyond D1-D10 (docs/reliability.md, "Fuzzing") ----

// N1: documents mode tokenizes a document's pieces in an OpenMP loop; invalid UTF-8 in a piece
// threw inside the parallel region (std::terminate). It must be an elm::Error naming the file.
TEST(ReliabilityFuzzN1, InvalidUtf8InDocumentsModeIsAnError) {
  const std::string path = test::TempDir("rel_n1") + "/doc.txt";
  std::string text;
  for (int i = 0; i < 64; ++i) text += "word" + std::to_string(i) + " ";
  text += "bad\xf8\x03 tail";
  std::ofstream(path, std::ios::binary) << text;
  SourceFile src;
  src.path = path;
  src.kind = SourceKind::kText;
  DatasetOptions opt;
  opt.seq_len = 8;
  opt.packed = false;
  opt.document_split_size = 8;
  opt.verbose = false;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);  // the error is thrown on a worker thread too
  const std::string msg = ErrorOf([&] { BuildSamples({src}, Tokenizer::Default(), opt); });
  omp_set_num_threads(threads);
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

// N2: an alias inside its own anchor (`a: &b\n  c: *b`) nests forever; flattening it overflowed
// the stack. It must be an error naming the file.
TEST(ReliabilityFuzzN2, SelfReferentialYamlAliasIsAnError) {
  const std::string path = Repro("recursive_alias.yaml");
  const std::string msg = ErrorOf([&] { LoadTrainConfig(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("nest deeper"), std::string::npos) << msg;
}

// N3: an empty F32 tensor (shape [0]) widened into an empty buffer passed memcpy a null
// destination with a count of 0 (UBSan: memcpy's pointers must not be null even then).
TEST(ReliabilityFuzzN3, EmptyF32TensorConvertsWithNullBuffers) {
  std::vector<float> empty;
  const float one = 1.0f;
  ToF32(DType::kF32, &one, empty.data(), 0);
  ToF32(DType::kF32, nullptr, empty.data(), 0);
  uint8_t out = 7;
  FromF32(DType::kF32, empty.data(), &out, 0);
  FromF32(DType::kF32, nullptr, nullptr, 0);
  EXPECT_EQ(out, 7);
}

}  // namespace reliability_core_test
}  // namespace elm
