// Regenerates tests/data/tokenizer/hard_cases.jsonl: hard strings tokenized by two independent
// JavaScript implementations of the Llama-2 tokenizer. The tests only read the .jsonl; this
// script is kept so the corpus can be rebuilt or extended.
//
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm init -y &&
//     npm install @lenml/tokenizers@3.7.2 llama-tokenizer-js@1.2.2
//   TOKREF_DIR=/tmp/tokref node tests/tools/gen_tokenizer_cases.mjs   # from the repository root
//
// Each output line: {"text", "ids", "decoded", "special_ids", "special_decoded"}.
//   ids/decoded: plain-text encoding (literal "<s>" is text) with BOS, and its decode with
//     special tokens skipped. Computed by @lenml/tokenizers (transformers.js) loading
//     data/tokenizer/llama2/tokenizer.json with its added tokens removed, and cross-checked
//     against llama-tokenizer-js (which always treats "<s>" as text).
//   special_ids/special_decoded: HF default behaviour (added tokens written in the text are parsed),
//     from @lenml/tokenizers with the unmodified tokenizer.json.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const refDir = process.env.TOKREF_DIR ?? "/tmp/tokref";
const requireRef = createRequire(path.join(refDir, "package.json"));
const { TokenizerLoader } = await import(pathToFileURL(requireRef.resolve("@lenml/tokenizers")));
const llamaJs = (await import(pathToFileURL(requireRef.resolve("llama-tokenizer-js")))).default;

const tokDir = path.join(repo, "data/tokenizer/llama2");
const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8"));
const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8"));
const full = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
const plain = TokenizerLoader.fromPreTrained({
  tokenizerJSON: { ...tokenizerJSON, added_tokens: [] },
  tokenizerConfig,
});

// Deterministic PRNG (mulberry32) so the corpus is reproducible.
let seed = 0x5eed1234;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1)); // inclusive
const pick = (arr) => arr[randInt(0, arr.length - 1)];
const range = (lo, hi) => String.fromCodePoint(randInt(lo, hi));

const cases = [];
const add = (t) => cases.push(t);

// --- Hand-written cases.
[
  "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t\t", "  \t  \n  ",
  "▁", "▁▁", " ▁", "▁ ", "▁hello", "hello▁world", "a▁▁b", "▁▁▁▁▁▁▁▁",
  "hello", " hello", "hello ", "  hello  ", "hello  world", "hello\tworld", "hello\nworld",
  "Hello, World!", "HELLO WORLD", "hElLo WoRlD", "don't won't can't I'm you're",
  "The quick brown fox jumps over the lazy dog.",
  "pneumonoultramicroscopicsilicovolcanoconiosis",
  "Supercalifragilisticexpialidocious antidisestablishmentarianism",
  "a".repeat(200), "ab".repeat(150), "the".repeat(100), " ".repeat(100), "\n".repeat(50),
  "0", "12", "123", "1234567890", "3.14159265358979", "-42", "1,000,000", "0x1F600", "1e-10",
  "2024-01-31T12:34:56Z", "+1 (555) 123-4567", "192.168.0.1", "$19.99", "50%",
  "https://example.com/path?query=1&x=%20y#frag", "mailto:someone@example.org",
  "http://localhost:8080/api/v1/users/42", "C:\\Users\\me\\file.txt", "/usr/local/bin/elm",
  "def foo(x):\n    return x * 2\n", "int main() {\n\treturn 0;\n}\n",
  "for (int i = 0; i < n; ++i) {\n    sum += a[i];\n}",
  "if x:\n\tif y:\n\t\tprint('deep')\n", "    indented with spaces\n        more\n",
  "{\"key\": \"value\", \"n\": [1, 2, 3], \"nested\": {\"a\": null}}",
  "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
  "# Title\n\n- item 1\n- item 2\n\n```python\nprint(1)\n```\n",
  "SELECT * FROM users WHERE id = 1;", "x = [i**2 for i in range(10) if i % 2 == 0]",
  "λx. x + 1", "∀x ∈ ℝ: x² ≥ 0", "E = mc²", "∑_{i=1}^{n} i = n(n+1)/2", "½ ¼ ¾ ⅓",
  "café", "naïve", "résumé", "Ångström", "Straße", "Œuvre", "ﬁ ligature", "ǅ", "İstanbul",
  "e\u0301", "a\u0300\u0301\u0302\u0303", "Z\u0351\u0352\u0353a\u0354\u0355l\u0356g\u0357o",
  "n\u0303", "\u0301 starts with a combining mark",
  "你好，世界！", "中华人民共和国", "東京都", "日本語のテキストです。", "カタカナ", "ひらがな",
  "한국어 텍스트", "안녕하세요", "镇", "龘", "𠀀𠀁𠀂", "𪚥", "中文 English 混合 text",
  "Привет, мир!", "Ελληνικά", "Україна", "Ўзбек",
  "مرحبا بالعالم", "السلام عليكم", "שלום עולם", "עברית\u200Fmixed", "नमस्ते दुनिया", "हिन्दी",
  "สวัสดีชาวโลก", "ཀ་ཁ་ག", "ქართული", "Հայերեն", "አማርኛ", "தமிழ்", "বাংলা", "ગુજરાતી",
  "😀", "😀😃😄", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇺🇸🇯🇵", "❤️", "🦙", "🦙Ꙋ", "Ꙋ🦙",
  "I ❤️ NY 🗽", "emoji at end 🎉", "🎉 emoji at start", "text🦙text", "🧑‍🤝‍🧑", "🫠🫡🫥",
  "\u0000", "\u0001\u0002\u0003", "\u001b[31mred\u001b[0m", "\u007f", "\u0080\u0081\u009f",
  "\u00a0", "a\u00a0b", "\u2003em space", "\u3000ideographic", "\u200b", "zero\u200bwidth",
  "\ufeffBOM", "\ufffd", "\ue000", "\uf8ff", "\u{F0000}", "\u{10FFFF}", "\u{E0041}", "\u2028\u2029",
  "\u{1D400}\u{1D401}", "\u{10000}", "\u{1F000}", "\u{1FAF8}", "\u0fff", "\u00ad soft hyphen",
  "<s>", "</s>", "<unk>", "<s>hi</s>", "hello <s> world", "<s><s></s>", "a</s>b", "<<s>>",
  "<s >", "< s>", "<S>", "<0x0A>", "<0xFF>", "[INST] hi [/INST]", "<|endoftext|>",
  "tab\tand\nnewline", "trailing tab\t", "\tleading tab", "line1\r\nline2\r\n",
  "!!!???...", "...", "---", "***", "___", "~~~", "'''", "\"\"\"", "``", "@#$%^&*()",
  "a b c d e f g", "A B C", "1 2 3", "x  y   z    w",
].forEach(add);

