#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/quant.h"
#include "config/hf_config.h"
#include "io/gguf.h"
#include "io/mlx_quant.h"
#include "kernels/cpu_kernels.h"
#include "model/lora_adapter.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

const TensorView& Checked(const TensorView& v, const std::string& origin, const TensorSpec& spec) {
  return CheckWidenable(
      v, origin, spec.name, spec.shape,
      spec.layer >= 0 ? " (layer " + std::to_string(spec.layer) + ")" : std::string());
}

MatRef ToMat(const TensorView& v) {
  return MatRef{*v.dtype, v.data, v.shape[0], v.shape.size() > 1 ? v.shape[1] : 1};
}

std::vector<float> ToVec(const TensorView& v) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  ToF32(*v.dtype, v.data, out.data(), out.size());
  return out;
}

}  // namespace

MatRef ConvertMatrix(const MatRef& src, DType to, std::vector<std::shared_ptr<uint8_t>>& owned,
                     const std::string& origin, const std::string& name, bool pack) {
  if (src.cols % static_cast<int64_t>(DTypeBlock(to)) != 0)
    Fail(origin, ": cannot convert tensor '", name, "' to ", DTypeName(to), ": its ", src.cols,
         " columns are not a multiple of ", DTypeBlock(to));
  MatRef dst{to, nullptr, src.rows, src.cols};
  pack = pack && Packable(MatRef{to, src.data, src.rows, src.cols});
  const size_t row_bytes = dst.row_bytes();
  owned.push_back(AllocateHugePages(row_bytes * static_cast<size_t>(src.rows)));
  uint8_t* out = owned.back().get();
  if (src.dtype == to && !pack) {  // a plain copy (LoadOptions::mmap = false), in 1 MiB pieces
    const size_t bytes = row_bytes * static_cast<size_t>(src.rows);
    constexpr size_t kPiece = size_t{1} << 20;
    const auto n = static_cast<int64_t>((bytes + kPiece - 1) / kPiece);
    const auto* in = static_cast<const uint8_t*>(src.data);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const size_t off = static_cast<size_t>(i) * kPiece;
      std::memcpy(out + off, in + off, std::min(kPiece, bytes - off));
    }
    dst.data = out;
    return dst;
  }
  // Groups of 16 rows: converted into a small native-layout buffer, then packed in place.
  const int64_t step = pack ? kPackRows : 1;
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(src.cols));
    std::vector<uint8_t> group(pack ? row_bytes * kPackRows : 0);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < src.rows / step; ++g) {
      uint8_t* base = out + static_cast<size_t>(g * step) * row_bytes;
      uint8_t* native = pack ? group.data() : base;
      for (int64_t i = 0; i < step; ++i) {
        src.RowToF32(g * step + i, row.data());
        FromF32(to, row.data(), native + static_cast<size_t>(i) * row_bytes, row.size());
      }
      if (pack) PackMatrix(MatRef{to, native, kPackRows, src.cols}, base);
    }
  }
  dst.data = out;
  dst.packed = pack;
  return dst;
}

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& c) {
  const int64_t d = c.dim, hd = c.head_dim, V = c.vocab_size;
  std::vector<TensorSpec> t;
  t.push_back({"transformer.token_embeddings.weight", {V, d}, -1});
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "transformer.layers." + std::to_string(i) + ".";
    const int64_t nq = c.layers[i].n_heads, f = c.layers[i].ffn_dim;
    t.push_back({p + "attn_norm.weight", {d}, i});
    t.push_back({p + "attn.qkv_proj.weight", {c.qkv_out(i), d}, i});
    if (c.qk_norm) {
      t.push_back({p + "attn.q_norm.weight", {hd}, i});
      t.push_back({p + "attn.k_norm.weight", {hd}, i});
    }
    t.push_back({p + "attn.out_proj.weight", {d, nq * hd}, i});
    t.push_back({p + "ffn_norm.weight", {d}, i});
    t.push_back({p + "ffn.proj_1.weight", {c.proj1_out(i), d}, i});
    t.push_back({p + "ffn.proj_2.weight", {d, f}, i});
  }
  t.push_back({"transformer.norm.weight", {d}, -1});
  if (!c.tied_embeddings) t.push_back({"lm_head.weight", {V, d}, -1});
  return t;
}

