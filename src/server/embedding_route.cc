#include "server/embedding_route.h"

#include <omp.h>

#include <bit>
#include <cstdint>
#include <cstring>

#include "server/api_error.h"
#include "server/openai_request.h"

namespace elm::server {

using nlohmann::json;

namespace {

std::vector<int> EmbeddingTokenIds(const json& arr, int vocab_size, const std::string& field) {
  std::vector<int> ids;
  for (const json& x : arr) {
    if (!x.is_number_integer()) BadParam("input", field + " must hold token ids (integers)");
    const auto id = x.get<int64_t>();
    if (id < 0 || id >= vocab_size)
      BadParam("input", field + " holds token id " + std::to_string(id) + ", out of range [0, " +
                            std::to_string(vocab_size) + ")");
    ids.push_back(static_cast<int>(id));
  }
  return ids;
}

}  // namespace

EmbeddingRequest ParseEmbeddingRequest(const json& body, const Tokenizer& tok, int vocab_size,
                                       int max_tokens) {
  EmbeddingRequest r;
  if (!body.contains("input")) BadParam("input", "'input' is required");
  const json& in = body["input"];
  auto text_ids = [&](const json& s) {
    if (s.get_ref<const std::string&>().empty()) BadParam("input", "an input text is empty");
    return tok.Encode(s.get<std::string>(), tok.add_bos());
  };
  if (in.is_string()) {
    r.inputs.push_back(text_ids(in));
  } else if (in.is_array() && !in.empty() && in.front().is_number()) {
    r.inputs.push_back(EmbeddingTokenIds(in, vocab_size, "input"));
  } else if (in.is_array() && !in.empty()) {
    for (size_t i = 0; i < in.size(); ++i) {
      const std::string field = "input[" + std::to_string(i) + "]";
      if (in[i].is_string())
        r.inputs.push_back(text_ids(in[i]));
      else if (in[i].is_array())
        r.inputs.push_back(EmbeddingTokenIds(in[i], vocab_size, field));
      else
        BadParam("input", field + " must be a string or an array of token ids");
    }
  } else {
    BadParam("input",
             "'input' must be a string, an array of strings, an array of token ids or an array "
             "of token id arrays, and not empty");
  }
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    const size_t n = r.inputs[i].size();
    const std::string field = in.is_string() || in.front().is_number()
                                  ? std::string("input")
                                  : "input[" + std::to_string(i) + "]";
    if (n == 0) BadParam("input", field + " is empty (no tokens)");
    if (n > static_cast<size_t>(max_tokens))
      BadParam("input", field + " has " + std::to_string(n) + " tokens, more than the " +
                            std::to_string(max_tokens) + " the model takes");
  }
  if (body.contains("encoding_format") && !body["encoding_format"].is_null()) {
    const json& f = body["encoding_format"];
    if (!f.is_string() || (f != "float" && f != "base64"))
      BadParam("encoding_format", "'encoding_format' must be \"float\" or \"base64\"");
    r.base64 = f == "base64";
  }
  if (body.contains("pooling") && !body["pooling"].is_null()) {
    if (!body["pooling"].is_string()) BadParam("pooling", "'pooling' must be \"mean\" or \"last\"");
    try {
      r.options.pooling = ParsePooling(body["pooling"].get<std::string>(), "'pooling'");
    } catch (const Error& e) {
      BadParam("pooling", e.what());
    }
  }
  if (body.contains("normalize") && !body["normalize"].is_null()) {
    if (!body["normalize"].is_boolean()) BadParam("normalize", "'normalize' must be true or false");
    r.options.normalize = body["normalize"].get<bool>();
  }
  if (body.contains("dimensions") && !body["dimensions"].is_null())
    BadParam("dimensions", "'dimensions' is not supported: the vector has the model's width");
  return r;
}

std::string EmbeddingBase64(const std::vector<float>& v) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t u = std::bit_cast<uint32_t>(v[i]);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xFF);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t w = 0;
    for (size_t k = 0; k < 3; ++k)
      w = (w << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k)
      out.push_back(k <= n ? kAlphabet[(w >> (18 - 6 * k)) & 63] : '=');
  }
  return out;
}

void HandleEmbeddings(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  const json body = ParseJsonBody(req.body);
  const int max_tokens = st.model->config().max_context;
  const EmbeddingRequest r =
      ParseEmbeddingRequest(body, st.tok, st.model->config().vocab_size, max_tokens);
  omp_set_num_threads(st.slot_threads);
  json data = json::array();
  size_t tokens = 0;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    Session session(st.model, static_cast<int>(r.inputs[i].size()));
    std::vector<float> v;
    // With batching, on the stepping thread between two steps (server/step_batcher.h: no second
    // OpenMP team); otherwise on this one, with a slot's share of the cores.
    const auto embed = [&] { v = Embed(session, r.inputs[i], r.options); };
    if (st.batcher)
      st.batcher->Exclusive(embed);
    else
      embed();
    tokens += r.inputs[i].size();
    data.push_back({{"object", "embedding"},
                    {"index", i},
                    {"embedding", r.base64 ? json(EmbeddingBase64(v)) : json(v)}});
  }
  res.set_content(Dump({{"object", "list"},
                        {"data", std::move(data)},
                        {"model", st.model_id},
                        {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}}),
                  "application/json");
}

}  // namespace elm::server
