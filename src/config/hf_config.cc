#include "config/hf_config.h"

#include "base/error.h"
#include "base/mmap_file.h"

namespace elm {
using nlohmann::json;

namespace {

int GetInt(const json& j, const std::string& key, const std::string& origin, bool required,
           int def) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) Fail(origin, ": missing required field '", key, "'");
    return def;
  }
  const json& v = j[key];
  if (!v.is_number_integer())
    Fail(origin, ": field '", key, "' must be an integer, got ", v.dump());
  const auto x = v.get<int64_t>();
  if (x < -(1 << 30) || x > (1 << 30)) Fail(origin, ": field '", key, "' is out of range: ", x);
  return static_cast<int>(x);
}

double GetNumber(const json& j, const std::string& key, const std::string& origin, double def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_number())
    Fail(origin, ": field '", key, "' must be a number, got ", j[key].dump());
  return j[key].get<double>();
}

bool GetBool(const json& j, const std::string& key, const std::string& origin, bool def) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean())
    Fail(origin, ": field '", key, "' must be true or false, got ", j[key].dump());
  return j[key].get<bool>();
}

std::vector<double> GetMultipliers(const json& j, const std::string& key, const std::string& origin,
                                   double def) {
  if (!j.contains(key) || j[key].is_null()) return {def};
  const json& v = j[key];
  if (v.is_number()) return {v.get<double>()};
  if (!v.is_array() || v.empty())
    Fail(origin, ": field '", key, "' must be a number or a non-empty list of numbers");
  std::vector<double> out;
  for (const auto& e : v) {
    if (!e.is_number()) Fail(origin, ": field '", key, "' has a non-number entry ", e.dump());
    out.push_back(e.get<double>());
  }
  return out;
}

void CheckStoredList(const json& j, const std::string& key, const ModelConfig& cfg,
                     const std::string& origin, bool kv) {
  if (!j.contains(key) || j[key].is_null()) return;
  const json& v = j[key];
  if (!v.is_array() || static_cast<int>(v.size()) != cfg.n_layers)
    Fail(origin, ": field '", key, "' must list one integer per layer (", cfg.n_layers, ")");
  for (int i = 0; i < cfg.n_layers; ++i) {
    if (!v[i].is_number_integer()) Fail(origin, ": field '", key, "'[", i, "] is not an integer");
    const int stored = v[i].get<int>();
    const int derived = kv ? cfg.layers[i].n_kv_heads : cfg.layers[i].n_heads;
    if (stored != derived)
      Fail(origin, ": layer ", i, ": '", key, "' says ", stored, " but qkv_multipliers (",
           cfg.layers[i].qkv_multiplier, "), model_dim, head_dim and num_gqa_groups give ",
           derived);
  }
}

}  // namespace

