#include "train/train_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
// GCC 12 reports a false -Wmaybe-uninitialized inside libstdc++'s std::regex (its std::function
// members) when built with -fsanitize=address at -O1 (the asan preset); not in elm's code.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop
#else
#include <regex>
#endif

#include "base/error.h"
#include "base/mmap_file.h"
#include "base/spelling.h"

namespace elm {
namespace fs = std::filesystem;

namespace {

// Leaves of the YAML tree by dotted path. Sequences are leaves (lists of numbers, data info).
using Flat = std::map<std::string, YAML::Node>;

// A map key as a string. YAML allows a list or a map as a key (`? [a, b]: 1`); no training
// config has one, and yaml-cpp's own error would name neither the file nor the key.
std::string KeyOf(const YAML::Node& key, const std::string& origin, const std::string& parent) {
  if (!key.IsScalar()) {
    const YAML::Mark m = key.Mark();
    Fail(origin, ": line ", m.line + 1, ", column ", m.column + 1, ": a key under '",
         parent.empty() ? "(top level)" : parent, "' is ", key.IsSequence() ? "a list" : "a map",
         " (a complex YAML key); keys must be plain names");
  }
  return key.Scalar();
}

// Configs nest a few levels; a YAML alias inside its own anchor (`a: &b {c: *b}`) nests forever.
constexpr int kMaxDepth = 32;

void Flatten(const YAML::Node& node, const std::string& prefix, Flat& out,
             const std::string& origin, int depth = 0) {
  if (depth > kMaxDepth)
    Fail(origin, ": keys nest deeper than ", kMaxDepth, " levels at '", prefix.substr(0, 200),
         "...' (a YAML alias that refers to itself?)");
  if (node.IsMap() && !prefix.empty() && node.size() == 0) {
    out.erase(prefix);
    out.emplace(prefix, node);
    return;
  }
  if (!node.IsMap()) {
    // erase + emplace rather than assignment: YAML::Node::operator= writes through to the
    // aliased node, which would change every key sharing a YAML anchor.
    out.erase(prefix);
    out.emplace(prefix, node);
    return;
  }
  for (const auto& kv : node) {
    const std::string key = KeyOf(kv.first, origin, prefix);
    Flatten(kv.second, prefix.empty() ? key : prefix + "." + key, out, origin, depth + 1);
  }
}

// Typed access to the flat map. Every getter removes the key it reads, so whatever is left at the
// end is unknown.
class Reader {
 public:
  Reader(Flat flat, std::string origin) : flat_(std::move(flat)), origin_(std::move(origin)) {}

