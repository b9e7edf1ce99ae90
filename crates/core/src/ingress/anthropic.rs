//! Anthropic Messages ingress (`POST /v1/messages`), so the official Anthropic SDKs can use the
//! gateway: the request becomes the canonical OpenAI request, the answer goes back as a
//! `message` or as the Messages event stream.
//!
//! # Request
//!
//! | Messages | canonical (OpenAI) |
//! | --- | --- |
//! | `model` | `model` (the public route name) |
//! | `system` (string or text blocks) | a leading `system` message |
//! | `user` text / `image` (base64 or URL source) / `document` (base64 PDF, plain text) blocks | `text` / `image_url` / `file` parts |
//! | `user` `tool_result` blocks | `tool` messages (`tool_call_id` = `tool_use_id`), placed before the rest of the turn |
//! | `assistant` `text` / `tool_use` blocks | `content` / `tool_calls` (`input` → JSON `arguments`) |
//! | `thinking` / `redacted_thinking` blocks | dropped (the OpenAI format cannot carry signed thinking) |
//! | `max_tokens`, `stop_sequences`, `temperature`, `top_p`, `top_k` | `max_tokens`, `stop`, `temperature`, `top_p`, `top_k` |
//! | `metadata.user_id` | `user` |
//! | `tools` (custom tools) | function tools (`input_schema` → `parameters`) |
//! | `tool_choice` auto / any / tool / none, `disable_parallel_tool_use` (with tools; without, ignored) | `auto` / `required` / named function / `none`, `parallel_tool_calls: false` |
//! | `thinking.budget_tokens` | `reasoning_effort` (≤ 1024 minimal, ≤ 2048 low, ≤ 8192 medium, ≤ 16384 high, more xhigh) |
//! | `output_config.effort` | `reasoning_effort` (`max` → `xhigh`) |
//! | `output_config.format` (`json_schema`) | `response_format` `json_schema` |
//! | server tools (`web_search_…`, `bash_…`, …), other block types | 400 `unsupported_parameter` naming them |
//! | any other parameter | dropped with a warning (`x-switchyard-warnings`); neutral values silently |
//!
//! # Answer
//!
//! `reasoning_content` → a `thinking` block (empty signature), text → a `text` block, tool calls
//! → `tool_use` blocks. `finish_reason` stop → `end_turn`, length → `max_tokens`, tool_calls →
//! `tool_use`, content_filter → `refusal`. Usage: `input_tokens` = prompt − cache reads − cache
//! writes, `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`, and
//! `output_tokens_details.thinking_tokens` when there were reasoning tokens.
//!
//! # Stream
//!
//! `message_start` (usage still 0: OpenAI streams report it at the end), `ping`, then per block
//! `content_block_start` / `content_block_delta` (`text_delta`, `thinking_delta`,
//! `input_json_delta`) / `content_block_stop`, and at `[DONE]` one `message_delta` with the stop
//! reason and the whole usage, then `message_stop`. A broken stream ends with `event: error`.

use super::{
    arguments_object, dropped, esc, function_tool, invalid, list, named_choice, str_of,
    unsupported, Chunk, ChunkReader, Delta, Json,
};
use crate::chat::ChatRequest;
use crate::error::GatewayError;
use crate::sse::frame_event;
use crate::usage::Usage;
use serde_json::{Map, Value};

