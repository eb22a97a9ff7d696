// Greedy decoding with llama.cpp (through npm's node-llama-cpp, whose package ships prebuilt
// llama.cpp binaries), to check that a GGUF elm wrote loads and runs in llama.cpp and to compare
// its tokens with elm's. Not part of the test suite: llama.cpp is not a build dependency.
//
//   mkdir -p /tmp/nlc && cd /tmp/nlc && npm init -y && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true \
//     npm install --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1
//   NLC_DIR=/tmp/nlc node tests/tools/llamacpp_greedy.mjs MODEL.gguf --ids 1,16641,2303 -n 12
//   NLC_DIR=/tmp/nlc node tests/tools/llamacpp_greedy.mjs MODEL.gguf --prompt "ROMEO: But soft"
//
// Prints one JSON line: {"model", "architecture", "prompt_ids", "generated"}. With --prompt the text is
// tokenized by llama.cpp (BOS added as the GGUF's tokenizer.ggml.add_bos_token says).
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error("usage: llamacpp_greedy.mjs MODEL.gguf (--ids 1,2,3 | --prompt TEXT) [-n N]");
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 1) usage();
const opts = {model: args[0], ids: null, prompt: null, n: 12};
for (let i = 1; i < args.length; i++) {
  const a = args[i];
  if (a === "--ids") opts.ids = args[++i].split(",").map((s) => Number.parseInt(s.trim(), 10));
  else if (a === "--prompt") opts.prompt = args[++i];
  else if (a === "-n") opts.n = Number.parseInt(args[++i], 10);
  else usage(`unknown argument ${a}`);
}
if ((opts.ids === null) === (opts.prompt === null)) usage("give exactly one of --ids, --prompt");
if (opts.ids && opts.ids.some((x) => !Number.isInteger(x) || x < 0)) usage("bad --ids");

// node-llama-cpp is ESM and ESM ignores NODE_PATH: load it from NLC_DIR's node_modules.
async function loadNodeLlamaCpp() {
  const dir = process.env.NLC_DIR;
  if (dir) {
    const entry = path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
    if (!fs.existsSync(entry)) usage(`${entry} not found (install node-llama-cpp in NLC_DIR)`);
    return import(pathToFileURL(entry).href);
  }
  return import("node-llama-cpp");
}

const {getLlama} = await loadNodeLlamaCpp();
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath: opts.model});
const promptIds = opts.ids ?? Array.from(model.tokenize(opts.prompt, false));
if (opts.prompt !== null && model.tokens.shouldPrependBosToken && model.tokens.bos !== null)
  promptIds.unshift(model.tokens.bos);
const context = await model.createContext({contextSize: Math.max(64, promptIds.length + opts.n),
                                           threads: 1});
const sequence = context.getSequence();
const generated = [];
// temperature 0: llama.cpp's greedy sampler (argmax); no repetition penalty.
for await (const token of sequence.evaluate(promptIds, {temperature: 0})) {
  generated.push(token);
  if (generated.length >= opts.n) break;
}
console.log(JSON.stringify({model: opts.model,
                            architecture: model.fileInfo?.metadata?.general?.architecture ?? null,
                            prompt_ids: promptIds, generated}));
await context.dispose();
await model.dispose();
