// The OpenELM-Instruct chat template as a Jinja string, the form HF tokenizers
// (tokenizer_config.json "chat_template"), llama.cpp and ollama (GGUF tokenizer.chat_template) and
// mlx-lm apply. It renders exactly the text generation/chat_template.h builds token by token
// (BOS, "<|role|>\n" + content + EOS per message, "\n" between messages, then
// "\n<|assistant|>\n"); tests/formats_convert_test.cc checks the two agree. elm convert writes it
// into GGUF and MLX/HF outputs whose source carries no template of its own (docs/formats.md).
#pragma once

#include <string>

namespace elm {

inline constexpr const char* kOpenElmChatTemplateJinja =
    R"({{ bos_token }}{% for message in messages %}{% if not loop.first %}{{ '\n' }}{% endif %})"
    R"({{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token }}{% endfor %})"
    R"({% if add_generation_prompt %}{% if messages %}{{ '\n' }}{% endif %})"
    R"({{ '<|assistant|>\n' }}{% endif %})";

}  // namespace elm
