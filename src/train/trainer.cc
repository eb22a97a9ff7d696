#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/mmap_file.h"
#include "config/hf_config.h"
#include "tokenizer/tokenizer.h"
#include "train/distributed.h"
#include "train/init.h"
#include "train/optimizer.h"
#include "train/run_folder.h"
#include "train/slab_sync.h"

namespace elm {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) {
  g_stop = true;
}

// SIGINT and SIGTERM (and SIGUSR1 under MPI: mpirun forwards it to every rank, while a Ctrl-C to
// mpirun kills the ranks after a moment) set g_stop for the scope's lifetime.
class StopSignals {
 public:
  explicit StopSignals(bool mpi) : mpi_(mpi) {
    g_stop = false;
    int_ = std::signal(SIGINT, OnSignal);
    term_ = std::signal(SIGTERM, OnSignal);
    if (mpi_) usr1_ = std::signal(SIGUSR1, OnSignal);
  }
  ~StopSignals() {
    std::signal(SIGINT, int_);
    std::signal(SIGTERM, term_);
    if (mpi_) std::signal(SIGUSR1, usr1_);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  bool mpi_;
  void (*int_)(int) = SIG_DFL;
  void (*term_)(int) = SIG_DFL;
  void (*usr1_)(int) = SIG_DFL;
};

std::string Sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

uint64_t HashString(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// A checkpoint fingerprint (CheckpointFingerprint) without its batch settings, and the global
// batch those settings make with `world` ranks.
struct BatchSplit {
  std::string rest;
  int64_t global = 0;
};
BatchSplit SplitBatch(const std::string& fingerprint, int world) {
  BatchSplit out{fingerprint, world};
  for (const char* key : {"|B=", "|accum="}) {
    const size_t at = out.rest.find(key);
    if (at == std::string::npos) return {fingerprint, -1};
    const size_t num = at + std::strlen(key);
    size_t stop = num;
    while (stop < out.rest.size() && out.rest[stop] >= '0' && out.rest[stop] <= '9') ++stop;
    out.global *= std::atoll(out.rest.substr(num, stop - num).c_str());
    out.rest.erase(at, stop - at);
  }
  return out;
}

struct ValResult {
  double loss = 0;
  int64_t tokens = 0;
};

// The token-weighted mean cross-entropy over the first max_batches fixed batches. Under data
// parallelism rank r takes batches r, r + W, r + 2W, … and the sums are reduced, so every rank gets
// the single-process value (up to the order of the additions). `lockstep` (full_shard, whose
// forward gathers are collective): every rank runs the same number of forward passes, a rank
// past the last batch running batch 0 again and dropping its loss.
ValResult Validate(TrainModel& model, const DataLoader& val, int max_batches, const LossOptions& lo,
                   bool lockstep) {
  const int B = val.batch_size(), T = val.seq_len();
  std::vector<int> in(static_cast<size_t>(B) * T), tg(in.size());
  model.set_lora_dropout(false);  // evaluation: the LoRA branch without dropout
  int64_t n = val.num_fixed_batches();
  if (max_batches > 0) n = std::min<int64_t>(n, max_batches);
  double sums[2] = {0, 0};  // Σ ce · n_valid, Σ n_valid
  const int64_t W = Distributed::size();
  const int64_t rounds = lockstep ? (n + W - 1) / W * W : n;
  for (int64_t k = Distributed::rank(); k < rounds; k += W) {
    const int rows = val.Fixed(k < n ? k : 0, in.data(), tg.data());
    const LossValue L = model.Forward(in.data(), tg.data(), rows, T, lo);
    if (k >= n) continue;
    sums[0] += L.ce * static_cast<double>(L.n_valid);
    sums[1] += static_cast<double>(L.n_valid);
  }
  Distributed::AllReduceSum(sums, 2);
  ValResult r;
  r.tokens = static_cast<int64_t>(sums[1]);
  r.loss = r.tokens > 0 ? sums[0] / sums[1] : 0;
  return r;
}

}  // namespace

std::string CheckpointFingerprint(const TrainConfig& c) {
  std::string f = ConfigToHfJson(c.model).dump() + "|T=" + std::to_string(c.seq_len) +
                  "|B=" + std::to_string(c.batch_size) + "|accum=" + std::to_string(c.accum_freq);
  if (c.lora.enabled()) {
    if (c.lora_base_weights) f += std::string("|base ") + DTypeName(*c.lora_base_weights);
    f += "|lora r=" + std::to_string(c.lora.rank) + " alpha=" + std::to_string(c.lora.alpha) +
         " dropout=" + std::to_string(c.lora.dropout) + (c.lora.rslora ? " rslora" : "") +
         (c.lora.dora ? " dora" : "") + " on";
    for (const std::string& t : c.lora.target_names()) f += " " + t;
  }
  return f;
}

double NominalPeakFlops() {
  return omp_get_max_threads() * 3.0e9 * 32.0;
}

TrainResult RunTraining(const TrainConfig& cfg, const TrainOptions& opt) {
  return Trainer(cfg, opt).Run();
}

// ---- the loop ----

TrainResult Trainer::Run() {
  const StopSignals signals(world_ > 1);
  progress_ = std::make_unique<Progress>(st_.step, cfg_.max_steps, cfg_.log_freq);
  t_run_ = Clock::now();
  while (st_.step < cfg_.max_steps) {
    const auto t0 = Clock::now();
    const double lr = cfg_.schedule.At(st_.step);
    StepSums sums = ForwardBackward();
    AllReduce(sums);
    const double norm = UpdateWeights(lr);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    step_seconds_ += dt;
    LogStep(sums, lr, norm, dt);
    const bool last = st_.step == cfg_.max_steps;
    if (val_ && ((cfg_.eval_every > 0 && st_.step % cfg_.eval_every == 0) || last)) Evaluate();
    if (st_.step % cfg_.save_interval == 0 || last) Save();
    if (world_ == 1) sums.stop = g_stop;  // alone, a signal during validation or saving counts too
    if (sums.stop) {
      if (!saved_last_) Save();
      Message("interrupted: stopped after step " + std::to_string(st_.step) +
              "; continue with --resume " + res_.checkpoint);
      break;
    }
  }
  return Finish();
}

Trainer::StepSums Trainer::ForwardBackward() {
  const int B = cfg_.batch_size, T = cfg_.seq_len;
  dp_->ZeroGrad();
  StepSums s;
  for (int micro = 0; micro < cfg_.accum_freq; ++micro) {
    // Rank r of W takes rows [r·B, (r+1)·B) of the next W·B samples: micro-batch micro·W + r
    // of the W·accum_freq micro-batches a single process with accum_freq·W would take.
    loader_->Next(inputs_.data(), targets_.data(), rank_, world_);
    // The LoRA branch's dropout mask (no effect without LoRA).
    model_.set_lora_dropout(
        true, LoraDropoutKey(cfg_.seed, st_.step, static_cast<int64_t>(micro) * world_ + rank_));
    const LossValue L = model_.Forward(inputs_.data(), targets_.data(), B, T, lo_);
    // The last micro-batch leaves the step's gradients: reduce them as layers finish.
    if (micro + 1 == cfg_.accum_freq) dp_->Arm();
    // CoreNet divides each micro-batch's mean loss by accum_freq.
    model_.Backward(1.0f / static_cast<float>(cfg_.accum_freq));
    s.loss += L.loss / cfg_.accum_freq;
    s.ce += L.ce / cfg_.accum_freq;
    s.n_valid += L.n_valid;
  }
  s.stop = g_stop;
  return s;
}

void Trainer::AllReduce(StepSums& s) {
  if (world_ == 1) return;
  // DDP: the mean over ranks of the per-rank gradients is the gradient of the mean of all
  // W·accum_freq micro-batch losses, the same as one process accumulating them. The step's loss,
  // token count and stop request are reduced beside it, so every rank logs (rank 0), clips,
  // updates and stops identically.
  dp_->ReduceGradients();
  double stats[4] = {s.loss, s.ce, static_cast<double>(s.n_valid), s.stop ? 1.0 : 0.0};
  Distributed::AllReduceSum(stats, 4);
  s.loss = stats[0] / world_;
  s.ce = stats[1] / world_;
  s.n_valid = static_cast<int64_t>(stats[2]);
  s.stop = stats[3] > 0;
}

// clip_grad_norm_ and the AdamW step over the trainable slab; returns the gradient norm.
double Trainer::UpdateWeights(double lr) {
  return dp_->Update(cfg_.adamw, lr, st_.step + 1, cfg_.grad_clip);
}

// Counts the step, writes its log line and progress, and stops the run on a non-finite loss.
void Trainer::LogStep(const StepSums& s, double lr, double norm, double dt) {
  st_.tokens_seen += s.n_valid;
  ++st_.step;
  st_.loss = s.loss;
  saved_last_ = false;
  StepRecord r;
  r.step = st_.step;
  r.loss = s.loss;
  r.ce = s.ce;
  r.has_z_loss = cfg_.use_z_loss;
  r.lr = lr;
  r.grad_norm = norm;
  r.tokens_per_s = static_cast<double>(tokens_per_step_) / dt;
  r.mfu = flops_per_token_ * r.tokens_per_s / (peak_ * world_);
  r.tokens = st_.tokens_seen;
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - t_run_).count();
  r.peak_rss_bytes = res_.peak_rss_bytes = PeakRssBytes();
  r.activation_bytes = res_.activation_bytes = model_.ActivationBytes();
  if (log_) log_->Step(r);
  if (verbose_) progress_->Update(r);
  if (st_.step == res_.first_step + 1) res_.first_loss = s.loss;
  res_.steps = st_.step;
  res_.final_loss = s.loss;
  if (!std::isfinite(s.loss)) {
    if (root_) progress_->Finish();
    Fail("step ", st_.step, ": the loss is ", s.loss, "; lower the learning rate");
  }
}

