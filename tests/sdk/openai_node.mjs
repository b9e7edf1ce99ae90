// The official `openai` npm SDK against the gateway: plain, streamed, a tools round trip, JSON
// mode and embeddings.
// Usage: node tests/sdk/openai_node.mjs <base_url> <model> <api_key> [embeddings_model].
// Prints one JSON object.
import OpenAI from "openai";

const [baseURL, model, apiKey, embedModel] = process.argv.slice(2);
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

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
  },
};
const ask = [{ role: "user", content: "[[fake:tool_call]] weather in Paris?" }];
const toolAnswer = await client.chat.completions.create({ model, messages: ask, tools: [weather] });
const call = toolAnswer.choices[0].message.tool_calls[0];
const afterTool = await client.chat.completions.create({
  model,
  tools: [weather],
  messages: [
    { role: "user", content: "weather in Paris?" },
    toolAnswer.choices[0].message,
    { role: "tool", tool_call_id: call.id, content: '{"temp_c": 21}' },
  ],
});

const jsonMode = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "answer in JSON" }],
  response_format: { type: "json_object" },
});

let embeddings = null;
if (embedModel) {
  // The SDK asks for base64 and decodes it.
  embeddings = await client.embeddings.create({ model: embedModel, input: ["one", "two"] });
}

console.log(JSON.stringify({
  plain: plain.choices[0].message.content,
  plain_usage: plain.usage,
  plain_model: plain.model,
  streamed,
  stream_usage: usage,
  finish,
  tool_finish: toolAnswer.choices[0].finish_reason,
  tool_args: JSON.parse(call.function.arguments),
  after_tool: afterTool.choices[0].message.content,
  json: JSON.parse(jsonMode.choices[0].message.content),
  embedding_dims: embeddings ? embeddings.data.map((d) => d.embedding.length) : null,
  embedding_usage: embeddings ? embeddings.usage.prompt_tokens : null,
}));