/// The request as the canonical OpenAI request, and the warnings for what was dropped.
pub fn to_chat(src: Map<String, Value>) -> Result<(ChatRequest, Vec<String>), GatewayError> {
    let mut out = Json::default();
    let mut warnings = Vec::new();
    let mut messages = Vec::new();
    let mut effort = None;
    let mut tools = Vec::new();
    for (key, v) in &src {
        match key.as_str() {
            k @ ("model" | "temperature" | "top_p" | "top_k" | "max_tokens" | "stream") => {
                out.field(k, v)
            }
            "stop_sequences" => out.field("stop", v),
            "metadata" => {
                if let Some(u) = v.get("user_id") {
                    out.field("user", u);
                }
            }
            "system" => message("system", v, "system", &mut messages)?,
            "messages" | "tool_choice" => {}
            "tools" => {
                for (i, t) in list(Some(v)).iter().enumerate() {
                    if !matches!(str_of(t, "type"), "" | "custom") {
                        return Err(unsupported(
                            &format!("tools[{i}]"),
                            "server tools run on Anthropic's side only",
                        ));
                    }
                    let schema = t.get("input_schema");
                    tools.push(function_tool(
                        str_of(t, "name"),
                        t.get("description"),
                        schema,
                    ));
                }
            }
            "thinking" => match (str_of(v, "type"), v.get("budget_tokens")) {
                ("enabled", Some(b)) => effort = Some(effort_of_budget(b.as_u64().unwrap_or(0))),
                ("disabled", _) => {}
                _ => warnings.push(dropped("thinking", "anthropic")),
            },
            "output_config" => {
                if let Some(e) = v.get("effort").and_then(Value::as_str) {
                    effort = Some(if e == "max" { "xhigh" } else { e });
                }
                if let Some(schema) = crate::json::at(v, "/format/schema") {
                    out.raw(
                        "response_format",
                        &format!(
                            r#"{{"type":"json_schema","json_schema":{{"name":"output","schema":{}}}}}"#,
                            crate::json::to_text(schema)
                        ),
                    );
                }
            }
            _ if crate::providers::is_neutral(v) => {}
            k => warnings.push(dropped(k, "anthropic")),
        }
    }
    if src.get("stream") == Some(&Value::Bool(true)) {
        // The final usage is needed for `message_delta`.
        out.raw("stream_options", r#"{"include_usage":true}"#);
    }
    if let (false, Some(c)) = (tools.is_empty(), src.get("tool_choice")) {
        let choice = match str_of(c, "type") {
            "auto" => "\"auto\"".into(),
            "any" => "\"required\"".into(),
            "none" => "\"none\"".into(),
            _ => named_choice(str_of(c, "name")),
        };
        out.raw("tool_choice", &choice);
        if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.raw("parallel_tool_calls", "false");
        }
    }
    if !tools.is_empty() {
        out.raw("tools", &format!("[{}]", tools.join(",")));
    }
    if let Some(e) = effort {
        out.raw("reasoning_effort", &esc(e));
    }
    let Some(Value::Array(list)) = src.get("messages") else {
        return Err(invalid("messages", "must be an array of messages"));
    };
    for (i, m) in list.iter().enumerate() {
        let role = match str_of(m, "role") {
            r @ ("user" | "assistant") => r,
            _ => {
                return Err(invalid(
                    &format!("messages[{i}].role"),
                    "must be \"user\" or \"assistant\"",
                ))
            }
        };
        let content = m.get("content").unwrap_or(&Value::Null);
        message(
            role,
            content,
            &format!("messages[{i}].content"),
            &mut messages,
        )?;
    }
    out.raw("messages", &format!("[{}]", messages.join(",")));
    Ok((out.into_chat()?, warnings))
}

/// `thinking.budget_tokens` as an OpenAI reasoning effort.
fn effort_of_budget(budget: u64) -> &'static str {
    match budget {
        0..=1024 => "minimal",
        1025..=2048 => "low",
        2049..=8192 => "medium",
        8193..=16384 => "high",
        _ => "xhigh",
    }
}