  const YAML::Node* Take(const std::string& key) {
    asked_.push_back(key);
    auto it = flat_.find(key);
    if (it == flat_.end()) return nullptr;
    taken_.emplace(key, it->second);
    flat_.erase(it);
    const YAML::Node* n = &taken_.at(key);
    return n->IsNull() ? nullptr : n;
  }
  [[noreturn]] void Bad(const std::string& key, const YAML::Node& n, const char* want) {
    std::string got = n.IsScalar() ? "'" + n.Scalar() + "'" : n.IsSequence() ? "a list" : "a map";
    Fail(origin_, ": key '", key, "' must be ", want, ", got ", got);
  }
  template <typename T>
  T Scalar(const std::string& key, const YAML::Node& n, const char* want) {
    if (!n.IsScalar()) Bad(key, n, want);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      Bad(key, n, want);
    }
  }
  void Int(const std::string& key, int& v) {
    if (auto* n = Take(key)) v = Scalar<int>(key, *n, "an integer");
  }
  void Int64(const std::string& key, int64_t& v) {
    if (auto* n = Take(key)) v = Scalar<long long>(key, *n, "an integer");
  }
  void Double(const std::string& key, double& v) {
    if (auto* n = Take(key)) v = Scalar<double>(key, *n, "a number");
  }
  void Bool(const std::string& key, bool& v) {
    if (auto* n = Take(key)) v = Scalar<bool>(key, *n, "true or false");
  }
  void String(const std::string& key, std::string& v) {
    if (auto* n = Take(key)) v = Scalar<std::string>(key, *n, "a string");
  }
  void Numbers(const std::string& key, std::vector<double>& v) {
    auto* n = Take(key);
    if (n == nullptr) return;
    v.clear();
    if (n->IsScalar()) {
      v.push_back(Scalar<double>(key, *n, "a number or a list of numbers"));
      return;
    }
    if (!n->IsSequence() || n->size() == 0) Bad(key, *n, "a number or a list of numbers");
    for (const auto& e : *n) v.push_back(Scalar<double>(key, e, "a list of numbers"));
  }
  std::vector<DataSourceInfo> Sources(const std::string& key) {
    std::vector<DataSourceInfo> out;
    auto* n = Take(key);
    if (n == nullptr) return out;
    if (!n->IsSequence()) Bad(key, *n, "a list of {file_name, text_key, file_id_range}");
    for (size_t i = 0; i < n->size(); ++i) {
      const YAML::Node e = (*n)[i];
      const std::string at = key + "[" + std::to_string(i) + "]";
      if (!e.IsMap()) Bad(at, e, "a map with file_name");
      DataSourceInfo d;
      for (const auto& kv : e) {
        const std::string k = KeyOf(kv.first, origin_, at);
        const std::string sub = at + "." + k;
        if (k == "file_name") {
          d.file_name = Scalar<std::string>(sub, kv.second, "a string");
        } else if (k == "text_key") {
          d.text_key = Scalar<std::string>(sub, kv.second, "a string");
        } else if (k == "file_id_range") {
          if (!kv.second.IsSequence() || kv.second.size() != 2)
            Bad(sub, kv.second, "a list [begin, end]");
          d.file_id_begin = Scalar<long long>(sub, kv.second[0], "an integer");
          d.file_id_end = Scalar<long long>(sub, kv.second[1], "an integer");
        } else {
          unknown_.push_back(sub);
        }
      }
      if (d.file_name.empty()) Fail(origin_, ": ", at, " has no file_name");
      out.push_back(std::move(d));
    }
    return out;
  }
  // Keys matching `prefix` (a full key, or a "section." prefix) are accepted without effect.
  void Ignore(const std::string& prefix) {
    for (auto it = flat_.begin(); it != flat_.end();) {
      const bool match =
          prefix.back() == '.' ? it->first.rfind(prefix, 0) == 0 : it->first == prefix;
      if (match) {
        ignored_.push_back(it->first);
        it = flat_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::vector<std::string> Remaining() {
    std::vector<std::string> out = unknown_;
    for (const auto& [k, v] : flat_) out.push_back(k);
    return out;
  }
  const std::vector<std::string>& ignored() const { return ignored_; }
  const std::string& origin() const { return origin_; }
  // Every key elm looked for (read or not), for "did you mean".
  const std::vector<std::string>& asked() const { return asked_; }

 private:
  Flat flat_;
  std::map<std::string, YAML::Node> taken_;
  std::string origin_;
  std::vector<std::string> unknown_, ignored_, asked_;
};

// An unknown key of elm's own block is a typo of one of elm's keys (it is not a CoreNet key elm
// merely does not use): an error, naming the closest key elm reads. Other unknown keys are kept
// for the warning, with the closest known key where one is near (docs/training.md).
std::string NearestKey(const std::string& key, const std::vector<std::string>& known) {
  const size_t dot = key.rfind('.');
  const std::string parent = dot == std::string::npos ? "" : key.substr(0, dot + 1);
  std::vector<std::string> leaves;  // the known keys of the same section, by their last name
  for (const std::string& k : known)
    if (k.size() > parent.size() && k.rfind(parent, 0) == 0 &&
        k.find('.', parent.size()) == std::string::npos &&
        std::find(leaves.begin(), leaves.end(), k.substr(parent.size())) == leaves.end())
      leaves.push_back(k.substr(parent.size()));
  const std::string leaf = ClosestName(key.substr(parent.size()), leaves);
  return leaf.empty() ? "" : parent + leaf;
}

void CheckUnknownKeys(const Reader& r, TrainConfig& c, const std::vector<std::string>& unknown) {
  for (const std::string& k : unknown) {
    const std::string near = NearestKey(k, r.asked());
    if (k.rfind("elm.", 0) == 0)
      Fail(c.origin, ": unknown key '", k, "' in elm's own block",
           near.empty() ? std::string() : "; did you mean '" + near + "'?",
           " (docs/training.md lists elm's keys)");
    c.unknown_keys.push_back(k);
    c.unknown_key_hints.push_back(near);
  }
}

void ApplyOverride(Flat& flat, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    Fail("--set '", text, "': expected key=value with a dotted key, e.g. optim.weight_decay=0.05");
  const std::string key = text.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    Fail("--set '", text, "': value is not valid YAML: ", e.what());
  }
  // Replacing a section replaces all of its keys.
  for (auto it = flat.lower_bound(key + ".");
       it != flat.end() && it->first.rfind(key + ".", 0) == 0;)
    it = flat.erase(it);
  Flatten(value, key, flat, "--set '" + text + "'");
}

const char* const kIgnored[] = {
    // Distribution and data-loader plumbing (elm's data parallelism is MPI: docs/training.md).
    "ddp.",
    "fsdp.",
    "stats.",
    "train_eval_pipeline.",
    "common.set_grad_to_none",
    "common.save_all_checkpoints",
    "common.channels_last",
    "common.tensorboard_logging",
    "common.file_logging",
    "common.config_file",
    "common.save_interval_freq_type",
    "dataset.workers",
    "dataset.persistent_workers",
    "dataset.pin_memory",
    "dataset.prefetch_factor",
    "dataset.root_train",
    "dataset.root_val",
    "dataset.disable_val",
    "dataset.val_batch_size0",
    "dataset.eval_batch_size0",
    "dataset.sampler.",
    "scheduler.is_iteration_based",
    "scheduler.max_epochs",
    "dataset.language_modeling.general_lm.reader_chunk_size",
    "optim.adamw.amsgrad",
    "common.eval_stage",
    "common.inference_modality",
    "common.debug_mode",
    // CoreNet's checkpoint plumbing for PEFT: elm loads elm.init_from as the frozen base itself,
    // and always freezes the base weights and the norms under LoRA.
    "model.rename_scopes_map",
    "model.ignore_missing_scopes",
    "model.freeze_modules",
};

void Expect(Reader& r, const std::string& key, const std::vector<std::string>& allowed) {
  std::string v;
  r.String(key, v);
  if (v.empty() || std::find(allowed.begin(), allowed.end(), v) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  Fail(r.origin(), ": key '", key, "' is '", v, "'; elm implements: ", list);
}

void ReadModel(Reader& r, TrainConfig& c) {
  const std::string p = "model.language_modeling.general_gpt.";
  Expect(r, "model.language_modeling.name", {"general_gpt"});
  r.String(p + "model_name", c.model_name);
  ModelConfig m;
  if (!c.model_name.empty()) {
    try {
      m = PresetConfig(c.model_name);
    } catch (const Error& e) {
      Fail(c.origin, ": key '", p, "model_name': ", e.what());
    }
  } else {
    m.gqa_groups = 4;
    m.ffn_dim_divisor = 256;
    m.qkv_multipliers = {0.5, 1.0};
    m.ffn_multipliers = {0.5, 4.0};
    m.vocab_size = 32000;
    m.name = "openelm";
  }
  const int layers0 = m.n_layers;
  r.Int(p + "num_transformer_layers", m.n_layers);
  r.Int(p + "model_dim", m.dim);
  r.Int(p + "head_dim", m.head_dim);
  r.Int(p + "num_gqa_groups", m.gqa_groups);
  r.Numbers(p + "qkv_multipliers", m.qkv_multipliers);
  r.Numbers(p + "ffn_multipliers", m.ffn_multipliers);
  r.Int(p + "ffn_dim_divisor", m.ffn_dim_divisor);
  r.Bool(p + "ffn_with_glu", m.ffn_with_glu);
  r.Bool(p + "normalize_qk_projections", m.qk_norm);
  r.Bool(p + "share_input_output_layers", m.tied_embeddings);
  r.Double(p + "rope_freq_constant", m.rope_base);
  r.Int(p + "rope_max_length", m.rope_max_length);
  r.Int(p + "vocab_size", m.vocab_size);
  r.Int(p + "max_context_length", m.max_context);
  r.Int(p + "padding_index", c.padding_index);
  // CoreNet spells it at the model's top level and in the GPT block; either switches it on.
  bool ckpt_top = false, ckpt_gpt = false;
  r.Bool("model.activation_checkpointing", ckpt_top);
  r.Bool(p + "activation_checkpointing", ckpt_gpt);
  c.activation_checkpointing = ckpt_top || ckpt_gpt;
  if (c.model_name.empty() && (m.n_layers <= 0 || m.dim <= 0 || m.head_dim <= 0))
    Fail(c.origin, ": give ", p, "model_name (a preset: OpenELM-270M, ...) or all of ",
         "num_transformer_layers, model_dim and head_dim");
  if (m.n_layers != layers0 && m.ffn_multipliers.size() > 2 && !c.model_name.empty())
    Fail(c.origin, ": num_transformer_layers changed; give ffn_multipliers for the new depth");
  if (m.vocab_size <= 0) Fail(c.origin, ": key '", p, "vocab_size' must be positive");
  if (m.max_context <= 0) Fail(c.origin, ": key '", p, "max_context_length' must be positive");
  try {
    DeriveLayers(m);
  } catch (const Error& e) {
    Fail(c.origin, ": model shape: ", e.what());
  }
  for (int i = 0; i < m.n_layers; ++i)
    if (m.layers[i].n_heads <= 0 || m.layers[i].n_kv_heads <= 0)
      Fail(c.origin, ": model shape: layer ", i, " derives zero heads");
  if (!c.model_name.empty()) m.name = c.model_name;
  c.model = m;
}

// One entry of model.lora.config as written.
struct LoraEntry {
  std::string regex, module_type;
  LoraSettings p;
  bool init_weights = true, dora = false;
};

// The params map of an entry (PEFT's names).
void ReadLoraParams(Reader& r, TrainConfig& c, const std::string& sub, const YAML::Node& params,
                    LoraEntry& e) {
  if (!params.IsMap()) r.Bad(sub, params, "a map");
  LoraSettings& p = e.p;
  for (const auto& pv : params) {
    const std::string pk = KeyOf(pv.first, c.origin, sub), psub = sub + "." + pk;
    const YAML::Node& v = pv.second;
    auto flag = [&](bool& out) { out = r.Scalar<bool>(psub, v, "true or false"); };
    auto number = [&](double& out) { out = r.Scalar<double>(psub, v, "a number"); };
    if (pk == "r") {
      p.rank = r.Scalar<int>(psub, v, "an integer");
    } else if (pk == "lora_alpha" || pk == "lora_dropout") {
      number(pk == "lora_alpha" ? p.alpha : p.dropout);
    } else if (pk == "use_rslora" || pk == "use_dora" || pk == "init_lora_weights") {
      flag(pk == "use_rslora" ? p.rslora : pk == "use_dora" ? e.dora : e.init_weights);
    } else if (pk == "adapter_name") {
      (void)r.Scalar<std::string>(psub, v, "a string");
    } else {
      c.unknown_keys.push_back(psub);
      c.unknown_key_hints.emplace_back();
    }
  }
}

// Reads and checks entry `at` of model.lora.config.
LoraEntry ReadLoraEntry(Reader& r, TrainConfig& c, const std::string& at, const YAML::Node& node) {
  if (!node.IsMap()) r.Bad(at, node, "a map with regex, module_type and params");
  LoraEntry e;
  e.p.alpha = 8;  // PEFT's defaults: r 8, lora_alpha 8, dropout 0
  for (const auto& kv : node) {
    const std::string k = KeyOf(kv.first, c.origin, at), sub = at + "." + k;
    if (k == "regex" || k == "module_type")
      (k == "regex" ? e.regex : e.module_type) = r.Scalar<std::string>(sub, kv.second, "a string");
    else if (k == "params")
      ReadLoraParams(r, c, sub, kv.second, e);
    else
      c.unknown_keys.push_back(sub), c.unknown_key_hints.emplace_back();
  }
  if (e.regex.empty()) Fail(c.origin, ": ", at, " has no regex");
  if (e.dora && e.module_type == "embedding")
    Fail(c.origin, ": ", at, ".params.use_dora: DoRA is not supported for Embedding layers (as in ",
         "CoreNet and PEFT 0.9); set use_dora on the linear entries only");
  if (!e.init_weights)
    Fail(c.origin, ": ", at, ".params.init_lora_weights: elm implements true (PEFT's init)");
  if (e.p.rank <= 0) Fail(c.origin, ": key '", at, ".params.r' must be positive, got ", e.p.rank);
  if (!(e.p.dropout >= 0 && e.p.dropout < 1))
    Fail(c.origin, ": key '", at, ".params.lora_dropout' must be in [0, 1)");
  if (e.module_type != "linear" && e.module_type != "embedding")
    Fail(c.origin, ": key '", at, ".module_type' must be linear or embedding, got '", e.module_type,
         "'");
  return e;
}

// Marks in c.lora the targets entry `at`'s regex selects: a matrix in every layer or in none.
void MarkLoraTargets(TrainConfig& c, const std::string& at, const LoraEntry& e) {
  std::regex re;
  try {
    re = std::regex(e.regex, std::regex::ECMAScript);
  } catch (const std::regex_error& err) {
    Fail(c.origin, ": key '", at, ".regex': not a valid regular expression: ", err.what());
  }
  bool matched = false;
  for (int t = 0; t < kLoraTargetCount; ++t) {
    const auto target = static_cast<LoraTarget>(t);
    const bool emb = target == LoraTarget::kEmbeddings;
    int hits = 0;
    const int n = emb ? 1 : c.model.n_layers;
    for (int l = 0; l < n; ++l) {
      const std::string sub =
          target == LoraTarget::kQkv || target == LoraTarget::kOut ? ".attn." : ".ffn.";
      const std::string name = emb ? std::string("token_embeddings")
                                   : "layers." + std::to_string(l) + sub + LoraTargetName(target);
      hits += std::regex_search(name, re) ? 1 : 0;
    }
    if (hits == 0) continue;
    if (hits != n)
      Fail(c.origin, ": key '", at, ".regex' ('", e.regex, "') selects ", LoraTargetName(target),
           " in ", hits, " of ", n, " layers; elm adapts a matrix in every layer or in none");
    if ((e.module_type == "embedding") != emb)
      Fail(c.origin, ": key '", at, ".module_type' is ", e.module_type, " but the regex selects ",
           LoraTargetName(target));
    c.lora.targets[static_cast<size_t>(t)] = true;
    matched = true;
  }
  if (!matched)
    Fail(c.origin, ": key '", at, ".regex' ('", e.regex, "') selects none of elm's LoRA targets ",
         "(token_embeddings, layers.N.attn.qkv_proj, layers.N.attn.out_proj, ",
         "layers.N.ffn.proj_1, layers.N.ffn.proj_2)");
}

// model.lora (CoreNet's PEFT configs): use_lora, and a list of {regex, module_type, params}
// entries. Each regex selects modules by CoreNet's name ("token_embeddings",
// "layers.3.attn.qkv_proj", "layers.3.ffn.proj_1", ...), searched as Python's re.search does.
void ReadLora(Reader& r, TrainConfig& c) {
  bool use = false;
  r.Bool("model.lora.use_lora", use);
  std::string base_weights;
  r.String("elm.lora_base_weights", base_weights);
  if (!base_weights.empty()) {
    c.lora_base_weights = ParseDType(base_weights);
    if (!c.lora_base_weights || *c.lora_base_weights == DType::kF32)
      Fail(c.origin, ": key 'elm.lora_base_weights' must be q8_0, q4_0, bf16 or f16, got '",
           base_weights, "'");
    if (!use)
      Fail(c.origin, ": key 'elm.lora_base_weights' needs model.lora.use_lora (it rounds the ",
           "frozen base of a LoRA run)");
  }
  const std::string key = "model.lora.config";
  const YAML::Node* list = r.Take(key);
  if (!use) {
    if (list != nullptr) c.ignored_keys.push_back(key + " (model.lora.use_lora is false)");
    return;
  }
  if (list == nullptr || !list->IsSequence() || list->size() == 0)
    Fail(c.origin, ": model.lora.use_lora is true but '", key,
         "' is not a list of {regex, module_type, params} entries");
  LoraSettings& s = c.lora;
  bool linear_seen = false;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string at = key + "[" + std::to_string(i) + "]";
    const LoraEntry e = ReadLoraEntry(r, c, at, (*list)[i]);
    const LoraSettings& p = e.p;
    if (e.module_type == "linear") {
      if (!linear_seen) s.dora = e.dora;
      if (e.dora != s.dora)
        Fail(c.origin, ": ", at, ".params.use_dora: every linear entry must agree on use_dora");
      linear_seen = true;
    }
    if (i == 0) {
      s.rank = p.rank, s.alpha = p.alpha, s.dropout = p.dropout, s.rslora = p.rslora;
    } else if (p.rank != s.rank || p.alpha != s.alpha || p.dropout != s.dropout ||
               p.rslora != s.rslora) {
      Fail(c.origin, ": ", at, ": elm uses one r, lora_alpha, lora_dropout and use_rslora for ",
           "every LoRA target; this entry differs from ", key, "[0]");
    }
    MarkLoraTargets(c, at, e);
  }
}

void ReadData(Reader& r, TrainConfig& c) {
  Expect(r, "dataset.category", {"language_modeling"});
  Expect(r, "dataset.name", {"general_lm"});
  const std::string lm = "dataset.language_modeling.";
  r.Int("dataset.train_batch_size0", c.batch_size);
  r.Int(lm + "sequence_length", c.seq_len);
  r.Int(lm + "min_tokens_per_text", c.min_tokens_per_text);
  r.Int(lm + "min_characters_per_text", c.min_characters_per_text);
  r.Bool(lm + "shuffle_data", c.shuffle);
  c.train_data = r.Sources(lm + "general_lm.train_data_info");
  c.val_data = r.Sources(lm + "general_lm.val_data_info");
  r.Int(lm + "general_lm.document_split_size", c.document_split_size);

  Expect(r, "text_tokenizer.name", {"sentence_piece"});
  const std::string sp = "text_tokenizer.sentence_piece.";
  r.Bool(sp + "enable_nfc_normalization", c.nfc);
  r.Bool(sp + "append_sot_token", c.append_sot);
  r.Bool(sp + "append_eot_token", c.append_eot);
  std::string model_path;
  r.String(sp + "model_path", model_path);
  // elm reads HF tokenizer.json, not SentencePiece .model files; a .json path is used as is, and
  // the Llama-2 tokenizer.model of the released configs maps to elm's built-in Llama-2 tokenizer.
  if (model_path.size() > 5 && model_path.substr(model_path.size() - 5) == ".json")
    c.tokenizer = model_path;
  r.String("elm.tokenizer", c.tokenizer);

  std::string packing = "auto";
  r.String("elm.packing", packing);
  if (packing == "auto")
    c.packing = Packing::kAuto;
  else if (packing == "packed")
    c.packing = Packing::kPacked;
  else if (packing == "documents")
    c.packing = Packing::kDocuments;
  else
    Fail(c.origin, ": key 'elm.packing' must be auto, packed or documents, got '", packing, "'");
  r.Double("elm.val_fraction", c.val_fraction);
  r.Int("elm.val_batches", c.val_batches);
  r.String("elm.cache_dir", c.cache_dir);
}

void ReadOptim(Reader& r, TrainConfig& c) {
  Expect(r, "loss.category", {"language_modeling"});
  Expect(r, "loss.language_modeling.name", {"cross_entropy"});
  const std::string ce = "loss.language_modeling.cross_entropy.";
  r.Int(ce + "ignore_index", c.ignore_index);
  r.Bool(ce + "use_z_loss", c.use_z_loss);
  r.Double(ce + "z_loss_eps", c.z_loss_eps);
  double smoothing = 0;
  r.Double(ce + "label_smoothing", smoothing);
  if (smoothing != 0) Fail(c.origin, ": key '", ce, "label_smoothing': elm implements 0 only");

  Expect(r, "optim.name", {"adamw"});
  r.Double("optim.weight_decay", c.adamw.weight_decay);
  bool no_decay_1d = true;
  r.Bool("optim.no_decay_bn_filter_bias", no_decay_1d);
  if (!no_decay_1d)
    Fail(c.origin, ": key 'optim.no_decay_bn_filter_bias': elm always exempts 1-D parameters ",
         "(norm weights) from weight decay, as every OpenELM config does");
  r.Double("optim.adamw.beta1", c.adamw.beta1);
  r.Double("optim.adamw.beta2", c.adamw.beta2);
  r.Double("optim.adamw.eps", c.adamw.eps);

  LrSchedule& s = c.schedule;
  r.String("scheduler.name", s.name);
  if (s.name != "cosine" && s.name != "fixed")
    Fail(c.origin, ": key 'scheduler.name' is '", s.name, "'; elm implements cosine and fixed");
  r.Int64("scheduler.max_iterations", s.max_iterations);
  r.Int64("scheduler.warmup_iterations", s.warmup_iterations);
  r.Double("scheduler.warmup_init_lr", s.warmup_init_lr);
  r.Double("scheduler.cosine.max_lr", s.max_lr);
  r.Double("scheduler.cosine.min_lr", s.min_lr);
  r.Double("scheduler.fixed.lr", s.max_lr);
  r.Double("common.grad_clip", c.grad_clip);
  c.max_steps = s.max_iterations;
  r.Int64("elm.max_steps", c.max_steps);
}

void ReadRun(Reader& r, TrainConfig& c) {
  r.String("common.results_loc", c.results_loc);
  r.String("common.run_label", c.run_label);
  long long seed = static_cast<long long>(c.seed);
  if (auto* n = r.Take("common.seed")) seed = r.Scalar<long long>("common.seed", *n, "an integer");
  c.seed = static_cast<uint64_t>(seed);
  r.Int("common.accum_freq", c.accum_freq);
  r.Int("common.log_freq", c.log_freq);
  r.Int("common.save_interval_freq", c.save_interval);
  r.Int("common.eval_every_k_iterations", c.eval_every);
  r.Bool("common.auto_resume", c.auto_resume);
  r.Int("elm.keep_last_checkpoints", c.keep_last);
  r.String("elm.init_from", c.init_from);
  r.Double("elm.peak_gflops", c.peak_gflops);
  // CoreNet's mixed precision: matrix products in bf16 with f32 accumulation and f32 master
  // weights, activations and optimizer state (docs/training.md). float16 is not implemented.
  r.Bool("common.mixed_precision", c.mixed_precision);
  std::string dtype = "bfloat16";
  r.String("common.mixed_precision_dtype", dtype);
  if (c.mixed_precision && dtype != "bfloat16" && dtype != "bf16")
    Fail(c.origin, ": key 'common.mixed_precision_dtype' is '", dtype,
         "'; elm implements bfloat16 mixed precision");
}

// Sharded data parallelism (docs/training.md, "Sharded data parallelism"): CoreNet's fsdp keys
// and elm's own zero_stage, which must agree when both are given.
void ReadSharding(Reader& r, TrainConfig& c) {
  std::string strategy;
  r.String("fsdp.sharding_strategy", strategy);
  int stage = -1;
  r.Int("elm.zero_stage", stage);
  if (stage < -1 || stage > 3)
    Fail(c.origin, ": key 'elm.zero_stage' must be 0, 1, 2 or 3, got ", stage);
  std::optional<Sharding> from_fsdp;
  if (strategy == "no_shard" || strategy == "NO_SHARD") from_fsdp = Sharding::kNoShard;
  if (strategy == "shard_grad_op" || strategy == "SHARD_GRAD_OP") from_fsdp = Sharding::kGradients;
  if (strategy == "full_shard" || strategy == "FULL_SHARD") from_fsdp = Sharding::kFull;
  if (!strategy.empty() && !from_fsdp)
    Fail(c.origin, ": key 'fsdp.sharding_strategy' is '", strategy,
         "'; elm implements no_shard, shard_grad_op and full_shard (hybrid sharding is not)");
  if (stage >= 0) {
    const auto s = static_cast<Sharding>(stage);
    if (from_fsdp && *from_fsdp != s)
      Fail(c.origin, ": key 'elm.zero_stage' (", stage, ") contradicts 'fsdp.sharding_strategy' (",
           strategy, ")");
    c.sharding = s;
  } else if (from_fsdp) {
    c.sharding = *from_fsdp;
  }
  std::string reduce = "float32";
  r.String("fsdp.gradient_reduction_datatype", reduce);
  if (reduce == "bfloat16" || reduce == "bf16") {
    c.reduce_bf16 = true;
  } else if (reduce != "float32" && reduce != "float" && reduce != "fp32") {
    Fail(c.origin, ": key 'fsdp.gradient_reduction_datatype' is '", reduce,
         "'; elm reduces gradients in float32 or bfloat16");
  }
  // FSDP's parameter_datatype is the dtype the layers compute with, over f32 master weights:
  // elm's nearest is its bf16 mixed precision (bf16 matrix products, f32 weights and state).
  std::string param = "float32";
  r.String("fsdp.parameter_datatype", param);
  if (param == "bfloat16" || param == "bf16") {
    c.mixed_precision = true;
  } else if (param != "float32" && param != "float" && param != "fp32") {
    Fail(c.origin, ": key 'fsdp.parameter_datatype' is '", param,
         "'; elm computes in float32 or bfloat16 (mixed precision)");
  }
  r.Bool("elm.overlap_reduction", c.overlap_reduction);
}

void Validate(TrainConfig& c, bool require_data) {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) Fail(c.origin, ": key '", key, "' must be positive, got ", v);
  };
  positive(c.seq_len, "dataset.language_modeling.sequence_length");
  positive(c.batch_size, "dataset.train_batch_size0");
  positive(c.accum_freq, "common.accum_freq");
  positive(c.schedule.max_iterations, "scheduler.max_iterations");
  positive(c.max_steps, "elm.max_steps");
  positive(c.log_freq, "common.log_freq");
  positive(c.save_interval, "common.save_interval_freq");
  positive(c.document_split_size, "dataset.language_modeling.general_lm.document_split_size");
  if (c.seq_len > c.model.max_context)
    Fail(c.origin, ": sequence_length ", c.seq_len, " exceeds the model's max_context_length ",
         c.model.max_context);
  if (!(c.val_fraction >= 0 && c.val_fraction < 1))
    Fail(c.origin, ": key 'elm.val_fraction' must be in [0, 1)");
  if (c.val_batches < 0) Fail(c.origin, ": key 'elm.val_batches' must be ≥ 0");
  if (c.keep_last < 0) Fail(c.origin, ": key 'elm.keep_last_checkpoints' must be ≥ 0");
  if (c.schedule.warmup_iterations < 0)
    Fail(c.origin, ": key 'scheduler.warmup_iterations' must be ≥ 0");
  if (!(c.adamw.beta1 >= 0 && c.adamw.beta1 < 1 && c.adamw.beta2 >= 0 && c.adamw.beta2 < 1))
    Fail(c.origin, ": optim.adamw.beta1/beta2 must be in [0, 1)");
  if (require_data && c.lora.enabled() && c.init_from.empty())
    Fail(c.origin, ": model.lora.use_lora fine-tunes an existing model: set elm.init_from to ",
         "its folder (the frozen base)");
  if (require_data && c.train_data.empty())
    Fail(c.origin, ": no training data: set dataset.language_modeling.general_lm.train_data_info ",
         "(e.g. --set 'dataset.language_modeling.general_lm.train_data_info=[{file_name: ",
         "data/corpus/tinyshakespeare.txt}]')");
  // CoreNet pads with padding_index and ignores it in the loss; with no explicit ignore_index the
  // pad id is the one to ignore.
  if (c.padding_index < 0) c.padding_index = c.ignore_index >= 0 ? c.ignore_index : -1;
}

}  // namespace

