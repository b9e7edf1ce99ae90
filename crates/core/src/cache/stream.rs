//! Streams both ways: assemble the `chat.completion` a streamed answer amounts to (from the
//! OpenAI chunks the gateway sends its caller), and replay a stored completion as such a stream.

use super::entry::MAX_ENTRY_BYTES;
use crate::sse::{frame_data, SseEvent, SseParser};
use serde_json::Value;

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
        // Written as JSON text and read back: far less wasm than building the `Value` tree.
        let mut o = b"{\"object\":\"chat.completion\"".to_vec();
        let (empty, zero) = (Value::from(""), Value::from(0));
        for (k, v) in [
            ("id", self.id.as_ref().or(Some(&empty))),
            ("created", self.created.as_ref().or(Some(&zero))),
            ("model", self.model.as_ref().or(Some(&empty))),
            ("system_fingerprint", self.fingerprint.as_ref()),
            ("usage", self.usage.as_ref()),
        ] {
            if let Some(v) = v {
                field(&mut o, k, v);
            }
        }
        o.extend_from_slice(b",\"choices\":[");
        for (i, c) in self.choices.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            c.write(i, &mut o);
        }
        o.extend_from_slice(b"]}");
        serde_json::from_slice(&o).map_err(|_| "the completion is not valid JSON")
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
        let Ok(mut chunk) = serde_json::from_slice::<Value>(data.as_bytes()) else {
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
        let s = |p: &str| {
            crate::json::at(call, p)
                .and_then(Value::as_str)
                .unwrap_or("")
        };
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

    /// `{"index":…,"message":{…},"logprobs":…,"finish_reason":…}` as a non-streamed answer has it.
    fn write(&self, index: usize, o: &mut Vec<u8>) {
        o.extend_from_slice(b"{\"index\":");
        o.extend_from_slice(index.to_string().as_bytes());
        o.extend_from_slice(b",\"message\":{\"role\":");
        json_str(o, self.role.as_deref().unwrap_or("assistant"));
        o.extend_from_slice(b",\"content\":");
        if self.content.is_empty() && (!self.tools.is_empty() || !self.refusal.is_empty()) {
            o.extend_from_slice(b"null");
        } else {
            json_str(o, &self.content);
        }
        o.extend_from_slice(b",\"refusal\":");
        match self.refusal.as_str() {
            "" => o.extend_from_slice(b"null"),
            r => json_str(o, r),
        }
        if !self.reasoning.is_empty() {
            o.extend_from_slice(b",\"reasoning_content\":");
            json_str(o, &self.reasoning);
        }
        for (i, t) in self.tools.iter().enumerate() {
            o.extend_from_slice(if i == 0 { b",\"tool_calls\":[" } else { b"," });
            o.extend_from_slice(b"{\"id\":");
            json_str(o, &t.id);
            o.extend_from_slice(b",\"type\":");
            json_str(
                o,
                if t.kind.is_empty() {
                    "function"
                } else {
                    &t.kind
                },
            );
            o.extend_from_slice(b",\"function\":{\"name\":");
            json_str(o, &t.name);
            o.extend_from_slice(b",\"arguments\":");
            json_str(o, &t.arguments);
            o.extend_from_slice(if i + 1 == self.tools.len() {
                b"}}]"
            } else {
                b"}}"
            });
        }
        o.extend_from_slice(b"},\"logprobs\":");
        if self.logprobs.iter().all(Option::is_none) {
            o.extend_from_slice(b"null");
        } else {
            for (k, items) in ["{\"content\":", ",\"refusal\":"]
                .iter()
                .zip(&self.logprobs)
            {
                o.extend_from_slice(k.as_bytes());
                match items {
                    None => o.extend_from_slice(b"null"),
                    Some(items) => {
                        o.push(b'[');
                        for (i, v) in items.iter().enumerate() {
                            if i > 0 {
                                o.push(b',');
                            }
                            json(o, v);
                        }
                        o.push(b']');
                    }
                }
            }
            o.push(b'}');
        }
        o.extend_from_slice(b",\"finish_reason\":");
        json_str(o, self.finish.as_deref().unwrap_or(""));
        o.push(b'}');
    }
}