std::shared_ptr<const Model> Model::Load(const std::string& path, const LoadOptions& opt) {
  if (!fs::exists(path)) Fail(path, ": no such model folder or file");
  if (fs::is_regular_file(path) && (fs::path(path).extension() == ".gguf" || IsGgufFile(path))) {
    if (!opt.lora.empty())
      Fail(path, ": LoRA adapters apply to HF model folders, not GGUF files (merge first: elm ",
           "merge-lora, then convert)");
    return LoadModelFromGguf(path, opt);
  }
  if (!fs::is_directory(path))
    Fail(path, ": expected a model folder (config.json + model.safetensors)");
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  const std::string cfg_path = (fs::path(path) / "config.json").string();
  if (!fs::exists(cfg_path)) Fail(path, ": no config.json in this folder");
  m->config_ = LoadHfConfig(cfg_path);
  m->store_ = std::make_unique<TensorStore>(path);
  const ModelConfig& c = m->config_;
  const TensorStore& s = *m->store_;

  const auto specs = ExpectedTensors(c);
  std::set<std::string> expected;
  for (const auto& spec : specs) expected.insert(spec.name);
  // MLX-quantized folders (mlx-lm's layout): matrices are dequantized to f32 copies on load.
  std::shared_ptr<MlxDequantizedStore> mlx;
  if (const auto q = MlxQuantizationOfFile(cfg_path)) {
    mlx = std::make_shared<MlxDequantizedStore>(s, *q);
    m->keepalive_ = mlx;
  }
  // transformer.classifier.weight exists in some checkpoints and is never used by Apple's code.
  for (const auto& [name, view] : s.all()) {
    if (expected.count(name) || name == "transformer.classifier.weight") continue;
    if (mlx && MlxDequantizedStore::IsCompanion(name)) continue;
    if (name == "lm_head.weight" && c.tied_embeddings) continue;  // tied: the head is the embedding
    std::fprintf(stderr, "warning: %s: ignoring unexpected tensor '%s'\n", path.c_str(),
                 name.c_str());
  }

  std::unique_ptr<LoraAdapter> lora;
  if (!opt.lora.empty()) lora = std::make_unique<LoraAdapter>(LoadLoraAdapter(opt.lora, c));

  // Matrices in the stored type (mmapped), or converted into owned buffers.
  // `split`: rows are later split at this boundary (proj_1's gate/up), which a packed matrix
  // allows only at a multiple of 16. `adapt`: merge the LoRA adapter's update (if it has one for
  // this tensor); `release`: nothing reads the stored tensor again.
  auto mat = [&](const TensorView& v, int64_t split = 0, bool adapt = true,
                 bool release = true) -> MatRef {
    MatRef src = ToMat(v);
    std::vector<float> merged;
    int layer = 0;
    LoraTarget target;
    if (adapt && lora && LoraTargetOf(v.name, &layer, &target) &&
        lora->layout.Get(layer, target, true) != nullptr) {
      merged.resize(static_cast<size_t>(src.rows * src.cols));
      ToF32(src.dtype, src.data, merged.data(), merged.size());
      ELM_CHECK(MergeLora(*lora, v.name, merged.data(), src.rows, src.cols));
      src = MatRef{DType::kF32, merged.data(), src.rows, src.cols};
    }
    const DType to = opt.weights ? *opt.weights : ToMat(v).dtype;
    if (merged.empty() && to == src.dtype && KeepMapped(opt, to)) return src;
    const bool pack = ShouldPack(opt) && split % kPackRows == 0;
    const MatRef dst = ConvertMatrix(src, to, m->owned_, path, v.name, pack);
    if (release) {
      s.Evict(v);  // the file's pages for this tensor are not needed any more
      if (mlx) mlx->Release(v.name);
    }
    return dst;
  };
  size_t k = 0;
  auto next = [&]() -> const TensorView& {
    const TensorSpec& spec = specs[k++];
    const TensorView* dq = mlx ? mlx->Find(spec.name) : nullptr;
    if (dq != nullptr) return Checked(*dq, s.origin(), spec);
    return Checked(s.Get(spec.name), s.origin(), spec);
  };
  const TensorView& emb = next();
  // PEFT keeps a tied output head at the base embedding when the embedding is adapted.
  const bool own_head = c.tied_embeddings && lora && lora->settings.has(LoraTarget::kEmbeddings);
  if (own_head) m->lm_head_ = mat(emb, 0, /*adapt=*/false, /*release=*/false);
  m->embeddings_ = mat(emb);
  m->layers_.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers_[i];
    l.attn_norm = ToVec(next());
    l.qkv = mat(next());
    if (c.qk_norm) {
      l.q_norm = ToVec(next());
      l.k_norm = ToVec(next());
    }
    l.out = mat(next());
    l.ffn_norm = ToVec(next());
    const int64_t F = c.layers[i].ffn_dim;
    const MatRef proj1 = mat(next(), F);
    if (c.ffn_with_glu) {
      l.gate = proj1.Rows(0, F);
      l.up = proj1.Rows(F, F);
    } else {
      l.up = proj1;
    }
    l.down = mat(next());
  }
  m->final_norm_ = ToVec(next());
  if (!own_head) m->lm_head_ = c.tied_embeddings ? m->embeddings_ : mat(next());
  ELM_CHECK(k == specs.size());
  m->PackForKernels(opt);
  return m;
}

