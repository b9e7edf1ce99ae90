//! The OpenAI chat-completions request as callers send it: parsed once, checked field by field.
//!
//! The body stays a JSON object so that fields Switchyard does not know are passed through to
//! OpenAI-compatible targets unchanged. [`ChatRequest::parse`] checks the fields it does know and
//! reports the first problem as a 400 naming the parameter.

use crate::error::GatewayError;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The whole body, as sent.
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// Whether the caller asked for the usage chunk at the end of a stream.
    pub include_usage: bool,
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(param: &str, expected: &str, got: &Value) -> GatewayError {
    GatewayError::invalid(
        format!("`{param}` must be {expected}, got {}", type_name(got)),
        param,
    )
}

fn number_in(body: &Map<String, Value>, key: &str, lo: f64, hi: f64) -> Result<(), GatewayError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if (lo..=hi).contains(&x) {
                Ok(())
            } else {
                Err(GatewayError::invalid(
                    format!("`{key}` must be between {lo} and {hi}, got {x}"),
                    key,
                ))
            }
        }
        Some(other) => Err(wrong(key, "a number", other)),
    }
}

fn positive_int(body: &Map<String, Value>, key: &str) -> Result<(), GatewayError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|x| x >= 1) => Ok(()),
        Some(other) => Err(wrong(key, "a positive integer", other)),
    }
}

fn optional_kind(
    body: &Map<String, Value>,
    key: &str,
    ok: fn(&Value) -> bool,
    expected: &str,
) -> Result<(), GatewayError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if ok(v) => Ok(()),
        Some(other) => Err(wrong(key, expected, other)),
    }
}

impl ChatRequest {
    /// Parse a request body. Errors are 400s that say what is wrong and name the parameter.
    pub fn parse(bytes: &[u8]) -> Result<ChatRequest, GatewayError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            GatewayError::new(
                crate::error::ErrorKind::InvalidRequest,
                format!("The request body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(body) = value else {
            return Err(GatewayError::new(
                crate::error::ErrorKind::InvalidRequest,
                format!(
                    "The request body must be a JSON object, got {}",
                    type_name(&value)
                ),
            ));
        };
        Self::from_object(body)
    }

    pub fn from_object(body: Map<String, Value>) -> Result<ChatRequest, GatewayError> {
        let model = match body.get("model") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) => {
                return Err(GatewayError::invalid("`model` must not be empty", "model"))
            }
            None | Some(Value::Null) => {
                return Err(GatewayError::invalid(
                    "you must provide a `model` parameter",
                    "model",
                ))
            }
            Some(other) => return Err(wrong("model", "a string", other)),
        };
        check_messages(body.get("messages"))?;
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong("stream", "a boolean", other)),
        };
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(wrong("stream_options.include_usage", "a boolean", other))
                }
            },
            Some(other) => return Err(wrong("stream_options", "an object", other)),
        };
        number_in(&body, "temperature", 0.0, 2.0)?;
        number_in(&body, "top_p", 0.0, 1.0)?;
        number_in(&body, "presence_penalty", -2.0, 2.0)?;
        number_in(&body, "frequency_penalty", -2.0, 2.0)?;
        positive_int(&body, "max_tokens")?;
        positive_int(&body, "max_completion_tokens")?;
        positive_int(&body, "n")?;
        optional_kind(&body, "seed", |v| v.is_i64() || v.is_u64(), "an integer")?;
        optional_kind(&body, "user", Value::is_string, "a string")?;
        optional_kind(
            &body,
            "stop",
            |v| match v {
                Value::String(_) => true,
                Value::Array(a) => a.len() <= 4 && a.iter().all(Value::is_string),
                _ => false,
            },
            "a string or an array of up to 4 strings",
        )?;
        optional_kind(&body, "tools", Value::is_array, "an array")?;
        optional_kind(
            &body,
            "tool_choice",
            |v| v.is_string() || v.is_object(),
            "a string or an object",
        )?;
        optional_kind(
            &body,
            "response_format",
            |v| v.get("type").is_some_and(Value::is_string),
            "an object with a string `type`",
        )?;
        optional_kind(&body, "reasoning_effort", Value::is_string, "a string")?;
        Ok(ChatRequest {
            body,
            model,
            stream,
            include_usage,
        })
    }
}

