#include "train/posttrain.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/rng.h"
#include "data/chat_dataset.h"
#include "io/model_source.h"
#include "io/model_tokenizer.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/optimizer.h"
#include "train/qlora_base.h"
#include "train/run_folder.h"
#include "train/sharding.h"
#include "train/slab_sync.h"
#include "train/train_model.h"

namespace elm {

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

// Any model elm opens (an HF or MLX folder, a GGUF file, a hub id in the local cache), widened to
// f32.
std::unique_ptr<TrainModel> LoadModelFolder(const std::string& path) {
  const ModelSource src = OpenModelSource(path);
  auto m = std::make_unique<TrainModel>(src.config);
  LoadParams(m->params(), src);
  return m;
}

void PutMetrics(nlohmann::json& j, const PreferenceMetrics& m, const std::string& prefix,
                bool with_logits) {
  j[prefix + "rewards/chosen"] = m.rewards_chosen;
  j[prefix + "rewards/rejected"] = m.rewards_rejected;
  j[prefix + "rewards/accuracies"] = m.rewards_accuracies;
  j[prefix + "rewards/margins"] = m.rewards_margins;
  j[prefix + "logps/chosen"] = m.logps_chosen;
  j[prefix + "logps/rejected"] = m.logps_rejected;
  if (with_logits) {  // the training step's; the evaluation computes log-probs only
    j[prefix + "logits/chosen"] = m.logits_chosen;
    j[prefix + "logits/rejected"] = m.logits_rejected;
  }
}

void AddScaled(PreferenceMetrics& a, const PreferenceMetrics& b, double s) {
  a.rewards_chosen += s * b.rewards_chosen;
  a.rewards_rejected += s * b.rewards_rejected;
  a.rewards_accuracies += s * b.rewards_accuracies;
  a.rewards_margins += s * b.rewards_margins;
  a.logps_chosen += s * b.logps_chosen;
  a.logps_rejected += s * b.logps_rejected;
  a.logits_chosen += s * b.logits_chosen;
  a.logits_rejected += s * b.logits_rejected;
}

// The JSON-lines log. Resumed (keep_through_step ≥ 0), it keeps the lines of steps up to the
// checkpoint's (rewritten atomically) and appends after them, so it describes one run.
class Log {
 public:
  Log(const std::string& path, int64_t keep_through_step) : path_(path) {
    if (keep_through_step >= 0 && fs::exists(path)) {
      std::string kept;
      std::ifstream in(path);
      for (std::string line; std::getline(in, line);) {
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= keep_through_step)
          kept += line + "\n";
      }
      WriteFileAtomic(path, kept.data(), kept.size());
    }
    f_ = std::fopen(path.c_str(), keep_through_step >= 0 ? "a" : "w");
    if (f_ == nullptr) Fail(path, ": cannot write the training log");
  }
  ~Log() {
    if (f_ != nullptr) std::fclose(f_);
  }
  Log(const Log&) = delete;
  Log& operator=(const Log&) = delete;
  void Line(const nlohmann::json& j) {
    const std::string s = j.dump() + "\n";
    if (std::fwrite(s.data(), 1, s.size(), f_) != s.size() || std::fflush(f_) != 0)
      Fail(path_, ": cannot write the training log (disk full?)");
  }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

class Runner {
 public:
  Runner(const PosttrainConfig& cfg, const PosttrainOptions& opt) : cfg_(cfg), opt_(opt) {}

