#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/distributed.h"
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
  std::string f = ConfigToHfJson(c.model).dump() + "|T=" + std::to_string(c.seq_len) +
                  "|B=" + std::to_string(c.batch_size) + "|accum=" + std::to_string(c.accum_freq);
  if (c.lora.enabled()) {
    if (c.lora_base_weights) f += std::string("|base ") + DTypeName(*c.lora_base_weights);
    f += "|lora r=" + std::to_string(c.lora.rank) + " alpha=" + std::to_string(c.lora.alpha) +
         " dropout=" + std::to_string(c.lora.dropout) + (c.lora.rslora ? " rslora" : "") + " on";
    for (const std::string& t : c.lora.target_names()) f += " " + t;
  }
  return f;
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

// The token-weighted mean cross-entropy over the first max_batches fixed batches. Under data
// parallelism rank r takes batches r, r + W, r + 2W, … and the sums are reduced, so every rank gets
// the single-process value (up to the order of the additions).
ValResult Validate(TrainModel& model, const DataLoader& val, int max_batches,
                   const LossOptions& lo) {
  const int B = val.batch_size(), T = val.seq_len();
  std::vector<int> in(static_cast<size_t>(B) * T), tg(in.size());
  model.set_lora_dropout(false);  // evaluation: the LoRA branch without dropout
  int64_t n = val.num_fixed_batches();
  if (max_batches > 0) n = std::min<int64_t>(n, max_batches);
  double sums[2] = {0, 0};  // Σ ce · n_valid, Σ n_valid
  for (int64_t k = Distributed::rank(); k < n; k += Distributed::size()) {
    const int rows = val.Fixed(k, in.data(), tg.data());
    const LossValue L = model.Forward(in.data(), tg.data(), rows, T, lo);
    sums[0] += L.ce * static_cast<double>(L.n_valid);
    sums[1] += static_cast<double>(L.n_valid);
  }
  Distributed::AllReduceSum(sums, 2);
  ValResult r;
  r.tokens = static_cast<int64_t>(sums[1]);
  r.loss = r.tokens > 0 ? sums[0] / sums[1] : 0;
  return r;
}

// FNV-style hash of a float buffer, 8 bytes at a time: ranks compare their weights with it.
uint64_t HashFloats(const std::vector<float>& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  const size_t words = v.size() / 2;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, v.data() + 2 * i, sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 29;
  }
  if (v.size() % 2 != 0) {
    uint32_t w;
    std::memcpy(&w, &v.back(), sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
  }
  return h;
}