std::string ExpandEnv(const std::string& s, const std::string& key) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] != '$') {
      out += s[i++];
      continue;
    }
    size_t j = i + 1;
    std::string name;
    if (j < s.size() && s[j] == '{') {
      const size_t close = s.find('}', j);
      if (close == std::string::npos) Fail(key, ": unterminated ${ in '", s, "'");
      name = s.substr(j + 1, close - j - 1);
      j = close + 1;
    } else {
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_'))
        name += s[j++];
    }
    if (name.empty()) {
      out += s[i++];
      continue;
    }
    const char* v = std::getenv(name.c_str());
    if (v == nullptr)
      Fail(key, ": '", s, "' uses $", name, ", which is not set in the environment");
    out += v;
    i = j;
  }
  return out;
}

const char* ShardingName(Sharding s) {
  switch (s) {
    case Sharding::kNoShard:
      return "no_shard";
    case Sharding::kOptimizer:
      return "ZeRO-1 (optimizer state sharded)";
    case Sharding::kGradients:
      return "shard_grad_op (ZeRO-2)";
    case Sharding::kFull:
      return "full_shard (ZeRO-3)";
  }
  return "?";
}

std::string TrainConfig::run_dir() const {
  return (fs::path(results_loc) / run_label).string();
}

TrainConfig ParseTrainConfig(const std::string& yaml_text, const std::string& origin,
                             const std::vector<std::string>& overrides, bool require_data) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    Fail(origin, ": not valid YAML: ", e.what());
  }
  if (!root.IsNull() && !root.IsMap()) Fail(origin, ": the top level must be a map of sections");
  Flat flat;
  if (root.IsMap()) Flatten(root, "", flat, origin);
  for (const auto& o : overrides) ApplyOverride(flat, o);
  // Anchor holders (`_anchor_vocab_size: &_anchor_vocab_size 32128`) and the task label.
  for (auto it = flat.begin(); it != flat.end();)
    it = it->first.rfind("_", 0) == 0 ? flat.erase(it) : std::next(it);

  TrainConfig c;
  c.origin = origin;
  c.overrides = overrides;
  c.base_dir = fs::path(origin).parent_path().string();
  Reader r(std::move(flat), origin);
  r.String("taskname", c.taskname);
  ReadModel(r, c);
  ReadData(r, c);
  ReadOptim(r, c);
  ReadRun(r, c);
  ReadSharding(r, c);
  ReadLora(r, c);
  for (const char* k : kIgnored) r.Ignore(k);
  for (const auto& k : r.ignored()) c.ignored_keys.push_back(k);
  CheckUnknownKeys(r, c, r.Remaining());
  Validate(c, require_data);
  return c;
}

TrainConfig LoadTrainConfig(const std::string& path, const std::vector<std::string>& overrides,
                            bool require_data) {
  return ParseTrainConfig(ReadTextFile(path), path, overrides, require_data);
}

}  // namespace elm