void Trainer::Evaluate() {
  const ValResult v = Validate(model_, *val_, cfg_.val_batches, lo_, dp_->full_shard());
  if (log_) log_->Validation(st_.step, v.loss, v.tokens);
  res_.val_loss = v.loss;
  Message("step " + std::to_string(st_.step) + ": validation loss " + Sci(v.loss) + " over " +
          std::to_string(v.tokens) + " tokens");
}

void Trainer::Save() {
  const TrainSlab& slab = model_.trainable();
  // full_shard: rank 0 gathers the whole model to write it (FSDP's full state dict on rank 0
  // only), then keeps its own range again. Each parameter has one owner there, so there are no
  // replicas to compare below.
  dp_->GatherAllParamsToRoot();
  struct ReleaseAfterSave {
    DataParallel& dp;
    ~ReleaseAfterSave() { dp.ReleaseAllParams(); }
  } release_after_save{*dp_};
  // Weights must be bit-identical on every rank; a difference means the reductions did not
  // return the same bytes everywhere, and the job stops rather than save one rank's view.
  if (!dp_->full_shard() && !ParamsAgree(slab))
    Fail("step ", st_.step, ": the weights differ between the MPI ranks (rank ", rank_, ")");
  st_.data = loader_->position();
  saved_last_ = true;
  if (dp_->sharded()) {
    // Each rank writes its moments' shard into the folder rank 0 made; rank 0 completes it.
    if (root_) PrepareCheckpoint(ckpt_root_, st_.step);
    Distributed::Barrier();
    WriteMomentShard((fs::path(ckpt_root_) / CheckpointName(st_.step)).string(), slab, rank_,
                     world_);
    Distributed::Barrier();
  }
  if (!root_) return;
  res_.checkpoint =
      SaveCheckpoint(ckpt_root_, slab, st_, cfg_.tokenizer, dp_->sharded() ? world_ : 0);
  PruneCheckpoints(ckpt_root_, cfg_.keep_last);
  Message("checkpoint: " + res_.checkpoint);
}

