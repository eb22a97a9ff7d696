// The chat page. Kept as one raw string so the binary needs no files at run time; the page uses
// only same-origin fetch() and builds every element with textContent, so model output can never
// inject markup.
#include "server/web_page.h"

namespace elm::server {

namespace {

constexpr std::string_view kPage = R"ELMPAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>elm chat</title>
<link rel="icon" href="data:,">
<style>
:root {
  --bg: #f6f7f9; --panel: #ffffff; --text: #1d232b; --muted: #6b7480; --line: #e2e5ea;
  --accent: #2f6fde; --accent-text: #ffffff; --user: #2f6fde; --bot: #ffffff; --err: #c0392b;
  --shadow: 0 1px 2px rgba(20, 30, 50, .08), 0 2px 8px rgba(20, 30, 50, .05);
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171c; --panel: #1c2027; --text: #e6e9ee; --muted: #8b94a1; --line: #2c323c;
    --accent: #4c8dff; --user: #3a6fd1; --bot: #232831; --err: #ff6b5e;
    --shadow: 0 1px 2px rgba(0, 0, 0, .4);
  }
}
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body {
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  background: var(--bg); color: var(--text); display: flex; flex-direction: column;
}
header {
  display: flex; align-items: center; gap: 12px; padding: 10px 18px;
  background: var(--panel); border-bottom: 1px solid var(--line);
}
header h1 { font-size: 17px; margin: 0; letter-spacing: .3px; }
header h1 span { color: var(--accent); }
#model { color: var(--muted); font-size: 13px; }
#status { width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
#status.ok { background: #2ea66b; }
#status.bad { background: var(--err); }
header .spacer { flex: 1; }
button {
  font: inherit; border: 1px solid var(--line); background: var(--panel); color: var(--text);
  border-radius: 8px; padding: 6px 12px; cursor: pointer;
}
button:hover { border-color: var(--accent); }
button.primary { background: var(--accent); color: var(--accent-text);
  border-color: var(--accent); }
button.stop { background: var(--err); color: #fff; border-color: var(--err); }
button:disabled { opacity: .5; cursor: default; }
#main { flex: 1; display: flex; min-height: 0; }
#chat { flex: 1; overflow-y: auto; padding: 22px 0; }
#log { max-width: 820px; margin: 0 auto; padding: 0 18px; display: flex; flex-direction: column;
  gap: 14px; }
.msg { max-width: 85%; padding: 10px 14px; border-radius: 14px; white-space: pre-wrap;
  word-wrap: break-word; box-shadow: var(--shadow); }
.msg.user { align-self: flex-end; background: var(--user); color: #fff;
  border-bottom-right-radius: 4px; }
.msg.assistant { align-self: flex-start; background: var(--bot); border: 1px solid var(--line);
  border-bottom-left-radius: 4px; }
.msg.note { align-self: center; max-width: 100%; padding: 4px 12px; font-size: 13px;
  color: var(--muted); background: transparent; border: 1px dashed var(--line); box-shadow: none; }
.msg.error { align-self: stretch; background: transparent; color: var(--err);
  border: 1px solid var(--err); box-shadow: none; }
.msg .meta { display: block; margin-top: 6px; font-size: 12px; color: var(--muted); }
.msg.pending .body::after { content: "\25CF"; margin-left: 3px; animation: blink 1s infinite; }
@keyframes blink { 50% { opacity: .2; } }
#empty { color: var(--muted); text-align: center; margin-top: 12vh; }
#empty b { color: var(--text); }
aside {
  width: 290px; background: var(--panel); border-left: 1px solid var(--line); padding: 16px;
  overflow-y: auto;
}
aside.hidden { display: none; }
@media (max-width: 700px) {
  /* Narrow screens: Settings start folded and, when opened, float over the chat instead of
     squeezing it. */
  aside { position: fixed; right: 0; top: var(--header-h, 52px); bottom: 0;
    width: min(300px, 92vw); z-index: 5; box-shadow: -4px 0 16px rgba(0, 0, 0, .2); }
  header { gap: 8px; padding: 10px 12px; }
  #model { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  header .spacer { display: none; }
}
aside h2 { font-size: 14px; margin: 0 0 12px; text-transform: uppercase; letter-spacing: .6px;
  color: var(--muted); }
aside label { display: block; font-size: 13px; margin: 10px 0 4px; }
aside input, aside textarea {
  width: 100%; font: inherit; font-size: 14px; padding: 6px 8px; border-radius: 6px;
  border: 1px solid var(--line); background: var(--bg); color: var(--text);
}
aside textarea { resize: vertical; min-height: 60px; }
aside .row { display: flex; gap: 8px; }
aside .row > div { flex: 1; }
aside .hint { font-size: 12px; color: var(--muted); margin-top: 12px; }
footer { background: var(--panel); border-top: 1px solid var(--line); padding: 12px 18px; }
#form { max-width: 820px; margin: 0 auto; display: flex; gap: 10px; align-items: flex-end; }
#input {
  flex: 1; font: inherit; resize: none; min-height: 44px; max-height: 200px; padding: 10px 12px;
  border-radius: 10px; border: 1px solid var(--line); background: var(--bg); color: var(--text);
}
#input:focus, aside input:focus, aside textarea:focus { outline: 2px solid var(--accent);
  outline-offset: -1px; }
