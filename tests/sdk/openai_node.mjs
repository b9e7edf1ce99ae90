// The official `openai` npm SDK against the gateway: a plain and a streamed completion.
// Usage: node tests/sdk/openai_node.mjs <base_url> <model> <api_key>. Prints one JSON object.
import OpenAI from "openai";

const [baseURL, model, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const plain = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hello from node" }],
});

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "stream from node" }],
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
let finish = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  const choice = chunk.choices?.[0];
  if (choice?.delta?.content) streamed += choice.delta.content;
  if (choice?.finish_reason) finish = choice.finish_reason;
}

console.log(JSON.stringify({
  plain: plain.choices[0].message.content,
  plain_usage: plain.usage,
  plain_model: plain.model,
  streamed,
  stream_usage: usage,
  finish,
}));
