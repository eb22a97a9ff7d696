// llama-bench-like timing of llama.cpp through npm's node-llama-cpp (its package ships prebuilt
// llama.cpp CPU backends), to measure llama.cpp next to `elm bench` in the same session. Not part of
// the test suite: llama.cpp is not a build dependency. Setup as in llamacpp_greedy.mjs, then
//
//   NLC_DIR=/tmp/nlc node tests/tools/llamacpp_bench.mjs MODEL.gguf -t 2 -p 512 -n 128 -r 5 -d 0,512
//
// --no-mmap: the weights are read into memory (llama.cpp's --no-mmap) instead of mmapped.
//
// pp: one 512-token batch into an empty sequence (batch size 512, as llama-bench's n_ubatch).
// tg: n tokens decoded one at a time after `depth` tokens of context, each a single-token batch
// with no sampling (as llama-bench's tg); node-llama-cpp's per-call overhead is included, so this
// understates llama.cpp's generation speed somewhat.
// Prints one JSON line per test: {"test","tokens_per_s","sd","samples"}.
import path from "node:path";
import {pathToFileURL} from "node:url";

const args = process.argv.slice(2);
const opts = {model: args[0], threads: 2, p: 512, n: 128, r: 5, depths: [0], mmap: true};
for (let i = 1; i < args.length; i++) {
  const a = args[i];
  if (a === "-t") opts.threads = Number(args[++i]);
  else if (a === "-p") opts.p = Number(args[++i]);
  else if (a === "-n") opts.n = Number(args[++i]);
  else if (a === "-r") opts.r = Number(args[++i]);
  else if (a === "-d") opts.depths = args[++i].split(",").map(Number);
  else if (a === "--no-mmap") opts.mmap = false;
  else {
    console.error(`unknown argument ${a}`);
    process.exit(2);
  }
}
const nlc = process.env.NLC_DIR
  ? pathToFileURL(path.join(process.env.NLC_DIR, "node_modules/node-llama-cpp/dist/index.js")).href
  : "node-llama-cpp";
const {getLlama} = await import(nlc);
const llama = await getLlama({gpu: false, build: "never", logLevel: "warn"});
const model = await llama.loadModel({modelPath: opts.model, useMmap: opts.mmap});
const maxDepth = Math.max(...opts.depths);
const ctx = await model.createContext({
  contextSize: Math.max(opts.p, maxDepth + opts.n) + 16,
  batchSize: 512,
  threads: opts.threads,
});
const seq = ctx.getSequence();
const vocab = 32000;
let rng = 12345;
const randomTokens = (k) =>
  Array.from({length: k}, () => {
    rng = (rng * 1103515245 + 12345) % 2147483648;
    return 3 + (rng % (vocab - 3));
  });

function stats(xs) {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, xs.length - 1));
  return {mean, sd};
}

async function pp() {
  const rates = [];
  for (let rep = 0; rep <= opts.r; rep++) {  // rep 0 warms up
    await seq.clearHistory();
    const toks = randomTokens(opts.p);
    const t0 = process.hrtime.bigint();
    await seq.evaluateWithoutGeneratingNewTokens(toks);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (rep > 0) rates.push(opts.p / s);
  }
  return rates;
}

async function tg(depth) {
  const rates = [];
  for (let rep = 0; rep <= opts.r; rep++) {
    await seq.clearHistory();
    if (depth > 0) await seq.evaluateWithoutGeneratingNewTokens(randomTokens(depth));
    const toks = randomTokens(opts.n);
    const t0 = process.hrtime.bigint();
    for (const t of toks) await seq.evaluateWithoutGeneratingNewTokens([t]);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    if (rep > 0) rates.push(opts.n / s);
  }
  return rates;
}

if (opts.p > 0) {
  const r = await pp();
  const {mean, sd} = stats(r);
  console.log(JSON.stringify({test: `pp${opts.p}`, tokens_per_s: mean, sd, samples: r}));
}
if (opts.n > 0) {
  for (const d of opts.depths) {
    const r = await tg(d);
    const {mean, sd} = stats(r);
    console.log(JSON.stringify({test: `tg${opts.n}@d${d}`, tokens_per_s: mean, sd, samples: r}));
  }
}
await ctx.dispose();
await model.dispose();