TrainResult Trainer::Finish() {
  if (root_) progress_->Finish();
  const int64_t run_steps = res_.steps - res_.first_step;
  if (run_steps > 0 && step_seconds_ > 0)
    res_.tokens_per_s = static_cast<double>(run_steps * tokens_per_step_) / step_seconds_;
  if (root_ && res_.checkpoint.empty()) res_.checkpoint = FindLatestCheckpoint(ckpt_root_);
  return res_;
}

void Trainer::Say(const std::string& s) const {
  if (verbose_) std::fprintf(stderr, "%s\n", s.c_str());
}

void Trainer::Message(const std::string& s) const {
  if (root_) progress_->Message(s);
}

// ---- setting up ----

namespace {

// "common.{a, b}, ddp.{enable, rank}": dotted keys grouped by their first section, in order.
std::string GroupKeys(const std::vector<std::string>& keys) {
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (const std::string& k : keys) {
    const size_t dot = k.find('.');
    const std::string section = dot == std::string::npos ? k : k.substr(0, dot);
    const std::string rest = dot == std::string::npos ? "" : k.substr(dot + 1);
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g.first == section; });
    if (it == groups.end()) it = groups.insert(groups.end(), {section, {}});
    if (!rest.empty()) it->second.push_back(rest);
  }
  std::string out;
  for (const auto& [section, rest] : groups) {
    out += (out.empty() ? "" : ", ") + section;
    if (rest.size() == 1) out += "." + rest[0];
    if (rest.size() > 1) {
      out += ".{";
      for (size_t i = 0; i < rest.size(); ++i) out += (i ? ", " : "") + rest[i];
      out += "}";
    }
  }
  return out;
}

}  // namespace

