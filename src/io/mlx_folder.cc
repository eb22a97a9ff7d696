#include "io/mlx_folder.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mmap_file.h"
#include "io/model_source.h"
#include "io/safetensors.h"

namespace elm {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
namespace {

// One tensor of a safetensors file being written; `fill` produces exactly `nbytes` bytes.
struct StEntry {
  std::string name;
  std::string dtype;  // safetensors dtype name: F32, F16, BF16, U32
  std::vector<int64_t> shape;
  size_t nbytes;
  std::function<void(uint8_t*)> fill;
};

const char* StDTypeName(DType t) {
  ELM_CHECK(t == DType::kF32 || t == DType::kF16 || t == DType::kBF16);
  return DTypeName(t);  // safetensors' names of these three are elm's
}

const char* TorchDTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
    default:
      return "float32";
  }
}

void WriteFile(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  if (!out.flush()) Fail(p.string(), ": write failed");
}

// Streams a safetensors file: u64 header length, JSON header (padded so the data is 64-byte
// aligned), then each tensor's bytes in order. The folder around it provides the atomicity.
void WriteSafetensorsStreaming(const fs::path& p, const std::vector<StEntry>& entries,
                               const std::string& format, const WriteProgressFn& progress) {
  ojson h;
  h["__metadata__"] = {{"format", format}};
  size_t offset = 0;
  for (const auto& e : entries) {
    ojson t;
    t["dtype"] = e.dtype;
    t["shape"] = e.shape;
    t["data_offsets"] = {offset, offset + e.nbytes};
    h[e.name] = t;
    offset += e.nbytes;
  }
  std::string header = h.dump();
  PadSafetensorsHeader(header);
  std::ofstream out(p, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<uint8_t> buf;
  size_t done = 0;
  for (const auto& e : entries) {
    buf.resize(e.nbytes);
    e.fill(buf.data());
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    done += e.nbytes;
    if (progress) progress(static_cast<int64_t>(done), static_cast<int64_t>(offset));
  }
  if (!out.flush()) Fail(p.string(), ": write failed");
}

// Removes the temp folder unless the conversion completed.
class TempFolder {
 public:
  explicit TempFolder(fs::path p) : path_(std::move(p)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempFolder() {
    if (!keep_) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const fs::path& path() const { return path_; }
  void Keep() { keep_ = true; }

 private:
  fs::path path_;
  bool keep_ = false;
};

std::string ConfigJson(const ModelSource& src, const FolderOptions& opt,
                       std::optional<DType> float_type) {
  ojson j;
  try {
    j = ojson::parse(src.config_json);
  } catch (const ojson::exception& e) {
    Fail(src.origin, ": config.json is not valid JSON: ", e.what());
  }
  if (float_type) j["torch_dtype"] = TorchDTypeName(*float_type);
  if (opt.mlx) {
    // mlx-lm's openelm ModelArgs indexes these per layer, so store the expanded lists (elm and
    // HF read a list of one value per layer as-is).
    const ModelConfig& c = src.config;
    ojson ffn = ojson::array(), nq = ojson::array(), nkv = ojson::array();
    for (const auto& l : c.layers) {
      ffn.push_back(l.ffn_multiplier);
      nq.push_back(l.n_heads);
      nkv.push_back(l.n_kv_heads);
    }
    j["model_type"] = "openelm";
    j["ffn_multipliers"] = ffn;
    j["num_query_heads"] = nq;
    j["num_kv_heads"] = nkv;
    j["rms_norm_eps"] = c.norm_eps;
    if (opt.quant) {
      const ojson q = {{"group_size", opt.quant->group_size}, {"bits", opt.quant->bits}};
      j["quantization"] = q;
      j["quantization_config"] = q;  // newer mlx-lm releases read this name
    } else {
      j.erase("quantization");
      j.erase("quantization_config");
    }
  }
  return j.dump(2) + "\n";
}

// Adds "chat_template" to a tokenizer_config.json that has none (text unchanged otherwise).
std::string WithChatTemplate(const std::string& cfg, const std::string& chat_template,
                             const fs::path& dir) {
  if (chat_template.empty()) return cfg;
  ojson j = ojson::parse(cfg, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    std::fprintf(stderr,
                 "warning: %s: the source's tokenizer_config.json is not a JSON object; "
                 "no chat template added\n",
                 dir.string().c_str());
    return cfg;
  }
  if (j.contains("chat_template")) return cfg;
  j["chat_template"] = chat_template;
  return j.dump(2) + "\n";
}

void WriteTokenizerFiles(const ModelSource& src, const fs::path& dir, bool mlx,
                         const std::string& chat_template) {
  std::string tok = src.tokenizer_json, cfg = src.tokenizer_config_json,
              special = src.special_tokens_map_json;
  // An HF folder without tokenizer files (Apple's checkpoints) stays that way; MLX folders and
  // GGUF sources get the tokenizer the model runs with, so the result is self-contained.
  const bool synthesize = tok.empty() && src.vocab && (mlx || src.format == "gguf");
  if (synthesize) tok = TokenizerJsonFromVocab(*src.vocab);
  if (tok.empty()) {
    if (mlx)
      std::fprintf(stderr,
                   "warning: %s: no tokenizer matches the model's vocabulary; mlx-lm "
                   "needs tokenizer files beside the weights\n",
                   src.origin.c_str());
    return;
  }
  WriteFile(dir / "tokenizer.json", tok);
  if (cfg.empty() && src.vocab) cfg = TokenizerConfigJsonFromVocab(*src.vocab);
  if (!cfg.empty()) {
    // A GGUF source's own template (tokenizer.chat_template) goes first.
    const std::string own = src.vocab ? src.vocab->chat_template : "";
    WriteFile(dir / "tokenizer_config.json",
              WithChatTemplate(cfg, own.empty() ? chat_template : own, dir));
  }
  if (special.empty() && src.vocab) {
    ojson m;
    auto put = [&](const char* key, int id) {
      if (id >= 0) m[key] = src.vocab->tokens[static_cast<size_t>(id)];
    };
    put("bos_token", src.vocab->bos);
    put("eos_token", src.vocab->eos);
    put("unk_token", src.vocab->unk);
    special = m.dump(2) + "\n";
  }
  if (!special.empty()) WriteFile(dir / "special_tokens_map.json", special);
}

}  // namespace

void WriteModelFolder(const ModelSource& src, const std::string& dir, const FolderOptions& opt,
                      bool verbose) {
  if (opt.quant && !opt.mlx) Fail("MLX quantization applies to MLX folders only");
  if (opt.quant) CheckMlxQuantization(*opt.quant, dir);
  const fs::path out(dir);
  std::error_code ec;
  if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
    Fail(dir, ": already exists; remove it or choose another output");

  auto float_type = [&](const SourceTensor& t) {
    return opt.type.value_or(DTypeBlock(t.dtype) == 1 ? t.dtype : DType::kF32);
  };
  std::optional<DType> uniform;
  bool mixed = false;
  std::vector<StEntry> entries;
  for (size_t i = 0; i < src.tensors.size(); ++i) {
    const SourceTensor& t = src.tensors[i];
    const DType to = float_type(t);
    if (uniform && *uniform != to) mixed = true;
    uniform = to;
    const int64_t rows = t.is_matrix() ? t.rows() : 1, cols = t.cols();
    const ModelSource* sp = &src;
    if (opt.quant && t.is_matrix() && cols % opt.quant->group_size == 0) {
      const MlxQuantization q = *opt.quant;
      const std::string base = t.spec.name.substr(0, t.spec.name.size() - 7);  // drop ".weight"
      const int64_t words = cols * q.bits / 32, groups = cols / q.group_size;
      // Quantizing writes all three tensors at once; the entries share the result.
      struct Packed {
        std::vector<uint32_t> w;
        std::vector<uint8_t> s, b;
      };
      auto packed = std::make_shared<Packed>();
      auto compute = [packed, sp, i, q, to, rows, cols, words, groups]() {
        if (!packed->w.empty()) return;
        packed->w.resize(static_cast<size_t>(rows * words));
        const size_t sb_row = static_cast<size_t>(groups) * DTypeSize(to);
        packed->s.resize(static_cast<size_t>(rows) * sb_row);
        packed->b.resize(static_cast<size_t>(rows) * sb_row);
        const std::vector<uint8_t> f32 = ConvertTensor(sp->Fetch(i), DType::kF32);
        const auto* x = reinterpret_cast<const float*>(f32.data());
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r)
          MlxQuantizeRow(x + r * cols, cols, q, to, packed->w.data() + r * words,
                         packed->s.data() + static_cast<size_t>(r) * sb_row,
                         packed->b.data() + static_cast<size_t>(r) * sb_row);
      };
      const size_t sb_bytes = static_cast<size_t>(rows * groups) * DTypeSize(to);
      entries.push_back({t.spec.name,
                         "U32",
                         {rows, words},
                         static_cast<size_t>(rows * words) * 4,
                         [packed, compute](uint8_t* dst) {
                           compute();
                           std::memcpy(dst, packed->w.data(), packed->w.size() * 4);
                         }});
      entries.push_back({base + ".scales",
                         StDTypeName(to),
                         {rows, groups},
                         sb_bytes,
                         [packed, compute](uint8_t* dst) {
                           compute();
                           std::memcpy(dst, packed->s.data(), packed->s.size());
                         }});
      entries.push_back(
          {base + ".biases", StDTypeName(to), {rows, groups}, sb_bytes, [packed](uint8_t* dst) {
             std::memcpy(dst, packed->b.data(), packed->b.size());
             *packed = Packed{};  // written last of the three: free the copy
           }});
      continue;
    }
    entries.push_back({t.spec.name, StDTypeName(to), t.spec.shape,
                       DTypeBytes(to, static_cast<size_t>(rows * cols)), [sp, i, to](uint8_t* dst) {
                         const std::vector<uint8_t> bytes = ConvertTensor(sp->Fetch(i), to);
                         std::memcpy(dst, bytes.data(), bytes.size());
                       }});
  }

  fs::path parent = out.parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  RemoveStaleTemps(out.string());  // a folder left by a killed earlier conversion
  TempFolder tmp(fs::path(TempPathFor(out.string())));
  WriteFile(tmp.path() / "config.json", ConfigJson(src, opt, mixed ? std::nullopt : uniform));
  WriteSafetensorsStreaming(tmp.path() / "model.safetensors", entries, opt.mlx ? "mlx" : "pt",
                            opt.progress);
  WriteTokenizerFiles(src, tmp.path(), opt.mlx, opt.chat_template);
  // Every file and the folder reach the disk before the rename makes the folder visible, and
  // the rename itself before this returns (docs/reliability.md).
  for (const auto& e : fs::directory_iterator(tmp.path()))
    if (e.is_regular_file()) SyncFile(e.path().string());
  SyncDirectory(tmp.path().string());
  if (fs::exists(out, ec)) fs::remove(out);
  fs::rename(tmp.path(), out);
  tmp.Keep();
  SyncDirectory(out.parent_path().string());
  if (verbose) std::fprintf(stderr, "wrote %s\n", dir.c_str());
}

}  // namespace elm
