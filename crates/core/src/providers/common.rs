//! Pieces shared by the translating providers (Anthropic, Gemini): the OpenAI shapes they write
//! for the caller, the errors and warnings they report about a request, and stream endings.

use super::sanitize_message;
use crate::error::{ErrorKind, GatewayError};
use crate::policy::{AttemptFailure, FailureClass};
use crate::sse::frame_data;
use crate::usage::Usage;
use serde_json::{json, Map, Value};

/// Insert into a JSON object: one out-of-line copy of the map's insertion code instead of one
/// per call site (it matters for the worker's size).
#[inline(never)]
pub fn put(m: &mut Map<String, Value>, key: &str, value: Value) {
    m.insert(key.to_string(), value);
}

/// A string as a JSON string literal (quoted and escaped), for JSON written with `format!`.
pub fn esc(text: &str) -> String {
    crate::json::to_text(text)
}

/// `{"k": v, …}`: one shared function instead of the `json!` macro's code at every call site.
pub fn obj(pairs: &mut [(&str, Value)]) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs.iter_mut() {
        put(&mut m, k, v.take());
    }
    Value::Object(m)
}

/// The target a request is being translated for, to name it in errors and warnings.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub provider_id: &'a str,
    pub model: &'a str,
    /// `anthropic` or `gemini`.
    pub protocol: &'static str,
}

impl Target<'_> {
    /// A 400 `unsupported_parameter` naming `param` and the target.
    pub fn unsupported(&self, param: &str, why: impl AsRef<str>) -> GatewayError {
        GatewayError::new(
            ErrorKind::UnsupportedParameter,
            format!(
                "`{param}` cannot be honoured by provider {:?} ({}, model {:?}): {}",
                self.provider_id,
                self.protocol,
                self.model,
                why.as_ref()
            ),
        )
        .with_param(param)
    }

    /// The warning for a parameter dropped because the protocol has no equivalent.
    pub fn dropped(&self, param: &str) -> String {
        format!("{param} ignored: not supported by {}", self.protocol)
    }
}

/// At most this many names are listed in warnings; the rest are counted.
pub const MAX_LISTED: usize = 8;

