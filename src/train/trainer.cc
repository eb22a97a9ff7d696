#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/init.h"
#include "train/optimizer.h"
#include "train/train_log.h"
#include "train/train_model.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) {
  g_stop = true;
}

// What a checkpoint must agree on to be resumed by this config.
std::string Fingerprint(const TrainConfig& c) {
  return ConfigToHfJson(c.model).dump() + "|T=" + std::to_string(c.seq_len) +
         "|B=" + std::to_string(c.batch_size) + "|accum=" + std::to_string(c.accum_freq);
}

std::string Sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

struct ValResult {
  double loss = 0;
  int64_t tokens = 0;
};

ValResult Validate(TrainModel& model, const DataLoader& val, int max_batches,
                   const LossOptions& lo) {
  const int B = val.batch_size(), T = val.seq_len();
  std::vector<int> in(static_cast<size_t>(B) * T), tg(in.size());
  int64_t n = val.num_fixed_batches();
  if (max_batches > 0) n = std::min<int64_t>(n, max_batches);
  double ce_sum = 0;
  ValResult r;
  for (int64_t k = 0; k < n; ++k) {
    const int rows = val.Fixed(k, in.data(), tg.data());
    const LossValue L = model.Forward(in.data(), tg.data(), rows, T, lo);
    ce_sum += L.ce * static_cast<double>(L.n_valid);
    r.tokens += L.n_valid;
  }
  r.loss = r.tokens > 0 ? ce_sum / static_cast<double>(r.tokens) : 0;
  return r;
}

}  // namespace

double NominalPeakFlops() {
  return omp_get_max_threads() * 3.0e9 * 32.0;
}

