//! Streams both ways: assemble the `chat.completion` a streamed answer amounts to (from the
//! OpenAI chunks the gateway sends its caller), and replay a stored completion as such a stream.

use super::entry::MAX_ENTRY_BYTES;
use crate::sse::{frame_data, SseEvent, SseParser};
use serde_json::{json, Map, Value};

/// Replayed text is cut into pieces of at most this many bytes, after a space or newline when
/// there is one (else at a character boundary).
pub const PIECE_BYTES: usize = 64;
/// Choice and tool-call indexes above this are treated as a broken stream.
const MAX_INDEX: u64 = 128;

#[derive(Debug, Default)]
struct ToolAcc {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

#[derive(Debug, Default)]
struct ChoiceAcc {
    seen: bool,
    role: Option<String>,
    content: String,
    refusal: String,
    reasoning: String,
    tools: Vec<ToolAcc>,
    /// `logprobs.content` and `logprobs.refusal`, concatenated (`None`: never an array).
    logprobs: [Option<Vec<Value>>; 2],
    finish: Option<String>,
}

/// Fed the SSE bytes the gateway sends a streaming caller; [`StreamAccumulator::finish`] gives
/// the equivalent `chat.completion`, or why the stream may not be stored.
///
/// Strings are concatenated (`content`, `refusal`, `reasoning_content`, tool `arguments`); a
/// tool call's `id`, `type` and `name` are taken from the first delta that has them. A delta
/// field it does not know (non-null) makes the answer unstorable: what cannot be replayed
/// faithfully is not cached.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    parser: SseParser,
    events: Vec<SseEvent>,
    id: Option<Value>,
    created: Option<Value>,
    model: Option<Value>,
    fingerprint: Option<Value>,
    choices: Vec<ChoiceAcc>,
    usage: Option<Value>,
    done: bool,
    size: usize,
    broken: Option<&'static str>,
}

impl StreamAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes exactly as sent to the caller (any chunking).
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        let mut events = std::mem::take(&mut self.events);
        if self.parser.push(bytes, &mut events).is_err() {
            self.fail("an event is too large");
        }
        for ev in events.drain(..) {
            self.event(&ev.data);
        }
        self.events = events;
    }

    /// `[DONE]` has been seen.
    pub fn saw_done(&self) -> bool {
        self.done
    }

    /// The stream ended. The completion, when every choice finished and nothing broke.
    pub fn finish(mut self) -> Result<Value, &'static str> {
        let mut events = Vec::new();
        self.parser.finish(&mut events);
        for ev in &events {
            self.event(&ev.data);
        }
        if let Some(why) = self.broken {
            return Err(why);
        }
        if self.choices.is_empty() {
            return Err("no choices");
        }
        if self.choices.iter().any(|c| !c.seen) {
            return Err("a choice index is missing");
        }
        if self.choices.iter().any(|c| c.finish.is_none()) {
            return Err("the stream ended before every choice finished");
        }
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| c.into_choice(i))
            .collect();
        let mut out = Map::new();
        out.insert("id".into(), self.id.unwrap_or(json!("")));
        out.insert("object".into(), json!("chat.completion"));
        out.insert("created".into(), self.created.unwrap_or(json!(0)));
        out.insert("model".into(), self.model.unwrap_or(json!("")));
        if let Some(fp) = self.fingerprint {
            out.insert("system_fingerprint".into(), fp);
        }
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = self.usage {
            out.insert("usage".into(), u);
        }
        Ok(Value::Object(out))
    }

    fn fail(&mut self, why: &'static str) {
        self.broken.get_or_insert(why);
        self.choices = Vec::new();
    }

    fn grow(&mut self, n: usize) {
        self.size += n;
        if self.size > MAX_ENTRY_BYTES {
            self.fail("the answer is larger than the KV value limit");
        }
    }

    fn event(&mut self, data: &str) {
        let data = data.trim();
        if self.broken.is_some() || self.done {
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        // Read by reference (`get`, `take`): no `BTreeMap::remove` or consuming iteration,
        // which would each add their own code to the wasm.
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return self.fail("a chunk is not a JSON object");
        };
        if !chunk.is_object() {
            return self.fail("a chunk is not a JSON object");
        }
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return self.fail("the stream carried an error");
        }
        for (slot, key) in [
            (&mut self.id, "id"),
            (&mut self.created, "created"),
            (&mut self.model, "model"),
            (&mut self.fingerprint, "system_fingerprint"),
        ] {
            if slot.is_none() {
                *slot = chunk.get_mut(key).map(Value::take).filter(|v| !v.is_null());
            }
        }
        if let Some(u) = chunk.get_mut("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.take());
        }
        let Some(Value::Array(choices)) = chunk.get_mut("choices") else {
            return;
        };
        for c in choices.iter_mut() {
            let Some(i) = c
                .get("index")
                .and_then(Value::as_u64)
                .filter(|i| *i < MAX_INDEX)
            else {
                return self.fail("a choice has no valid index");
            };
            let i = i as usize;
            if self.choices.len() <= i {
                self.choices.resize_with(i + 1, ChoiceAcc::default);
            }
            match self.choices[i].apply(c) {
                Ok(n) => self.grow(n),
                Err(why) => return self.fail(why),
            }
        }
    }
}

