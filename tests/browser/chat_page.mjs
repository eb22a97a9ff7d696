// Browser test of the chat page: starts `elm serve` on a free loopback port, opens "/" in headless
// Chromium (Debian's, driven by playwright-core), sends a message, waits for streamed text,
// presses Stop, checks the page is usable again and saves a screenshot.
//
//   node tests/browser/chat_page.mjs [--elm build/release/elm] [--model models/tiny-random-32k]
//        [--chromium /usr/bin/chromium] [--screenshot build/test-artifacts/chat_page.png]
//
// Exit code 0: passed; 1: failed; 77: skipped (no Chromium or no playwright-core), which ctest
// reports as skipped with SKIP_RETURN_CODE 77.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
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

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(77);
}

if (!existsSync(chromiumPath)) skip(`no Chromium at ${chromiumPath} (apt-get install chromium)`);
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch {
  skip("playwright-core is not installed (cd tests/browser && npm install)");
}
if (!existsSync(elmBin)) {
  console.error(`FAIL: no elm binary at ${elmBin} (pass --elm)`);
  process.exit(1);
}

// Starts the server on port 0 and reads the chosen port from its banner on stderr.
function startServer() {
  return new Promise((resolvePort, reject) => {
    const child = spawn(elmBin, ["serve", "--model", modelDir, "--port", "0", "--context", "4096"],
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

const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`);
};

const { child, port, log } = await startServer();
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true,
                                        args: ["--no-sandbox"] });
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForSelector("#status.ok", { timeout: 10000 });
  check((await page.textContent("#model")).includes("tiny-random-32k"), "model name shown");

  // Long replies (random weights, no EOS) so that Stop has something to stop.
  await page.fill("#max_tokens", "3000");
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
  await page.click("#send");
  await page.waitForSelector(".msg.assistant:not(.pending) .meta", { timeout: 10000 });
  const meta = await page.textContent(".msg.assistant .meta");
  check(meta.includes("stopped"), `reply marked as stopped (meta: ${meta})`);
  check((await page.textContent("#send")) === "Send", "the button is Send again");
  const reply = await page.textContent(".msg.assistant .body");
  check(reply.length > 40, "streamed text kept after stopping");

  // A second, short turn completes on its own.
  await page.fill("#max_tokens", "24");
  await page.fill("#input", "And a shorter one, please.");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant .meta").length === 2,
                             null, { timeout: 20000 });
  const meta2 = await page.$$eval(".msg.assistant .meta", (m) => m[1].textContent);
  check(/tokens/.test(meta2), `second reply has stats (meta: ${meta2})`);
  check(pageErrors.length === 0, `no page errors: ${pageErrors.join("; ")}`);

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot });
  console.log(`screenshot: ${screenshot}`);
  console.log("PASS: chat page streams, stops and continues");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.message}\n--- server log ---\n${log()}`);
} finally {
  await browser.close();
  child.kill("SIGTERM");
}
process.exit(failed ? 1 : 0);