  PosttrainResult Run() {
    const bool dpo = cfg_.task == PosttrainTask::kDpo;
    PrepareFolder();
    const Tokenizer tok = LoadTokenizerFor(cfg_.model_name_or_path, cfg_.tokenizer);
    PosttrainDataOptions dopt;
    dopt.max_length = cfg_.max_length;
    dopt.max_prompt_length = cfg_.max_prompt_length;
    pad_ = tok.eos_id();
    if (dpo) {
      pref_ = ReadPreferenceJsonl(cfg_.train_file, tok, dopt);
      if (!cfg_.eval_file.empty()) eval_pref_ = ReadPreferenceJsonl(cfg_.eval_file, tok, dopt);
    } else {
      sft_ = ReadChatJsonl(cfg_.train_file, tok, dopt);
      if (!cfg_.eval_file.empty()) eval_sft_ = ReadChatJsonl(cfg_.eval_file, tok, dopt);
    }
    const size_t n = dpo ? pref_.size() : sft_.size();
    train_rows_ = n;

    // QLoRA loads the base through QuantizedBase below: its layer linears are quantized straight
    // from the checkpoint, never held in f32 (train/qlora_base.h).
    const bool qlora = cfg_.lora.enabled() && cfg_.base_quant;
    const ModelSource src = OpenModelSource(cfg_.model_name_or_path);
    policy_ = std::make_unique<TrainModel>(src.config);
    if (!qlora) LoadParams(policy_->params(), src);
    if (tok.vocab_size() > policy_->config().vocab_size)
      Fail("the tokenizer has ", tok.vocab_size(), " tokens but the model's vocab_size is ",
           policy_->config().vocab_size);
    policy_->set_mixed_precision(cfg_.bf16);
    policy_->set_activation_checkpointing(cfg_.gradient_checkpointing);
    if (cfg_.lora.enabled()) {
      policy_->EnableLora(cfg_.lora);
      policy_->lora()->Init(cfg_.seed);
      if (cfg_.base_quant) {  // QLoRA: the frozen base held quantized from here on
        qbase_ = std::make_unique<QuantizedBase>(policy_->params(), src, *cfg_.base_quant,
                                                 cfg_.base_double_quant);
        res_.base_f32_bytes = qbase_->f32_bytes();
        res_.base_quantized_bytes = qbase_->quantized_bytes();
        Say("QLoRA: %zu base matrices held in %s%s: %.1f MiB instead of %.1f MiB in f32",
            qbase_->count(), BaseQuantName(*cfg_.base_quant),
            cfg_.base_quant == BaseQuant::kNf4 && cfg_.base_double_quant ? " (double quantization)"
                                                                         : "",
            static_cast<double>(res_.base_quantized_bytes) / 1048576.0,
            static_cast<double>(res_.base_f32_bytes) / 1048576.0);
      }
      // After quantizing: QDoRA's magnitudes start at the dequantized base's row norms (PEFT's
      // dora_init on a bnb-quantized layer), so step 1 is the quantized base model.
      if (cfg_.lora.dora) policy_->InitDoraMagnitudes();
    } else {
      policy_->params().AllocateTrainingState();
    }
    if (dpo && !cfg_.lora.enabled()) {  // a frozen copy (or another model) as the reference
      ref_ = LoadModelFolder(cfg_.ref_model.empty() ? cfg_.model_name_or_path : cfg_.ref_model);
      ref_->set_mixed_precision(cfg_.bf16);
      ref_->set_activation_checkpointing(cfg_.gradient_checkpointing);  // forward only: less held
    }

    // transformers: len(dataloader) = ceil(n / B) micro-batches per epoch, update steps per epoch
    // = max(that // accum, 1), total = ceil(epochs · per epoch) unless max_steps > 0.
    const int64_t micro_per_epoch =
        static_cast<int64_t>((n + cfg_.batch_size - 1) / cfg_.batch_size);
    // Under mpirun each rank runs every world-th micro-batch: the steps are those of one process
    // with world × the accumulation.
    const int64_t per_epoch = std::max<int64_t>(micro_per_epoch / (cfg_.accum * world_), 1);
    total_ = cfg_.max_steps > 0 ? cfg_.max_steps
                                : static_cast<int64_t>(std::ceil(cfg_.num_train_epochs *
                                                                 static_cast<double>(per_epoch)));
    warmup_ =
        cfg_.warmup_steps > 0
            ? cfg_.warmup_steps
            : static_cast<int64_t>(std::ceil(cfg_.warmup_ratio * static_cast<double>(total_)));
    Say("%s: %zu %s, %lld steps (batch %d x %d accumulation x %d rank(s)), %s%s",
        dpo ? "dpo" : "sft", n, dpo ? "pairs" : "conversations", static_cast<long long>(total_),
        cfg_.batch_size, cfg_.accum, world_, cfg_.lora.enabled() ? "LoRA" : "full fine-tuning",
        dpo ? (std::string(", loss ") + PreferenceLossName(cfg_.loss.type)).c_str() : "");
    if (!cfg_.ignored_keys.empty() && opt_.verbose) {
      std::string s;
      for (const auto& k : cfg_.ignored_keys) s += (s.empty() ? "" : ", ") + k;
      Say("note: %zu key(s) have no effect in elm: %s", cfg_.ignored_keys.size(), s.c_str());
    }
    for (const auto& k : cfg_.unknown_keys)
      std::fprintf(stderr, "warning: %s: unknown key %s\n", cfg_.origin.c_str(), k.c_str());

    if (dpo && cfg_.precompute_ref_log_probs) {
      const auto t0 = Clock::now();
      ref_c_.resize(n);
      ref_r_.resize(n);
      for (size_t i = 0; i < n; i += static_cast<size_t>(cfg_.eval_batch_size)) {
        std::vector<size_t> idx(std::min(n - i, static_cast<size_t>(cfg_.eval_batch_size)));
        std::iota(idx.begin(), idx.end(), i);
        const std::vector<double> r = RefLogProbs(PairBatch(pref_, idx));
        for (size_t k = 0; k < idx.size(); ++k) {
          ref_c_[idx[k]] = r[k];
          ref_r_[idx[k]] = r[idx.size() + k];
        }
      }
      res_.ref_seconds += Seconds(t0);
      Say("precomputed the reference log-probs of %zu pairs in %.1f s", n, Seconds(t0));
    }

    int64_t first_step = 0;
    if (!resume_dir_.empty()) first_step = ResumeFrom(resume_dir_);
    if (root_)
      log_ = std::make_unique<Log>((fs::path(cfg_.output_dir) / "train_log.jsonl").string(),
                                   resume_dir_.empty() ? -1 : first_step);
    res_.log_path = (fs::path(cfg_.output_dir) / "train_log.jsonl").string();
    res_.setup_peak_rss_bytes = PeakResidentBytes();
    ResetPeakResident();  // from here, the training phase's peak
    const auto t_run = Clock::now();
    double train_seconds = 0;
    int64_t rows_done = 0;
    for (int64_t step = first_step; step < total_; ++step) {
      const auto t0 = Clock::now();
      policy_->ZeroGrad();
      double loss = 0;
      PreferenceMetrics m;
      int64_t rows = 0, tokens = 0;
      for (int g = 0; g < cfg_.accum * world_; ++g) {
        // Global micro-batch g = a · world + rank: every rank draws them all (one data
        // position), and runs its own.
        const std::vector<size_t> idx = NextBatch(n);
        if (g % world_ != rank_) continue;
        const int a = g;  // the dropout mask's index: the global micro-batch
        rows += static_cast<int64_t>(idx.size());
        const float scale = 1.0f / static_cast<float>(cfg_.accum);
        // PEFT's lora_dropout on the policy's training passes; the mask is a function of the
        // seed, the step and the micro-batch, so a resumed run draws the same masks.
        if (policy_->lora() != nullptr && cfg_.lora.dropout > 0)
          policy_->set_lora_dropout(true, LoraDropoutKey(cfg_.seed, step, a));
        if (dpo) {
          const TokenBatch b = PairBatch(pref_, idx);
          std::vector<double> ref;
          if (cfg_.precompute_ref_log_probs) {
            for (size_t i : idx) ref.push_back(ref_c_[i]);
            for (size_t i : idx) ref.push_back(ref_r_[i]);
          } else {
            const auto tr = Clock::now();
            ref = RefLogProbs(b);
            res_.ref_seconds += Seconds(tr);
          }
          for (int len : b.lengths) tokens += len;
          const PreferenceLoss L = PreferenceForwardBackward(
              *policy_, b.inputs.data(), b.targets.data(), b.B, b.T, ref, cfg_.loss, scale);
          loss += L.loss * scale;
          AddScaled(m, L.metrics, scale);
        } else {
          std::vector<SftExample> rows_v;
          for (size_t i : idx) rows_v.push_back(sft_[i]);
          const TokenBatch b = MakeSftBatch(rows_v, pad_);
          for (int len : b.lengths) tokens += len;
          const LossValue L = policy_->Forward(b.inputs.data(), b.targets.data(), b.B, b.T, {});
          policy_->Backward(scale);
          loss += L.loss * scale;
        }
      }
      policy_->set_lora_dropout(false);
      TrainSlab& slab = policy_->trainable();
      if (world_ > 1) {  // DDP: the mean gradient, and the step's loss and metrics over the ranks
        // The mean gradient by elm train's one reduction (train/sharding.h), replicated.
        if (!reduce_)
          reduce_ = std::make_unique<DataParallel>(slab, Sharding::kNoShard, false, false);
        reduce_->ReduceGradients();
        double v[10] = {loss,
                        m.rewards_chosen,
                        m.rewards_rejected,
                        m.rewards_accuracies,
                        m.rewards_margins,
                        m.logps_chosen,
                        m.logps_rejected,
                        m.logits_chosen,
                        m.logits_rejected,
                        0.0};
        Distributed::AllReduceSum(v, 9);
        const double w = world_;
        loss = v[0] / w;
        m = {v[1] / w, v[2] / w, v[3] / w, v[4] / w, v[5] / w, v[6] / w, v[7] / w, v[8] / w};
        double c[2] = {static_cast<double>(rows), static_cast<double>(tokens)};
        Distributed::AllReduceSum(c, 2);
        rows = static_cast<int64_t>(c[0]);
        tokens = static_cast<int64_t>(c[1]);
      }
      const double norm = GlobalGradNorm(slab);
      if (cfg_.max_grad_norm > 0) ClipGradients(slab, norm, cfg_.max_grad_norm);
      const double lr =
          HfLearningRate(cfg_.lr_scheduler_type, cfg_.learning_rate, step, total_, warmup_);
      AdamWUpdate(slab, cfg_.adamw, lr, step + 1);
      const double dt = Seconds(t0);
      train_seconds += dt;
      rows_done += rows;

      nlohmann::json j;
      j["step"] = step + 1;
      j["loss"] = loss;
      j["lr"] = lr;
      j["grad_norm"] = norm;
      if (dpo) PutMetrics(j, m, "", true);
      j[dpo ? "pairs_per_s" : "sequences_per_s"] = static_cast<double>(rows) / dt;
      j["tokens_per_s"] = static_cast<double>(tokens) / dt;  // the policy's real (unpadded) tokens
      j["elapsed_s"] = Seconds(t_run);
      if (root_) log_->Line(j);
      if (step == first_step) {
        res_.first_loss = loss;
        res_.first_metrics = m;
      }
      res_.final_loss = loss;
      res_.final_metrics = m;
      res_.steps = step + 1;
      if (opt_.verbose &&
          ((step + 1) % std::max(1, cfg_.logging_steps) == 0 || step == 0 || step + 1 == total_)) {
        if (dpo)
          Say("step %lld/%lld loss %.4f acc %.2f margin %.4f lr %.3g grad %.3f",
              static_cast<long long>(step + 1), static_cast<long long>(total_), loss,
              m.rewards_accuracies, m.rewards_margins, lr, norm);
        else
          Say("step %lld/%lld loss %.4f lr %.3g grad %.3f", static_cast<long long>(step + 1),
              static_cast<long long>(total_), loss, lr, norm);
      }
      const bool last = step + 1 == total_;
      if (!root_) continue;
      if (cfg_.eval_steps > 0 && (step + 1) % cfg_.eval_steps == 0 && !last) Evaluate(step + 1);
      if (last || (cfg_.save_steps > 0 && (step + 1) % cfg_.save_steps == 0)) Save(step + 1, loss);
    }
    if (root_) Evaluate(total_);
    res_.train_peak_rss_bytes = PeakResidentBytes();
    Say("peak resident memory: %.1f MiB while loading, %.1f MiB while training",
        static_cast<double>(res_.setup_peak_rss_bytes) / 1048576.0,
        static_cast<double>(res_.train_peak_rss_bytes) / 1048576.0);
    res_.rows_per_s = train_seconds > 0 ? static_cast<double>(rows_done) / train_seconds : 0;
    return res_;
  }