TrainResult RunTraining(const TrainConfig& cfg, const TrainOptions& opt) {
  auto say = [&](const std::string& s) {
    if (opt.verbose) std::fprintf(stderr, "%s\n", s.c_str());
  };
  if (opt.verbose) {
    if (!cfg.unknown_keys.empty()) {
      std::string list;
      for (const auto& k : cfg.unknown_keys) list += "\n  " + k;
      std::fprintf(stderr, "warning: %s: %zu unknown key(s), ignored:%s\n", cfg.origin.c_str(),
                   cfg.unknown_keys.size(), list.c_str());
    }
    if (!cfg.ignored_keys.empty()) {
      std::string list;
      for (const auto& k : cfg.ignored_keys) list += (list.empty() ? "" : ", ") + k;
      std::fprintf(stderr, "note: accepted without effect in elm: %s\n", list.c_str());
    }
  }
  const std::string run_dir = cfg.run_dir();
  const std::string ckpt_root = (fs::path(run_dir) / "checkpoints").string();
  fs::create_directories(ckpt_root);

  // ---- tokenizer and data ----
  const Tokenizer tok =
      cfg.tokenizer.empty() ? Tokenizer::Default() : Tokenizer::FromFile(cfg.tokenizer);
  if (tok.vocab_size() > cfg.model.vocab_size)
    Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocab_size is ",
         cfg.model.vocab_size);
  const DataSplits data = LoadDataSplits(cfg, tok);
  BatchIds ids;
  ids.target_pad = cfg.ignore_index;
  // Pad inputs only precede ignored targets, so their id never reaches the loss; CoreNet feeds
  // padding_index, which needs a row of its own in the embedding (vocab 32128 ⊃ 32000).
  ids.input_pad = cfg.padding_index >= 0 && cfg.padding_index < cfg.model.vocab_size
                      ? cfg.padding_index
                      : std::max(0, tok.eos_id());
  DataLoader loader(data.train, cfg.batch_size, cfg.seed, cfg.shuffle, ids);
  std::unique_ptr<DataLoader> val;
  if (data.val && data.val->size() > 0)
    val = std::make_unique<DataLoader>(data.val, cfg.batch_size, cfg.seed, false, ids);
  say("data: " + std::string(data.packed ? "packed" : "documents") + " mode, " +
      std::to_string(data.train->size()) + " training samples of " + std::to_string(cfg.seq_len) +
      " tokens" +
      (val ? ", " + std::to_string(data.val->size()) + " validation samples" : std::string()) +
      " (" + std::to_string(data.train->stats.documents) + " documents, " +
      std::to_string(data.train->stats.dropped) + " dropped by the filters)");

  // ---- model and state ----
  TrainModel model(cfg.model);
  ParamSet& ps = model.params();
  ps.AllocateTrainingState();
  TrainerState st;
  st.seed = cfg.seed;
  st.fingerprint = Fingerprint(cfg);
  std::string resume = opt.resume;
  if (resume.empty() && cfg.auto_resume)
    resume = FindLatestCheckpoint(ckpt_root);
  else if (!resume.empty()) {
    const std::string found = FindLatestCheckpoint(resume);
    if (found.empty()) Fail(resume, ": no complete checkpoint (with a DONE file) found here");
    resume = found;
  }
  bool resumed = false;
  if (!resume.empty()) {
    const TrainerState saved = LoadCheckpoint(resume, ps);
    if (saved.fingerprint != st.fingerprint)
      Fail(resume, ": the checkpoint was written with a different model shape, sequence length, ",
           "batch size or accumulation; resume with the config it was trained with");
    if (saved.seed != cfg.seed)
      Fail(resume, ": the checkpoint used seed ", saved.seed, " but the config says ", cfg.seed);
    st = saved;
    loader.Seek(st.data);
    resumed = true;
    say("resumed from " + resume + " at step " + std::to_string(st.step));
  } else if (!cfg.init_from.empty()) {
    const ModelConfig given = LoadHfConfig((fs::path(cfg.init_from) / "config.json").string());
    if (ConfigToHfJson(given).dump() != ConfigToHfJson(cfg.model).dump())
      Fail("elm.init_from ", cfg.init_from, ": its config.json does not match the model of ",
           cfg.origin);
    LoadParams(ps, TensorStore(cfg.init_from));
    say("initialized from " + cfg.init_from);
  } else {
    InitParams(ps, cfg.seed);
  }
  say("model: " + cfg.model.name + ", " + std::to_string(cfg.model.n_layers) + " layers, dim " +
      std::to_string(cfg.model.dim) + ", " + std::to_string(cfg.model.ParamCount()) +
      " parameters; " + std::to_string(cfg.tokens_per_step()) + " tokens per step; run folder " +
      run_dir);
  const std::string config_copy = (fs::path(run_dir) / "config.yaml").string();
  if (fs::exists(cfg.origin) && fs::absolute(cfg.origin) != fs::absolute(config_copy)) {
    std::string text = ReadTextFile(cfg.origin);
    if (!cfg.overrides.empty()) text += "\n# applied with elm train --set:\n";
    for (const auto& o : cfg.overrides) text += "#   " + o + "\n";
    WriteFileAtomic(config_copy, text.data(), text.size());
  }

  TrainLog log((fs::path(run_dir) / "train_log.jsonl").string(), resumed ? st.step : -1);
  LossOptions lo;
  lo.ignore_index = cfg.ignore_index;
  lo.z_loss_coef = cfg.use_z_loss ? static_cast<float>(cfg.z_loss_eps) : 0.0f;
  const double peak = cfg.peak_gflops > 0 ? cfg.peak_gflops * 1e9 : NominalPeakFlops();
  const double flops_per_token = model.FlopsPerToken(cfg.seq_len);
  const int B = cfg.batch_size, T = cfg.seq_len;
  std::vector<int> inputs(static_cast<size_t>(B) * T), targets(inputs.size());

  TrainResult res;
  res.first_step = st.step;
  res.steps = st.step;
  res.final_loss = res.first_loss = st.loss;
  res.log_path = log.path();
  g_stop = false;
  auto old_int = std::signal(SIGINT, OnSignal);
  auto old_term = std::signal(SIGTERM, OnSignal);
  Progress progress(st.step, cfg.max_steps, cfg.log_freq);
  const auto t_run = std::chrono::steady_clock::now();
  double step_seconds = 0;
  auto save = [&] {
    st.data = loader.position();
    res.checkpoint = SaveCheckpoint(ckpt_root, ps, st, cfg.tokenizer);
    PruneCheckpoints(ckpt_root, cfg.keep_last);
    progress.Message("checkpoint: " + res.checkpoint);
  };
  bool saved_last = false;
  while (st.step < cfg.max_steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = cfg.schedule.At(st.step);
    model.ZeroGrad();
    double loss = 0, ce = 0;
    for (int micro = 0; micro < cfg.accum_freq; ++micro) {
      loader.Next(inputs.data(), targets.data());
      const LossValue L = model.Forward(inputs.data(), targets.data(), B, T, lo);
      // CoreNet divides each micro-batch's mean loss by accum_freq.
      model.Backward(1.0f / static_cast<float>(cfg.accum_freq));
      loss += L.loss / cfg.accum_freq;
      ce += L.ce / cfg.accum_freq;
      st.tokens_seen += L.n_valid;
    }
    const double norm = GlobalGradNorm(ps);
    if (cfg.grad_clip > 0) ClipGradients(ps, norm, cfg.grad_clip);
    AdamWUpdate(ps, cfg.adamw, lr, st.step + 1);
    ++st.step;
    st.loss = loss;
    saved_last = false;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    step_seconds += dt;

    StepRecord r;
    r.step = st.step;
    r.loss = loss;
    r.ce = ce;
    r.has_z_loss = cfg.use_z_loss;
    r.lr = lr;
    r.grad_norm = norm;
    r.tokens_per_s = static_cast<double>(cfg.tokens_per_step()) / dt;
    r.mfu = flops_per_token * r.tokens_per_s / peak;
    r.tokens = st.tokens_seen;
    r.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
    log.Step(r);
    if (opt.verbose) progress.Update(r);
    if (st.step == res.first_step + 1) res.first_loss = loss;
    res.steps = st.step;
    res.final_loss = loss;
    if (!std::isfinite(loss)) {
      progress.Finish();
      Fail("step ", st.step, ": the loss is ", loss, "; lower the learning rate");
    }

    const bool last = st.step == cfg.max_steps;
    if (val && ((cfg.eval_every > 0 && st.step % cfg.eval_every == 0) || last)) {
      const ValResult v = Validate(model, *val, cfg.val_batches, lo);
      log.Validation(st.step, v.loss, v.tokens);
      res.val_loss = v.loss;
      progress.Message("step " + std::to_string(st.step) + ": validation loss " + Sci(v.loss) +
                       " over " + std::to_string(v.tokens) + " tokens");
    }
    if (st.step % cfg.save_interval == 0 || last) {
      save();
      saved_last = true;
    }
    if (g_stop) {
      if (!saved_last) save();
      progress.Message("interrupted: stopped after step " + std::to_string(st.step) +
                       "; continue with --resume " + ckpt_root);
      break;
    }
  }
  progress.Finish();
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  const int64_t run_steps = res.steps - res.first_step;
  if (run_steps > 0 && step_seconds > 0)
    res.tokens_per_s = static_cast<double>(run_steps * cfg.tokens_per_step()) / step_seconds;
  if (res.checkpoint.empty()) res.checkpoint = FindLatestCheckpoint(ckpt_root);
  return res;
}

}  // namespace elm
