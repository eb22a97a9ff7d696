// Browser test of the chat page: starts `elm serve` on a free loopback port, opens "/" in headless
// Chromium (Debian's, driven by playwright-core), sends a message, waits for streamed text,
// presses Stop, checks that the server cancelled the generation and that the page is usable
// again, and saves a screenshot. Then (issue 18) a five-turn conversation with the shipped model
// (models/openelm-shakespeare, a 256-token context, so the chat only keeps going because the
// server leaves out its oldest turns) in a phone-sized window: Settings start folded and filled
// with the server's defaults, every reply completes, the trim is noted once, a reply cut by the
// context is labelled "context full" (not "hit max tokens"), and the conversation survives a
// reload; a screenshot of it is saved too.
//
//   node tests/browser/chat_page.mjs [--elm build/release/elm] [--model models/tiny-random-32k]
//        [--shipped models/openelm-shakespeare] [--chromium /usr/bin/chromium]
//        [--screenshot build/test-artifacts/chat_page.png]
//        [--screenshot5 build/test-artifacts/chat_5turns.png]
//
// Exit code 0: passed; 1: failed; 77: skipped (no Chromium or no playwright-core), which ctest
// reports as skipped with SKIP_RETURN_CODE 77. Install playwright-core with
// `npm ci --prefix tests/browser`.
//
// The page talks to the server through a paced proxy (below) that passes streamed replies on at
// one server-sent event per PACE_MS and adds `ignore_eos` to completion requests. Without it the
// test races the model: the tiny model writes thousands of tokens a second (and, having random
// weights, may sample `</s>` at any point), so the reply could be complete before the test looks
// at it, let alone presses Stop. With it, the first reply asks for 20000 tokens, which the server
// cannot finish (nor the socket buffers hold) in the second or so before Stop, so the test can
// check that Stop cancels the generation on the server.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import http from "node:http";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const elmBin = resolve(arg("--elm", `${root}/build/release/elm`));
const modelDir = resolve(arg("--model", `${root}/models/tiny-random-32k`));
const chromiumPath = arg("--chromium", "/usr/bin/chromium");
const screenshot = resolve(arg("--screenshot", `${root}/build/test-artifacts/chat_page.png`));
const shippedDir = resolve(arg("--shipped", `${root}/models/openelm-shakespeare`));
const screenshot5 = resolve(arg("--screenshot5", `${dirname(screenshot)}/chat_5turns.png`));
const PACE_MS = 10;

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(77);
}

if (!existsSync(chromiumPath)) skip(`no Chromium at ${chromiumPath} (apt-get install chromium)`);
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (e) {
  if (e.code !== "ERR_MODULE_NOT_FOUND") throw e;
  skip("playwright-core is not installed (run `npm ci --prefix tests/browser`)");
}
if (!existsSync(elmBin)) {
  console.error(`FAIL: no elm binary at ${elmBin} (pass --elm)`);
  process.exit(1);
}

// Starts the server on port 0 and reads the chosen port from its banner on stderr.
function startServer(model = modelDir, extra = ["--context", "32768"]) {
  return new Promise((resolvePort, reject) => {
    const child = spawn(elmBin, ["serve", "--model", model, "--port", "0", ...extra, "--log"],
                        { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${err}`)), 20000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolvePort({ child, port: Number(m[1]), log: () => err });
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${err}`)));
  });
}