 private:
  template <typename... A>
  void Say(const char* fmt, A... a) const {
    if (!opt_.verbose || !root_) return;
    std::fprintf(stderr, fmt, a...);
    std::fputc('\n', stderr);
  }

  // The run folder rules of `elm train` (train/run_folder.h): a folder holding a run is refused
  // unless this run resumes (--resume) or starts over (--overwrite, which deletes elm's own run
  // files only). A resume's checkpoint is found before anything is removed.
  void PrepareFolder() {
    if (!opt_.resume.empty() && opt_.overwrite)
      Fail("--resume and --overwrite contradict each other: continue the run, or start over");
    if (!opt_.resume.empty()) {
      resume_dir_ = FindLatestCheckpoint(opt_.resume);
      if (resume_dir_.empty())
        Fail(opt_.resume, ": no complete checkpoint (with a DONE file) found here");
    }
    const std::string contents = RunFolderContents(cfg_.output_dir);
    if (resume_dir_.empty() && !contents.empty() && !opt_.overwrite)
      Fail("the output_dir ", cfg_.output_dir, " already holds a run (", contents,
           "); pass --resume ", cfg_.output_dir, " to continue it, --overwrite to delete it and ",
           "start over, or set output_dir");
    // Every rank has checked; then rank 0 alone changes the folder.
    if (world_ > 1) Distributed::Barrier();
    if (root_) {
      PrepareRunFolder(cfg_.output_dir, !resume_dir_.empty(), opt_.overwrite);
      fs::create_directories(cfg_.output_dir);
      RemoveIncompleteCheckpoints((fs::path(cfg_.output_dir) / "checkpoints").string());
    }
    if (world_ > 1) Distributed::Barrier();
  }