Trainer::Trainer(const TrainConfig& cfg, const TrainOptions& opt)
    : cfg_(cfg),
      opt_(opt),
      rank_(Distributed::rank()),
      world_(Distributed::size()),
      root_(rank_ == 0),
      verbose_(opt.verbose && root_),
      run_dir_(cfg.run_dir()),
      ckpt_root_((fs::path(run_dir_) / "checkpoints").string()),
      model_(cfg.model) {
  WarnAboutKeys();
  if (root_) {
    // Before anything is written: a fresh run never mixes with another run's files.
    const bool resuming =
        !opt_.resume.empty() || (cfg_.auto_resume && !FindLatestCheckpoint(ckpt_root_).empty());
    if (resuming && opt_.overwrite && !opt_.resume.empty())
      Fail("--resume and --overwrite contradict each other: continue the run, or start over");
    PrepareRunFolder(run_dir_, resuming && !opt_.overwrite, opt_.overwrite);
    fs::create_directories(ckpt_root_);
  }
  LoadData();
  model_.set_mixed_precision(cfg_.mixed_precision);
  model_.set_activation_checkpointing(cfg_.activation_checkpointing);
  // LoRA (docs/openelm.md §6.10): the base weights are frozen, only the adapter has gradients and
  // moments.
  if (cfg_.lora.enabled()) {
    LoraSettings ls = cfg_.lora;
    ls.base_model = cfg_.init_from;
    model_.EnableLora(ls);
  }
  dp_ = std::make_unique<DataParallel>(model_.trainable(), cfg_.sharding, cfg_.reduce_bf16,
                                       cfg_.overlap_reduction);
  if (!cfg_.lora.enabled())
    model_.params().AllocateTrainingState(dp_->moments_begin(), dp_->moments_end());
  model_.set_after_layer_backward([this](int layer) { dp_->LayerDone(layer); });
  if (dp_->full_shard())
    model_.set_param_hooks([this](int layer) { dp_->GatherParams(layer); },
                           [this](int layer) { dp_->ReleaseParams(layer); });
  st_.seed = cfg_.seed;
  st_.fingerprint = CheckpointFingerprint(cfg_);
  st_.world_size = world_;
  // Rank 0 finds and reads the checkpoint (or the init) and sends the state to the other ranks,
  // which never read the run folder: it only needs to exist on rank 0's machine.
  if (root_) Restore();
  ShareState();
  if (resumed_) loader_->Seek(st_.data);
  tokens_per_step_ = cfg_.tokens_per_step() * world_;
  Describe();
  CopyConfig();
  OpenLog();
}