impl ChoiceAcc {
    /// Apply one choice of a chunk; the bytes added, or why the stream is unusable.
    fn apply(&mut self, c: &mut Value) -> Result<usize, &'static str> {
        if !c.is_object() {
            return Err("a choice is not an object");
        }
        self.seen = true;
        let mut added = 0;
        if let Some(Value::Object(delta)) = c.get("delta") {
            for (k, v) in delta {
                added += match (k.as_str(), v) {
                    (_, Value::Null) => 0,
                    ("role", Value::String(s)) => {
                        self.role.get_or_insert_with(|| s.clone());
                        0
                    }
                    ("content", Value::String(s)) => push(&mut self.content, s),
                    ("refusal", Value::String(s)) => push(&mut self.refusal, s),
                    ("reasoning_content", Value::String(s)) => push(&mut self.reasoning, s),
                    ("tool_calls", Value::Array(calls)) => {
                        let mut n = 0;
                        for call in calls {
                            n += self.tool(call)?;
                        }
                        n
                    }
                    _ => return Err("a delta has a field the cache cannot replay"),
                };
            }
        }
        if let Some(lp) = c.get_mut("logprobs").filter(|l| l.is_object()) {
            for (slot, k) in self.logprobs.iter_mut().zip(["content", "refusal"]) {
                if let Some(Value::Array(items)) = lp.get_mut(k) {
                    added += items.len() * 64;
                    slot.get_or_insert_with(Vec::new).append(items);
                }
            }
        }
        if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
            self.finish.get_or_insert_with(|| f.to_string());
        }
        Ok(added)
    }

    fn tool(&mut self, call: &Value) -> Result<usize, &'static str> {
        let i = call
            .get("index")
            .and_then(Value::as_u64)
            .filter(|i| *i < MAX_INDEX)
            .ok_or("a tool call has no valid index")? as usize;
        if self.tools.len() <= i {
            self.tools.resize_with(i + 1, ToolAcc::default);
        }
        let t = &mut self.tools[i];
        let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or("");
        for (field, piece) in [
            (&mut t.id, s("/id")),
            (&mut t.kind, s("/type")),
            (&mut t.name, s("/function/name")),
        ] {
            if field.is_empty() {
                field.push_str(piece);
            }
        }
        Ok(push(&mut t.arguments, s("/function/arguments")))
    }

    fn into_choice(self, index: usize) -> Value {
        let mut m = Map::new();
        m.insert(
            "role".into(),
            json!(self.role.as_deref().unwrap_or("assistant")),
        );
        let content =
            if self.content.is_empty() && (!self.tools.is_empty() || !self.refusal.is_empty()) {
                Value::Null
            } else {
                Value::String(self.content)
            };
        m.insert("content".into(), content);
        let refusal = (!self.refusal.is_empty()).then_some(self.refusal);
        m.insert("refusal".into(), json!(refusal));
        if !self.reasoning.is_empty() {
            m.insert("reasoning_content".into(), Value::String(self.reasoning));
        }
        if !self.tools.is_empty() {
            let calls: Vec<Value> = self
                .tools
                .into_iter()
                .map(|t| {
                    let kind = if t.kind.is_empty() {
                        "function".into()
                    } else {
                        t.kind
                    };
                    json!({"id": t.id, "type": kind,
                           "function": {"name": t.name, "arguments": t.arguments}})
                })
                .collect();
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        let [lp_content, lp_refusal] = self.logprobs;
        let logprobs = (lp_content.is_some() || lp_refusal.is_some())
            .then(|| json!({"content": lp_content, "refusal": lp_refusal}));
        json!({
            "index": index,
            "message": m,
            "logprobs": logprobs,
            "finish_reason": self.finish,
        })
    }
}