  // What must not change between a checkpoint and the run resuming it: the task, the batch
  // shape, the loss, the adapter and the base's quantization.
  std::string Fingerprint() const {
    std::string f = cfg_.task == PosttrainTask::kDpo ? "dpo" : "sft";
    f += "|batch " + std::to_string(cfg_.batch_size) + "x" + std::to_string(cfg_.accum);
    f += "|len " + std::to_string(cfg_.max_length) + "/" + std::to_string(cfg_.max_prompt_length);
    if (cfg_.task == PosttrainTask::kDpo)
      f += std::string("|") + PreferenceLossName(cfg_.loss.type);
    if (cfg_.lora.enabled())
      f += "|lora r" + std::to_string(cfg_.lora.rank) + (cfg_.lora.dora ? " dora" : "");
    if (cfg_.base_quant)
      f += std::string("|base ") + BaseQuantName(*cfg_.base_quant) +
           (cfg_.base_double_quant ? " dq" : "");
    return f;
  }

  // Loads the adapter (or the weights), the AdamW moments and the data position of `dir`;
  // removes this run folder's checkpoints of later steps (the run replaces them). Returns the
  // step to continue from.
  int64_t ResumeFrom(const std::string& dir) {
    const TrainerState st = LoadCheckpoint(dir, policy_->trainable());
    if (st.fingerprint != Fingerprint())
      Fail(dir, ": the checkpoint was written by a run with other settings (", st.fingerprint,
           "; this run: ", Fingerprint(), "); resume with the recipe it was trained with");
    if (st.seed != cfg_.seed)
      Fail(dir, ": the checkpoint used seed ", st.seed, " but the recipe says ", cfg_.seed);
    if (st.world_size != world_)
      Fail(dir, ": the checkpoint was trained by ", st.world_size, " MPI rank(s) and this run has ",
           world_, "; the global batch would change: resume with the same number of ranks");
    if (st.step >= total_)
      Fail(dir, ": the checkpoint is at step ", st.step, " and the run has ", total_,
           " steps; nothing is left to train");
    epoch_ = st.data.epoch;
    if (epoch_ > 0) {  // the shuffled order of the epoch in progress
      order_ = EpochOrder(epoch_ - 1, train_rows_);
      cursor_ = static_cast<size_t>(st.data.index);
    }
    const std::string root = (fs::path(cfg_.output_dir) / "checkpoints").string();
    for (const std::string& later : root_ ? ListCheckpoints(root) : std::vector<std::string>{}) {
      if (fs::path(later).filename().string() <= CheckpointName(st.step)) continue;
      fs::remove(fs::path(later) / "DONE");
      fs::remove_all(later);
      Say("removed %s: a later step of the run this resume replaces", later.c_str());
    }
    Say("resumed from %s at step %lld", dir.c_str(), static_cast<long long>(st.step));
    return st.step;
  }

