#include "test_util.h"

#include "base/mmap_file.h"
#include "model/session.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>

namespace elm::test {
namespace fs = std::filesystem;

std::string DataDir() {
  return ELM_TEST_DATA_DIR;
}

std::string SharedConformanceDir() {
  const fs::path p = fs::path(ELM_SOURCE_DIR).parent_path() / "shared" / "conformance";
  return fs::exists(p) ? p.string() : std::string();
}

std::vector<std::string> VectorFolders(const char* env, const std::string& in_repo,
                                       const std::string& shared_sub,
                                       const std::string& vectors_file, const std::string& tag) {
  std::vector<std::string> roots;
  if (!RootsFromEnv(env, &roots)) {
    roots.push_back(DataDir() + "/" + in_repo);
    const std::string conformance = SharedConformanceDir();
    const std::string shared =
        conformance.empty() || shared_sub.empty() ? conformance : conformance + "/" + shared_sub;
    if (shared.empty() || !fs::is_directory(shared))
      std::printf("[%s] ../shared/conformance/%s not found: its folders are skipped\n", tag.c_str(),
                  shared_sub.c_str());
    else
      roots.push_back(shared);
  }
  std::vector<std::string> out, seen_names;
  for (const auto& root : roots) {
    if (!fs::is_directory(root)) continue;
    std::vector<fs::path> dirs;
    if (fs::exists(fs::path(root) / vectors_file)) dirs.push_back(root);
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && fs::exists(e.path() / vectors_file)) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      const std::string name = d.filename().string();
      if (std::find(seen_names.begin(), seen_names.end(), name) != seen_names.end()) continue;
      seen_names.push_back(name);
      out.push_back(d.string());
    }
  }
  return out;
}

std::vector<std::string> ConformanceFolders(const std::string& tag) {
  return VectorFolders("ELM_CONFORMANCE_DIR", "conformance", "", "vectors.json", tag);
}

std::string FindInitialCheckpoint(const std::string& folder, const std::string& initial_weights,
                                  const std::string& config_name) {
  const std::string rel = initial_weights.substr(0, initial_weights.find(' '));
  const fs::path relp(rel);
  const fs::path dir = relp.has_extension() ? relp.parent_path() : relp;
  const std::string name = dir.filename().empty() ? config_name : dir.filename().string();
  std::vector<fs::path> candidates;
  if (!rel.empty()) {
    candidates.push_back(fs::path(folder) / dir);
    candidates.push_back(fs::path(folder).parent_path() / name);
  }
  candidates.push_back(fs::path(DataDir()) / "conformance" / name);
  if (const std::string s = SharedConformanceDir(); !s.empty())
    candidates.push_back(fs::path(s) / name);
  for (const auto& c : candidates)
    if (fs::exists(c / "config.json") && fs::exists(c / "model.safetensors"))
      return c.lexically_normal().string();
  return "";
}

bool UnpackOnce(const std::string& archive, const std::string& dest_folder, std::string* why) {
  const fs::path dest(dest_folder);
  if (fs::exists(dest / ".complete")) return true;
  fs::create_directories(dest.parent_path());
  const fs::path tmp = dest.string() + ".tmp." + std::to_string(getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::string out, err;
  if (RunShell("tar -xJf '" + archive + "' -C '" + tmp.string() + "'", &out, &err) != 0) {
    *why = "cannot unpack " + archive + " (tar with xz needed): " + err;
    fs::remove_all(tmp);
    return false;
  }
  std::ofstream(tmp / ".complete") << "ok\n";
  std::error_code ec;
  fs::rename(tmp, dest, ec);
  if (ec) fs::remove_all(tmp);  // another process won the race
  return fs::exists(dest / ".complete");
}

std::vector<int> LongestSequenceTokens(const std::string& dir) {
  const nlohmann::json v = nlohmann::json::parse(ReadTextFile(dir + "/vectors.json"));
  std::vector<int> best;
  for (const auto& s : v["sequences"]) {
    auto t = s["tokens"].get<std::vector<int>>();
    if (t.size() > best.size()) best = t;
  }
  return best;
}

std::vector<float> ReadFloats(const std::string& path, uint64_t offset, uint64_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<float> v(count);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * 4));
  if (!in) throw std::runtime_error("short read from " + path);
  return v;
}