fn push(to: &mut String, s: &str) -> usize {
    to.push_str(s);
    s.len()
}

/// Cut `s` into pieces of at most [`PIECE_BYTES`], preferring to end after a space or newline.
pub fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut cut = rest.len();
        if cut > PIECE_BYTES {
            cut = PIECE_BYTES;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            if let Some(i) = rest[..cut].rfind([' ', '\n']).filter(|i| *i > 0) {
                cut = i + 1;
            }
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// The SSE body of a proper OpenAI stream for a stored `chat.completion`: per choice, in index
/// order, a role chunk, the reasoning, content and refusal in pieces, each tool call (a header
/// delta with id, type and name, then its arguments in pieces), and a finish chunk carrying
/// the choice's `logprobs`; then a usage chunk (`choices: []`) if `include_usage`, and
/// `data: [DONE]`. Every chunk keeps the stored `id`, `created`, `model` and
/// `system_fingerprint`. Other message fields (e.g. `annotations`) ride on the role chunk.
pub fn replay_sse(completion: &Value, include_usage: bool) -> Vec<u8> {
    let mut base = Map::new();
    base.insert(
        "id".into(),
        completion.get("id").cloned().unwrap_or(json!("")),
    );
    base.insert("object".into(), json!("chat.completion.chunk"));
    for k in ["created", "model", "system_fingerprint"] {
        if let Some(v) = completion.get(k) {
            base.insert(k.into(), v.clone());
        }
    }
    let mut out = Vec::new();
    let mut emit = |choices: Value, usage: Option<&Value>| {
        let mut chunk = base.clone();
        chunk.insert("choices".into(), choices);
        if let Some(u) = usage {
            chunk.insert("usage".into(), u.clone());
        }
        out.extend_from_slice(&frame_data(&Value::Object(chunk).to_string()));
    };
    let empty = Vec::new();
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (pos, c) in choices.iter().enumerate() {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
        let mut delta = |d: Value, finish: &Value, logprobs: &Value| {
            emit(
                json!([{"index": index, "delta": d, "logprobs": logprobs, "finish_reason": finish}]),
                None,
            )
        };
        let null = Value::Null;
        let message = c.get("message").and_then(Value::as_object);
        let text = |k: &str| {
            message
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let mut first = Map::new();
        let role = match text("role") {
            "" => "assistant",
            r => r,
        };
        first.insert("role".into(), json!(role));
        first.insert("content".into(), json!(""));
        for (k, v) in message.into_iter().flatten() {
            let known = [
                "role",
                "content",
                "refusal",
                "reasoning_content",
                "tool_calls",
            ];
            if !known.contains(&k.as_str()) && !v.is_null() && v != &json!([]) {
                first.insert(k.clone(), v.clone());
            }
        }
        delta(Value::Object(first), &null, &null);
        for field in ["reasoning_content", "content", "refusal"] {
            for piece in pieces(text(field)) {
                delta(json!({ field: piece }), &null, &null);
            }
        }
        let calls = message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for (k, call) in calls.iter().enumerate() {
            let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or("");
            let kind = if s("/type").is_empty() {
                "function"
            } else {
                s("/type")
            };
            delta(
                json!({"tool_calls": [{"index": k, "id": s("/id"), "type": kind,
                        "function": {"name": s("/function/name"), "arguments": ""}}]}),
                &null,
                &null,
            );
            for piece in pieces(s("/function/arguments")) {
                delta(
                    json!({"tool_calls": [{"index": k, "function": {"arguments": piece}}]}),
                    &null,
                    &null,
                );
            }
        }
        let finish = c.get("finish_reason").unwrap_or(&null);
        delta(json!({}), finish, c.get("logprobs").unwrap_or(&null));
    }
    if include_usage {
        if let Some(u) = completion.get("usage").filter(|u| u.is_object()) {
            emit(json!([]), Some(u));
        }
    }
    out.extend_from_slice(&frame_data("[DONE]"));
    out
}