/// A caller-supplied name made safe for an HTTP header: printable ASCII without `,` or `;`, at
/// most 64 characters.
pub fn header_safe(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != ',' && c != ';' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Warn about every non-neutral top-level parameter the translator does not handle (each one
/// named, up to [`MAX_LISTED`], then a count).
pub fn warn_unhandled(
    t: &Target<'_>,
    req: &crate::chat::ChatRequest,
    handled: &[&str],
    warnings: &mut Vec<String>,
) {
    let dropped: Vec<&String> = req
        .body
        .iter()
        .filter(|(k, v)| !handled.contains(&k.as_str()) && !is_neutral(v))
        .map(|(k, _)| k)
        .collect();
    for key in dropped.iter().take(MAX_LISTED) {
        warnings.push(t.dropped(&header_safe(key)));
    }
    if dropped.len() > MAX_LISTED {
        warnings.push(format!(
            "{} more parameters ignored: not supported by {}",
            dropped.len() - MAX_LISTED,
            t.protocol
        ));
    }
}

/// Whether a parameter value asks for nothing (`null`, `false`, `0`, `""`, `[]`, `{}`), so
/// dropping it needs no warning.
pub fn is_neutral(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Parse a tool call's JSON-encoded `arguments` into an object (`""` is `{}`).
pub fn parse_arguments(at: &str, arguments: &str) -> Result<Map<String, Value>, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(arguments.as_bytes()) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(GatewayError::invalid(
            format!("`{at}` must encode a JSON object"),
            at,
        )),
        Err(e) => Err(GatewayError::invalid(
            format!("`{at}` is not valid JSON: {e}"),
            at,
        )),
    }
}

/// The reasoning effort levels OpenAI defines, checked.
pub fn reasoning_effort(req: &crate::chat::ChatRequest) -> Result<Option<&str>, GatewayError> {
    match req.get("reasoning_effort").and_then(Value::as_str) {
        None => Ok(None),
        Some(e @ ("none" | "minimal" | "low" | "medium" | "high" | "xhigh")) => Ok(Some(e)),
        Some(other) => Err(GatewayError::invalid(
            format!(
                "`reasoning_effort` must be one of none, minimal, low, medium, high, xhigh; got {other:?}"
            ),
            "reasoning_effort",
        )),
    }
}

/// Writes OpenAI `chat.completion.chunk` events.
#[derive(Debug, Default, Clone)]
pub struct ChunkWriter {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkWriter {
    fn frame(&self, choices: Value, usage: Option<Value>) -> Vec<u8> {
        // Written directly, keys in the order `json!` gave them (sorted).
        let mut w = crate::json::JsonWriter::new();
        w.open().key("choices").raw(&crate::json::to_text(&choices));
        w.key("created").u64(self.created).key("id").str(&self.id);
        w.key("model").str(&self.model);
        w.key("object").str("chat.completion.chunk");
        if let Some(u) = usage {
            w.key("usage").raw(&crate::json::to_text(&u));
        }
        w.close();
        frame_data(&w.finish())
    }

    /// One choice's delta (and finish reason).
    pub fn delta(&self, index: u64, delta: Value, finish_reason: Option<&str>) -> Vec<u8> {
        self.frame(
            json!([{
                "index": index,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }]),
            None,
        )
    }

    /// The final usage chunk (`choices: []`), sent only when the caller asked for it.
    pub fn usage(&self, usage: &Usage) -> Vec<u8> {
        self.frame(json!([]), Some(usage.to_openai()))
    }
}

/// An OpenAI `chat.completion` body.
pub fn completion(
    id: &str,
    model: &str,
    created: u64,
    choices: Vec<Value>,
    usage: Option<&Usage>,
) -> Vec<u8> {
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let (Some(u), Some(o)) = (usage, body.as_object_mut()) {
        o.insert("usage".into(), u.to_openai());
    }
    crate::json::to_bytes(&body)
}

/// One choice of a `chat.completion`: `content` is `null` when the answer is only tool calls;
/// `reasoning_content` (the de-facto field for visible reasoning) appears only when non-empty.
pub fn choice(
    index: u64,
    text: String,
    reasoning: String,
    tool_calls: Vec<Value>,
    finish_reason: &str,
) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !tool_calls.is_empty() {
        Value::Null
    } else {
        Value::String(text)
    };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    if !tool_calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    json!({
        "index": index,
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason,
    })
}

/// An OpenAI tool call (complete, or the first delta of a streamed one).
pub fn tool_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// The stream ended before the answer was complete.
pub fn truncated() -> AttemptFailure {
    AttemptFailure::new(
        FailureClass::Retryable,
        None,
        "the upstream stream ended before the answer was complete",
    )
}

/// An in-band error event of a stream, classified.
pub fn in_stream_error(class: FailureClass, message: &str) -> AttemptFailure {
    let message = if message.is_empty() {
        "the upstream reported an error mid-stream".to_string()
    } else {
        format!("in-stream error: {}", sanitize_message(message))
    };
    AttemptFailure::new(class, None, message)
}

/// A short, stable, non-cryptographic digest (FNV-1a) for ids when the upstream gives none.
pub fn digest(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_json_object() {
        assert_eq!(parse_arguments("a", "").unwrap(), Map::new());
        assert_eq!(parse_arguments("a", r#"{"x":1}"#).unwrap()["x"], 1);
        let e =
            parse_arguments("messages[1].tool_calls[0].function.arguments", "{oops").unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
        assert!(e.message.contains("not valid JSON"), "{e}");
        assert!(parse_arguments("a", "[1]").is_err());
    }

    #[test]
    fn neutral_values() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(is_neutral(&v), "{v}");
        }
        for v in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("x"),
            json!([1]),
            json!({"a": 1}),
        ] {
            assert!(!is_neutral(&v), "{v}");
        }
    }

    #[test]
    fn unsupported_names_param_and_target() {
        let t = Target {
            provider_id: "claude",
            model: "claude-x",
            protocol: "anthropic",
        };
        let e = t.unsupported("n", "one choice per request");
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some("n"));
        assert!(
            e.message.contains("`n`") && e.message.contains("\"claude\""),
            "{e}"
        );
        assert!(e.message.contains("claude-x"), "{e}");
    }

    #[test]
    fn unhandled_parameters_are_bounded_and_header_safe() {
        let t = Target {
            provider_id: "p",
            model: "m",
            protocol: "anthropic",
        };
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!("m"));
        body.insert("messages".into(), json!([{"role": "user", "content": "x"}]));
        body.insert("a_na\u{ef}ve,key\nx".into(), json!(1));
        for i in 0..20 {
            body.insert(format!("extra_{i:02}"), json!(true));
        }
        body.insert("zero".into(), json!(0));
        let req = crate::chat::ChatRequest::from_object(body).unwrap();
        let mut w = Vec::new();
        warn_unhandled(&t, &req, &["model", "messages"], &mut w);
        assert_eq!(w.len(), MAX_LISTED + 1, "{w:?}");
        assert_eq!(w[0], "a_na?ve?key?x ignored: not supported by anthropic");
        assert_eq!(w[1], "extra_00 ignored: not supported by anthropic");
        assert_eq!(
            w[MAX_LISTED],
            "13 more parameters ignored: not supported by anthropic"
        );
        assert!(w
            .iter()
            .all(|s| s.chars().all(|c| c == ' ' || c.is_ascii_graphic())));
        assert_eq!(header_safe(&"a".repeat(100)).len(), 64);
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(digest(b"abc"), digest(b"abc"));
        assert_ne!(digest(b"abc"), digest(b"abd"));
        assert_eq!(digest(b"").len(), 16);
    }
}
