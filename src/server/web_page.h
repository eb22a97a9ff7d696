// The chat page served at "/": one self-contained HTML document (inline CSS and JavaScript, no
// external assets, no build step) that talks to /v1/chat/completions with streaming.
#pragma once

#include <string_view>

namespace elm::server {

std::string_view ChatPageHtml();

}  // namespace elm::server
