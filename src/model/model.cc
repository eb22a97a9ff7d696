#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/kquant.h"
#include "base/mmap_file.h"
#include "base/quant.h"
#include "kernels/cpu_kernels.h"
#include "model/lora_adapter.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

// Whether a stored matrix's data can be used in place by the kernels, which read its elements
// (f32, 16-bit floats, the f16 scales of quantized blocks) with plain loads: a mapped file may
// put a tensor at an odd offset (a legal safetensors header of odd length does), and such a
// matrix is copied into an aligned buffer instead.
bool NaturallyAligned(const MatRef& m) {
  const size_t align = DTypeBlock(m.dtype) == 1 ? DTypeSize(m.dtype) : alignof(uint16_t);
  return reinterpret_cast<uintptr_t>(m.data) % align == 0;
}

// Part `part` of a fetched matrix: the whole matrix, or one of its two row halves.
MatRef ToMat(const SourceTensor& t, size_t part = 0) {
  return MatRef{t.dtype, t.parts.at(part), t.rows() / static_cast<int64_t>(t.parts.size()),
                t.cols()};
}

std::vector<float> ToVec(const SourceTensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  ToF32(t.dtype, t.parts.at(0), out.data(), out.size());
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

Model::Slot Model::SlotOf(const TensorSpec& spec) {
  using R = TensorRole;
  // The one binding of the layout to LayerWeights (proj_1 apart: its rows may be two matrices).
  static constexpr std::pair<R, MatRef LayerWeights::*> kMatrices[] = {
      {R::kQkv, &LayerWeights::qkv},
      {R::kOut, &LayerWeights::out},
      {R::kProj2, &LayerWeights::down}};
  static constexpr std::pair<R, std::vector<float> LayerWeights::*> kVectors[] = {
      {R::kAttnNorm, &LayerWeights::attn_norm},
      {R::kQNorm, &LayerWeights::q_norm},
      {R::kKNorm, &LayerWeights::k_norm},
      {R::kFfnNorm, &LayerWeights::ffn_norm}};
  if (spec.role == R::kEmbeddings) return {&embeddings_};
  if (spec.role == R::kLmHead) return {&lm_head_};
  if (spec.role == R::kFinalNorm) return {nullptr, nullptr, &final_norm_};
  LayerWeights& l = layers_.at(static_cast<size_t>(spec.layer));
  if (spec.role == R::kProj1) return config_.ffn_with_glu ? Slot{&l.gate, &l.up} : Slot{&l.up};
  for (const auto& [role, field] : kMatrices)
    if (role == spec.role) return {&(l.*field)};
  for (const auto& [role, field] : kVectors)
    if (role == spec.role) return {nullptr, nullptr, &(l.*field)};
  Fail(path_, ": tensor '", spec.name, "' has no place in the model");
}

std::shared_ptr<const Model> Model::Load(const std::string& path, const LoadOptions& opt) {
  SourceOptions so;
  so.for_conversion = false;
  auto src = std::make_shared<const ModelSource>(OpenModelSource(path, so));
  if (src->format == "gguf" && !opt.lora.empty())
    Fail(path, ": LoRA adapters apply to HF model folders, not GGUF files (merge first: elm ",
         "merge-lora, then convert)");
  auto m = std::shared_ptr<Model>(new Model());
  m->path_ = path;
  m->exact_ = opt.exact;
  m->config_ = src->config;
  m->source_ = src;
  const ModelConfig& c = m->config_;

  std::unique_ptr<LoraAdapter> lora;
  if (!opt.lora.empty()) lora = std::make_unique<LoraAdapter>(LoadLoraAdapter(opt.lora, c));

  // A matrix in the stored type (mapped), or converted into an owned buffer; `converted` says
  // which. `split`: rows are later split at this boundary (proj_1's gate/up), which a packed
  // matrix allows only at a multiple of 16. `adapt`: merge the LoRA adapter's update (if it has
  // one for this tensor).
  bool converted = false;
  auto mat = [&](const MatRef& stored, const std::string& name, int64_t split = 0,
                 bool adapt = true) -> MatRef {
    MatRef from = stored;
    std::vector<float> merged;
    int layer = 0;
    LoraTarget target;
    if (adapt && lora && LoraTargetOf(name, &layer, &target) &&
        lora->layout.Get(layer, target, true) != nullptr) {
      merged.resize(static_cast<size_t>(from.rows * from.cols));
      ToF32(from.dtype, from.data, merged.data(), merged.size());
      ELM_CHECK(MergeLora(*lora, name, merged.data(), from.rows, from.cols));
      from = MatRef{DType::kF32, merged.data(), from.rows, from.cols};
    }
    const DType to = opt.weights.value_or(stored.dtype);
    if (merged.empty() && to == from.dtype && KeepMapped(opt, to) && NaturallyAligned(from))
      return from;
    converted = true;
    const bool pack = ShouldPack(opt) && split % kPackRows == 0;
    return ConvertMatrix(from, to, m->owned_, path, name, pack);
  };
  // PEFT keeps a tied output head at the base embedding when the embedding is adapted.
  const bool own_head = c.tied_embeddings && lora && lora->settings.has(LoraTarget::kEmbeddings);
  m->layers_.resize(c.n_layers);
  for (size_t i = 0; i < src->tensors.size(); ++i) {
    const SourceTensor t = src->Fetch(i);
    const std::string& name = t.spec.name;
    const Slot slot = m->SlotOf(t.spec);
    converted = false;
    if (slot.vec != nullptr) {
      *slot.vec = ToVec(t);
    } else if (slot.second_half == nullptr) {
      if (t.spec.role == TensorRole::kEmbeddings && own_head)
        m->lm_head_ = mat(ToMat(t), name, 0, /*adapt=*/false);
      *slot.mat = mat(ToMat(t), name);
    } else if (t.parts.size() == 2) {  // stored as two matrices (GGUF)
      *slot.mat = mat(ToMat(t, 0), name);
      *slot.second_half = mat(ToMat(t, 1), name);
    } else {
      const int64_t half = t.rows() / 2;
      const MatRef whole = mat(ToMat(t), name, half);
      *slot.mat = whole.Rows(0, half);
      *slot.second_half = whole.Rows(half, half);
    }
    if (converted) src->Release(i);  // the file's pages for this tensor are not needed any more
  }
  if (c.tied_embeddings && !own_head) m->lm_head_ = m->embeddings_;
  m->PackForKernels(opt);
  return m;
}

std::shared_ptr<const Model> Model::Random(const ModelConfig& c, DType type, uint64_t seed,
                                           const LoadOptions& opt) {
  auto m = std::shared_ptr<Model>(new Model());
  m->config_ = c;
  m->path_ = "(random " + c.name + ")";
  m->exact_ = opt.exact;
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
        if (!DTypeWritable(type)) {  // llama.cpp's types: random blocks (base/kquant.h)
          RandomBlocks(type, state, const_cast<uint8_t*>(r.row(i)),
                       static_cast<size_t>(cols) / DTypeBlock(type));
          continue;
        }
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
  // Salts in the order the matrices have always been drawn: the embedding, the LM head, then
  // each layer's in layout order.
  uint64_t salt = c.tied_embeddings ? 2 : 3;
  m->layers_.resize(c.n_layers);
  for (const TensorSpec& spec : ExpectedTensors(c)) {
    const Slot slot = m->SlotOf(spec);
    const int64_t rows = spec.shape[0], cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
    if (slot.vec != nullptr) {
      slot.vec->assign(static_cast<size_t>(rows), 1.0f);
    } else if (spec.role == TensorRole::kEmbeddings || spec.role == TensorRole::kLmHead) {
      *slot.mat = mat(rows, cols, spec.role == TensorRole::kEmbeddings ? 1 : 2);
    } else if (slot.second_half == nullptr) {
      *slot.mat = mat(rows, cols, salt++);
    } else {
      *slot.mat = mat(rows / 2, cols, salt++);
      *slot.second_half = mat(rows / 2, cols, salt++);
    }
  }
  if (c.tied_embeddings) m->lm_head_ = m->embeddings_;
  m->PackForKernels(opt);
  return m;
}

bool Model::KeepMapped(const LoadOptions& opt, DType stored) {
  // Q8_0/Q4_0 matrices that PackForKernels packs are copied there, whatever `mmap` says.
  return opt.mmap || ((stored == DType::kQ8_0 || stored == DType::kQ4_0) && ShouldPack(opt));
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

void Model::ForEachTensor(const std::function<void(const SourceTensor&)>& fn) const {
  if (!source_) Fail(path_, ": this model was not loaded from a checkpoint");
  for (const SourceTensor& t : source_->tensors) fn(t);
}

const TensorStore& Model::store() const {
  if (!source_ || source_->store() == nullptr)
    Fail(path_, ": this model was not loaded from a safetensors folder");
  return *source_->store();
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
