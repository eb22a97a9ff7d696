// End-to-end test of structured output and tools with the official `openai` npm client: starts
// `elm serve` on a free loopback port with the tiny random model (whose unconstrained text is
// noise, so every well-formed answer below is the grammar's doing) and checks that
//   - response_format json_schema gives content that parses and follows the schema,
//   - a named tool_choice and "required" give a tool call the client parses
//     (finish_reason "tool_calls", arguments that are JSON following the tool's parameters),
//   - the same tool call arrives as streamed tool_calls deltas,
//   - a schema with an unsupported keyword is a 400 naming it.
//
//   node tests/openai_client/structured_output.mjs [--elm build/release/elm]
//        [--model models/tiny-random-32k]
//
// Exit code 0: passed; 1: failed; 77: skipped (the openai package is not installed: run
// `npm ci --prefix tests/openai_client`).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
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

let OpenAI;
try {
  ({ default: OpenAI } = await import("openai"));
} catch (e) {
  if (e.code !== "ERR_MODULE_NOT_FOUND") throw e;
  console.log("SKIP: the openai package is not installed (run `npm ci --prefix tests/openai_client`)");
  process.exit(77);
}
if (!existsSync(elmBin)) {
  console.error(`FAIL: no elm binary at ${elmBin} (pass --elm)`);
  process.exit(1);
}

function startServer() {
  return new Promise((resolvePort, reject) => {
    const child = spawn(elmBin, ["serve", "--model", modelDir, "--port", "0", "--context", "4096",
                                 "--threads", "1"],
                        { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${err}`)), 30000);
    child.stderr.on("data", (d) => {
      err += d;
      const m = err.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
      if (m) {
        clearTimeout(timer);
        resolvePort({ child, port: Number(m[1]), log: () => err });
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited (${code}):\n${err}`)));
  });
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// The schema's subset these tests use: type, properties, required, additionalProperties false,
// items, maxItems, enum, maxLength.
function validate(value, schema, path = "$") {
  if (schema.enum) {
    check(schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value)),
          `${path}: ${JSON.stringify(value)} not in enum`);
    return;
  }
  switch (schema.type) {
    case "object":
      check(value !== null && typeof value === "object" && !Array.isArray(value),
            `${path}: not an object`);
      for (const r of schema.required ?? []) check(r in value, `${path}: missing ${r}`);
      for (const [k, v] of Object.entries(value)) {
        check(schema.properties && k in schema.properties, `${path}: unexpected key ${k}`);
        validate(v, schema.properties[k], `${path}.${k}`);
      }
      break;
    case "array":
      check(Array.isArray(value), `${path}: not an array`);
      if (schema.maxItems !== undefined) check(value.length <= schema.maxItems, `${path}: too long`);
      value.forEach((v, i) => validate(v, schema.items, `${path}[${i}]`));
      break;
    case "string":
      check(typeof value === "string", `${path}: not a string`);
      if (schema.maxLength !== undefined)
        check([...value].length <= schema.maxLength, `${path}: longer than ${schema.maxLength}`);
      break;
    case "integer":
      check(Number.isInteger(value), `${path}: not an integer`);
      break;
    case "boolean":
      check(typeof value === "boolean", `${path}: not a boolean`);
      break;
    default:
      throw new Error(`${path}: validator does not know ${schema.type}`);
  }
}

const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    age: { type: "integer" },
    member: { type: "boolean" },
    tags: { type: "array", items: { enum: ["a", "b", "c"] }, maxItems: 3 },
  },
  required: ["name", "age", "member"],
  additionalProperties: false,
};

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", maxLength: 12 },
        unit: { enum: ["celsius", "fahrenheit"] },
      },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};
const timeTool = {
  type: "function",
  function: {
    name: "get_time",
    parameters: { type: "object", properties: { zone: { type: "string", maxLength: 8 } },
                  required: ["zone"] },
  },
};

const { child, port, log } = await startServer();
let failed = false;
try {
  const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused" });
  const messages = [{ role: "user", content: "Describe a person as JSON." }];

  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model: "elm", messages, seed, temperature: 1, max_tokens: 600,
      response_format: { type: "json_schema",
                         json_schema: { name: "person", schema: personSchema, strict: true } },
    });
    const content = r.choices[0].message.content;
    check(r.choices[0].finish_reason === "stop",
          `json_schema: finish_reason ${r.choices[0].finish_reason}: ${content}`);
    validate(JSON.parse(content), personSchema);
    console.log(`json_schema (seed ${seed}): ${content}`);
  }

  for (const tool_choice of [{ type: "function", function: { name: "get_weather" } }, "required"]) {
    const r = await client.chat.completions.create({
      model: "elm", seed: 7, temperature: 1, max_tokens: 600,
      messages: [{ role: "user", content: "What is the weather in Paris?" }],
      tools: [weatherTool, timeTool], tool_choice,
    });
    const choice = r.choices[0];
    check(choice.finish_reason === "tool_calls", `tools: finish_reason ${choice.finish_reason}`);
    check(choice.message.content === null, "tools: content should be null");
    const call = choice.message.tool_calls[0];
    check(call.type === "function" && call.id.startsWith("call_"), "tools: call shape");
    const tool = [weatherTool, timeTool].find((t) => t.function.name === call.function.name);
    check(tool, `tools: unknown function ${call.function.name}`);
    if (typeof tool_choice === "object")
      check(call.function.name === "get_weather", "tools: the named function was not called");
    validate(JSON.parse(call.function.arguments), tool.function.parameters);
    console.log(`tool call (${JSON.stringify(tool_choice)}): ${call.function.name} ` +
                `${call.function.arguments}`);

    // The call and its result sent back: the next turn is accepted.
    const next = await client.chat.completions.create({
      model: "elm", seed: 7, max_tokens: 8,
      messages: [{ role: "user", content: "What is the weather in Paris?" }, choice.message,
                 { role: "tool", tool_call_id: call.id, content: "{\"temp\": 21}" }],
      tools: [weatherTool, timeTool], tool_choice: "none",
    });
    check(typeof next.choices[0].message.content === "string", "tools: follow-up turn");
  }

  // Streamed: the call arrives as tool_calls deltas.
  const stream = await client.chat.completions.create({
    model: "elm", seed: 11, temperature: 1, max_tokens: 600, stream: true,
    messages: [{ role: "user", content: "Weather in Oslo?" }],
    tools: [weatherTool], tool_choice: "required",
  });
  let name = "", args = "", finish = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    for (const tc of c.delta?.tool_calls ?? []) {
      name += tc.function?.name ?? "";
      args += tc.function?.arguments ?? "";
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  check(finish === "tool_calls", `stream: finish_reason ${finish}`);
  check(name === "get_weather", `stream: name ${name}`);
  validate(JSON.parse(args), weatherTool.function.parameters);
  console.log(`streamed tool call: ${name} ${args}`);

  // A schema elm cannot honour is a 400 that names the keyword.
  let status = 0, message = "";
  try {
    await client.chat.completions.create({
      model: "elm", messages,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: {
        type: "object", properties: { id: { type: "string", pattern: "^[a-z]+$" } } } } },
    });
  } catch (e) {
    status = e.status;
    message = e.message;
  }
  check(status === 400 && message.includes("pattern"), `bad schema: ${status} ${message}`);
  console.log(`bad schema: ${status} ${message}`);
  console.log("PASS");
} catch (e) {
  failed = true;
  console.error(`FAIL: ${e.stack ?? e}\n--- server log ---\n${log()}`);
} finally {
  child.kill("SIGTERM");
}
process.exit(failed ? 1 : 0);