Trainer::~Trainer() = default;

// Unknown keys may be typos that change the run: warned about even with --quiet (rank 0). The
// CoreNet keys elm accepts without effect are one note line, by section, and --quiet hides it
// (docs/training.md, "Config keys").
void Trainer::WarnAboutKeys() const {
  if (!root_) return;
  if (!cfg_.unknown_keys.empty()) {
    std::string list;
    for (size_t i = 0; i < cfg_.unknown_keys.size(); ++i) {
      list += "\n  " + cfg_.unknown_keys[i];
      if (i < cfg_.unknown_key_hints.size() && !cfg_.unknown_key_hints[i].empty())
        list += " (did you mean " + cfg_.unknown_key_hints[i] + "?)";
    }
    std::fprintf(stderr, "warning: %s: %zu unknown key(s), ignored:%s\n", cfg_.origin.c_str(),
                 cfg_.unknown_keys.size(), list.c_str());
  }
  if (verbose_ && !cfg_.ignored_keys.empty())
    std::fprintf(stderr, "note: %zu CoreNet key(s) have no effect in elm: %s\n",
                 cfg_.ignored_keys.size(), GroupKeys(cfg_.ignored_keys).c_str());
}

void Trainer::LoadData() {
  const Tokenizer tok =
      cfg_.tokenizer.empty() ? Tokenizer::Default() : Tokenizer::FromFile(cfg_.tokenizer);
  if (tok.vocab_size() > cfg_.model.vocab_size)
    Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocab_size is ",
         cfg_.model.vocab_size);
  // Rank 0 tokenizes first and fills the token cache; on a shared file system the other ranks
  // then map it instead of tokenizing the same text again.
  if (root_) data_ = LoadDataSplits(cfg_, tok);
  Distributed::Barrier();
  if (!root_) data_ = LoadDataSplits(cfg_, tok, false);
  BatchIds ids;
  ids.target_pad = cfg_.ignore_index;
  // Pad inputs only precede ignored targets, so their id never reaches the loss; CoreNet feeds
  // padding_index, which needs a row of its own in the embedding (vocab 32128 ⊃ 32000).
  ids.input_pad = cfg_.padding_index >= 0 && cfg_.padding_index < cfg_.model.vocab_size
                      ? cfg_.padding_index
                      : std::max(0, tok.eos_id());
  loader_ =
      std::make_unique<DataLoader>(data_.train, cfg_.batch_size, cfg_.seed, cfg_.shuffle, ids);
  if (data_.val && data_.val->size() > 0)
    val_ = std::make_unique<DataLoader>(data_.val, cfg_.batch_size, cfg_.seed, false, ids);
  CheckRanksAgree();
  Say("data: " + std::string(data_.packed ? "packed" : "documents") + " mode, " +
      std::to_string(data_.train->size()) + " training samples of " + std::to_string(cfg_.seq_len) +
      " tokens" +
      (val_ ? ", " + std::to_string(data_.val->size()) + " validation samples" : std::string()) +
      " (" + std::to_string(data_.train->stats.documents) + " documents, " +
      std::to_string(data_.train->stats.dropped) + " dropped by the filters)");
}