std::shared_ptr<const Model> Model::Random(const ModelConfig& c, DType type, uint64_t seed,
                                           const LoadOptions& opt) {
  auto m = std::shared_ptr<Model>(new Model());
  m->config_ = c;
  m->path_ = "(random " + c.name + ")";
  auto mat = [&](int64_t rows, int64_t cols, uint64_t salt) -> MatRef {
    if (cols % static_cast<int64_t>(DTypeBlock(type)) != 0)
      Fail("random model: ", cols, " columns are not a multiple of the ", DTypeName(type),
           " block");
    MatRef r{type, nullptr, rows, cols};
    m->owned_.push_back(AllocateHugePages(r.row_bytes() * static_cast<size_t>(rows)));
    r.data = m->owned_.back().get();
#pragma omp parallel
    {
      std::vector<float> row(static_cast<size_t>(cols));
#pragma omp for schedule(static)
      for (int64_t i = 0; i < rows; ++i) {
        // A cheap counter-based generator: reproducible, independent of thread count.
        uint64_t state = (seed * 0x9E3779B97F4A7C15ull) ^ (salt << 32) ^ static_cast<uint64_t>(i);
        for (auto& v : row) {
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          const double u1 = static_cast<double>((state >> 11) + 1) / 9007199254740993.0;
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          const double u2 = static_cast<double>(state >> 11) / 9007199254740992.0;
          v = static_cast<float>(0.02 * std::sqrt(-2.0 * std::log(u1)) *
                                 std::cos(6.283185307179586 * u2));
        }
        FromF32(type, row.data(), const_cast<uint8_t*>(r.row(i)), row.size());
      }
    }
    return r;
  };
  const int64_t D = c.dim, V = c.vocab_size;
  uint64_t salt = 1;
  m->embeddings_ = mat(V, D, salt++);
  m->lm_head_ = c.tied_embeddings ? m->embeddings_ : mat(V, D, salt++);
  m->final_norm_.assign(static_cast<size_t>(D), 1.0f);
  m->layers_.resize(c.n_layers);
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = m->layers_[i];
    const int64_t F = c.layers[i].ffn_dim;
    l.attn_norm.assign(static_cast<size_t>(D), 1.0f);
    l.ffn_norm.assign(static_cast<size_t>(D), 1.0f);
    if (c.qk_norm) {
      l.q_norm.assign(static_cast<size_t>(c.head_dim), 1.0f);
      l.k_norm.assign(static_cast<size_t>(c.head_dim), 1.0f);
    }
    l.qkv = mat(c.qkv_out(i), D, salt++);
    l.out = mat(D, static_cast<int64_t>(c.layers[i].n_heads) * c.head_dim, salt++);
    if (c.ffn_with_glu) l.gate = mat(F, D, salt++);
    l.up = mat(F, D, salt++);
    l.down = mat(D, F, salt++);
  }
  m->PackForKernels(opt);
  return m;
}

bool Model::KeepMapped(const LoadOptions& opt, DType stored) {
  // Q8_0/Q4_0 matrices that PackForKernels packs are copied there, whatever `mmap` says.
  return opt.mmap || (DTypeBlock(stored) > 1 && ShouldPack(opt));
}

