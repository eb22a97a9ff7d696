// POST /v1/completions and POST /v1/chat/completions: validate, tokenize, wait for a slot, run
// the completion and answer with one JSON object or a server-sent-event stream. Errors are thrown
// as ApiError for the HTTP layer to send.
#pragma once

#include <httplib.h>

#include "server/server_state.h"

namespace elm::server {

void HandleCompletions(ServerState& st, const httplib::Request& req, httplib::Response& res);
void HandleChatCompletions(ServerState& st, const httplib::Request& req, httplib::Response& res);

}  // namespace elm::server
