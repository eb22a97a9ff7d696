// elm bench: llama-bench-like prompt-processing and generation speed.
#include <omp.h>

#include <cctype>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "bench/batch_bench.h"
#include "bench/speed_bench.h"
#include "cli_util.h"
#include "commands.h"
#include "config/model_config.h"

namespace elm::cli {

namespace {

// `elm bench --streams`: per stream count, the step time, aggregate tokens/s and both against one
// stream (bench/batch_bench.h).
template <typename Opts>
void PrintBatchBench(const std::shared_ptr<const Model>& model, const Opts& o) {
  BatchBenchOptions b;
  b.streams = o.streams;
  b.steps = o.bench.gen_tokens;
  b.depth = o.bench.depths.empty() ? 0 : o.bench.depths[0];
  b.repetitions = o.bench.repetitions;
  b.kv_type = o.bench.kv_type;
  const auto rows = RunBatchBench(model, b);
  if (o.json) {
    nlohmann::json j;
    j["model"] = model->path();
    j["weights"] = model->weights_dtype();
    j["exact"] = model->exact();
    j["threads"] = omp_get_max_threads();
    j["steps"] = b.steps;
    j["depth"] = b.depth;
    for (const auto& r : rows)
      j["streams"].push_back({{"streams", r.streams},
                              {"step_ms", r.step_ms.mean},
                              {"step_ms_sd", r.step_ms.sd},
                              {"best_step_ms", r.best_step_ms},
                              {"cpu_ms", r.cpu_ms.mean},
                              {"tokens_per_s", r.tokens_per_s},
                              {"step_over_single", r.step_over_single},
                              {"speedup", r.speedup}});
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model %s | weights %s%s | threads %d | %d steps at depth %d\n",
              model->path().c_str(), model->weights_dtype().c_str(),
              model->exact() ? ", exact" : "", omp_get_max_threads(), b.steps, b.depth);
  std::printf("%-8s %18s %8s %8s %12s %14s %10s\n", "streams", "step ms", "best", "cpu ms",
              "tokens/s", "step / 1-row", "speedup");
  for (const auto& r : rows)
    std::printf("%-8d %9.2f ± %6.2f %8.2f %8.2f %12.1f %13.2fx %9.2fx\n", r.streams, r.step_ms.mean,
                r.step_ms.sd, r.best_step_ms, r.cpu_ms.mean, r.tokens_per_s, r.step_over_single,
                r.speedup);
}

}  // namespace

void RegisterBenchCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prompt-processing and generation speed");
  struct Opts {
    std::string model, preset, weights, stored = "bf16", kv_type = "f32";
    int threads = 0;
    bool json = false;
    bool no_mmap = false;
    bool exact = false;
    uint64_t seed = 0;
    SpeedBenchOptions bench;
    std::vector<int> streams;
  };
  auto o = std::make_shared<Opts>();
  auto* src = cmd->add_option_group("model", "What to run (one of)");
  AddModelOption(src, o->model);
  src->add_option("--preset", o->preset,
                  "Random weights in memory with a released shape, e.g. OpenELM-270M");
  src->require_option(1);
  cmd->add_option("--weights", o->weights, "Convert weights at load: f32, f16, bf16, q8_0, q4_0");
  cmd->add_flag("--no-mmap", o->no_mmap, kNoMmapHelp);
  cmd->add_flag("--exact", o->exact, kExactHelp);
  cmd->add_option("--preset-dtype", o->stored,
                  "Stored type of --preset weights (f32, f16, bf16, q8_0, q4_0, or llama.cpp's "
                  "q4_k, q5_k, q6_k, iq4_xs, ... as random blocks)")
      ->capture_default_str();
  AddThreadsOption(cmd, o->threads);
  cmd->add_option("--prompt-tokens,-p", o->bench.prompt_tokens, "pp: prompt length; 0 skips")
      ->capture_default_str();
  cmd->add_option("--gen-tokens,-n", o->bench.gen_tokens, "tg: tokens generated; 0 skips")
      ->capture_default_str();
  cmd->add_option("--depth,-d", o->bench.depths, "tg after this much context (repeatable)");
  cmd->add_option("--repetitions,-r", o->bench.repetitions, "Timed runs of each test")
      ->capture_default_str();
  cmd->add_option("--bandwidth", o->bench.bandwidth_gbs,
                  "Memory roofline in GB/s (default: measured)");
  cmd->add_option("--kv-type", o->kv_type, "KV cache storage: f32, bf16 or f16")
      ->capture_default_str();
  cmd->add_option("--streams", o->streams,
                  "Batched decoding instead of pp/tg: N sequences advance one token each per "
                  "step (repeatable; -n steps at depth -d, 1 stream always measured)");
  cmd->add_flag("--json", o->json, "Print one JSON object instead of a table");
  cmd->callback([o] {
    SetThreads(o->threads);
    o->bench.kv_type = ParseKvTypeFlag(o->kv_type);
    const std::optional<DType> weights = ParseWeightsFlag(o->weights);
    std::shared_ptr<const Model> model;
    if (!o->preset.empty()) {
      // Any type elm computes with, llama.cpp's read-only ones included (random blocks).
      std::optional<DType> stored = ParseDType(o->stored);
      for (int i = 0; !stored && i <= static_cast<int>(DType::kIQ4_XS); ++i) {
        std::string name = DTypeName(static_cast<DType>(i));
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (name == o->stored) stored = static_cast<DType>(i);
      }
      if (!stored) Fail("--preset-dtype: unknown type '", o->stored, "'");
      LoadOptions lo;
      lo.exact = o->exact;
      model = Model::Random(PresetConfig(o->preset), weights.value_or(*stored), o->seed, lo);
    } else {
      LoadOptions lo;
      lo.weights = weights;
      lo.mmap = !o->no_mmap;
      lo.exact = o->exact;
      model = Model::Load(o->model, lo);
    }
    if (!o->streams.empty()) return PrintBatchBench(model, *o);
    const auto r = RunSpeedBench(model, o->bench);
    if (o->json) {
      nlohmann::json j;
      j["model"] = r.model;
      j["weights"] = r.weights;
      j["exact"] = model->exact();
      j["isa"] = r.isa;
      j["threads"] = r.threads;
      j["weights_bytes"] = r.weights_bytes;
      j["bandwidth_gbs"] = r.bandwidth_gbs;
      j["prompt_tokens"] = o->bench.prompt_tokens;
      j["gen_tokens"] = o->bench.gen_tokens;
      j["pp_tokens_per_s"] = r.pp_tokens_per_s.mean;
      j["pp_tokens_per_s_sd"] = r.pp_tokens_per_s.sd;
      j["pp_gflops"] = r.pp_gflops;
      if (!r.tg.empty()) {
        j["tg_tokens_per_s"] = r.tg[0].tokens_per_s.mean;
        j["tg_tokens_per_s_sd"] = r.tg[0].tokens_per_s.sd;
        j["tg_gbs"] = r.tg[0].gbs;
        j["tg_roofline_pct"] = r.tg[0].roofline_pct;
      }
      for (const auto& t : r.tg)
        j["tg_by_depth"].push_back({{"depth", t.depth},
                                    {"tokens_per_s", t.tokens_per_s.mean},
                                    {"sd", t.tokens_per_s.sd},
                                    {"gbs", t.gbs},
                                    {"roofline_pct", t.roofline_pct}});
      j["peak_rss_bytes"] = r.peak_rss_bytes;
      j["kv_cache_bytes"] = r.kv_cache_bytes;
      j["rss_over_weights_and_kv"] =
          static_cast<double>(r.peak_rss_bytes) / (r.weights_bytes + r.kv_cache_bytes);
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf(
        "model %s | weights %s%s (%.1f MB) | kernels %s | threads %d | bandwidth %.1f GB/s\n",
        r.model.c_str(), r.weights.c_str(), model->exact() ? ", exact" : "", r.weights_bytes / 1e6,
        r.isa.c_str(), r.threads, r.bandwidth_gbs);
    std::printf("%-14s %18s %10s %10s\n", "test", "tokens/s", "GB/s", "roofline");
    if (o->bench.prompt_tokens > 0)
      std::printf("%-14s %10.1f ± %5.1f %10s %7.1f GFLOP/s\n",
                  ("pp" + std::to_string(o->bench.prompt_tokens)).c_str(), r.pp_tokens_per_s.mean,
                  r.pp_tokens_per_s.sd, "", r.pp_gflops);
    for (const auto& t : r.tg)
      std::printf(
          "%-14s %10.1f ± %5.1f %10.1f %9.1f%%\n",
          ("tg" + std::to_string(o->bench.gen_tokens) + " @ d" + std::to_string(t.depth)).c_str(),
          t.tokens_per_s.mean, t.tokens_per_s.sd, t.gbs, t.roofline_pct);
    std::printf("peak RSS %.1f MB = %.2f x (weights %.1f MB + KV cache %.1f MB)\n",
                static_cast<double>(r.peak_rss_bytes) / 1e6,
                static_cast<double>(r.peak_rss_bytes) / (r.weights_bytes + r.kv_cache_bytes),
                r.weights_bytes / 1e6, r.kv_cache_bytes / 1e6);
  });
}

ELM_REGISTER_COMMAND(40, RegisterBenchCommand);

}  // namespace elm::cli
