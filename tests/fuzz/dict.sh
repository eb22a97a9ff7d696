# Sourced by smoke.sh and long_run.sh: fuzz_dict TARGET sets the array `dict` to the libFuzzer
# dictionary option for TARGET (JSON or YAML syntax and field names), empty for binary formats.
fuzz_dict() {
  dict=()
  case $1 in
    safetensors_fuzz | tokenizer_json_fuzz | hf_config_fuzz | mlx_meta_fuzz | openai_request_fuzz | \
      hub_api_fuzz | eval_data_fuzz | posttrain_data_fuzz | grammar_fuzz)
      dict=(-dict="$ROOT/tests/fuzz/dict/json.dict") ;;
    train_yaml_fuzz) dict=(-dict="$ROOT/tests/fuzz/dict/yaml.dict") ;;
  esac
}