ModelConfig ConfigFromHfJson(const json& j, const std::string& origin) {
  if (!j.is_object()) Fail(origin, ": config is not a JSON object");
  if (j.contains("model_type") && j["model_type"] != "openelm")
    Fail(origin, ": model_type is ", j["model_type"].dump(), ", expected \"openelm\"");
  if (j.contains("activation_fn_name") && j["activation_fn_name"] != "swish" &&
      j["activation_fn_name"] != "silu")
    Fail(origin, ": activation_fn_name ", j["activation_fn_name"].dump(),
         " is not supported (OpenELM uses \"swish\")");
  if (j.contains("normalization_layer_name") && j["normalization_layer_name"] != "rms_norm")
    Fail(origin, ": normalization_layer_name ", j["normalization_layer_name"].dump(),
         " is not supported (OpenELM uses \"rms_norm\")");
  ModelConfig c;
  if (j.contains("_name_or_path") && j["_name_or_path"].is_string())
    c.name = j["_name_or_path"].get<std::string>();
  c.n_layers = GetInt(j, "num_transformer_layers", origin, true, 0);
  c.dim = GetInt(j, "model_dim", origin, true, 0);
  c.head_dim = GetInt(j, "head_dim", origin, true, 0);
  c.vocab_size = GetInt(j, "vocab_size", origin, true, 0);
  c.max_context = GetInt(j, "max_context_length", origin, false, 2048);
  c.gqa_groups = GetInt(j, "num_gqa_groups", origin, false, 1);
  c.ffn_dim_divisor = GetInt(j, "ffn_dim_divisor", origin, false, 256);
  c.ffn_with_glu = GetBool(j, "ffn_with_glu", origin, true);
  c.qk_norm = GetBool(j, "normalize_qk_projections", origin, false);
  c.tied_embeddings = GetBool(j, "share_input_output_layers", origin, false);
  c.rope_base = GetNumber(j, "rope_freq_constant", origin, 10000.0);
  c.rope_max_length = GetInt(j, "rope_max_length", origin, false, 4096);
  c.bos_id = GetInt(j, "bos_token_id", origin, false, 1);
  c.eos_id = GetInt(j, "eos_token_id", origin, false, 2);
  c.qkv_multipliers = GetMultipliers(j, "qkv_multipliers", origin, 1.0);
  c.ffn_multipliers = GetMultipliers(j, "ffn_multipliers", origin, 4.0);
  if (c.vocab_size <= 0 || c.vocab_size > 10'000'000)
    Fail(origin, ": vocab_size must be in [1, 10000000]");
  if (c.n_layers <= 0 || c.n_layers > 10'000)
    Fail(origin, ": num_transformer_layers must be in [1, 10000]");
  if (c.dim <= 0 || c.dim > 1'000'000) Fail(origin, ": model_dim must be in [1, 1000000]");
  if (c.head_dim <= 0 || c.head_dim > 65'536) Fail(origin, ": head_dim must be in [1, 65536]");
  if (c.max_context <= 0 || c.max_context > (1 << 24))
    Fail(origin, ": max_context_length must be in [1, 16777216]");
  if (!(c.rope_base > 0)) Fail(origin, ": rope_freq_constant must be positive");
  try {
    DeriveLayers(c);
  } catch (const Error& e) {
    Fail(origin, ": ", e.what());
  }
  CheckStoredList(j, "num_query_heads", c, origin, false);
  CheckStoredList(j, "num_kv_heads", c, origin, true);
  for (int i = 0; i < c.n_layers; ++i)
    if (c.layers[i].n_heads <= 0 || c.layers[i].n_kv_heads <= 0)
      Fail(origin, ": layer ", i, " derives zero heads");
  return c;
}

ModelConfig LoadHfConfig(const std::string& path) {
  json j;
  try {
    j = json::parse(ReadTextFile(path));
  } catch (const json::exception& e) {
    Fail(path, ": not valid JSON: ", e.what());
  }
  return ConfigFromHfJson(j, path);
}

json ConfigToHfJson(const ModelConfig& c) {
  json j;
  j["architectures"] = {"OpenELMForCausalLM"};
  j["model_type"] = "openelm";
  j["activation_fn_name"] = "swish";
  j["normalization_layer_name"] = "rms_norm";
  j["bos_token_id"] = c.bos_id;
  j["eos_token_id"] = c.eos_id;
  j["ffn_dim_divisor"] = c.ffn_dim_divisor;
  j["ffn_with_glu"] = c.ffn_with_glu;
  j["head_dim"] = c.head_dim;
  j["initializer_range"] = 0.02;
  j["max_context_length"] = c.max_context;
  j["model_dim"] = c.dim;
  j["normalize_qk_projections"] = c.qk_norm;
  j["num_gqa_groups"] = c.gqa_groups;
  j["num_transformer_layers"] = c.n_layers;
  j["rope_freq_constant"] = c.rope_base;
  j["rope_max_length"] = c.rope_max_length;
  j["share_input_output_layers"] = c.tied_embeddings;
  j["vocab_size"] = c.vocab_size;
  j["use_cache"] = true;
  if (c.qkv_multipliers.size() == 1)
    j["qkv_multipliers"] = c.qkv_multipliers[0];
  else
    j["qkv_multipliers"] = c.qkv_multipliers;
  json ffn = json::array(), nq = json::array(), nkv = json::array();
  for (const auto& l : c.layers) {
    ffn.push_back(l.ffn_multiplier);
    nq.push_back(l.n_heads);
    nkv.push_back(l.n_kv_heads);
  }
  j["ffn_multipliers"] = ffn;
  j["num_query_heads"] = nq;
  j["num_kv_heads"] = nkv;
  return j;
}

}  // namespace elm