fn text_part(text: &str) -> String {
    format!(r#"{{"type":"text","text":{}}}"#, esc(text))
}

/// An OpenAI message; `content` is JSON text.
pub(super) fn chat_message(role: &str, content: &str) -> String {
    format!(r#"{{"role":"{role}","content":{content}}}"#)
}

/// One turn (or the system prompt, as role `system`) as one or more OpenAI messages. `at` names
/// the content in errors.
fn message(
    role: &str,
    content: &Value,
    at: &str,
    out: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let blocks = match content {
        Value::String(_) => {
            out.push(chat_message(role, &crate::json::to_text(content)));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(invalid(
                at,
                "must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut calls = Vec::new();
    for (k, b) in blocks.iter().enumerate() {
        let source = b.get("source").unwrap_or(&Value::Null);
        let url = match str_of(source, "type") {
            "base64" => format!(
                "data:{};base64,{}",
                str_of(source, "media_type"),
                str_of(source, "data")
            ),
            _ => str_of(source, "url").to_string(),
        };
        let translated = match (role, str_of(b, "type")) {
            ("assistant", "text") => {
                text.push_str(str_of(b, "text"));
                true
            }
            (_, "text") => {
                parts.push(text_part(str_of(b, "text")));
                true
            }
            ("assistant", "thinking" | "redacted_thinking") => true,
            ("user", "image") if !url.is_empty() => {
                parts.push(format!(
                    r#"{{"type":"image_url","image_url":{{"url":{}}}}}"#,
                    esc(&url)
                ));
                true
            }
            ("user", "document") if str_of(source, "type") == "text" => {
                parts.push(text_part(str_of(source, "data")));
                true
            }
            ("user", "document") if url.starts_with("data:") => {
                parts.push(format!(
                    r#"{{"type":"file","file":{{"file_data":{}}}}}"#,
                    esc(&url)
                ));
                true
            }
            ("user", "tool_result") => {
                let content = match b.get("content") {
                    Some(Value::Array(inner))
                        if inner.iter().all(|c| str_of(c, "type") == "text") =>
                    {
                        let texts: Vec<String> =
                            inner.iter().map(|c| text_part(str_of(c, "text"))).collect();
                        format!("[{}]", texts.join(","))
                    }
                    Some(t @ Value::String(_)) => crate::json::to_text(t),
                    None => "\"\"".into(),
                    _ => String::new(),
                };
                // OpenAI wants tool results right after the assistant's calls.
                out.push(tool_message(str_of(b, "tool_use_id"), &content));
                !content.is_empty()
            }
            ("assistant", "tool_use") => {
                let input = b
                    .get("input")
                    .map_or_else(|| "{}".into(), crate::json::to_text);
                calls.push(tool_call(str_of(b, "id"), str_of(b, "name"), &input));
                true
            }
            _ => false,
        };
        if !translated {
            return Err(unsupported(
                &format!("{at}[{k}]"),
                "this content block cannot be translated",
            ));
        }
    }
    if role == "assistant" {
        out.push(assistant_message(&text, &calls));
    } else if !parts.is_empty() {
        out.push(chat_message(role, &format!("[{}]", parts.join(","))));
    }
    Ok(())
}

/// An OpenAI `tool` message; `content` is JSON text.
pub(super) fn tool_message(id: &str, content: &str) -> String {
    format!(
        r#"{{"role":"tool","tool_call_id":{},"content":{content}}}"#,
        esc(id)
    )
}

/// An OpenAI assistant message with its text and tool calls (JSON texts).
pub(super) fn assistant_message(text: &str, calls: &[String]) -> String {
    let calls = if calls.is_empty() {
        String::new()
    } else {
        format!(r#","tool_calls":[{}]"#, calls.join(","))
    };
    format!(r#"{{"role":"assistant","content":{}{calls}}}"#, esc(text))
}

/// An OpenAI `tool_calls` entry; `arguments` is the JSON text of the arguments.
pub(super) fn tool_call(id: &str, name: &str, arguments: &str) -> String {
    format!(
        r#"{{"id":{},"type":"function","function":{{"name":{},"arguments":{}}}}}"#,
        esc(id),
        esc(name),
        esc(arguments)
    )
}

/// OpenAI's `finish_reason` as Anthropic's `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The usage object of a `message` (and of the final `message_delta`), as JSON text.
pub fn usage(u: &Usage) -> String {
    let details = if u.reasoning_tokens > 0 {
        format!(
            r#","output_tokens_details":{{"thinking_tokens":{}}}"#,
            u.reasoning_tokens
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"input_tokens":{},"cache_creation_input_tokens":{},"cache_read_input_tokens":{},"output_tokens":{}{details}}}"#,
        u.prompt_tokens
            .saturating_sub(u.cached_tokens + u.cache_write_tokens),
        u.cache_write_tokens,
        u.cached_tokens,
        u.completion_tokens
    )
}

/// An OpenAI `chat.completion` as a Messages `message` (JSON text).
pub fn answer(c: &Value, u: &Usage) -> String {
    let choice = crate::json::at(c, "/choices/0").unwrap_or(&Value::Null);
    let m = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    let reasoning = str_of(m, "reasoning_content");
    if !reasoning.is_empty() {
        content.push(format!(
            r#"{{"type":"thinking","thinking":{},"signature":""}}"#,
            esc(reasoning)
        ));
    }
    let text = match str_of(m, "content") {
        "" => str_of(m, "refusal"),
        t => t,
    };
    if !text.is_empty() {
        content.push(text_part(text));
    }
    for call in list(m.get("tool_calls")).iter() {
        let name = crate::json::at(call, "/function/name").and_then(Value::as_str);
        content.push(format!(
            r#"{{"type":"tool_use","id":{},"name":{},"input":{}}}"#,
            esc(str_of(call, "id")),
            esc(name.unwrap_or("")),
            crate::json::to_text(&arguments_object(call))
        ));
    }
    format!(
        r#"{{"id":{},"type":"message","role":"assistant","model":{},"content":[{}],"stop_reason":"{}","stop_sequence":null,"usage":{}}}"#,
        esc(str_of(c, "id")),
        esc(str_of(c, "model")),
        content.join(","),
        stop_reason(str_of(choice, "finish_reason")),
        usage(u)
    )
}

/// Anthropic's error `type` for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`.
pub fn error(status: u16, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":"{}","message":{}}}}}"#,
        error_type(status),
        esc(message)
    )
}

/// What the open content block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Thinking,
    /// A tool call, by its OpenAI `tool_calls` index.
    Tool(u64),
}

/// Re-frames the OpenAI chunk stream as the Messages event stream.
#[derive(Debug, Default)]
pub struct Encoder {
    pub(super) reader: ChunkReader,
    started: bool,
    open: Option<Open>,
    /// The index of the next content block.
    next: u64,
    stop: Option<&'static str>,
    usage: Usage,
}

fn event(out: &mut Vec<u8>, name: &str, data: &str) {
    out.extend_from_slice(&frame_event(name, data));
}

impl Encoder {
    pub(super) fn chunk(&mut self, chunk: Chunk, out: &mut Vec<u8>) {
        match chunk {
            Chunk::Data(c) => self.data(&c, out),
            Chunk::Done => {
                self.start(&Value::Null, out);
                self.close(out);
                let delta = format!(
                    r#"{{"type":"message_delta","delta":{{"stop_reason":"{}","stop_sequence":null}},"usage":{}}}"#,
                    self.stop.unwrap_or("end_turn"),
                    usage(&self.usage)
                );
                event(out, "message_delta", &delta);
                event(out, "message_stop", r#"{"type":"message_stop"}"#);
            }
            Chunk::Error(message, timeout) => {
                event(
                    out,
                    "error",
                    &error(if timeout { 504 } else { 502 }, &message),
                );
            }
        }
    }

    fn start(&mut self, c: &Value, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = format!(
            r#"{{"type":"message_start","message":{{"id":{},"type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":0,"output_tokens":0}}}}}}"#,
            esc(str_of(c, "id")),
            esc(str_of(c, "model"))
        );
        event(out, "message_start", &message);
        event(out, "ping", r#"{"type":"ping"}"#);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let stop = format!(
                r#"{{"type":"content_block_stop","index":{}}}"#,
                self.next - 1
            );
            event(out, "content_block_stop", &stop);
        }
    }

    /// Make `kind` the open block, starting it (its `content_block` JSON) if it is not open.
    fn open(&mut self, kind: Open, block: &str, out: &mut Vec<u8>) {
        if self.open == Some(kind) {
            return;
        }
        self.close(out);
        let start = format!(
            r#"{{"type":"content_block_start","index":{},"content_block":{block}}}"#,
            self.next
        );
        event(out, "content_block_start", &start);
        self.next += 1;
        self.open = Some(kind);
    }

    /// A delta of the open block: its type, field and (unescaped) value.
    fn delta(&mut self, kind: &str, field: &str, value: &str, out: &mut Vec<u8>) {
        let d = format!(
            r#"{{"type":"content_block_delta","index":{},"delta":{{"type":"{kind}","{field}":{}}}}}"#,
            self.next - 1,
            esc(value)
        );
        event(out, "content_block_delta", &d);
    }

    fn data(&mut self, c: &Value, out: &mut Vec<u8>) {
        self.start(c, out);
        let d = Delta::of(c);
        if let Some(u) = d.usage {
            self.usage = u;
        }
        if !d.reasoning.is_empty() {
            let block = r#"{"type":"thinking","thinking":"","signature":""}"#;
            self.open(Open::Thinking, block, out);
            self.delta("thinking_delta", "thinking", d.reasoning, out);
        }
        if !d.text.is_empty() {
            self.open(Open::Text, r#"{"type":"text","text":""}"#, out);
            self.delta("text_delta", "text", d.text, out);
        }
        for (n, id, name, args) in d.calls {
            if self.open != Some(Open::Tool(n)) {
                let block = format!(
                    r#"{{"type":"tool_use","id":{},"name":{},"input":{{}}}}"#,
                    esc(id),
                    esc(name)
                );
                self.open(Open::Tool(n), &block, out);
            }
            if !args.is_empty() {
                self.delta("input_json_delta", "partial_json", args, out);
            }
        }
        if let Some(f) = d.finish {
            self.close(out);
            self.stop = Some(stop_reason(f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::ingress::Format;
    use serde_json::json;

    fn parse(body: Value) -> Result<(ChatRequest, Vec<String>), GatewayError> {
        let (work, warnings) =
            Format::Anthropic.parse("/v1/messages", "", body.to_string().as_bytes())?;
        match work {
            crate::providers::Work::Chat(c) => Ok((c, warnings)),
            other => panic!("not chat: {other:?}"),
        }
    }

    #[test]
    fn request_translates_to_the_canonical_shape() {
        let (req, warnings) = parse(json!({
            "model": "claude", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "be brief"}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_k": 5,
            "metadata": {"user_id": "u1"}, "service_tier": "auto", "container": null,
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "tools": [{"name": "w", "description": "weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "rain"},
                    {"type": "text", "text": "thanks"}]}]
        }))
        .unwrap();
        assert_eq!(
            warnings,
            vec!["service_tier ignored: not translated from the anthropic format"]
        );
        assert!(req.stream && req.include_usage, "usage is always asked for");
        let b = Value::Object(req.body);
        assert_eq!(b["max_tokens"], 100);
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["top_k"], 5);
        assert_eq!(b["user"], "u1");
        assert_eq!(b["reasoning_effort"], "low");
        assert_eq!(b["tool_choice"], "required");
        assert_eq!(b["parallel_tool_calls"], false);
        assert_eq!(
            b["tools"][0],
            json!({"type": "function", "function": {"name": "w", "description": "weather", "parameters": {"type": "object"}}})
        );
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(
            m[0],
            json!({"role": "system", "content": [{"type": "text", "text": "be brief"}]})
        );
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(m[2]["content"], "calling");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Oslo"}"#
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "t1", "content": "rain"})
        );
        assert_eq!(m[4]["content"], json!([{"type": "text", "text": "thanks"}]));
    }

    #[test]
    fn json_output_and_effort() {
        let (req, _) = parse(json!({"model": "m", "max_tokens": 5,
            "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": {"type": "object"}}},
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap();
        assert_eq!(req.body["reasoning_effort"], "xhigh");
        assert_eq!(
            req.body["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        assert!(!req.include_usage);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let base = |extra: Value| {
            let mut b = json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                b[k] = v.clone();
            }
            parse(b).unwrap_err()
        };
        let e = base(json!({"messages": [{"role": "system", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = base(json!({"messages": [{"role": "user", "content": 5}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e = base(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}));
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(e.param.as_deref(), Some("tools[0]"));
        let e =
            base(json!({"messages": [{"role": "user", "content": [{"type": "search_result"}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = base(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = base(json!({"system": [{"type": "image"}]}));
        assert_eq!(e.param.as_deref(), Some("system[0]"));
        let e = base(json!({"model": null}));
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = base(json!({"messages": null}));
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn answer_translates_back() {
        let c = json!({"id": "chatcmpl-1", "model": "gpt-x", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "ok", "reasoning_content": "think",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]}}]});
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 7,
            cached_tokens: 4,
            cache_write_tokens: 1,
            reasoning_tokens: 3,
        };
        let body = Format::Anthropic.answer(c.to_string().into_bytes(), &u);
        let a: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(a["type"], "message");
        assert_eq!(a["stop_reason"], "tool_use");
        assert_eq!(a["content"][0]["type"], "thinking");
        assert_eq!(a["content"][1], json!({"type": "text", "text": "ok"}));
        assert_eq!(
            a["content"][2],
            json!({"type": "tool_use", "id": "call_1", "name": "w", "input": {"a": 1}})
        );
        assert_eq!(
            a["usage"],
            json!({"input_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 1,
                   "output_tokens": 7, "output_tokens_details": {"thinking_tokens": 3}})
        );
        for (f, s) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
        ] {
            assert_eq!(stop_reason(f), s);
        }
    }

    #[test]
    fn errors_are_anthropic_shaped() {
        let e = GatewayError::new(ErrorKind::ModelNotFound, "no such model");
        let v: Value = serde_json::from_str(&Format::Anthropic.error_body(&e)).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "no such model"}})
        );
        for (s, t) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
        ] {
            assert_eq!(error_type(s), t, "{s}");
        }
    }
}
