// Streams one chat completion through the official `openai` npm package and prints
// each chunk as a JSON line, or {"raised": ...} when the SDK throws.
// argv: base URL, API key, model, "stream" | "stream-usage" | "whole".
// OPENAI_NODE_DIR: the folder whose node_modules holds `openai`.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.OPENAI_NODE_DIR, "package.json"));
const { OpenAI, APIError } = require("openai");

const [baseURL, apiKey, model, mode] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const messages = [{ role: "user", content: "hello" }];
try {
  if (mode === "whole") {
    console.log(JSON.stringify(await client.chat.completions.create({ model, messages })));
  } else {
    const extra = mode === "stream-usage" ? { stream_options: { include_usage: true } } : {};
    const stream = await client.chat.completions.create({ model, messages, stream: true, ...extra });
    for await (const chunk of stream) console.log(JSON.stringify(chunk));
  }
} catch (error) {
  console.log(JSON.stringify({ raised: error instanceof APIError ? "APIError" : String(error), message: error.message }));
}