// Every rank must walk the same samples with the same model and batch settings, or the averaged
// gradients would mix different problems.
void Trainer::CheckRanksAgree() const {
  if (world_ == 1) return;
  const std::string what =
      CheckpointFingerprint(cfg_) + "|n=" + std::to_string(data_.train->size()) +
      "|val=" + std::to_string(val_ ? data_.val->size() : 0) +
      "|seed=" + std::to_string(cfg_.seed) + "|steps=" + std::to_string(cfg_.max_steps) +
      "|sharding=" + ShardingName(cfg_.sharding) + (cfg_.reduce_bf16 ? " bf16" : " f32") +
      (cfg_.overlap_reduction ? " overlap" : "");
  // The data's identity: the tokens of up to 64 samples spread over the training set.
  uint64_t tokens = 0xcbf29ce484222325ull;
  const SampleSet& train = *data_.train;
  const int64_t n = train.size(), stride = std::max<int64_t>(1, n / 64);
  for (int64_t i = 0; i < n; i += stride)
    for (int t = 0; t < train.width(); ++t)
      tokens = (tokens ^ static_cast<uint32_t>(train.sample(i)[t])) * 0x100000001b3ull;
  char mine[160];
  std::snprintf(mine, sizeof mine, "config hash %016llx, %lld training samples, data hash %016llx",
                static_cast<unsigned long long>(HashString(what)), static_cast<long long>(n),
                static_cast<unsigned long long>(tokens));
  if (Distributed::AllEqual(HashString(mine))) return;
  // Every rank names rank 0's view beside its own.
  char rank0[sizeof mine];
  std::memcpy(rank0, mine, sizeof mine);
  Distributed::Broadcast(rank0, sizeof rank0);
  Fail("rank ", rank_, " of ", world_, ": the ranks disagree on the model, batch settings, ",
       "seed, steps, sharding or data: rank 0 has ", rank0, ", this rank ", mine,
       "; every rank needs the same config and the same data files");
}

// Rank 0: the checkpoint to resume (--resume, or the newest under the run folder with
// auto_resume), then the weights a run starts from.
void Trainer::Restore() {
  // A checkpoint killed mid-write (no DONE) is never resumed from: remove it now rather than
  // after the next checkpoint completes (docs/reliability.md).
  if (root_) RemoveIncompleteCheckpoints(ckpt_root_);
  std::string resume = opt_.resume;
  if (resume.empty() && cfg_.auto_resume) {
    resume = FindLatestCheckpoint(ckpt_root_);
  } else if (!resume.empty()) {
    const std::string found = FindLatestCheckpoint(resume);
    if (found.empty()) Fail(resume, ": no complete checkpoint (with a DONE file) found here");
    resume = found;
  }
  if (!resume.empty()) ResumeFrom(resume);
  InitWeights();
}

void Trainer::ResumeFrom(const std::string& dir) {
  const TrainerState saved = LoadCheckpoint(dir, model_.trainable());
  // Another rank count resumes when the global batch (train_batch_size0 × ranks × accum_freq)
  // stays: the loader then hands out the same samples per step (docs/training.md, "Resuming on
  // another number of ranks").
  const BatchSplit was = SplitBatch(saved.fingerprint, saved.world_size);
  const BatchSplit now = SplitBatch(st_.fingerprint, world_);
  if (was.rest != now.rest || (saved.world_size == world_ && saved.fingerprint != st_.fingerprint))
    Fail(dir, ": the checkpoint was written with a different model shape, sequence ",
         "length, batch size or accumulation; resume with the config it was trained with");
  if (saved.seed != cfg_.seed)
    Fail(dir, ": the checkpoint used seed ", saved.seed, " but the config says ", cfg_.seed);
  if (was.global != now.global)
    Fail(dir, ": the checkpoint was trained by ", saved.world_size, " MPI rank(s) with ",
         was.global, " sequences per step and this run has ", world_, " rank(s) with ", now.global,
         "; the global batch (train_batch_size0 × ranks × accum_freq) would change: resume ",
         "with the same global batch (e.g. scale common.accum_freq by the rank counts' ratio)");
  const std::string fingerprint = st_.fingerprint;
  st_ = saved;
  st_.fingerprint = fingerprint;
  st_.world_size = world_;
  resumed_ = true;
  Say("resumed from " + dir + " at step " + std::to_string(st_.step));
  // Rewound: this run's later checkpoints belong to the steps it replaces (its log drops their
  // lines too, train_log.h), and a later --resume of the run folder must not pick them.
  for (const std::string& later : ListCheckpoints(ckpt_root_)) {
    if (fs::path(later).filename().string() <= CheckpointName(st_.step)) continue;
    fs::remove(fs::path(later) / "DONE");
    fs::remove_all(later);
    Say("removed " + later + ": a later step of the run this resume replaces");
  }
}