uint64_t HashString(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

double NominalPeakFlops() {
  return omp_get_max_threads() * 3.0e9 * 32.0;
}

TrainResult RunTraining(const TrainConfig& cfg, const TrainOptions& opt) {
  // Data parallelism (docs/training.md): every rank runs this function on its own share of each
  // global batch; only rank 0 prints, logs and writes files.
  const int rank = Distributed::rank(), world = Distributed::size();
  const bool root = rank == 0;
  const bool verbose = opt.verbose && root;
  auto say = [&](const std::string& s) {
    if (verbose) std::fprintf(stderr, "%s\n", s.c_str());
  };
  if (verbose) {
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
  if (root) fs::create_directories(ckpt_root);

  // ---- tokenizer and data ----
  const Tokenizer tok =
      cfg.tokenizer.empty() ? Tokenizer::Default() : Tokenizer::FromFile(cfg.tokenizer);
  if (tok.vocab_size() > cfg.model.vocab_size)
    Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocab_size is ",
         cfg.model.vocab_size);
  // Rank 0 tokenizes first and fills the token cache; on a shared file system the other ranks
  // then map it instead of tokenizing the same text again.
  DataSplits data;
  if (root) data = LoadDataSplits(cfg, tok);
  Distributed::Barrier();
  if (!root) data = LoadDataSplits(cfg, tok, false);
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
  if (world > 1) {
    // Every rank must walk the same samples with the same model and batch settings, or the
    // averaged gradients would mix different problems.
    const std::string what = Fingerprint(cfg) + "|n=" + std::to_string(data.train->size()) +
                             "|val=" + std::to_string(val ? data.val->size() : 0) +
                             "|seed=" + std::to_string(cfg.seed) +
                             "|steps=" + std::to_string(cfg.max_steps);
    if (!Distributed::AllEqual(HashString(what)))
      Fail("rank ", rank, " of ", world, ": the ranks disagree on the model, batch settings, ",
           "seed, steps or data (here ", data.train->size(),
           " training samples); every rank needs the same config and the same data files");
  }
  say("data: " + std::string(data.packed ? "packed" : "documents") + " mode, " +
      std::to_string(data.train->size()) + " training samples of " + std::to_string(cfg.seq_len) +
      " tokens" +
      (val ? ", " + std::to_string(data.val->size()) + " validation samples" : std::string()) +
      " (" + std::to_string(data.train->stats.documents) + " documents, " +
      std::to_string(data.train->stats.dropped) + " dropped by the filters)");

  // ---- model and state ----
  TrainModel model(cfg.model);
  model.set_mixed_precision(cfg.mixed_precision);
  ParamSet& ps = model.params();
  // LoRA (spec §6.10): the base weights are frozen, only the adapter has gradients and moments.
  const bool lora = cfg.lora.enabled();
  if (lora) {
    LoraSettings ls = cfg.lora;
    ls.base_model = cfg.init_from;
    model.EnableLora(ls);
  } else {
    ps.AllocateTrainingState();
  }
  TrainerState st;
  st.seed = cfg.seed;
  st.fingerprint = Fingerprint(cfg);
  st.world_size = world;
  // Rank 0 finds and reads the checkpoint (or the init) and sends the state to the other ranks,
  // which never read the run folder: it only needs to exist on rank 0's machine.
  bool resumed = false;
  if (root) {
    std::string resume = opt.resume;
    if (resume.empty() && cfg.auto_resume) {
      resume = FindLatestCheckpoint(ckpt_root);
    } else if (!resume.empty()) {
      const std::string found = FindLatestCheckpoint(resume);
      if (found.empty()) Fail(resume, ": no complete checkpoint (with a DONE file) found here");
      resume = found;
    }
    if (!resume.empty()) {
      const TrainerState saved =
          lora ? LoadLoraCheckpoint(resume, *model.lora()) : LoadCheckpoint(resume, ps);
      if (saved.fingerprint != st.fingerprint)
        Fail(resume, ": the checkpoint was written with a different model shape, sequence ",
             "length, batch size or accumulation; resume with the config it was trained with");
      if (saved.seed != cfg.seed)
        Fail(resume, ": the checkpoint used seed ", saved.seed, " but the config says ", cfg.seed);
      if (saved.world_size != world)
        Fail(resume, ": the checkpoint was trained by ", saved.world_size,
             " MPI rank(s) and this run has ", world,
             "; the global batch (train_batch_size0 × ranks × accum_freq) would change: resume ",
             "with the same number of ranks");
      st = saved;
      resumed = true;
      say("resumed from " + resume + " at step " + std::to_string(st.step));
    }
    // A LoRA run loads its frozen base from init_from on every start, resumed or not.
    if (lora || (!resumed && !cfg.init_from.empty())) {
      const ModelSource init = OpenModelSource(cfg.init_from);  // HF, MLX or GGUF
      if (ConfigToHfJson(init.config).dump() != ConfigToHfJson(cfg.model).dump())
        Fail("elm.init_from ", cfg.init_from, ": its config.json does not match the model of ",
             cfg.origin);
      LoadParams(ps, init);
      if (lora && cfg.lora_base_weights) FakeQuantizeBase(ps, *cfg.lora_base_weights);
      if (lora && !resumed) model.lora()->Init(cfg.seed);
      say((lora ? "LoRA on the frozen base " : "initialized from ") + cfg.init_from);
    } else if (!resumed) {
      InitParams(ps, cfg.seed);
    }
  }
  if (world > 1) {
    int64_t head[6] = {resumed ? 1 : 0, st.step, st.data.epoch, st.data.index, st.tokens_seen, 0};
    std::memcpy(&head[5], &st.loss, sizeof st.loss);
    Distributed::Broadcast(head, sizeof head);
    resumed = head[0] != 0;
    st.step = head[1];
    st.data = {head[2], head[3]};
    st.tokens_seen = head[4];
    std::memcpy(&st.loss, &head[5], sizeof st.loss);
    Distributed::Broadcast(ps.params.data(), ps.params.size() * sizeof(float));
    if (lora) {
      LoraParams& lp = *model.lora();
      Distributed::Broadcast(lp.params.data(), lp.params.size() * sizeof(float));
      if (resumed) {
        Distributed::Broadcast(lp.m.data(), lp.m.size() * sizeof(float));
        Distributed::Broadcast(lp.v.data(), lp.v.size() * sizeof(float));
      }
    } else if (resumed) {
      Distributed::Broadcast(ps.m.data(), ps.m.size() * sizeof(float));
      Distributed::Broadcast(ps.v.data(), ps.v.size() * sizeof(float));
    }
  }
  if (resumed) loader.Seek(st.data);
  // The global batch: every rank's micro-batches of every accumulation step.
  const int64_t tokens_per_step = cfg.tokens_per_step() * world;
  say("model: " + cfg.model.name + ", " + std::to_string(cfg.model.n_layers) + " layers, dim " +
      std::to_string(cfg.model.dim) + ", " + std::to_string(cfg.model.ParamCount()) +
      " parameters; " + std::to_string(tokens_per_step) + " tokens per step" +
      (world > 1 ? " (" + std::to_string(world) + " MPI ranks × " + std::to_string(cfg.batch_size) +
                       " sequences × " + std::to_string(cfg.accum_freq) + " micro-batches)"
                 : std::string()) +
      (cfg.mixed_precision ? "; bf16 matrix products, f32 master weights" : "; f32") +
      "; run folder " + run_dir);
  if (lora) {
    std::string targets;
    for (const std::string& t : cfg.lora.target_names())
      targets += (targets.empty() ? "" : ", ") + t;
    say("LoRA: r " + std::to_string(cfg.lora.rank) + ", alpha " + Sci(cfg.lora.alpha) +
        " (scaling " + Sci(cfg.lora.scaling()) + "), dropout " + Sci(cfg.lora.dropout) + " on " +
        targets + "; " + std::to_string(model.lora()->size()) +
        " trainable parameters, base weights and norms frozen" +
        (cfg.lora_base_weights ? std::string("; base rounded to ") +
                                     DTypeName(*cfg.lora_base_weights) + " (fake quantization)"
                               : std::string()));
  }
  const std::string config_copy = (fs::path(run_dir) / "config.yaml").string();
  if (root && fs::exists(cfg.origin) && fs::absolute(cfg.origin) != fs::absolute(config_copy)) {
    std::string text = ReadTextFile(cfg.origin);
    if (!cfg.overrides.empty()) text += "\n# applied with elm train --set:\n";
    for (const auto& o : cfg.overrides) text += "#   " + o + "\n";
    WriteFileAtomic(config_copy, text.data(), text.size());
  }

  std::unique_ptr<TrainLog> log;
  if (root)
    log = std::make_unique<TrainLog>((fs::path(run_dir) / "train_log.jsonl").string(),
                                     resumed ? st.step : -1);
  LossOptions lo;
  lo.ignore_index = cfg.ignore_index;
  lo.z_loss_coef = cfg.use_z_loss ? static_cast<float>(cfg.z_loss_eps) : 0.0f;
  // Per process; the job's peak is world × this.
  // bf16 dot products (vdpbf16ps) do twice the FLOPs of an f32 FMA per instruction.
  const double peak = cfg.peak_gflops > 0 ? cfg.peak_gflops * 1e9
                                          : NominalPeakFlops() * (cfg.mixed_precision ? 2 : 1);
  const double flops_per_token = model.FlopsPerToken(cfg.seq_len);
  const int B = cfg.batch_size, T = cfg.seq_len;
  std::vector<int> inputs(static_cast<size_t>(B) * T), targets(inputs.size());

  TrainResult res;
  res.first_step = st.step;
  res.steps = st.step;
  res.final_loss = res.first_loss = st.loss;
  if (log) res.log_path = log->path();
  g_stop = false;
  auto old_int = std::signal(SIGINT, OnSignal);
  auto old_term = std::signal(SIGTERM, OnSignal);
  // mpirun forwards SIGUSR1 to every rank (a Ctrl-C to mpirun kills the ranks after a moment).
  auto old_usr1 = world > 1 ? std::signal(SIGUSR1, OnSignal) : SIG_DFL;
  Progress progress(st.step, cfg.max_steps, cfg.log_freq);
  const auto t_run = std::chrono::steady_clock::now();
  double step_seconds = 0;
  auto message = [&](const std::string& s) {
    if (root) progress.Message(s);
  };
  auto save = [&] {
    // Weights must be bit-identical on every rank; a difference means the reductions did not
    // return the same bytes everywhere, and the job stops rather than save one rank's view.
    if (world > 1 && !Distributed::AllEqual(HashFloats(lora ? model.lora()->params : ps.params)))
      Fail("step ", st.step, ": the weights differ between the MPI ranks (rank ", rank, ")");
    st.data = loader.position();
    if (!root) return;
    res.checkpoint = lora ? SaveLoraCheckpoint(ckpt_root, *model.lora(), st)
                          : SaveCheckpoint(ckpt_root, ps, st, cfg.tokenizer);
    PruneCheckpoints(ckpt_root, cfg.keep_last);
    message("checkpoint: " + res.checkpoint);
  };
  bool saved_last = false;
  while (st.step < cfg.max_steps) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = cfg.schedule.At(st.step);
    model.ZeroGrad();
    double loss = 0, ce = 0;
    int64_t n_valid = 0;
    for (int micro = 0; micro < cfg.accum_freq; ++micro) {
      // Rank r of W takes rows [r·B, (r+1)·B) of the next W·B samples: micro-batch micro·W + r
      // of the W·accum_freq micro-batches a single process with accum_freq·W would take.
      loader.Next(inputs.data(), targets.data(), rank, world);
      if (lora)
        model.set_lora_dropout(
            true, LoraDropoutKey(cfg.seed, st.step, static_cast<int64_t>(micro) * world + rank));
      const LossValue L = model.Forward(inputs.data(), targets.data(), B, T, lo);
      // CoreNet divides each micro-batch's mean loss by accum_freq.
      model.Backward(1.0f / static_cast<float>(cfg.accum_freq));
      loss += L.loss / cfg.accum_freq;
      ce += L.ce / cfg.accum_freq;
      n_valid += L.n_valid;
    }
    bool stop = g_stop;
    if (world > 1) {
      // DDP: the mean over ranks of the per-rank gradients is the gradient of the mean of all
      // W·accum_freq micro-batch losses, the same as one process accumulating them. The step's
      // loss, token count and stop request are reduced beside it, so every rank logs (rank 0),
      // clips, updates and stops identically.
      std::vector<float>& grads = lora ? model.lora()->grads : ps.grads;
      Distributed::AllReduceMean(grads.data(), grads.size());
      double stats[4] = {loss, ce, static_cast<double>(n_valid), stop ? 1.0 : 0.0};
      Distributed::AllReduceSum(stats, 4);
      loss = stats[0] / world;
      ce = stats[1] / world;
      n_valid = static_cast<int64_t>(stats[2]);
      stop = stats[3] > 0;
    }
    st.tokens_seen += n_valid;
    double norm = 0;
    if (lora) {
      LoraParams& lp = *model.lora();
      norm = LoraGradNorm(lp);
      if (cfg.grad_clip > 0) LoraClipGradients(lp, norm, cfg.grad_clip);
      LoraAdamWUpdate(lp, cfg.adamw, lr, st.step + 1);
    } else {
      norm = GlobalGradNorm(ps);
      if (cfg.grad_clip > 0) ClipGradients(ps, norm, cfg.grad_clip);
      AdamWUpdate(ps, cfg.adamw, lr, st.step + 1);
    }
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
    r.tokens_per_s = static_cast<double>(tokens_per_step) / dt;
    r.mfu = flops_per_token * r.tokens_per_s / (peak * world);
    r.tokens = st.tokens_seen;
    r.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
    if (log) log->Step(r);
    if (verbose) progress.Update(r);
    if (st.step == res.first_step + 1) res.first_loss = loss;
    res.steps = st.step;
    res.final_loss = loss;
    if (!std::isfinite(loss)) {
      if (root) progress.Finish();
      Fail("step ", st.step, ": the loss is ", loss, "; lower the learning rate");
    }

    const bool last = st.step == cfg.max_steps;
    if (val && ((cfg.eval_every > 0 && st.step % cfg.eval_every == 0) || last)) {
      const ValResult v = Validate(model, *val, cfg.val_batches, lo);
      if (log) log->Validation(st.step, v.loss, v.tokens);
      res.val_loss = v.loss;
      message("step " + std::to_string(st.step) + ": validation loss " + Sci(v.loss) + " over " +
              std::to_string(v.tokens) + " tokens");
    }
    if (st.step % cfg.save_interval == 0 || last) {
      save();
      saved_last = true;
    }
    if (world == 1) stop = g_stop;  // alone, a signal during validation or saving counts too
    if (stop) {
      if (!saved_last) save();
      message("interrupted: stopped after step " + std::to_string(st.step) +
              "; continue with --resume " + ckpt_root);
      break;
    }
  }
  if (root) progress.Finish();
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  if (world > 1) std::signal(SIGUSR1, old_usr1);
  const int64_t run_steps = res.steps - res.first_step;
  if (run_steps > 0 && step_seconds > 0)
    res.tokens_per_s = static_cast<double>(run_steps * tokens_per_step) / step_seconds;
  if (root && res.checkpoint.empty()) res.checkpoint = FindLatestCheckpoint(ckpt_root);
  return res;
}

}  // namespace elm
