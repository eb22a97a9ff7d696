#include "data/chat_dataset.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/text_stream.h"

namespace elm {

namespace {

using nlohmann::json;

json ParseLine(std::string_view line, const std::string& where) {
  try {
    json j = json::parse(line);
    if (!j.is_object()) Fail(where, ": expected a JSON object");
    return j;
  } catch (const json::exception& e) {
    Fail(where, ": not valid JSON: ", e.what());
  }
}

std::vector<ChatMessage> ParseMessages(const json& j, const std::string& where,
                                       const std::string& field) {
  if (!j.is_array()) Fail(where, ": '", field, "' must be a list of messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& m = j[i];
    const std::string at = field + "[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      Fail(where, ": ", at, " must be an object with string fields 'role' and 'content'");
    ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      Fail(where, ": ", at, " has role '", msg.role, "' (expected system, user or assistant)");
    out.push_back(std::move(msg));
  }
  return out;
}

// Tokens of `m` continuing a conversation (at_start for the first message), and how many of them
// are the role header: the header rendered alone, one token less when the tokenizer merged across
// the boundary (TRL's build_tokenized_answer rule).
std::vector<int> MessageTokens(const Tokenizer& tok, const ChatMessage& m, bool at_start,
                               bool parse_special, size_t* header) {
  std::vector<int> out = MessageChatTokens(tok, m, at_start, parse_special);
  const std::vector<int> h =
      tok.Encode(std::string(at_start ? "" : "\n") + "<|" + m.role + "|>\n", false);
  const size_t off = at_start ? 1 : 0;  // BOS
  size_t n = h.size();
  if (out.size() < off + n || !std::equal(h.begin(), h.end(), out.begin() + off)) n -= 1;
  *header = off + n;
  return out;
}

void RequireContent(const ChatMessage& m, const std::string& where, const std::string& field) {
  if (m.content.find_first_not_of(" \t\r\n") == std::string::npos)
    Fail(where, ": ", field, " is an empty completion");
}

template <typename Row>
std::vector<Row> ReadJsonl(const std::string& path,
                           Row (*parse)(std::string_view, const Tokenizer&,
                                        const PosttrainDataOptions&, const std::string&),
                           const Tokenizer& tok, const PosttrainDataOptions& opt) {
  TextStream in(path);  // plain, .gz or .zst (base/text_stream.h)
  std::vector<Row> out;
  std::string line;
  int64_t lineno = 0;
  while (in.ReadLine(line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out.push_back(parse(line, tok, opt, path + ":" + std::to_string(lineno)));
  }
  if (out.empty()) Fail(path, ": no rows");
  return out;
}

void CheckOptions(const PosttrainDataOptions& opt, const std::string& where) {
  if (opt.max_length <= 0 || opt.max_prompt_length < 0)
    Fail(where, ": max_length must be positive and max_prompt_length non-negative");
  if (opt.max_prompt_length >= opt.max_length)
    Fail(where, ": max_prompt_length (", opt.max_prompt_length,
         ") leaves no room below max_length (", opt.max_length, ") for an answer");
}

}  // namespace

SftExample ParseChatRow(std::string_view line, const Tokenizer& tok,
                        const PosttrainDataOptions& opt, const std::string& where) {
  if (opt.max_length <= 1) Fail(where, ": max_length must be at least 2");
  const json j = ParseLine(line, where);
  if (!j.contains("messages")) Fail(where, ": expected a field 'messages' (a list of messages)");
  const std::vector<ChatMessage> msgs = ParseMessages(j["messages"], where, "messages");
  SftExample ex;
  bool any = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    size_t header = 0;
    const std::vector<int> t = MessageTokens(tok, msgs[i], i == 0, opt.parse_special, &header);
    const bool completion = msgs[i].role == "assistant";
    if (completion) {
      RequireContent(msgs[i], where, "messages[" + std::to_string(i) + "]");
      any = true;
    }
    for (size_t k = 0; k < t.size(); ++k) {
      ex.ids.push_back(t[k]);
      ex.scored.push_back(completion && k >= header ? 1 : 0);
    }
  }
  if (!any) Fail(where, ": no assistant message: nothing to learn from this row");
  if (ex.ids.size() > static_cast<size_t>(opt.max_length)) {
    ex.ids.resize(static_cast<size_t>(opt.max_length));
    ex.scored.resize(ex.ids.size());
  }
  // The first token is never a label (nothing predicts it).
  if (std::find(ex.scored.begin() + 1, ex.scored.end(), 1) == ex.scored.end())
    Fail(where, ": the prompt leaves no room for the completion within max_length ",
         opt.max_length);
  return ex;
}

PreferenceExample ParsePreferenceRow(std::string_view line, const Tokenizer& tok,
                                     const PosttrainDataOptions& opt, const std::string& where) {
  CheckOptions(opt, where);
  const json j = ParseLine(line, where);
  for (const char* k : {"chosen", "rejected"})
    if (!j.contains(k)) Fail(where, ": expected fields 'chosen' and 'rejected' (and 'prompt')");
  const json& jc = j["chosen"];
  const json& jr = j["rejected"];
  const json* jp = j.contains("prompt") ? &j["prompt"] : nullptr;
  std::vector<ChatMessage> prompt, chosen, rejected;
  if (jc.is_string() && jr.is_string()) {
    if (jp == nullptr || !jp->is_string())
      Fail(where, ": with string answers, 'prompt' must be a string too");
    prompt = {{"user", jp->get<std::string>()}};
    chosen = {{"assistant", jc.get<std::string>()}};
    rejected = {{"assistant", jr.get<std::string>()}};
  } else {
    chosen = ParseMessages(jc, where, "chosen");
    rejected = ParseMessages(jr, where, "rejected");
    if (jp != nullptr && jp->is_array()) {
      prompt = ParseMessages(*jp, where, "prompt");
    } else {
      if (jp != nullptr && !jp->is_string() && !jp->is_null())
        Fail(where, ": 'prompt' must be a string or a list of messages");
      if (chosen.empty() || rejected.empty())
        Fail(where, ": 'chosen' and 'rejected' must hold at least the answer message");
      prompt.assign(chosen.begin(), chosen.end() - 1);
      const bool same = prompt.size() + 1 == rejected.size() &&
                        std::equal(prompt.begin(), prompt.end(), rejected.begin(),
                                   [](const auto& a, const auto& b) {
                                     return a.role == b.role && a.content == b.content;
                                   });
      if (!same) Fail(where, ": 'chosen' and 'rejected' differ before their last message");
      chosen.erase(chosen.begin(), chosen.end() - 1);
      rejected.erase(rejected.begin(), rejected.end() - 1);
    }
  }
  if (prompt.empty()) Fail(where, ": the prompt has no message");
  if (chosen.empty() || rejected.empty()) Fail(where, ": an answer has no message");
  for (const auto* a : {&chosen, &rejected}) {
    const char* name = a == &chosen ? "chosen" : "rejected";
    if (a->back().role != "assistant")
      Fail(where, ": the last '", name, "' message has role '", a->back().role,
           "' (expected assistant)");
    RequireContent(a->back(), where, std::string("the '") + name + "' answer");
  }
  if (prompt.front().role != "system") prompt.insert(prompt.begin(), ChatMessage{"system", ""});

  PreferenceExample ex;
  ChatTemplateOptions o;
  o.add_generation_prompt = false;
  o.parse_special = opt.parse_special;
  AppendChatTokens(tok, prompt, o, ex.prompt);
  o.at_start = false;
  AppendChatTokens(tok, chosen, o, ex.chosen);
  AppendChatTokens(tok, rejected, o, ex.rejected);
  ex.chosen.push_back(tok.eos_id());  // TRL appends EOS after the template's own
  ex.rejected.push_back(tok.eos_id());
  TruncatePreference(ex, opt);
  return ex;
}

void TruncatePreference(PreferenceExample& ex, const PosttrainDataOptions& opt) {
  CheckOptions(opt, "preference data");
  const auto max_len = static_cast<size_t>(opt.max_length);
  const auto max_prompt = static_cast<size_t>(opt.max_prompt_length);
  const size_t longer = std::max(ex.chosen.size(), ex.rejected.size());
  if (ex.prompt.size() + longer > max_len && ex.prompt.size() > max_prompt)
    ex.prompt.erase(ex.prompt.begin(), ex.prompt.end() - static_cast<std::ptrdiff_t>(max_prompt));
  if (ex.prompt.size() + longer > max_len)
    for (auto* a : {&ex.chosen, &ex.rejected})
      if (a->size() > max_len - max_prompt) a->resize(max_len - max_prompt);
}

std::vector<SftExample> ReadChatJsonl(const std::string& path, const Tokenizer& tok,
                                      const PosttrainDataOptions& opt) {
  return ReadJsonl<SftExample>(path, &ParseChatRow, tok, opt);
}

std::vector<PreferenceExample> ReadPreferenceJsonl(const std::string& path, const Tokenizer& tok,
                                                   const PosttrainDataOptions& opt) {
  return ReadJsonl<PreferenceExample>(path, &ParsePreferenceRow, tok, opt);
}

namespace {
// Appends row (ids, scored) shifted by one into a batch of width T.
void PutRow(TokenBatch& b, int row, std::span<const int> ids, std::span<const uint8_t> scored,
            int pad_id, int ignore) {
  const auto T = static_cast<size_t>(b.T);
  int* in = b.inputs.data() + row * T;
  int* tg = b.targets.data() + row * T;
  for (size_t t = 0; t < T; ++t) {
    in[t] = t < ids.size() ? ids[t] : pad_id;
    tg[t] = t + 1 < ids.size() && scored[t + 1] ? ids[t + 1] : ignore;
  }
  b.lengths[row] = static_cast<int>(ids.size());
}
TokenBatch Shape(int B, size_t longest) {
  TokenBatch b;
  b.B = B;
  b.T = static_cast<int>(std::max<size_t>(longest, 2) - 1);
  b.inputs.resize(static_cast<size_t>(B) * b.T);
  b.targets.resize(b.inputs.size());
  b.lengths.resize(static_cast<size_t>(B));
  return b;
}
}  // namespace

TokenBatch MakeSftBatch(std::span<const SftExample> rows, int pad_id, int ignore) {
  if (rows.empty()) Fail("SFT batch: no rows");
  size_t longest = 0;
  for (const auto& r : rows) longest = std::max(longest, r.ids.size());
  TokenBatch b = Shape(static_cast<int>(rows.size()), longest);
  for (size_t i = 0; i < rows.size(); ++i)
    PutRow(b, static_cast<int>(i), rows[i].ids, rows[i].scored, pad_id, ignore);
  return b;
}

TokenBatch MakePreferenceBatch(std::span<const PreferenceExample> pairs, int pad_id, int ignore) {
  if (pairs.empty()) Fail("preference batch: no pairs");
  const size_t N = pairs.size();
  size_t longest = 0;
  for (const auto& p : pairs)
    longest = std::max(longest, p.prompt.size() + std::max(p.chosen.size(), p.rejected.size()));
  TokenBatch b = Shape(static_cast<int>(2 * N), longest);
  std::vector<int> ids;
  std::vector<uint8_t> scored;
  for (size_t i = 0; i < 2 * N; ++i) {
    const PreferenceExample& p = pairs[i % N];
    const std::vector<int>& answer = i < N ? p.chosen : p.rejected;
    ids.assign(p.prompt.begin(), p.prompt.end());
    ids.insert(ids.end(), answer.begin(), answer.end());
    scored.assign(p.prompt.size(), 0);
    scored.resize(ids.size(), 1);
    PutRow(b, static_cast<int>(i), ids, scored, pad_id, ignore);
  }
  return b;
}

}  // namespace elm