#form button { height: 44px; min-width: 84px; }
</style>
</head>
<body>
<header>
  <h1><span>elm</span> chat</h1>
  <div id="status" title="server status"></div>
  <div id="model">connecting&hellip;</div>
  <div class="spacer"></div>
  <button id="clear" type="button" title="Start a new conversation">New chat</button>
  <button id="toggle" type="button" title="Sampling settings">Settings</button>
</header>
<div id="main">
  <div id="chat">
    <div id="log">
      <div id="empty"><b>Say something to the model.</b><br>Replies stream in as they are
        generated; press Stop to cut one short.</div>
    </div>
  </div>
  <aside id="settings">
    <h2>Settings</h2>
    <label for="system">System prompt</label>
    <textarea id="system" placeholder="(none)"></textarea>
    <div class="row">
      <div><label for="temperature">Temperature</label>
        <input id="temperature" type="number" min="0" max="2" step="0.05" placeholder="default"></div>
      <div><label for="max_tokens">Max tokens</label>
        <input id="max_tokens" type="number" min="1" step="1" placeholder="default"></div>
    </div>
    <div class="row">
      <div><label for="top_p">Top-p</label>
        <input id="top_p" type="number" min="0.01" max="1" step="0.01" placeholder="default"></div>
      <div><label for="top_k">Top-k</label>
        <input id="top_k" type="number" min="0" step="1" placeholder="default"></div>
    </div>
    <div class="row">
      <div><label for="min_p">Min-p</label>
        <input id="min_p" type="number" min="0" max="1" step="0.01" placeholder="default"></div>
      <div><label for="repetition_penalty">Repeat penalty</label>
        <input id="repetition_penalty" type="number" min="0.1" step="0.05" placeholder="default"></div>
    </div>
    <label for="seed">Seed (empty: random)</label>
    <input id="seed" type="number" step="1" placeholder="random">
    <label for="api_key">API key (if the server requires one)</label>
    <input id="api_key" type="password" autocomplete="off" placeholder="none">
    <div class="hint">Settings start from the server's defaults (the same as <code>elm chat</code>'s)
      and are kept in this browser, as is the conversation. Temperature 0 picks the most likely
      token every time.</div>
    <button id="defaults" type="button">Reset to defaults</button>
  </aside>
</div>
<footer>
  <form id="form">
    <textarea id="input" rows="1"
      placeholder="Message (Enter to send, Shift+Enter for a new line)"></textarea>
    <button id="send" class="primary" type="submit">Send</button>
  </form>
</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const fields = ["system", "temperature", "max_tokens", "top_p", "top_k", "min_p",
                "repetition_penalty", "seed", "api_key"];