bool Model::ShouldPack(const LoadOptions& opt) {
  const CpuKernels& k = BestKernels();
  const char* env = std::getenv("ELM_PACK");
  return opt.pack && !(env && std::string(env) == "0") && k.gemm_q8_0x16 && k.gemm_q4_0x16;
}

void Model::PackForKernels(const LoadOptions& opt) {
  if (!ShouldPack(opt)) return;
  std::vector<MatRef*> mats = {&embeddings_, &lm_head_};
  for (auto& l : layers_)
    for (MatRef* m : {&l.qkv, &l.out, &l.gate, &l.up, &l.down}) mats.push_back(m);
  auto owned_by_us = [&](const void* p) {
    return std::any_of(owned_.begin(), owned_.end(), [&](const auto& o) { return o.get() == p; });
  };
  // Unpacked matrices this model owns (Random) are packed in place through a group-sized copy.
  std::vector<std::pair<const void*, MatRef>> done;  // source data → packed (tied embeddings)
  for (MatRef* m : mats) {
    if (!Packable(*m)) continue;
    auto it =
        std::find_if(done.begin(), done.end(), [&](const auto& d) { return d.first == m->data; });
    if (it != done.end()) {
      *m = it->second;
      continue;
    }
    const void* src = m->data;
    const size_t bytes = m->row_bytes() * static_cast<size_t>(m->rows);
    MatRef p;
    if (owned_by_us(src)) {
      p = ConvertMatrix(*m, m->dtype, owned_, path_, "(owned)", true);
      // Free the unpacked buffer unless another matrix still reads from it (an alias of this
      // same matrix, like the tied LM head, is switched to the packed copy below).
      const auto* lo = static_cast<const uint8_t*>(src);
      const bool shared = std::any_of(mats.begin(), mats.end(), [&](const MatRef* o) {
        const auto* d = static_cast<const uint8_t*>(o->data);
        const bool alias = d == lo && o->rows == m->rows && o->cols == m->cols;
        return o != m && !o->packed && !alias && d >= lo && d < lo + bytes;
      });
      if (!shared)
        owned_.erase(std::find_if(owned_.begin(), owned_.end(),
                                  [&](const auto& o) { return o.get() == src; }));
    } else {
      // A file mapping: packed a few MB at a time, each stretch of the file's pages released
      // as soon as it is copied, so resident memory never holds both layouts of a matrix.
      owned_.push_back(AllocateHugePages(bytes));
      uint8_t* dst = owned_.back().get();
      const int64_t chunk = kPackRows * 256;
      for (int64_t r0 = 0; r0 < m->rows; r0 += chunk) {
        const MatRef part = m->Rows(r0, std::min(chunk, m->rows - r0));
        const size_t off = static_cast<size_t>(r0) * m->row_bytes();
        PackMatrix(part, dst + off);
        EvictPages(part.data, part.row_bytes() * static_cast<size_t>(part.rows));
      }
      p = *m;
      p.data = dst;
      p.packed = true;
    }
    done.emplace_back(src, p);
    *m = p;
  }
}

void Model::ForEachTensor(
    const std::function<void(const TensorSpec&, const TensorView&)>& fn) const {
  if (!store_) Fail(path_, ": this model was not loaded from a checkpoint");
  for (const auto& spec : ExpectedTensors(config_)) fn(spec, store_->Get(spec.name));
}

std::string Model::weights_dtype() const {
  std::set<std::string> types;
  auto add = [&](const MatRef& m) {
    if (m.data) types.insert(DTypeName(m.dtype));
  };
  add(embeddings_);
  add(lm_head_);
  for (const auto& l : layers_) {
    for (const MatRef* mr : {&l.qkv, &l.out, &l.gate, &l.up, &l.down}) add(*mr);
  }
  return types.size() == 1 ? *types.begin() : "mixed";
}

size_t Model::weights_bytes() const {
  auto bytes = [](const MatRef& m) { return m.data ? m.row_bytes() * m.rows : 0; };
  size_t b = bytes(embeddings_) + final_norm_.size() * 4;
  if (!config_.tied_embeddings) b += bytes(lm_head_);
  for (const auto& l : layers_) {
    b += bytes(l.qkv) + bytes(l.out) + bytes(l.gate) + bytes(l.up) + bytes(l.down);
    b += (l.attn_norm.size() + l.ffn_norm.size() + l.q_norm.size() + l.k_norm.size()) * 4;
  }
  return b;
}

}  // namespace elm