// --- Random strings from character pools.
const pools = [
  () => range(0x20, 0x7e),
  () => pick([" ", " ", " ", "\t", "\n", "\r", "\u00a0", "\u3000"]),
  () => range(0xc0, 0x17f),
  () => range(0x4e00, 0x9fff),
  () => range(0x3040, 0x30ff),
  () => range(0xac00, 0xd7a3),
  () => range(0x0400, 0x04ff),
  () => range(0x0600, 0x06ff),
  () => range(0x05d0, 0x05ea),
  () => range(0x0900, 0x097f),
  () => range(0x0e00, 0x0e7f),
  () => range(0x0300, 0x036f),
  () => range(0x1f300, 0x1faff),
  () => pick(["\u200d", "\ufe0f", "\u{1F3FB}", "\u{1F3FF}"]),
  () => range(0x2200, 0x22ff),
  () => range(0x2500, 0x257f),
  () => range(0x10000, 0x10ffff),
  () => range(0x1, 0x1f),
  () => "▁",
  () => pick(["the", " the", "ing", " of", "tion", "\n\n", "    ", "()", "{}", "=>"]),
];
for (let n = 0; n < 160; ++n) {
  const k = randInt(1, 4);
  const chosen = Array.from({ length: k }, () => pick(pools));
  const len = randInt(1, 40);
  let s = "";
  for (let i = 0; i < len; ++i) s += pick(chosen)();
  add(s);
}

// --- Slices of the plain-text corpora, cut on character boundaries.
const corpusDir = path.join(repo, "../shared/data/corpus");  // beside the repository
if (fs.existsSync(corpusDir)) {
  for (const f of fs.readdirSync(corpusDir).filter((x) => x.endsWith(".txt")).sort()) {
    const text = Array.from(fs.readFileSync(path.join(corpusDir, f), "utf8"));
    for (let n = 0; n < 12; ++n) {
      const len = n === 0 ? 6000 : randInt(10, 800);
      const start = randInt(0, text.length - len - 1);
      add(text.slice(start, start + len).join(""));
    }
  }
}

// --- A few long single "words" (no spaces): the BPE word is the whole string.
add(Array.from({ length: 3000 }, () => range(0x4e00, 0x9fff)).join(""));
add(Array.from({ length: 2000 }, () => range(0x61, 0x7a)).join(""));
add(Array.from({ length: 500 }, () => range(0x1f300, 0x1faff)).join(""));

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const out = [];
let disagreements = 0;
for (const text of cases) {
  const ids = plain.encode(text);
  if (text !== "") {  // llama-tokenizer-js returns [] (no BOS) for ""
    const other = llamaJs.encode(text);
    if (!same(ids, other)) {
      ++disagreements;
      console.error(`llama-tokenizer-js disagrees on ${JSON.stringify(text).slice(0, 80)}`);
    }
  }
  const special_ids = full.encode(text);
  out.push(JSON.stringify({
    text,
    ids,
    decoded: full.decode(ids, { skip_special_tokens: true }),
    special_ids,
    special_decoded: full.decode(special_ids, { skip_special_tokens: true }),
  }));
}
const dest = path.join(repo, "tests/data/tokenizer/hard_cases.jsonl");
fs.writeFileSync(dest, out.join("\n") + "\n");
console.error(`${out.length} cases -> ${dest}; llama-tokenizer-js disagreements: ${disagreements}`);
if (disagreements > 0) process.exitCode = 1;