// A LoRA run loads its frozen base from init_from on every start, resumed or not; a full run
// starts from init_from or a fresh init unless it resumed.
void Trainer::InitWeights() {
  const bool lora = cfg_.lora.enabled();
  ParamSet& ps = model_.params();
  if (lora || (!resumed_ && !cfg_.init_from.empty())) {
    // HF, MLX, GGUF, or a CoreNet .pt checkpoint (shaped by this config).
    SourceOptions so;
    so.for_conversion = false;
    so.config = cfg_.model;
    const ModelSource init = OpenModelSource(cfg_.init_from, so);
    if (ConfigToHfJson(init.config).dump() != ConfigToHfJson(cfg_.model).dump())
      Fail("elm.init_from ", cfg_.init_from, ": its config.json does not match the model of ",
           cfg_.origin);
    LoadParams(ps, init);
    // A CoreNet training checkpoint continues Apple's run: its AdamW moments and step.
    if (!lora && init.format == "pytorch") {
      if (ps.m.size() != ps.size()) ps.AllocateTrainingState();  // sharded: all moments on rank 0
      const CoreNetSteps steps = LoadCoreNetAdamW(ps, cfg_.init_from);
      st_.step = steps.adamw_step;
      continued_ = st_.step > 0;
      // Normally equal; when not (CoreNet's gradient scaler skipped steps, or another loop wrote
      // the file), the step that continues is AdamW's: elm's one counter drives both the bias
      // corrections and the schedule (docs/training.md, "Continuing a CoreNet run").
      if (continued_ && steps.iterations != steps.adamw_step)
        std::fprintf(stderr,
                     "warning: %s: its 'iterations' is %lld but AdamW's step is %lld; elm "
                     "continues at AdamW's step %lld (learning-rate schedule and bias "
                     "corrections) and ignores 'iterations' (docs/training.md, \"Continuing a "
                     "CoreNet run\")\n",
                     cfg_.init_from.c_str(), static_cast<long long>(steps.iterations),
                     static_cast<long long>(steps.adamw_step),
                     static_cast<long long>(steps.adamw_step));
      if (continued_)
        Say("continuing the CoreNet run of " + cfg_.init_from + " at step " +
            std::to_string(st_.step) + " with its AdamW moments");
    }
    if (lora && cfg_.lora_base_weights) FakeQuantizeBase(ps, *cfg_.lora_base_weights);
    if (lora && !resumed_) {
      model_.lora()->Init(cfg_.seed);
      if (cfg_.lora.dora) model_.InitDoraMagnitudes();
    }
    Say((lora ? "LoRA on the frozen base " : "initialized from ") + cfg_.init_from);
  } else if (!resumed_) {
    InitParams(ps, cfg_.seed);
  }
}

// Rank 0's step counters, data position and weights (the frozen base too) to every rank.
void Trainer::ShareState() {
  if (world_ == 1) return;
  int64_t head[6] = {resumed_ ? 1 : (continued_ ? 2 : 0),
                     st_.step,
                     st_.data.epoch,
                     st_.data.index,
                     st_.tokens_seen,
                     0};
  std::memcpy(&head[5], &st_.loss, sizeof st_.loss);
  Distributed::Broadcast(head, sizeof head);
  resumed_ = head[0] == 1;
  continued_ = head[0] == 2;
  st_.step = head[1];
  st_.data = {head[2], head[3]};
  st_.tokens_seen = head[4];
  std::memcpy(&st_.loss, &head[5], sizeof st_.loss);
  TrainSlab& slab = model_.trainable();
  if (&slab != &model_.params()) BroadcastSlab(model_.params(), false);
  BroadcastSlab(slab, (resumed_ || continued_) && !dp_->sharded());
  dp_->ShareMoments(resumed_ || continued_);
  // full_shard: from here on each rank holds only its range of the parameters.
  dp_->ReleaseAllParams();
}