// The conversation, kept in localStorage so a reload shows it again: finished turns
// ({role, content, meta}) and whether the "oldest turns left out" note was shown.
const chat = loadChat();
let controller = null;       // AbortController of the reply being streamed
let epoch = 0;               // bumped by "New chat": a reply still arriving then is not kept
let defaults = {};           // the server's request defaults (GET /v1/models, meta.defaults)

function loadChat() {
  try {
    const c = JSON.parse(localStorage.getItem("elm.chat") || "null");
    if (c && Array.isArray(c.turns)) return c;
  } catch (_) {}
  return {turns: [], trimmed: false};
}
function saveChat() {
  try { localStorage.setItem("elm.chat", JSON.stringify(chat)); } catch (_) {}
}

for (const f of fields) {
  const saved = localStorage.getItem("elm." + f);
  if (saved !== null) $(f).value = saved;
  $(f).addEventListener("change", () => localStorage.setItem("elm." + f, $(f).value));
}
// Fields the user never set show the server's defaults.
function applyDefaults() {
  for (const [k, v] of Object.entries(defaults)) {
    if ($(k) && localStorage.getItem("elm." + k) === null) $(k).value = v;
  }
}
$("defaults").onclick = () => {
  for (const f of fields) {
    if (f === "api_key" || f === "system") continue;
    localStorage.removeItem("elm." + f);
    $(f).value = "";
  }
  applyDefaults();
};
// Narrow screens start with Settings folded; wide ones as the user last left them.
const narrow = window.matchMedia("(max-width: 700px)").matches;
if (narrow || localStorage.getItem("elm.settings") === "hidden") {
  $("settings").classList.add("hidden");
}
$("toggle").onclick = () => {
  const s = $("settings");
  // The floating panel (narrow screens) opens just below the header.
  document.documentElement.style.setProperty(
      "--header-h", document.querySelector("header").getBoundingClientRect().bottom + "px");
  s.classList.toggle("hidden");
  if (!narrow) {
    localStorage.setItem("elm.settings", s.classList.contains("hidden") ? "hidden" : "shown");
  }
};

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function probe() {
  try {
    const r = await fetch("/v1/models", {headers: headers()});
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    const m = j.data[0];
    $("model").textContent = m.id + " \u00b7 context " + m.meta.context + " tokens";
    $("status").className = "ok";
    defaults = m.meta.defaults || {};
    applyDefaults();
  } catch (e) {
    $("model").textContent = "not connected: " + e.message;
    $("status").className = "bad";
  }
}

function addMessage(role, text) {
  const empty = $("empty");
  if (empty) empty.remove();
  const div = document.createElement("div");
  div.className = "msg " + role;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  div.appendChild(body);
  $("log").appendChild(div);
  scrollDown();
  return div;
}

function setMeta(div, text) {
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = text;
  div.appendChild(meta);
}

// The note shown once per conversation when its oldest turns no longer fit the context.
function trimNote() {
  addMessage("note", "The conversation is longer than the model's context: its oldest turns " +
             "are left out of what the model sees (the system prompt is kept).");
}

// Why a reply ended, in words: finish_reason is OpenAI's ("stop" or "length"), stop_detail
// elm's finer reason (eos, stop string, max tokens, or a full context).
function stopLabel(finish, detail) {
  if (finish === "stopped") return "stopped";
  switch (detail) {
    case "eos": return "end of reply";
    case "stop": return "stop string";
    case "length": return "hit max tokens";
    case "context": return "context full";
  }
  return finish === "length" ? "hit max tokens" : finish;
}

function scrollDown() {
  const c = $("chat");
  c.scrollTop = c.scrollHeight;
}

function num(id, parse) {
  const v = $(id).value.trim();
  return v === "" ? undefined : parse(v);
}

function setBusy(busy) {
  const b = $("send");
  b.textContent = busy ? "Stop" : "Send";
  b.className = busy ? "stop" : "primary";
  b.type = busy ? "button" : "submit";
}

