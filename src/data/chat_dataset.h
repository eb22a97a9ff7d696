// Post-training data (docs/training.md, "Instruct tuning"): chat JSONL for supervised fine-tuning
// and preference JSONL for DPO-style tuning, rendered through the OpenELM-Instruct chat template
// (generation/chat_template.h) and truncated as TRL's DPOTrainer does (v0.8.2 `tokenize_row`;
// shared/conformance/posttrain/README.md, "What the real recipe does").
//
// Chat rows:        {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//   every assistant turn is a completion: its content and closing EOS are scored, the rest (system
//   and user turns, role headers) is prompt and masked (labels −100).
// Preference rows:  {"prompt": P, "chosen": C, "rejected": R}, the UltraFeedback-binarized layout
//   - C and R message lists, P a string or absent: the prompt is C without its last message
//     (which must equal R without its last message), the answers are the last messages;
//   - P a message list: P is the prompt, C and R the answer messages;
//   - P, C and R strings: P is one user turn, C and R one assistant turn each.
//   As alignment-handbook's apply_chat_template(task="dpo"), an empty system message is put first
//   when the prompt has none. The answer is the assistant turn rendered as continuing the prompt,
//   plus the EOS TRL appends (so it ends EOS EOS: the template's and TRL's).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "generation/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace elm {

struct PosttrainDataOptions {
  int max_length = 1024;        // prompt + answer tokens (TRL max_length)
  int max_prompt_length = 512;  // prompt tokens kept, from the end, when a row is too long
  bool parse_special = false;   // "</s>" typed in content becomes EOS
};

// One supervised sequence: `ids` with a flag per token saying whether it is a label.
struct SftExample {
  std::vector<int> ids;
  std::vector<uint8_t> scored;  // same length; 1 = completion token (scored), 0 = prompt
};

// One preference pair sharing a prompt (prompt starts with BOS, answers end with EOS).
struct PreferenceExample {
  std::vector<int> prompt, chosen, rejected;
};

// Parses one JSONL row; `where` ("file.jsonl:12") prefixes every error.
SftExample ParseChatRow(std::string_view line, const Tokenizer& tok,
                        const PosttrainDataOptions& opt, const std::string& where);
PreferenceExample ParsePreferenceRow(std::string_view line, const Tokenizer& tok,
                                     const PosttrainDataOptions& opt, const std::string& where);

// Every non-blank line of a JSONL file. Throws elm::Error naming the file and line.
std::vector<SftExample> ReadChatJsonl(const std::string& path, const Tokenizer& tok,
                                      const PosttrainDataOptions& opt);
std::vector<PreferenceExample> ReadPreferenceJsonl(const std::string& path, const Tokenizer& tok,
                                                   const PosttrainDataOptions& opt);

// TRL's truncation of a pair, in place: when prompt + the longer answer exceeds max_length, keep
// the prompt's last max_prompt_length tokens (the BOS may go); if still too long, cut both answers
// to max_length − max_prompt_length. Throws when the options leave no room for an answer.
void TruncatePreference(PreferenceExample& ex, const PosttrainDataOptions& opt);

// A right-padded batch for TrainModel::Forward: row b's inputs are its ids without the last,
// its targets the next ids where scored and `ignore` elsewhere; pads are `pad_id` / `ignore`.
struct TokenBatch {
  int B = 0, T = 0;
  std::vector<int> inputs, targets;  // [B, T]
  std::vector<int> lengths;          // real tokens per row (ids, before the shift)
};
TokenBatch MakeSftBatch(std::span<const SftExample> rows, int pad_id, int ignore = -100);
// TRL's concatenated batch: rows 0..N−1 are prompt + chosen, rows N..2N−1 prompt + rejected,
// every answer token scored, all padded to the longest of the 2N rows.
TokenBatch MakePreferenceBatch(std::span<const PreferenceExample> pairs, int pad_id,
                               int ignore = -100);

}  // namespace elm