fn check_messages(messages: Option<&Value>) -> Result<(), GatewayError> {
    let list = match messages {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid(
                "you must provide a `messages` parameter",
                "messages",
            ))
        }
        Some(other) => return Err(wrong("messages", "an array", other)),
    };
    if list.is_empty() {
        return Err(GatewayError::invalid(
            "`messages` must contain at least one message",
            "messages",
        ));
    }
    for (i, m) in list.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(wrong(&format!("messages[{i}]"), "an object", m));
        };
        match m.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
            Some(Value::String(r)) => {
                return Err(GatewayError::invalid(
                    format!(
                        "`messages[{i}].role` must be one of {}, got {r:?}",
                        ROLES.join(", ")
                    ),
                    &format!("messages[{i}].role"),
                ))
            }
            None => {
                return Err(GatewayError::invalid(
                    format!("`messages[{i}].role` is required"),
                    &format!("messages[{i}].role"),
                ))
            }
            Some(other) => return Err(wrong(&format!("messages[{i}].role"), "a string", other)),
        }
        match m.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (k, p) in parts.iter().enumerate() {
                    if !p.get("type").is_some_and(Value::is_string) {
                        return Err(GatewayError::invalid(
                            format!("`messages[{i}].content[{k}]` must be an object with a string `type`"),
                            &format!("messages[{i}].content[{k}]"),
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(wrong(
                    &format!("messages[{i}].content"),
                    "a string or an array of content parts",
                    other,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(s: &str) -> Result<ChatRequest, GatewayError> {
        ChatRequest::parse(s.as_bytes())
    }

    #[test]
    fn minimal_request() {
        let r = parse(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.model, "m");
        assert!(!r.stream);
        assert!(!r.include_usage);
    }

    #[test]
    fn stream_and_usage_flags() {
        let r = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
                "stream_options":{"include_usage":true},"x_vendor":{"a":1}}"#,
        )
        .unwrap();
        assert!(r.stream && r.include_usage);
        assert_eq!(r.body["x_vendor"]["a"], 1, "unknown fields are kept");
    }

    #[test]
    fn bad_json_and_shapes() {
        let e = parse("{").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.starts_with("The request body is not valid JSON"));
        let e = parse("[1]").unwrap_err();
        assert!(e.message.contains("must be a JSON object"));
        let e = parse(r#"{"messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse(r#"{"model":5,"messages":[]}"#).unwrap_err();
        assert_eq!(e.message, "`model` must be a string, got a number");
        let e = parse(r#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse(r#"{"model":"m","messages":[]}"#).unwrap_err();
        assert!(e.message.contains("at least one"));
    }

    #[test]
    fn field_types_are_named() {
        let base = |extra: &str| {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
        };
        let cases = [
            (r#","stream":"yes""#, "stream"),
            (r#","temperature":"hot""#, "temperature"),
            (r#","temperature":3"#, "temperature"),
            (r#","max_tokens":0"#, "max_tokens"),
            (r#","max_tokens":1.5"#, "max_tokens"),
            (r#","n":-1"#, "n"),
            (r#","stop":5"#, "stop"),
            (r#","stop":["a","b","c","d","e"]"#, "stop"),
            (r#","tools":{}"#, "tools"),
            (r#","response_format":"json""#, "response_format"),
            (
                r#","stream_options":{"include_usage":1}"#,
                "stream_options.include_usage",
            ),
            (r#","user":7"#, "user"),
        ];
        for (extra, param) in cases {
            let e = parse(&base(extra)).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{extra}: {e}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn message_shapes() {
        let e = parse(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse(r#"{"model":"m","messages":[{"content":"x"}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = parse(r#"{"model":"m","messages":[{"role":"user","content":[{"text":"x"}]}]}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        parse(r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#)
            .unwrap();
    }
}
