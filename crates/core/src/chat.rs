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

/// `key`, when present, is a number from `lo` to `hi`. (Whole-number bounds, and the number is
/// shown as it was sent: formatting an `f64` costs the worker ~14 KB.)
fn number_in(body: &Map<String, Value>, key: &str, lo: i8, hi: i8) -> Result<(), GatewayError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if (f64::from(lo)..=f64::from(hi)).contains(&x) {
                Ok(())
            } else {
                Err(GatewayError::invalid(
                    format!("`{key}` must be between {lo} and {hi}, got {n}"),
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
        number_in(&body, "temperature", 0, 2)?;
        number_in(&body, "top_p", 0, 1)?;
        number_in(&body, "presence_penalty", -2, 2)?;
        number_in(&body, "frequency_penalty", -2, 2)?;
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
                        crate::join(ROLES, ", ")
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

// ---------------------------------------------------------------------------------------------
// Typed, read-only views for translators (Anthropic, Gemini).
//
// `ChatRequest::parse` checks the shapes every target needs; the views below read the parts a
// translating provider needs and report what `parse` does not check (tool calls, tools,
// tool_choice, response_format) as 400s naming the exact parameter.
// ---------------------------------------------------------------------------------------------

/// One message of `messages`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    pub index: usize,
    pub role: &'a str,
    /// `content` as sent (`Null` when absent).
    pub content: &'a Value,
    pub message: &'a Map<String, Value>,
}

/// One entry of an assistant message's `tool_calls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolCallView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// The JSON-encoded arguments string, as sent.
    pub arguments: &'a str,
}

/// One part of a message's `content`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentPart<'a> {
    Text(&'a str),
    /// `image_url.url`: a `data:` URL or a remote URL.
    ImageUrl(&'a str),
    /// `file.file_data` (a `data:` URL) and its optional `filename`.
    FileData(&'a str),
    /// Any other part type (`input_audio`, `file` by id, ...), by its `type`.
    Other(&'a str),
}

/// Where media (an image, a file) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource<'a> {
    /// A base64 `data:` URL.
    Base64 { media_type: &'a str, data: &'a str },
    /// An `https://` URL.
    Https(&'a str),
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(&'a str),
}

/// OpenAI's `response_format`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<&'a str>,
        schema: Option<&'a Value>,
    },
}

impl ResponseFormat<'_> {
    pub fn is_json(&self) -> bool {
        !matches!(self, ResponseFormat::Text)
    }
}

/// One entry of `tools` (only `type: "function"` tools exist in chat completions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    /// The JSON Schema of the arguments (`None` when the function takes none).
    pub parameters: Option<&'a Value>,
}

impl ChatRequest {
    /// A field of the body, `None` when absent or `null`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.body.get(key).filter(|v| !v.is_null())
    }

    /// The messages, in order (validated by [`ChatRequest::parse`]).
    pub fn messages(&self) -> impl Iterator<Item = MessageView<'_>> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(index, m)| {
                let message = m.as_object()?;
                Some(MessageView {
                    index,
                    role: message.get("role").and_then(Value::as_str).unwrap_or(""),
                    content: message.get("content").unwrap_or(&Value::Null),
                    message,
                })
            })
    }

    /// The output token cap: `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.get("max_completion_tokens")
            .or_else(|| self.get("max_tokens"))
            .and_then(Value::as_u64)
    }

    /// `stop` as a list (a single string becomes a list of one).
    pub fn stop_sequences(&self) -> Vec<&str> {
        match self.get("stop") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// The caller asked for `n` choices (default 1).
    pub fn n(&self) -> u64 {
        self.get("n").and_then(Value::as_u64).unwrap_or(1)
    }

    /// `tools`, each checked to be a function with a name.
    pub fn tools(&self) -> Result<Vec<FunctionTool<'_>>, GatewayError> {
        let Some(Value::Array(list)) = self.get("tools") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
            if kind != "function" {
                return Err(GatewayError::invalid(
                    format!("`tools[{i}].type` must be \"function\", got {kind:?}"),
                    &format!("tools[{i}].type"),
                ));
            }
            let Some(f) = t.get("function").filter(|f| f.is_object()) else {
                return Err(GatewayError::invalid(
                    format!("`tools[{i}].function` must be an object"),
                    &format!("tools[{i}].function"),
                ));
            };
            let name = match f.get("name") {
                Some(Value::String(s)) if !s.is_empty() => s.as_str(),
                _ => {
                    return Err(GatewayError::invalid(
                        format!("`tools[{i}].function.name` must be a non-empty string"),
                        &format!("tools[{i}].function.name"),
                    ))
                }
            };
            let parameters = f.get("parameters").filter(|p| !p.is_null());
            if let Some(p) = parameters {
                if !p.is_object() {
                    return Err(wrong(
                        &format!("tools[{i}].function.parameters"),
                        "an object",
                        p,
                    ));
                }
            }
            out.push(FunctionTool {
                name,
                description: f.get("description").and_then(Value::as_str),
                parameters,
            });
        }
        Ok(out)
    }

    /// `tool_choice`, `None` when absent.
    pub fn tool_choice(&self) -> Result<Option<ToolChoice<'_>>, GatewayError> {
        let bad = || {
            GatewayError::invalid(
                "`tool_choice` must be \"auto\", \"none\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
                "tool_choice",
            )
        };
        match self.get("tool_choice") {
            None => Ok(None),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Ok(Some(ToolChoice::Auto)),
                "none" => Ok(Some(ToolChoice::None)),
                "required" => Ok(Some(ToolChoice::Required)),
                _ => Err(bad()),
            },
            Some(v) => match crate::json::at(v, "/function/name").and_then(Value::as_str) {
                Some(name) if !name.is_empty() => Ok(Some(ToolChoice::Function(name))),
                _ => Err(bad()),
            },
        }
    }

    /// `response_format` (`Text` when absent).
    pub fn response_format(&self) -> Result<ResponseFormat<'_>, GatewayError> {
        let Some(rf) = self.get("response_format") else {
            return Ok(ResponseFormat::Text);
        };
        match rf.get("type").and_then(Value::as_str) {
            Some("text") => Ok(ResponseFormat::Text),
            Some("json_object") => Ok(ResponseFormat::JsonObject),
            Some("json_schema") => {
                let js = rf.get("json_schema");
                let schema = js.and_then(|j| j.get("schema")).filter(|s| !s.is_null());
                if let Some(s) = schema {
                    if !s.is_object() {
                        return Err(wrong("response_format.json_schema.schema", "an object", s));
                    }
                }
                Ok(ResponseFormat::JsonSchema {
                    name: js.and_then(|j| j.get("name")).and_then(Value::as_str),
                    schema,
                })
            }
            Some(other) => Err(GatewayError::invalid(
                format!(
                    "`response_format.type` must be \"text\", \"json_object\" or \"json_schema\", got {other:?}"
                ),
                "response_format.type",
            )),
            None => Err(GatewayError::invalid(
                "`response_format.type` is required",
                "response_format.type",
            )),
        }
    }
}