void Trainer::Describe() const {
  const ModelConfig& m = cfg_.model;
  Say("model: " + m.name + ", " + std::to_string(m.n_layers) + " layers, dim " +
      std::to_string(m.dim) + ", " + std::to_string(m.ParamCount()) + " parameters; " +
      std::to_string(tokens_per_step_) + " tokens per step" +
      (world_ > 1
           ? " (" + std::to_string(world_) + " MPI ranks × " + std::to_string(cfg_.batch_size) +
                 " sequences × " + std::to_string(cfg_.accum_freq) + " micro-batches)"
           : std::string()) +
      (cfg_.mixed_precision ? "; bf16 matrix products, f32 master weights" : "; f32") +
      (cfg_.activation_checkpointing ? "; activation checkpointing" : "") + "; run folder " +
      run_dir_);
  if (!cfg_.lora.enabled()) return;
  const LoraSettings& l = cfg_.lora;
  std::string targets;
  for (const std::string& t : l.target_names()) targets += (targets.empty() ? "" : ", ") + t;
  Say("LoRA: r " + std::to_string(l.rank) + ", alpha " + Sci(l.alpha) + " (scaling " +
      Sci(l.scaling()) + "), dropout " + Sci(l.dropout) + " on " + targets + "; " +
      std::to_string(model_.lora()->size()) +
      " trainable parameters, base weights and norms frozen" +
      (cfg_.lora_base_weights ? std::string("; base rounded to ") +
                                    DTypeName(*cfg_.lora_base_weights) + " (fake quantization)"
                              : std::string()));
}

// The config (with any --set overrides noted) beside the run's checkpoints.
void Trainer::CopyConfig() const {
  const std::string copy = (fs::path(run_dir_) / "config.yaml").string();
  if (!root_ || !fs::exists(cfg_.origin) || fs::absolute(cfg_.origin) == fs::absolute(copy)) return;
  std::string text = ReadTextFile(cfg_.origin);
  if (!cfg_.overrides.empty()) text += "\n# applied with elm train --set:\n";
  for (const auto& o : cfg_.overrides) text += "#   " + o + "\n";
  WriteFileAtomic(copy, text.data(), text.size());
}

void Trainer::OpenLog() {
  if (root_)
    log_ = std::make_unique<TrainLog>((fs::path(run_dir_) / "train_log.jsonl").string(),
                                      resumed_ ? st_.step : -1);
  lo_.ignore_index = cfg_.ignore_index;
  lo_.z_loss_coef = cfg_.use_z_loss ? static_cast<float>(cfg_.z_loss_eps) : 0.0f;
  // Per process; the job's peak is world × this. bf16 dot products (vdpbf16ps) do twice the
  // FLOPs of an f32 FMA per instruction.
  peak_ = cfg_.peak_gflops > 0 ? cfg_.peak_gflops * 1e9
                               : NominalPeakFlops() * (cfg_.mixed_precision ? 2 : 1);
  flops_per_token_ = model_.FlopsPerToken(cfg_.seq_len);
  inputs_.assign(static_cast<size_t>(cfg_.batch_size) * cfg_.seq_len, 0);
  targets_.assign(inputs_.size(), 0);
  res_.first_step = st_.step;
  res_.steps = st_.step;
  res_.final_loss = res_.first_loss = st_.loss;
  if (log_) res_.log_path = log_->path();
}

}  // namespace elm