  // The shuffled order of epoch `e` over n rows: a function of the seed and e only.
  std::vector<size_t> EpochOrder(int64_t e, size_t n) const {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    Rng rng(cfg_.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(e));
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.NextU64() % i]);
    return order;
  }

  // The next micro-batch: consecutive indices of the epoch's shuffled order (the last one of an
  // epoch may be smaller), a new order each epoch.
  std::vector<size_t> NextBatch(size_t n) {
    if (cursor_ >= order_.size()) {
      order_ = EpochOrder(epoch_++, n);
      cursor_ = 0;
    }
    const size_t k = std::min(order_.size() - cursor_, static_cast<size_t>(cfg_.batch_size));
    std::vector<size_t> idx(order_.begin() + static_cast<std::ptrdiff_t>(cursor_),
                            order_.begin() + static_cast<std::ptrdiff_t>(cursor_ + k));
    cursor_ += k;
    return idx;
  }

  TokenBatch PairBatch(const std::vector<PreferenceExample>& all, const std::vector<size_t>& idx) {
    std::vector<PreferenceExample> pairs;
    for (size_t i : idx) pairs.push_back(all[i]);
    return MakePreferenceBatch(pairs, pad_);
  }

  // The reference's 2N log-probs: the frozen copy, or the policy with its adapter switched off.
  std::vector<double> RefLogProbs(const TokenBatch& b) {
    const bool avg = cfg_.loss.average_log_probs();
    if (ref_) return PreferenceLogProbs(*ref_, b.inputs.data(), b.targets.data(), b.B, b.T, avg);
    policy_->set_lora_enabled(false);  // (dropout applies to the adapter only)
    std::vector<double> r =
        PreferenceLogProbs(*policy_, b.inputs.data(), b.targets.data(), b.B, b.T, avg);
    policy_->set_lora_enabled(true);
    return r;
  }

  void Evaluate(int64_t step) {
    const bool dpo = cfg_.task == PosttrainTask::kDpo;
    const size_t n = dpo ? eval_pref_.size() : eval_sft_.size();
    if (n == 0) return;
    const auto B = static_cast<size_t>(cfg_.eval_batch_size);
    nlohmann::json j;
    j["step"] = step;
    if (dpo) {
      std::vector<double> pc, pr, rc, rr;
      for (size_t i = 0; i < n; i += B) {
        std::vector<size_t> idx(std::min(n - i, B));
        std::iota(idx.begin(), idx.end(), i);
        const TokenBatch b = PairBatch(eval_pref_, idx);
        const std::vector<double> r = RefLogProbs(b);
        const std::vector<double> p = PreferenceLogProbs(
            *policy_, b.inputs.data(), b.targets.data(), b.B, b.T, cfg_.loss.average_log_probs());
        const size_t k = idx.size();
        pc.insert(pc.end(), p.begin(), p.begin() + static_cast<std::ptrdiff_t>(k));
        pr.insert(pr.end(), p.begin() + static_cast<std::ptrdiff_t>(k), p.end());
        rc.insert(rc.end(), r.begin(), r.begin() + static_cast<std::ptrdiff_t>(k));
        rr.insert(rr.end(), r.begin() + static_cast<std::ptrdiff_t>(k), r.end());
      }
      const PreferenceLoss L = ComputePreferenceLoss(pc, pr, rc, rr, cfg_.loss);
      j["val_loss"] = L.loss;
      PutMetrics(j, L.metrics, "val_", false);
      res_.eval_loss = L.loss;
      res_.eval_metrics = L.metrics;
      Say("eval at step %lld: loss %.4f rewards/accuracies %.3f margins %.4f",
          static_cast<long long>(step), L.loss, L.metrics.rewards_accuracies,
          L.metrics.rewards_margins);
    } else {
      double sum = 0;
      int64_t count = 0;
      for (size_t i = 0; i < n; i += B) {
        std::vector<SftExample> rows(
            eval_sft_.begin() + static_cast<std::ptrdiff_t>(i),
            eval_sft_.begin() + static_cast<std::ptrdiff_t>(std::min(n, i + B)));
        const TokenBatch b = MakeSftBatch(rows, pad_);
        const LossValue L = policy_->Forward(b.inputs.data(), b.targets.data(), b.B, b.T, {});
        sum += L.ce * static_cast<double>(L.n_valid);
        count += L.n_valid;
      }
      res_.eval_loss = count > 0 ? sum / static_cast<double>(count) : 0;
      j["val_loss"] = res_.eval_loss;
      j["val_tokens"] = count;
      Say("eval at step %lld: loss %.4f", static_cast<long long>(step), res_.eval_loss);
    }
    res_.has_eval = true;
    log_->Line(j);
  }

  void Save(int64_t step, double loss) {
    TrainerState st;
    st.step = step;
    st.seed = cfg_.seed;
    st.loss = loss;
    st.fingerprint = Fingerprint();
    st.world_size = world_;
    st.data.epoch = epoch_;  // orders drawn so far; the one in progress is epoch_ − 1
    st.data.index = static_cast<int64_t>(cursor_);
    const fs::path tj = fs::path(cfg_.model_name_or_path) / "tokenizer.json";
    const std::string root = (fs::path(cfg_.output_dir) / "checkpoints").string();
    res_.checkpoint =
        SaveCheckpoint(root, policy_->trainable(), st,
                       cfg_.tokenizer.empty() && fs::exists(tj) ? tj.string() : cfg_.tokenizer);
    PruneCheckpoints(root, cfg_.save_total_limit);
  }

  const PosttrainConfig& cfg_;
  const PosttrainOptions& opt_;
  int pad_ = 2;
  std::vector<SftExample> sft_, eval_sft_;
  std::vector<PreferenceExample> pref_, eval_pref_;
  std::unique_ptr<TrainModel> policy_, ref_;
  std::unique_ptr<QuantizedBase> qbase_;  // QLoRA; declared after policy_, so destroyed first
  std::vector<double> ref_c_, ref_r_;
  int64_t total_ = 0, warmup_ = 0;
  std::vector<size_t> order_;
  size_t cursor_ = 0;
  int64_t epoch_ = 0;
  size_t train_rows_ = 0;  // training rows (conversations or pairs)
  int world_ = Distributed::size(), rank_ = Distributed::rank();  // MPI ranks (1 and 0 alone)
  std::unique_ptr<DataParallel> reduce_;  // the gradient reduction across ranks (world_ > 1)
  bool root_ = rank_ == 0;                // only rank 0 logs, evaluates and saves
  std::string resume_dir_;                // the checkpoint this run continues ("" for a fresh run)
  std::unique_ptr<Log> log_;
  PosttrainResult res_;
};

}  // namespace

PosttrainResult RunPosttrain(const PosttrainConfig& cfg, const PosttrainOptions& opt) {
  return Runner(cfg, opt).Run();
}

}  // namespace elm
