// A bounded load test of a running `elm serve` on loopback (node built-ins only; it starts
// nothing). N clients, each with its own keep-alive connection, send requests back to back until
// the request count or the time limit is reached. Reports throughput, latency percentiles, errors
// and the server's memory (VmRSS before and after, VmHWM peak, from /proc/PID/status).
//
//   build/release/elm serve --model models/tiny-random-32k --parallel 2 --port 8090 &
//   node tests/tools/server_load.mjs --url http://127.0.0.1:8090 --pid $! --clients 8 \
//        --requests 2000 --max-seconds 60 [--chat] [--stream] [--max-tokens 16] [--json]
//
// Each request is /v1/completions (or, with --chat, /v1/chat/completions) for --max-tokens
// tokens with `ignore_eos` (so every reply has exactly that many), temperature 0.8 and a seed
// per request. With --stream the reply is read as server-sent events and time to first token is
// reported too. --no-keep-alive opens a connection per request (llama-server closes a kept-alive
// connection after each streamed reply, which a reused socket sees as "socket hang up").
// Exit code: 0 if every request succeeded, 1 otherwise.
import { readFileSync } from "node:fs";
import http from "node:http";

const opts = {
  url: "http://127.0.0.1:8080", pid: 0, clients: 1, requests: 1000, maxSeconds: 60,
  maxTokens: 16, chat: false, stream: false, json: false, keepAlive: true,
  prompt: "The lighthouse keeper climbed the stairs one last time and looked out over the sea",
};
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i], next = () => args[++i];
  if (a === "--url") opts.url = next();
  else if (a === "--pid") opts.pid = Number(next());
  else if (a === "--clients") opts.clients = Number(next());
  else if (a === "--requests") opts.requests = Number(next());
  else if (a === "--max-seconds") opts.maxSeconds = Number(next());
  else if (a === "--max-tokens") opts.maxTokens = Number(next());
  else if (a === "--prompt") opts.prompt = next();
  else if (a === "--chat") opts.chat = true;
  else if (a === "--stream") opts.stream = true;
  else if (a === "--json") opts.json = true;
  else if (a === "--no-keep-alive") opts.keepAlive = false;
  else {
    console.error(`unknown argument ${a} (see the header of ${process.argv[1]})`);
    process.exit(2);
  }
}
const base = new URL(opts.url);

// VmRSS / VmHWM of the server in MiB, or null without --pid.
function memory() {
  if (!opts.pid) return null;
  const status = readFileSync(`/proc/${opts.pid}/status`, "utf8");
  const kib = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))[1]);
  return { rss: kib("VmRSS") / 1024, hwm: kib("VmHWM") / 1024 };
}

// One request on `agent`; resolves {ok, status, ms, firstMs, tokens, error}.
function send(agent, seed) {
  const body = { max_tokens: opts.maxTokens, temperature: 0.8, seed, ignore_eos: true };
  if (opts.chat) body.messages = [{ role: "user", content: opts.prompt }];
  else body.prompt = opts.prompt;
  if (opts.stream) Object.assign(body, { stream: true, stream_options: { include_usage: true } });
  const payload = JSON.stringify(body);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = http.request({
      host: base.hostname, port: base.port, agent, method: "POST",
      path: opts.chat ? "/v1/chat/completions" : "/v1/completions",
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) },
    }, (res) => {
      let text = "", firstMs = 0;
      res.setEncoding("utf8");
      res.on("data", (d) => {
        // The first event with text in it (chat's first event has an empty "content").
        if (opts.stream && !firstMs && /"(content|text)":"[^"]/.test(d)) {
          firstMs = performance.now() - t0;
        }
        text += d;
      });
      res.on("end", () => {
        const ms = performance.now() - t0;
        if (res.statusCode !== 200) {
          resolve({ ok: false, ms, error: `HTTP ${res.statusCode}: ${text.slice(0, 200)}` });
          return;
        }
        try {
          let usage;
          if (opts.stream) {
            const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
            if (events.at(-1) !== "data: [DONE]") throw new Error("stream did not end with [DONE]");
            for (const e of events.slice(0, -1)) {
              const j = JSON.parse(e.slice(6));
              if (j.error) throw new Error(j.error.message);
              if (j.usage) usage = j.usage;
            }
          } else {
            usage = JSON.parse(text).usage;
          }
          if (!usage || usage.completion_tokens !== opts.maxTokens) {
            throw new Error(`expected ${opts.maxTokens} tokens, usage ${JSON.stringify(usage)}`);
          }
          resolve({ ok: true, ms, firstMs, tokens: usage.completion_tokens });
        } catch (e) {
          resolve({ ok: false, ms, error: e.message });
        }
      });
      res.on("error", (e) => resolve({ ok: false, ms: performance.now() - t0, error: e.message }));
    });
    req.on("error", (e) => resolve({ ok: false, ms: performance.now() - t0, error: e.message }));
    req.end(payload);
  });
}