// A loopback proxy in front of the server. It forwards every request, adding `"ignore_eos": true`
// to chat completions, and passes a streamed (text/event-stream) reply on one event every
// `paceMs`, reading from the server only as fast as it forwards. When the browser hangs up, it
// hangs up on the server.
function startPacedProxy(target, paceMs) {
  const server = http.createServer(async (req, res) => {
    const parts = [];
    for await (const part of req) parts.push(part);
    let body = Buffer.concat(parts);
    if (req.method === "POST" && req.url === "/v1/chat/completions") {
      body = Buffer.from(JSON.stringify({ ...JSON.parse(body.toString()), ignore_eos: true }));
    }
    const headers = { ...req.headers, "content-length": String(body.length) };
    const up = http.request({ host: "127.0.0.1", port: target, method: req.method,
                              path: req.url, headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (!String(ur.headers["content-type"]).startsWith("text/event-stream")) {
        ur.pipe(res);
        return;
      }
      ur.setEncoding("utf8");
      const events = [];
      let partial = "", ended = false;
      ur.on("data", (d) => {
        partial += d;
        for (let cut; (cut = partial.indexOf("\n\n")) >= 0; partial = partial.slice(cut + 2)) {
          events.push(partial.slice(0, cut + 2));
        }
        if (events.length > 32) ur.pause();
      });
      ur.on("end", () => { ended = true; });
      const timer = setInterval(() => {
        if (events.length) {
          res.write(events.shift());
        } else if (ended) {
          clearInterval(timer);
          res.end(partial);
        }
        if (events.length < 8) ur.resume();
      }, paceMs);
      res.on("close", () => {
        clearInterval(timer);
        up.destroy();
      });
    });
    up.on("error", () => res.destroy());
    up.end(body);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

async function health(port) {
  const r = await fetch(`http://127.0.0.1:${port}/health`);
  return r.json();
}
async function waitFor(what, cond, ms = 10000) {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`);
};

const { child, port, log } = await startServer();
const proxy = await startPacedProxy(port, PACE_MS);
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true,
                                        args: ["--no-sandbox"] });
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${proxy.address().port}/`);
  await page.waitForSelector("#status.ok", { timeout: 10000 });
  check((await page.textContent("#model")).includes("tiny-random-32k"), "model name shown");

  // A long reply for Stop to cut short.
  await page.fill("#max_tokens", "20000");
  await page.fill("#temperature", "0.8");
  await page.fill("#input", "Hello! Can you tell me a story about a lighthouse keeper?");
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.user");
  // Streamed text arrives while the reply is still pending.
  await page.waitForFunction(() => {
    const m = document.querySelector(".msg.assistant.pending .body");
    return m && m.textContent.length > 40;
  }, null, { timeout: 20000 });
  check((await page.textContent("#send")) === "Stop", "the send button turns into Stop");
  // The proxy holds the server back, so it is still generating...
  check((await health(port)).slots.busy === 1, "the server is generating when Stop is pressed");
  await page.click("#send");
  await page.waitForSelector(".msg.assistant:not(.pending) .meta", { timeout: 10000 });
  const meta = await page.textContent(".msg.assistant .meta");
  check(meta.includes("stopped"), `reply marked as stopped (meta: ${meta})`);
  check((await page.textContent("#send")) === "Send", "the button is Send again");
  const reply = await page.textContent(".msg.assistant .body");
  check(reply.length > 40, "streamed text kept after stopping");
  // ...and Stop (an aborted fetch: Chromium closes the connection) cancels the generation.
  await waitFor("the server to cancel the stopped reply",
                async () => (await health(port)).requests.cancelled === 1);
  check((await health(port)).slots.busy === 0, "the slot is free after Stop");

  // A second, short turn completes on its own.
  await page.fill("#max_tokens", "24");
  await page.fill("#input", "And a shorter one, please.");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .meta").length === 2,
                             null, { timeout: 20000 });
  const meta2 = await page.$$eval(".msg.assistant .meta", (m) => m[1].textContent);
  check(/^24 tokens .* hit max tokens$/.test(meta2),
        `second reply ran to max tokens, with stats (meta: ${meta2})`);
  const h = await health(port);
  check(h.requests.completed === 1 && h.requests.failed === 0,
        `server counted one completed reply (health: ${JSON.stringify(h.requests)})`);
  check(pageErrors.length === 0, `no page errors: ${pageErrors.join("; ")}`);

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);
  console.log("PASS: chat page streams, stops (server cancels) and continues");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.message}\n--- server log ---\n${log()}`);
} finally {
  proxy.close();
  child.kill("SIGTERM");
}

// Five turns with the shipped model in a phone-sized window.
if (!failed && !existsSync(`${shippedDir}/config.json`)) {
  console.log(`SKIP (five-turn part): no shipped model at ${shippedDir}`);
} else if (!failed) {
  const shipped = await startServer(shippedDir, []);  // its own context: 256 tokens
  try {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    await page.goto(`http://127.0.0.1:${shipped.port}/`);
    await page.waitForSelector("#status.ok", { timeout: 10000 });
    check((await page.textContent("#model")).includes("context 256"), "the 256-token model");
    check(await page.isHidden("#settings"), "Settings start folded on a narrow screen");
    // The settings start from the server's one table of defaults (sampling/defaults.h).
    const models = await (await fetch(`http://127.0.0.1:${shipped.port}/v1/models`)).json();
    const d = models.data[0].meta.defaults;
    check(d.max_tokens === 128, `default reply length min(256, context/2) (got ${d.max_tokens})`);
    for (const k of ["temperature", "top_p", "top_k", "min_p", "max_tokens"]) {
      check(Number(await page.inputValue(`#${k}`)) === d[k], `setting ${k} shows the default`);
    }
    const labels = ["end of reply", "stop string", "hit max tokens", "context full"];
    const questions = ["Good morrow, who art thou?", "What news from the court?",
                       "Wilt thou speak of love?", "Where is the king tonight?",
                       "Farewell, and tell me one thing more."];
    for (let i = 0; i < questions.length; ++i) {
      if (i === questions.length - 1) {
        // The last turn asks for more than the context holds: the reply is cut by the context
        // and must be labelled so.
        await page.click("#toggle");
        await page.fill("#max_tokens", "1000");
        await page.press("#max_tokens", "Tab");
        await page.click("#toggle");
      }
      await page.fill("#input", questions[i]);
      await page.press("#input", "Enter");
      await page.waitForFunction((n) => document.querySelectorAll(".msg.assistant .meta").length === n,
                                 i + 1, { timeout: 60000 });
      check((await page.$$(".msg.error")).length === 0,
            `turn ${i + 1} got no error: ${await page.textContent("#log")}`);
      const meta = await page.$$eval(".msg.assistant .meta", (m, n) => m[n].textContent, i);
      check(labels.some((l) => meta.endsWith(l)), `turn ${i + 1} stop labelled (meta: ${meta})`);
      if (i === questions.length - 1) {
        check(meta.endsWith("context full"), `a reply cut by the context says so (meta: ${meta})`);
      } else {
        check(!meta.endsWith("context full"), `default replies fit (meta: ${meta})`);
      }
    }
    check((await page.$$(".msg.note")).length === 1, "the trim is noted once");
    check(shipped.log().includes("200"), "the server answered");
    // The conversation survives a reload.
    await page.reload();
    await page.waitForSelector("#status.ok", { timeout: 10000 });
    check((await page.$$(".msg.user")).length === 5, "five user turns after a reload");
    check((await page.$$(".msg.assistant .meta")).length === 5, "five replies after a reload");
    check((await page.$$(".msg.note")).length === 1, "the note after a reload");
    check(pageErrors.length === 0, `no page errors: ${pageErrors.join("; ")}`);
    // A picture of the whole conversation: a tall window, Settings still folded.
    await page.setViewportSize({ width: 720, height: 3800 });
    mkdirSync(dirname(screenshot5), { recursive: true });
    await page.screenshot({ path: screenshot5 });
    console.log(`screenshot: ${screenshot5}`);
    console.log("PASS: five turns with the shipped model (trimmed), labels, reload, narrow layout");
  } catch (e) {
    failed = true;
    console.error(`FAIL: ${e.message}\n--- server log ---\n${shipped.log()}`);
  } finally {
    shipped.child.kill("SIGTERM");
  }
}
await browser.close();
process.exit(failed ? 1 : 0);