impl<'a> MessageView<'a> {
    /// The JSON path of this message, for error messages.
    pub fn path(&self) -> String {
        format!("messages[{}]", self.index)
    }

    pub fn str_field(&self, key: &str) -> Option<&'a str> {
        self.message.get(key).and_then(Value::as_str)
    }

    /// The content as parts: a string is one text part; `null` is none.
    pub fn parts(&self) -> Vec<ContentPart<'a>> {
        content_parts(self.content)
    }

    /// All text of the content joined with `sep` (non-text parts are skipped).
    pub fn text(&self, sep: &str) -> String {
        let texts: Vec<&str> = self
            .parts()
            .into_iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t),
                _ => None,
            })
            .collect();
        crate::join(&texts, sep)
    }

    /// An assistant message's `tool_calls`, each checked for an id and a function name.
    pub fn tool_calls(&self) -> Result<Vec<ToolCallView<'a>>, GatewayError> {
        let at = self.path();
        let list = match self.message.get("tool_calls") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(wrong(&format!("{at}.tool_calls"), "an array", other)),
        };
        let mut out = Vec::with_capacity(list.len());
        for (k, c) in list.iter().enumerate() {
            let field = |path: &str| crate::json::at(c, path).and_then(Value::as_str);
            let (Some(id), Some(name)) = (field("/id"), field("/function/name")) else {
                return Err(GatewayError::invalid(
                    format!("`{at}.tool_calls[{k}]` needs a string `id` and `function.name`"),
                    &format!("{at}.tool_calls[{k}]"),
                ));
            };
            let arguments = match crate::json::at(c, "/function/arguments") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s.as_str(),
                Some(other) => {
                    return Err(wrong(
                        &format!("{at}.tool_calls[{k}].function.arguments"),
                        "a JSON-encoded string",
                        other,
                    ))
                }
            };
            out.push(ToolCallView {
                id,
                name,
                arguments,
            });
        }
        Ok(out)
    }
}

