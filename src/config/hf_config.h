// HF `config.json` for OpenELM (Apple's configuration_openelm.py) ↔ ModelConfig.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "config/model_config.h"

namespace elm {

// Parses and validates; derives per-layer widths and checks them against the stored
// num_query_heads / num_kv_heads lists. Errors name `origin` and the field (and layer).
ModelConfig ConfigFromHfJson(const nlohmann::json& j, const std::string& origin);
ModelConfig LoadHfConfig(const std::string& config_json_path);
// The config.json Apple's save_pretrained writes, with the derived per-layer lists.
nlohmann::json ConfigToHfJson(const ModelConfig& cfg);

}  // namespace elm