/// `,"k":v`
fn field(o: &mut Vec<u8>, k: &str, v: &Value) {
    o.extend_from_slice(b",\"");
    o.extend_from_slice(k.as_bytes());
    o.extend_from_slice(b"\":");
    json(o, v);
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
    // Written straight as bytes (no `Value` per chunk): every chunk is `head`, then `"choices":`,
    // what follows, and `}` with the blank line that ends the event.
    let mut head = b"data: {\"object\":\"chat.completion.chunk\",\"id\":".to_vec();
    match completion.get("id") {
        Some(id) => json(&mut head, id),
        None => head.extend_from_slice(b"\"\""),
    }
    for k in ["created", "model", "system_fingerprint"] {
        if let Some(v) = completion.get(k) {
            head.extend_from_slice(b",\"");
            head.extend_from_slice(k.as_bytes());
            head.extend_from_slice(b"\":");
            json(&mut head, v);
        }
    }
    head.extend_from_slice(b",\"choices\":");
    let mut out = Vec::new();
    let empty = Vec::new();
    let null = Value::Null;
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (pos, c) in choices.iter().enumerate() {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
        // One chunk with one choice: `[{"index":…,"delta":<delta>,"logprobs":…,"finish_reason":…}]`.
        let mut chunk = |delta: &[u8], finish: &Value, logprobs: &Value| {
            out.extend_from_slice(&head);
            out.extend_from_slice(b"[{\"index\":");
            out.extend_from_slice(index.to_string().as_bytes());
            out.extend_from_slice(b",\"delta\":");
            out.extend_from_slice(delta);
            out.extend_from_slice(b",\"logprobs\":");
            json(&mut out, logprobs);
            out.extend_from_slice(b",\"finish_reason\":");
            json(&mut out, finish);
            out.extend_from_slice(b"}]}\n\n");
        };
        let message = c.get("message").and_then(Value::as_object);
        let text = |k: &str| {
            message
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let role = match text("role") {
            "" => "assistant",
            r => r,
        };
        let mut d = b"{\"role\":".to_vec();
        json_str(&mut d, role);
        d.extend_from_slice(b",\"content\":\"\"");
        for (k, v) in message.into_iter().flatten() {
            let known = [
                "role",
                "content",
                "refusal",
                "reasoning_content",
                "tool_calls",
            ];
            if !known.contains(&k.as_str())
                && !v.is_null()
                && v.as_array().is_none_or(|a| !a.is_empty())
            {
                d.push(b',');
                json_str(&mut d, k);
                d.push(b':');
                json(&mut d, v);
            }
        }
        d.push(b'}');
        chunk(&d, &null, &null);
        for field in ["reasoning_content", "content", "refusal"] {
            for piece in pieces(text(field)) {
                let mut d = b"{\"".to_vec();
                d.extend_from_slice(field.as_bytes());
                d.extend_from_slice(b"\":");
                json_str(&mut d, piece);
                d.push(b'}');
                chunk(&d, &null, &null);
            }
        }
        let calls = message
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for (k, call) in calls.iter().enumerate() {
            let s = |p: &str| {
                crate::json::at(call, p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
            };
            let kind = match s("/type") {
                "" => "function",
                t => t,
            };
            // `{"tool_calls":[{"index":k,` … `}]}` around each tool-call delta.
            let open = format!("{{\"tool_calls\":[{{\"index\":{k},");
            let mut d = open.clone().into_bytes();
            d.extend_from_slice(b"\"id\":");
            json_str(&mut d, s("/id"));
            d.extend_from_slice(b",\"type\":");
            json_str(&mut d, kind);
            d.extend_from_slice(b",\"function\":{\"name\":");
            json_str(&mut d, s("/function/name"));
            d.extend_from_slice(b",\"arguments\":\"\"}}]}");
            chunk(&d, &null, &null);
            for piece in pieces(s("/function/arguments")) {
                let mut d = open.clone().into_bytes();
                d.extend_from_slice(b"\"function\":{\"arguments\":");
                json_str(&mut d, piece);
                d.extend_from_slice(b"}}]}");
                chunk(&d, &null, &null);
            }
        }
        let finish = c.get("finish_reason").unwrap_or(&null);
        chunk(b"{}", finish, c.get("logprobs").unwrap_or(&null));
    }
    if include_usage {
        if let Some(u) = completion.get("usage").filter(|u| u.is_object()) {
            out.extend_from_slice(&head);
            out.extend_from_slice(b"[],\"usage\":");
            json(&mut out, u);
            out.extend_from_slice(b"}\n\n");
        }
    }
    out.extend_from_slice(&frame_data("[DONE]"));
    out
}

fn json(out: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(&mut *out, v);
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}