async function send(text) {
  const mine = epoch;
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  for (const t of chat.turns) messages.push({role: t.role, content: t.content});
  messages.push({role: "user", content: text});
  addMessage("user", text);
  const div = addMessage("assistant pending", "");
  const body = div.querySelector(".body");
  const request = {
    messages, stream: true, stream_options: {include_usage: true},
    temperature: num("temperature", parseFloat), top_p: num("top_p", parseFloat),
    top_k: num("top_k", (v) => parseInt(v, 10)), min_p: num("min_p", parseFloat),
    repetition_penalty: num("repetition_penalty", parseFloat),
    max_tokens: num("max_tokens", (v) => parseInt(v, 10)),
    seed: num("seed", (v) => parseInt(v, 10)),
  };
  controller = new AbortController();
  setBusy(true);
  const started = performance.now();
  let reply = "", finish = "", detail = "", dropped = 0, usage = null, firstAt = 0, chunks = 0;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(request), signal: controller.signal,
    });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const j = await r.json(); if (j.error) msg = j.error.message; } catch (_) {}
      throw new Error(msg);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          if (j.usage) usage = j.usage;
          const c = j.choices && j.choices[0];
          if (!c) continue;
          if (c.delta && c.delta.content) {
            if (!firstAt) firstAt = performance.now();
            ++chunks;  // about one token each; usage gives the exact count at the end
            reply += c.delta.content;
            body.textContent = reply;
            scrollDown();
          }
          if (c.finish_reason) finish = c.finish_reason;
          if (c.stop_detail) detail = c.stop_detail;
          if (j.dropped_messages) dropped = j.dropped_messages;
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") {
      finish = "stopped";
    } else {
      div.remove();
      addMessage("error", "Error: " + e.message);
      controller = null;
      setBusy(false);
      return;
    }
  }
  div.classList.remove("pending");
  const seconds = (performance.now() - started) / 1000;
  const parts = [];
  const tokens = usage ? usage.completion_tokens : chunks;
  if (tokens) {
    parts.push((usage ? "" : "~") + tokens + " tokens");
    if (firstAt && tokens > 1) {
      const rate = (tokens - 1) / ((performance.now() - firstAt) / 1000);
      parts.push(rate.toFixed(1) + " tokens/s");
    }
  }
  parts.push(seconds.toFixed(2) + " s");
  if (finish) parts.push(stopLabel(finish, detail));
  const meta = parts.join(" \u00b7 ");
  setMeta(div, meta);
  controller = null;
  setBusy(false);
  if (mine !== epoch) return;
  chat.turns.push({role: "user", content: text}, {role: "assistant", content: reply, meta});
  if (dropped && !chat.trimmed) {
    chat.trimmed = true;
    chat.turns[chat.turns.length - 1].note = true;  // shown after this reply on a reload too
    trimNote();
  }
  saveChat();
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (controller) return;
  const text = $("input").value.trim();
  if (!text) return;
  $("input").value = "";
  autosize();
  send(text);
});
$("send").addEventListener("click", () => { if (controller) controller.abort(); });
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("form").requestSubmit();
  }
});
function autosize() {
  const i = $("input");
  i.style.height = "auto";
  i.style.height = Math.min(i.scrollHeight, 200) + "px";
}
$("input").addEventListener("input", autosize);
const emptyNote = $("empty").cloneNode(true);
$("clear").onclick = () => {
  if (controller) controller.abort();
  ++epoch;
  chat.turns.length = 0;
  chat.trimmed = false;
  saveChat();
  $("log").replaceChildren(emptyNote.cloneNode(true));
  $("input").focus();
};
// The conversation so far, as it was before the reload.
for (const t of chat.turns) {
  const div = addMessage(t.role, t.content);
  if (t.meta) setMeta(div, t.meta);
  if (t.note) trimNote();
}
$("api_key").addEventListener("change", probe);
probe();
$("input").focus();
</script>
</body>
</html>
)ELMPAGE";

}  // namespace

std::string_view ChatPageHtml() {
  return kPage;
}

}  // namespace elm::server