/// A message `content` as parts: a string is one text part; `null` is none.
pub fn content_parts(content: &Value) -> Vec<ContentPart<'_>> {
    match content {
        Value::String(s) => vec![ContentPart::Text(s)],
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                let text = |path: &str| crate::json::at(p, path).and_then(Value::as_str);
                match kind {
                    "text" => ContentPart::Text(text("/text").unwrap_or("")),
                    "refusal" => ContentPart::Text(text("/refusal").unwrap_or("")),
                    "image_url" => match text("/image_url/url").or_else(|| text("/image_url")) {
                        Some(url) => ContentPart::ImageUrl(url),
                        None => ContentPart::Other(kind),
                    },
                    "file" => match text("/file/file_data") {
                        Some(data) => ContentPart::FileData(data),
                        None => ContentPart::Other(kind),
                    },
                    _ => ContentPart::Other(kind),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Read a media URL: a base64 `data:` URL or an `https://` URL; anything else is `None`.
pub fn media_source(url: &str) -> Option<MediaSource<'_>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta
            .strip_suffix(";base64")?
            .split(';')
            .next()
            .unwrap_or("");
        if media_type.is_empty() || data.is_empty() {
            return None;
        }
        return Some(MediaSource::Base64 { media_type, data });
    }
    if url
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        && url.len() > 8
    {
        return Some(MediaSource::Https(url));
    }
    None
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
    fn ranges_name_their_bounds_and_the_number_sent() {
        let msg = |extra: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
            parse(&body).unwrap_err().message
        };
        assert_eq!(
            msg(r#","temperature":3.5"#),
            "`temperature` must be between 0 and 2, got 3.5"
        );
        assert_eq!(
            msg(r#","top_p":-0.25"#),
            "`top_p` must be between 0 and 1, got -0.25"
        );
        assert_eq!(
            msg(r#","presence_penalty":2.01"#),
            "`presence_penalty` must be between -2 and 2, got 2.01"
        );
        assert_eq!(
            msg(r#","frequency_penalty":-3"#),
            "`frequency_penalty` must be between -2 and 2, got -3"
        );
        let ok = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":2,"top_p":0.0,"presence_penalty":-2}"#;
        assert!(parse(ok).is_ok());
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

    #[test]
    fn views_read_what_translators_need() {
        let r = parse(
            r#"{"model":"m","max_tokens":5,"max_completion_tokens":9,"stop":"X","n":2,
                "messages":[
                  {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"https://x/y.png"}},
                                             {"type":"file","file":{"file_data":"data:application/pdf;base64,QQ=="}},{"type":"input_audio"}]},
                  {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                  {"role":"tool","tool_call_id":"c1","content":"ok"}]}"#,
        )
        .unwrap();
        assert_eq!(r.max_output_tokens(), Some(9));
        assert_eq!(r.stop_sequences(), vec!["X"]);
        assert_eq!(r.n(), 2);
        let m: Vec<MessageView<'_>> = r.messages().collect();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0].parts(),
            vec![
                ContentPart::Text("a"),
                ContentPart::ImageUrl("https://x/y.png"),
                ContentPart::FileData("data:application/pdf;base64,QQ=="),
                ContentPart::Other("input_audio"),
            ]
        );
        assert_eq!(m[0].text("|"), "a");
        assert_eq!(
            m[1].tool_calls().unwrap(),
            vec![ToolCallView {
                id: "c1",
                name: "f",
                arguments: "{}"
            }]
        );
        assert_eq!(m[2].str_field("tool_call_id"), Some("c1"));
        assert_eq!(m[2].path(), "messages[2]");
    }

    #[test]
    fn views_report_bad_shapes_by_path() {
        let base = |extra: &str| {
            parse(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#
            ))
            .unwrap()
        };
        let e = base(r#","tools":[{"type":"custom","custom":{}}]"#)
            .tools()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].type"));
        let e = base(r#","tools":[{"type":"function","function":{"name":""}}]"#)
            .tools()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
        let e = base(r#","tools":[{"type":"function","function":{"name":"f","parameters":3}}]"#)
            .tools()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.parameters"));
        assert_eq!(
            base(r#","tool_choice":"required""#).tool_choice().unwrap(),
            Some(ToolChoice::Required)
        );
        assert_eq!(
            base(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#)
                .tool_choice()
                .unwrap(),
            Some(ToolChoice::Function("f"))
        );
        assert!(base(r#","tool_choice":"sometimes""#).tool_choice().is_err());
        assert_eq!(base("").response_format().unwrap(), ResponseFormat::Text);
        assert!(base(r#","response_format":{"type":"json_object"}"#)
            .response_format()
            .unwrap()
            .is_json());
        let e = base(r#","response_format":{"type":"yaml"}"#)
            .response_format()
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("response_format.type"));
        let e = base(r#","response_format":{"type":"json_schema","json_schema":{"schema":[]}}"#)
            .response_format()
            .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("response_format.json_schema.schema")
        );
        let r = parse(r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"x","function":{"name":"f","arguments":{"a":1}}}]}]}"#).unwrap();
        let e = r.messages().next().unwrap().tool_calls().unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        let r = parse(r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]}"#).unwrap();
        let e = r.messages().next().unwrap().tool_calls().unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_calls[0]"));
    }

    #[test]
    fn media_urls() {
        assert_eq!(
            media_source("data:image/png;base64,AAAA"),
            Some(MediaSource::Base64 {
                media_type: "image/png",
                data: "AAAA"
            })
        );
        assert_eq!(
            media_source("data:text/plain;charset=utf-8;base64,QQ=="),
            Some(MediaSource::Base64 {
                media_type: "text/plain",
                data: "QQ=="
            })
        );
        assert_eq!(
            media_source("HTTPS://x.test/a.jpg"),
            Some(MediaSource::Https("HTTPS://x.test/a.jpg"))
        );
        assert_eq!(media_source("data:image/png,AAAA"), None, "not base64");
        assert_eq!(media_source("data:;base64,AAAA"), None);
        assert_eq!(media_source("http://x.test/a.jpg"), None);
        assert_eq!(media_source("https://"), None);
        assert_eq!(media_source("ftp://é.test"), None);
        assert_eq!(media_source("é"), None, "no panic on a multibyte prefix");
    }
}
