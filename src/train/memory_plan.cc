#include "train/memory_plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "base/error.h"

namespace elm {

namespace {

constexpr int64_t kPlanF32Bytes = 4;

int64_t CeilDiv(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The widest tensors of any layer, per kind (the shared set checkpointing keeps, and the backward
// scratch, are sized for them).
struct PlanWidths {
  int64_t c3 = 0, hdh = 0, p1 = 0, f = 0, h = 0, layer_params = 0;
};
PlanWidths WidestLayer(const ModelConfig& m) {
  PlanWidths w;
  for (int l = 0; l < m.n_layers; ++l) {
    w.c3 = std::max<int64_t>(w.c3, m.qkv_out(l));
    w.hdh = std::max<int64_t>(w.hdh, static_cast<int64_t>(m.layers[l].n_heads) * m.head_dim);
    w.p1 = std::max<int64_t>(w.p1, m.proj1_out(l));
    w.f = std::max<int64_t>(w.f, m.layers[l].ffn_dim);
    w.h = std::max<int64_t>(w.h, m.layers[l].n_heads);
    w.layer_params = std::max(w.layer_params, m.LayerParams(l));
  }
  return w;
}

// Floats of one layer's saved tensors (TrainModel::LayerActs without x) at N = B·T tokens.
int64_t LayerSavedFloats(const ModelConfig& m, int64_t N, int64_t B, int64_t T, int64_t c3,
                         int64_t h, int64_t hdh, int64_t p1, int64_t f) {
  const int64_t D = m.dim;
  return N * D /* h1 */ + (m.qk_norm ? N * c3 : 0) /* qkv_raw */ + N * c3 /* qkv */ +
         B * h * T /* lse */ + N * hdh /* att */ + 2 * N * D /* xmid, h2 */ + N * p1 /* u */ +
         N * f /* g */;
}

}  // namespace

const char* ShardingModeName(ShardingMode m) {
  switch (m) {
    case ShardingMode::kNoShard:
      return "no_shard";
    case ShardingMode::kZero1:
      return "zero1";
    case ShardingMode::kShardGradOp:
      return "shard_grad_op";
    case ShardingMode::kFullShard:
      return "full_shard";
  }
  return "?";
}

int64_t ActivationBytesFor(const ModelConfig& m, int B, int T, bool checkpointing) {
  const int64_t N = static_cast<int64_t>(B) * T, D = m.dim;
  int64_t floats = m.n_layers * N * D;  // every layer's input, kept either way
  if (checkpointing) {
    const PlanWidths w = WidestLayer(m);
    if (m.n_layers > 0) floats += LayerSavedFloats(m, N, B, T, w.c3, w.h, w.hdh, w.p1, w.f);
    floats += N * D;  // the discarded output of a recomputed layer
  } else {
    for (int l = 0; l < m.n_layers; ++l)
      floats += LayerSavedFloats(m, N, B, T, m.qkv_out(l), m.layers[l].n_heads,
                                 static_cast<int64_t>(m.layers[l].n_heads) * m.head_dim,
                                 m.proj1_out(l), m.layers[l].ffn_dim);
  }
  floats += 2 * N * D /* final residual, final norm */ + N * m.vocab_size /* logits */ +
            N /* logsumexp */;
  return floats * kPlanF32Bytes;
}

MemoryPlan PlanMemory(const MemoryPlanInput& in) {
  if (in.ranks < 1) Fail("memory plan: the rank count must be at least 1, got ", in.ranks);
  if (in.micro_batch < 1 || in.seq_len < 1)
    Fail("memory plan: the micro-batch and sequence length must be positive");
  const ModelConfig& m = in.model;
  const PlanWidths w = WidestLayer(m);
  const int64_t P = m.ParamCount(), R = in.ranks;
  const bool lora = in.trainable_params >= 0;
  const int64_t trainable = lora ? in.trainable_params : P;
  const int64_t frozen = lora ? P : 0;
  const int64_t shard = CeilDiv(trainable, R);
  // The largest piece gathered (full_shard) or reduced at once: a decoder layer, or the token
  // embeddings (the output projection when untied is the same size).
  const int64_t unit = std::min(
      trainable, std::max<int64_t>(w.layer_params, static_cast<int64_t>(m.vocab_size) * m.dim));
  MemoryPlan p;
  const bool one = R == 1;  // one rank: nothing to split, nothing gathered
  switch (in.mode) {
    case ShardingMode::kNoShard:
    case ShardingMode::kZero1:
      p.parameters = trainable;
      p.gradients = trainable;
      break;
    case ShardingMode::kShardGradOp:
      p.parameters = trainable;
      p.gradients = one ? trainable : shard + unit;
      break;
    case ShardingMode::kFullShard: {
      // Gathered at once (train/sharding.h): one decoder layer, or the tensors outside the
      // layers (embeddings, final norm, and the output projection when untied) as one group.
      const int64_t outside =
          static_cast<int64_t>(m.vocab_size) * m.dim * (m.tied_embeddings ? 1 : 2) + m.dim;
      p.parameters =
          one ? trainable : shard + std::min(trainable, std::max(w.layer_params, outside));
      p.gradients = one ? trainable : shard + unit;
      break;
    }
  }
  p.moments = 2 * (in.mode == ShardingMode::kNoShard ? trainable : shard);
  p.parameters = (p.parameters + frozen) * kPlanF32Bytes;
  p.gradients *= kPlanF32Bytes;
  p.moments *= kPlanF32Bytes;
  p.activations = ActivationBytesFor(m, in.micro_batch, in.seq_len, in.activation_checkpointing);
  // Backward scratch (TrainModel's dx, dh, dqkv, dqkv_raw, datt, du, dg) and the token ids (the
  // model's and the trainer's inputs and targets).
  const int64_t N = static_cast<int64_t>(in.micro_batch) * in.seq_len, D = m.dim;
  int64_t scratch = N * (2 * D + w.c3 * (m.qk_norm ? 2 : 1) + w.hdh + w.p1 + w.f) * kPlanF32Bytes;
  scratch += 4 * N * static_cast<int64_t>(sizeof(int));
  if (in.mixed_precision) {  // TrainGemm's two bf16 operand buffers, sized by the largest product
    const int64_t widest = std::max({D, w.c3, w.hdh, w.p1, w.f, int64_t{m.vocab_size}});
    const int64_t a = N * widest;
    const int64_t b = std::max(static_cast<int64_t>(m.vocab_size) * D, N * widest);
    scratch += 2 * (a + b);
  }
  p.buffers = scratch;
  return p;
}

int LargestMicroBatch(MemoryPlanInput in, int64_t budget) {
  const auto fits = [&](int b) {
    in.micro_batch = b;
    return PlanMemory(in).total() <= budget;
  };
  if (!fits(1)) return 0;
  int lo = 1, hi = 2;
  constexpr int kCap = 1 << 20;
  while (hi < kCap && fits(hi)) lo = hi, hi *= 2;
  if (hi >= kCap && fits(kCap)) return kCap;
  while (hi - lo > 1) {  // fits(lo), !fits(hi)
    const int mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

int64_t ParseByteSize(const std::string& s, const std::string& what) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  std::string unit = s.substr(i);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  double v = 0;
  try {
    size_t used = 0;
    v = i == 0 ? -1 : std::stod(s.substr(0, i), &used);
    if (used != i) v = -1;
  } catch (const std::exception&) {
    v = -1;
  }
  struct Unit {
    const char* name;
    double scale;
  };
  static constexpr Unit kUnits[] = {{"", 1},
                                    {"B", 1},
                                    {"KB", 1e3},
                                    {"MB", 1e6},
                                    {"GB", 1e9},
                                    {"TB", 1e12},
                                    {"K", 1024.0},
                                    {"KIB", 1024.0},
                                    {"M", 1048576.0},
                                    {"MIB", 1048576.0},
                                    {"G", 1073741824.0},
                                    {"GIB", 1073741824.0},
                                    {"T", 1099511627776.0},
                                    {"TIB", 1099511627776.0}};
  for (const Unit& u : kUnits)
    if (unit == u.name && v > 0 && std::isfinite(v) && v * u.scale < 9e18)
      return static_cast<int64_t>(v * u.scale);
  Fail(what, ": '", s, "' is not a size; give e.g. 24GB (10^9 bytes), 24GiB (2^30) or 512MB");
}

std::string FormatBytes(int64_t bytes) {
  char buf[32];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  return buf;
}

std::string MemoryPlanReport(const MemoryPlanInput& base, const std::vector<int>& ranks,
                             int64_t budget) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line,
                "memory per rank for %s (%lld parameters%s), sequence length %d, micro-batch %d, "
                "%s%s\n",
                base.model.name.c_str(), static_cast<long long>(base.model.ParamCount()),
                base.trainable_params >= 0
                    ? (", LoRA: " + std::to_string(base.trainable_params) + " trainable").c_str()
                    : "",
                base.seq_len, base.micro_batch,
                base.mixed_precision ? "bf16 matrix products, f32 state" : "f32",
                budget > 0 ? (", budget " + FormatBytes(budget)).c_str() : "");
  out += line;
  std::snprintf(line, sizeof line, "%5s  %-13s %10s %10s %10s %21s %10s %21s%s\n", "ranks", "mode",
                "params", "grads", "moments", "activations off / on", "buffers", "total off / on",
                budget > 0 ? "  max micro-batch off / on" : "");
  out += line;
  for (int r : ranks)
    for (ShardingMode mode : kAllShardingModes) {
      MemoryPlanInput in = base;
      in.ranks = r;
      in.mode = mode;
      in.activation_checkpointing = false;
      const MemoryPlan off = PlanMemory(in);
      in.activation_checkpointing = true;
      const MemoryPlan on = PlanMemory(in);
      std::string fit;
      if (budget > 0) {
        in.activation_checkpointing = false;
        const int b_off = LargestMicroBatch(in, budget);
        in.activation_checkpointing = true;
        const int b_on = LargestMicroBatch(in, budget);
        fit = "  " + (b_off > 0 ? std::to_string(b_off) : std::string("none")) + " / " +
              (b_on > 0 ? std::to_string(b_on) : std::string("none"));
      }
      std::snprintf(line, sizeof line, "%5d  %-13s %10s %10s %10s %10s / %8s %10s %10s / %8s%s\n",
                    r, ShardingModeName(mode), FormatBytes(off.parameters).c_str(),
                    FormatBytes(off.gradients).c_str(), FormatBytes(off.moments).c_str(),
                    FormatBytes(off.activations).c_str(), FormatBytes(on.activations).c_str(),
                    FormatBytes(off.buffers).c_str(), FormatBytes(off.total()).c_str(),
                    FormatBytes(on.total()).c_str(), fit.c_str());
      out += line;
    }
  return out;
}

}  // namespace elm
