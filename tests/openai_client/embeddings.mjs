// The official openai npm client asks `elm serve` for embeddings (tests/embedding_test.cc runs it):
//
//   node tests/openai_client/embeddings.mjs http://127.0.0.1:PORT/v1
//
// The client's default request asks for base64 and decodes it to floats; the second call asks
// for floats. Prints one JSON object: both results and the usage.
import OpenAI from "openai";

const client = new OpenAI({baseURL: process.argv[2], apiKey: "unused", maxRetries: 0});
const input = ["The cat sat on the mat.", "Speculative decoding"];
const viaBase64 = await client.embeddings.create({model: "elm", input});
const viaFloat = await client.embeddings.create({model: "elm", input, encoding_format: "float"});
console.log(JSON.stringify({
  base64: viaBase64.data.map((d) => Array.from(d.embedding)),
  float: viaFloat.data.map((d) => d.embedding),
  usage: viaFloat.usage,
  object: viaFloat.object,
}));