std::string TempDir(const std::string& tag) {
  std::random_device rd;
  const fs::path p =
      fs::temp_directory_path() /
      ("elm_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
  fs::create_directories(p);
  return p.string();
}

int RunElm(const std::string& args, std::string* out, std::string* err) {
  return RunShell(std::string(ELM_BINARY) + " " + args, out, err);
}

int InitLoraBase(const std::string& yaml, const std::string& dir, std::string* flags,
                 std::string* out, std::string* err) {
  *flags = "--set elm.init_from=" + dir + "/base" +
           " --set \"model.lora={use_lora: true, config: [{regex: 'layers', module_type: linear, "
           "params: {r: 2, lora_alpha: 4, lora_dropout: 0.2}}]}\" ";
  return RunElm("init --config " + yaml + " --seed 4 --output " + dir + "/base", out, err);
}

std::string TinyTrainYaml(const std::string& dir, int save_every, int val_batches,
                          int keep_last_checkpoints) {
  const std::string corpus =
      ReadTextFile(std::string(ELM_SOURCE_DIR) + "/data/corpus/tinyshakespeare.txt");
  std::ofstream(dir + "/corpus.txt") << corpus.substr(0, 6000);
  return "common: {results_loc: \"" + dir +
         "/results\", run_label: run, seed: 3, grad_clip: 1.0,\n"
         "         accum_freq: 2, save_interval_freq: " +
         std::to_string(save_every) +
         ", eval_every_k_iterations: 3}\n"
         "dataset:\n"
         "  train_batch_size0: 2\n"
         "  language_modeling:\n"
         "    sequence_length: 16\n"
         "    general_lm: {train_data_info: [{file_name: \"" +
         dir +
         "/corpus.txt\"}]}\n"
         "loss: {language_modeling: {cross_entropy: {use_z_loss: true}}}\n"
         "scheduler: {max_iterations: 6, warmup_iterations: 2, warmup_init_lr: 1.e-4,\n"
         "            cosine: {max_lr: 0.01, min_lr: 0.001}}\n"
         "model:\n"
         "  language_modeling:\n"
         "    general_gpt: {num_transformer_layers: 2, model_dim: 32, head_dim: 8, num_gqa_groups: "
         "2,\n"
         "                  ffn_dim_divisor: 16, max_context_length: 32}\n"
         "elm: {val_fraction: 0.2, val_batches: " +
         std::to_string(val_batches) +
         ", keep_last_checkpoints: " + std::to_string(keep_last_checkpoints) + "}\n";
}

std::string MpirunCommand(const std::string& mpirun, int np, const std::string& launch,
                          const std::vector<std::string>& forward) {
  std::string cmd = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ";
  std::vector<std::string> vars = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"};
#if defined(__SANITIZE_ADDRESS__)
  cmd += "ASAN_OPTIONS=detect_leaks=0 ";
  vars.push_back("ASAN_OPTIONS");
#endif
  cmd += mpirun + " -np " + std::to_string(np) + " " + launch;
  if (::geteuid() == 0) cmd += " --allow-run-as-root";
  vars.insert(vars.end(), forward.begin(), forward.end());
  for (const std::string& v : vars) cmd += " -x " + v;
  return cmd + " ";
}

int RunShell(const std::string& command, std::string* out, std::string* err) {
  const std::string errfile = TempDir("stderr") + "/err.txt";
  const std::string cmd = command + " 2>" + errfile;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
  const int status = ::pclose(p);
  if (out) *out = s;
  if (err) {
    std::ifstream e(errfile);
    std::stringstream ss;
    ss << e.rdbuf();
    *err = ss.str();
  }
  fs::remove_all(fs::path(errfile).parent_path());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool RootsFromEnv(const char* var, std::vector<std::string>* roots) {
  const char* env = std::getenv(var);
  if (env == nullptr || *env == '\0') return false;
  std::stringstream ss(env);
  for (std::string r; std::getline(ss, r, ':');)
    if (!r.empty()) roots->push_back(r);
  return true;
}

std::vector<float> AllLogits(const std::shared_ptr<const Model>& m,
                             const std::vector<int>& tokens) {
  Session s(m, static_cast<int>(tokens.size()));
  std::vector<float> logits;
  ForwardOptions o;
  o.all_logits = true;
  s.Forward(tokens, logits, o);
  return logits;
}

float MaxAbsDiff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates as a failure
  }
  return m;
}

}  // namespace elm::test