async function health() {
  const r = await fetch(new URL("/health", base));
  return r.json();
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const before = memory();
const healthBefore = await health();
const results = [];
let issued = 0;
const t0 = performance.now();
const deadline = t0 + opts.maxSeconds * 1000;
await Promise.all(Array.from({ length: opts.clients }, async () => {
  const agent = new http.Agent({ keepAlive: opts.keepAlive, maxSockets: 1 });
  while (issued < opts.requests && performance.now() < deadline) {
    results.push(await send(agent, issued++));
  }
  agent.destroy();
}));
const seconds = (performance.now() - t0) / 1000;
const after = memory();
const healthAfter = await health();
const serverCount = (k) =>
  healthAfter?.requests && healthBefore?.requests
    ? healthAfter.requests[k] - healthBefore.requests[k]
    : null;

const ok = results.filter((r) => r.ok);
const errors = results.filter((r) => !r.ok);
const lat = ok.map((r) => r.ms).sort((a, b) => a - b);
const first = ok.map((r) => r.firstMs).filter((x) => x > 0).sort((a, b) => a - b);
const tokens = ok.reduce((s, r) => s + r.tokens, 0);
const report = {
  endpoint: opts.chat ? "chat" : "completions", stream: opts.stream, clients: opts.clients,
  max_tokens: opts.maxTokens, requests: results.length, errors: errors.length,
  seconds: +seconds.toFixed(2),
  requests_per_s: +(ok.length / seconds).toFixed(2),
  tokens_per_s: +(tokens / seconds).toFixed(1),
  latency_ms: { p50: +percentile(lat, 50).toFixed(1), p90: +percentile(lat, 90).toFixed(1),
                p99: +percentile(lat, 99).toFixed(1), max: +(lat.at(-1) ?? NaN).toFixed(1) },
  first_token_ms: opts.stream ? { p50: +percentile(first, 50).toFixed(1),
                                  p99: +percentile(first, 99).toFixed(1) } : undefined,
  // elm's /health counts requests; another server's (llama-server: {"status": "ok"}) may not.
  server_completed: serverCount('completed'),
  server_rejected: serverCount('rejected'),
  server_failed: serverCount('failed'),
  rss_mib: before ? { before: +before.rss.toFixed(1), after: +after.rss.toFixed(1),
                      peak: +after.hwm.toFixed(1) } : undefined,
  loadavg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
};
if (opts.json) {
  console.log(JSON.stringify(report));
} else {
  const l = report.latency_ms;
  console.log(`${report.endpoint}${opts.stream ? " (stream)" : ""}, ${opts.clients} client(s), ` +
              `max_tokens ${opts.maxTokens}: ${report.requests} requests in ${report.seconds} s, ` +
              `${report.errors} errors`);
  console.log(`  ${report.requests_per_s} req/s, ${report.tokens_per_s} tokens/s; latency ms ` +
              `p50 ${l.p50}, p90 ${l.p90}, p99 ${l.p99}, max ${l.max}`);
  if (report.first_token_ms) {
    console.log(`  first token ms p50 ${report.first_token_ms.p50}, ` +
                `p99 ${report.first_token_ms.p99}`);
  }
  console.log(`  server: ${report.server_completed} completed, ${report.server_rejected} ` +
              `rejected, ${report.server_failed} failed`);
  if (report.rss_mib) {
    const m = report.rss_mib;
    console.log(`  server RSS MiB: ${m.before} before, ${m.after} after, peak (VmHWM) ${m.peak}`);
  }
  console.log(`  load average: ${report.loadavg}`);
}
for (const e of errors.slice(0, 5)) console.error(`error: ${e.error}`);
process.exit(errors.length ? 1 : 0);
