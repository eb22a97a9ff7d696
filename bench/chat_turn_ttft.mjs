// Time to first token of a chat's 5th turn (docs/performance.md "Serving"): plays a 5-turn chat
// against a running `elm serve` (streamed, greedy, fixed reply length), feeding each reply back
// as the assistant's message, and prints one JSON line with each turn's time to first token in ms.
// Several conversations (--chats) start from different opening messages.
//
//   node bench/chat_turn_ttft.mjs --url http://127.0.0.1:8090 [--chats 3] [--max-tokens 32]
import http from "node:http";

const opts = { url: "http://127.0.0.1:8080", chats: 3, maxTokens: 32, turns: 5 };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i], next = () => args[++i];
  if (a === "--url") opts.url = next();
  else if (a === "--chats") opts.chats = Number(next());
  else if (a === "--max-tokens") opts.maxTokens = Number(next());
  else if (a === "--turns") opts.turns = Number(next());
  else {
    console.error(`unknown argument ${a} (see the header of ${process.argv[1]})`);
    process.exit(2);
  }
}
const base = new URL(opts.url);

function turn(messages) {
  const payload = JSON.stringify({ messages, max_tokens: opts.maxTokens, temperature: 0,
                                   ignore_eos: true, stream: true });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let firstMs = 0, raw = "";
    const req = http.request({
      host: base.hostname, port: base.port, method: "POST", path: "/v1/chat/completions",
      headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) },
    }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (d) => {
        if (!firstMs && /"content":"[^"]/.test(d)) firstMs = performance.now() - t0;
        raw += d;
      });
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${raw}`));
        let text = "";
        for (const e of raw.split("\n\n")) {
          if (!e.startsWith("data: ") || e === "data: [DONE]") continue;
          const j = JSON.parse(e.slice(6));
          if (j.error) return reject(new Error(j.error.message));
          text += j.choices?.[0]?.delta?.content ?? "";
        }
        resolve({ firstMs, text });
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}

const user = (c, t) =>
  `Conversation ${c}, message ${t}: please tell me more about the history of the printing press ` +
  `in Europe, the people who built the first machines and how books changed afterwards.`;
const perTurn = Array.from({ length: opts.turns }, () => []);
for (let c = 0; c < opts.chats; c++) {
  const messages = [{ role: "system", content: `You are assistant number ${c}.` }];
  for (let t = 0; t < opts.turns; t++) {
    messages.push({ role: "user", content: user(c, t) });
    const r = await turn(messages);
    perTurn[t].push(r.firstMs);
    messages.push({ role: "assistant", content: r.text });
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(JSON.stringify({ chats: opts.chats, max_tokens: opts.maxTokens,
                             ttft_ms_median_per_turn: perTurn.map(median), ttft_ms: perTurn }));
