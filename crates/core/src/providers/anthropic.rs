//! Anthropic Messages API (`POST {base_url}/v1/messages`), translated from and to OpenAI chat
//! completions.
//!
//! # Request
//!
//! | OpenAI | Anthropic |
//! | --- | --- |
//! | `system` / `developer` messages | top-level `system`, texts joined with a blank line (hoisted from wherever they sit) |
//! | `user` content parts | `text`, `image` (`data:` URL → `base64` source, `https:` URL → `url` source), `file` with a PDF `data:` URL → `document` |
//! | `assistant` `tool_calls` | `tool_use` blocks; the JSON `arguments` string is parsed into `input` (unparseable → 400 naming it) |
//! | `tool` messages | a `user` turn of `tool_result` blocks (`tool_use_id`, content) |
//! | consecutive turns of one role | merged into one turn (Anthropic requires alternation) |
//! | `max_completion_tokens` / `max_tokens` | `max_tokens` (required there), else [`ANTHROPIC_DEFAULT_MAX_TOKENS`] |
//! | `stop` | `stop_sequences` |
//! | `temperature` (0–1 only; above 1 is a 400), `top_p` | same names |
//! | `user` | `metadata.user_id` |
//! | `tools` | `{name, description, input_schema}` |
//! | `tool_choice` `auto` / `required` / `none` / named | `auto` / `any` / `none` / `{"type":"tool","name"}` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | `response_format` `json_object` / `json_schema` | JSON mode, see below |
//! | `reasoning_effort` | `thinking`, see below |
//! | `n` > 1, `modalities` other than text | 400 `unsupported_parameter` naming the parameter and the target |
//! | `logprobs`, `top_logprobs`, `presence_penalty`, `frequency_penalty`, `seed`, `logit_bias`, and any other parameter Anthropic has no equivalent for | dropped, with a warning in [`UpstreamRequest::warnings`] (a neutral value — `false`, `0`, empty — is dropped silently) |
//!
//! Empty text parts are skipped and a message left with no content is omitted (Anthropic rejects
//! empty content). The deprecated `function` role is a 400.
//!
//! ## JSON mode
//!
//! Anthropic has no JSON response format; JSON mode is a forced tool. A tool named
//! [`JSON_TOOL`] is added whose `input_schema` is the `json_schema` schema (any object for
//! `json_object`), and `tool_choice` forces it: `{"type":"tool","name":"json_output"}` when the
//! caller declared no tools (or `tool_choice: "none"`), `{"type":"any"}` when the caller's own
//! tools may also be called, the caller's named function when it forced one. The tool's `input`
//! comes back to the caller as the message `content` (a JSON string), with `finish_reason`
//! `stop`; streamed, its `input_json_delta` pieces become `delta.content` pieces. Because the
//! answer side recognises the tool by name, a caller tool named `json_output` is a 400.
//!
//! ## Reasoning
//!
//! `reasoning_effort` becomes `thinking: {"type":"enabled","budget_tokens"}` with the budgets
//! of [`thinking_budget`] (`none` disables it). Without an explicit output cap, `max_tokens` is
//! the budget plus [`ANTHROPIC_DEFAULT_MAX_TOKENS`]; with one (which, as in OpenAI, covers
//! reasoning and answer together) the budget is capped at half of it, at least 1024, and a cap
//! of 1024 or less leaves thinking off. Extended thinking excludes a forced tool choice and
//! needs the previous turn's signed thinking blocks when continuing a tool loop (the OpenAI
//! format cannot carry them), so in those cases it is left off with a warning; a `temperature`
//! other than 1 and a `top_p` under 0.95 are dropped with a warning when thinking is on.
//! Thinking text comes back as `reasoning_content`.
//!
//! # Answer
//!
//! Text blocks are concatenated into `content`; `tool_use` blocks become `tool_calls` (arguments
//! = the JSON text of `input`). `stop_reason` `end_turn` / `stop_sequence` / `pause_turn` →
//! `stop`, `max_tokens` / `model_context_window_exceeded` → `length`, `tool_use` → `tool_calls`,
//! `refusal` → `content_filter`. Usage: prompt = `input_tokens` + cache reads + cache writes.

use super::common::{self, ChunkWriter, Target};
use super::openai::class_of_status;
use super::{sanitize_message, UpstreamAnswer, UpstreamRequest};
use super::{EventDecoder, SseInput};
use crate::chat::{
    content_parts, media_source, ChatRequest, ContentPart, MediaSource, MessageView,
    ResponseFormat, ToolChoice,
};
use crate::config::ProviderConfig;
use crate::error::GatewayError;
use crate::policy::{parse_retry_after, AttemptFailure, FailureClass};
use crate::sse::{frame_data, SseEvent};
use crate::usage::Usage;
use serde_json::{json, Map, Value};

/// The `anthropic-version` header sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `max_tokens` when the caller sets no output cap (Anthropic requires one).
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 4096;

/// The tool that carries JSON mode; its input is the answer.
pub const JSON_TOOL: &str = "json_output";

/// The smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;

/// `reasoning_effort` → thinking budget in tokens (`None`: thinking off).
///
/// | effort | budget |
/// | --- | --- |
/// | none | off |
/// | minimal | 1024 |
/// | low | 2048 |
/// | medium | 8192 |
/// | high | 16384 |
/// | xhigh | 32768 |
pub fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "minimal" => Some(1024),
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(16384),
        "xhigh" => Some(32768),
        _ => None,
    }
}

/// Parameters this module translates; any other non-neutral parameter is dropped with a warning.
const HANDLED: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "n",
    "modalities",
];

pub fn build_chat(
    provider: &ProviderConfig,
    target_model: &str,
    req: &ChatRequest,
    api_key: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let t = Target {
        provider_id: &provider.id,
        model: target_model,
        protocol: "anthropic",
    };
    let mut warnings = Vec::new();

    if req.n() > 1 {
        return Err(t.unsupported(
            "n",
            format!(
                "`n` = {} asks for several choices; Anthropic returns one per request",
                req.n()
            ),
        ));
    }
    if let Some(m) = req.get("modalities").and_then(Value::as_array) {
        if m.iter().any(|x| x.as_str() != Some("text")) {
            return Err(t.unsupported("modalities", "Anthropic answers with text only"));
        }
    }
    let temperature = req.get("temperature").cloned();
    if let Some(Value::Number(n)) = &temperature {
        // The number is shown as sent (`{n}`): formatting an f64 costs the worker ~14 KB.
        if n.as_f64().is_some_and(|x| x > 1.0) {
            return Err(t.unsupported(
                "temperature",
                format!("Anthropic accepts a temperature between 0 and 1, got {n}"),
            ));
        }
    }
    common::warn_unhandled(&t, req, HANDLED, &mut warnings);

    let (system, messages) = convert_messages(req, &t)?;
    let caller_tools = req.tools()?;
    let format = req.response_format()?;
    let choice = req.tool_choice()?;

    let mut tools = Vec::with_capacity(caller_tools.len() + 1);
    for (i, tool) in caller_tools.iter().enumerate() {
        if tool.name == JSON_TOOL {
            return Err(t.unsupported(
                &format!("tools[{i}].function.name"),
                format!("the tool name {JSON_TOOL:?} is reserved for JSON mode on Anthropic"),
            ));
        }
        let mut spec = Map::new();
        spec.insert("name".into(), json!(tool.name));
        if let Some(d) = tool.description.filter(|d| !d.is_empty()) {
            spec.insert("description".into(), json!(d));
        }
        let schema = tool
            .parameters
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        spec.insert("input_schema".into(), schema);
        tools.push(Value::Object(spec));
    }

    // The tool choice, JSON mode included.
    let mut tool_choice: Option<Value> = if format.is_json() {
        let schema = match format {
            ResponseFormat::JsonSchema {
                schema: Some(s), ..
            } => s.clone(),
            _ => json!({"type": "object"}),
        };
        let description = match format {
            ResponseFormat::JsonSchema { name: Some(n), .. } => {
                format!("Respond with a JSON object ({n}) as this tool's input.")
            }
            _ => "Respond with a JSON object as this tool's input.".to_string(),
        };
        tools.push(json!({"name": JSON_TOOL, "description": description, "input_schema": schema}));
        Some(match choice {
            Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
            Some(ToolChoice::None) => json!({"type": "tool", "name": JSON_TOOL}),
            _ if caller_tools.is_empty() => json!({"type": "tool", "name": JSON_TOOL}),
            _ => json!({"type": "any"}),
        })
    } else if tools.is_empty() {
        None
    } else {
        choice.map(|c| match c {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        })
    };
    if req.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        let tc = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if tc["type"] != "none" {
            if let Some(o) = tc.as_object_mut() {
                o.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
    }

    // Extended thinking.
    let mut max_tokens = req.max_output_tokens();
    let mut thinking = None;
    let effort = common::reasoning_effort(req)?;
    if let Some(budget) = effort.and_then(thinking_budget) {
        let forced = tool_choice
            .as_ref()
            .is_some_and(|c| c["type"] == "any" || c["type"] == "tool");
        if forced {
            warnings.push(
                "reasoning_effort ignored: Anthropic thinking cannot be combined with a forced tool choice or JSON mode".to_string(),
            );
        } else if continues_tool_loop(req) {
            warnings.push(
                "reasoning_effort ignored: continuing a tool call turn with Anthropic thinking needs signed thinking blocks the OpenAI format cannot carry".to_string(),
            );
        } else {
            match max_tokens {
                Some(cap) if cap <= MIN_THINKING_BUDGET => warnings.push(format!(
                    "reasoning_effort ignored: max tokens {cap} leaves no room for an Anthropic thinking budget (minimum {MIN_THINKING_BUDGET})"
                )),
                Some(cap) => {
                    let b = budget.min(cap / 2).max(MIN_THINKING_BUDGET).min(cap - 1);
                    thinking = Some(b);
                }
                None => {
                    thinking = Some(budget);
                    max_tokens = Some(budget + ANTHROPIC_DEFAULT_MAX_TOKENS);
                }
            }
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(target_model));
    body.insert(
        "max_tokens".into(),
        json!(max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(b) = thinking {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": b}),
        );
    }
    if let Some(temp) = temperature {
        if thinking.is_some() && temp.as_f64() != Some(1.0) {
            warnings.push(
                "temperature ignored: Anthropic thinking requires the default temperature".into(),
            );
        } else {
            body.insert("temperature".into(), temp);
        }
    }
    if let Some(top_p) = req.get("top_p").cloned() {
        if thinking.is_some() && top_p.as_f64().is_some_and(|p| p < 0.95) {
            warnings
                .push("top_p ignored: Anthropic thinking requires a top_p of at least 0.95".into());
        } else {
            body.insert("top_p".into(), top_p);
        }
    }
    let stop = req.stop_sequences();
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), json!(stop));
    }
    if let Some(user) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = tool_choice {
        body.insert("tool_choice".into(), tc);
    }
    if req.stream {
        body.insert("stream".into(), Value::Bool(true));
    }

    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("anthropic-version", ANTHROPIC_VERSION.to_string()),
    ];
    if req.stream {
        headers.push(("accept", "text/event-stream".to_string()));
    }
    if let Some(key) = api_key {
        headers.push(("x-api-key", key.to_string()));
    }
    Ok(UpstreamRequest {
        url: format!("{}/v1/messages", provider.base_url()),
        headers,
        body: crate::json::to_bytes(&Value::Object(body)),
        warnings,
    })
}

/// The conversation ends with an assistant tool call answered by tool messages: the model is
/// continuing a tool loop.
fn continues_tool_loop(req: &ChatRequest) -> bool {
    let messages: Vec<MessageView<'_>> = req.messages().collect();
    let Some(last_assistant) = messages.iter().rposition(|m| m.role == "assistant") else {
        return false;
    };
    let has_calls = messages[last_assistant]
        .message
        .get("tool_calls")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    has_calls
        && messages[last_assistant + 1..]
            .iter()
            .all(|m| m.role == "tool")
}

/// System texts and the alternating turns.
fn convert_messages(
    req: &ChatRequest,
    t: &Target<'_>,
) -> Result<(Vec<String>, Vec<Value>), GatewayError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in req.messages() {
        let at = m.path();
        let (role, blocks) = match m.role {
            "system" | "developer" => {
                for (k, p) in m.parts().into_iter().enumerate() {
                    if !matches!(p, ContentPart::Text(_)) {
                        return Err(t.unsupported(
                            &format!("{at}.content[{k}]"),
                            "Anthropic system prompts hold text only",
                        ));
                    }
                }
                let text = m.text("\n");
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            "user" => (
                "user",
                content_blocks(m.content, &format!("{at}.content"), t)?,
            ),
            "assistant" => {
                let mut blocks = Vec::new();
                for (k, p) in m.parts().into_iter().enumerate() {
                    match p {
                        ContentPart::Text("") => {}
                        ContentPart::Text(text) => {
                            blocks.push(json!({"type": "text", "text": text}))
                        }
                        _ => {
                            return Err(t.unsupported(
                                &format!("{at}.content[{k}]"),
                                "assistant messages hold text only",
                            ))
                        }
                    }
                }
                for (k, call) in m.tool_calls()?.into_iter().enumerate() {
                    let input = common::parse_arguments(
                        &format!("{at}.tool_calls[{k}].function.arguments"),
                        call.arguments,
                    )?;
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": input,
                    }));
                }
                ("assistant", blocks)
            }
            "tool" => {
                let Some(id) = m.str_field("tool_call_id") else {
                    return Err(GatewayError::invalid(
                        format!("`{at}.tool_call_id` is required for a tool message"),
                        &format!("{at}.tool_call_id"),
                    ));
                };
                let mut block = Map::new();
                block.insert("type".into(), json!("tool_result"));
                block.insert("tool_use_id".into(), json!(id));
                match m.content {
                    Value::String(s) if s.is_empty() => {}
                    Value::String(s) => {
                        block.insert("content".into(), json!(s));
                    }
                    Value::Array(_) => {
                        let blocks = content_blocks(m.content, &format!("{at}.content"), t)?;
                        block.insert("content".into(), Value::Array(blocks));
                    }
                    _ => {}
                }
                ("user", vec![Value::Object(block)])
            }
            _ => {
                return Err(t.unsupported(
                    &format!("{at}.role"),
                    "the deprecated `function` role cannot be translated; send `tool` messages",
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, messages))
}

/// User (or tool result) content as Anthropic blocks.
fn content_blocks(content: &Value, at: &str, t: &Target<'_>) -> Result<Vec<Value>, GatewayError> {
    let mut blocks = Vec::new();
    for (k, part) in content_parts(content).into_iter().enumerate() {
        let here = if content.is_string() {
            at.to_string()
        } else {
            format!("{at}[{k}]")
        };
        match part {
            ContentPart::Text("") => {}
            ContentPart::Text(text) => blocks.push(json!({"type": "text", "text": text})),
            ContentPart::ImageUrl(url) => match media_source(url) {
                Some(MediaSource::Base64 { media_type, data }) => blocks.push(json!({
                    "type": "image",
                    "source": {"type": "base64", "media_type": media_type, "data": data},
                })),
                Some(MediaSource::Https(url)) => blocks.push(json!({
                    "type": "image",
                    "source": {"type": "url", "url": url},
                })),
                None => {
                    return Err(GatewayError::invalid(
                        format!(
                            "`{here}.image_url.url` must be a base64 data: URL or an https:// URL"
                        ),
                        &format!("{here}.image_url.url"),
                    ))
                }
            },
            ContentPart::FileData(data) => match media_source(data) {
                Some(MediaSource::Base64 {
                    media_type: "application/pdf",
                    data,
                }) => blocks.push(json!({
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": data},
                })),
                _ => {
                    return Err(t.unsupported(
                        &format!("{here}.file"),
                        "Anthropic accepts files as base64 PDF data: URLs only",
                    ))
                }
            },
            ContentPart::Other(kind) => {
                return Err(t.unsupported(
                    &here,
                    format!("content parts of type {kind:?} have no Anthropic equivalent"),
                ))
            }
        }
    }
    Ok(blocks)
}

/// Anthropic's `stop_reason` as an OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if has_tool_calls => "tool_calls",
        Some("refusal") => "content_filter",
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Read a successful Messages answer and write it as an OpenAI `chat.completion`.
pub fn parse_chat_answer(body: &[u8], created: u64) -> Result<UpstreamAnswer, AttemptFailure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| AttemptFailure::malformed("the answer is not JSON"))?;
    if v.get("type").and_then(Value::as_str) == Some("error") {
        let (class, message) = error_class(v.get("error").unwrap_or(&Value::Null), None);
        return Err(common::in_stream_error(class, &message));
    }
    let Some(blocks) = v.get("content").and_then(Value::as_array) else {
        return Err(AttemptFailure::malformed("the answer has no `content`"));
    };
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = None;
    for block in blocks {
        let s = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        match s("type") {
            "text" => text.push_str(s("text")),
            "thinking" => reasoning.push_str(s("thinking")),
            "tool_use" => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if s("name") == JSON_TOOL {
                    json_answer = Some(crate::json::to_text(&input));
                } else {
                    tool_calls.push(common::tool_call(
                        s("id"),
                        s("name"),
                        &crate::json::to_text(&input),
                    ));
                }
            }
            _ => {}
        }
    }
    let stop_reason = v.get("stop_reason").and_then(Value::as_str);
    let finish = finish_reason(stop_reason, !tool_calls.is_empty());
    if let Some(json_text) = json_answer {
        text = json_text;
    }
    let usage = v
        .get("usage")
        .filter(|u| u.is_object())
        .map(Usage::from_anthropic);
    let model = v.get("model").and_then(Value::as_str).map(str::to_string);
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let out = common::completion(
        id,
        model.as_deref().unwrap_or(""),
        created,
        vec![common::choice(0, text, reasoning, tool_calls, finish)],
        usage.as_ref(),
    );
    Ok(UpstreamAnswer {
        body: out,
        usage,
        model,
    })
}

/// The class and raw message of an Anthropic `error` object.
fn error_class(err: &Value, status: Option<u16>) -> (FailureClass, String) {
    let etype = err.get("type").and_then(Value::as_str).unwrap_or("");
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    let lower = message.to_ascii_lowercase();
    let class = match etype {
        "overloaded_error" | "api_error" | "timeout_error" => FailureClass::Retryable,
        "rate_limit_error" => FailureClass::RateLimited,
        "authentication_error" | "permission_error" | "billing_error" => FailureClass::Auth,
        "not_found_error" => FailureClass::TargetMissing,
        "request_too_large" => FailureClass::Rejected,
        "invalid_request_error" if lower.contains("prompt is too long") => {
            FailureClass::ContextLength
        }
        "invalid_request_error"
            if lower.contains("content filtering") || lower.contains("usage policy") =>
        {
            FailureClass::ContentPolicy
        }
        "invalid_request_error" if lower.contains("credit balance") => FailureClass::Auth,
        "invalid_request_error" => FailureClass::Rejected,
        _ => match status {
            Some(529) | None => FailureClass::Retryable,
            Some(s) => class_of_status(s),
        },
    };
    (class, message.to_string())
}

/// Classify a non-2xx answer from Anthropic.
pub fn classify_error(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> AttemptFailure {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&Value::Null);
    let (mut class, raw) = error_class(err, Some(status));
    // The status wins where it is unambiguous.
    match status {
        529 => class = FailureClass::Retryable,
        429 => class = FailureClass::RateLimited,
        _ => {}
    }
    let message = if raw.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {}", sanitize_message(&raw))
    };
    let mut f = AttemptFailure::new(class, Some(status), message);
    f.retry_after_ms = retry_after.and_then(|r| parse_retry_after(r, now_ms));
    f
}

/// What an Anthropic content block is, as far as the caller's stream is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A caller tool call, with its OpenAI `tool_calls` index.
    Tool(u64),
    /// The JSON-mode tool: its input is the answer text.
    Json,
    Ignored,
}

/// Re-frames an Anthropic Messages SSE stream as OpenAI chat-completion chunks.
#[derive(Debug, Default)]
pub struct AnthropicStream {
    pub(super) input: SseInput,
    include_usage: bool,
    writer: ChunkWriter,
    role_sent: bool,
    /// Content blocks by Anthropic index.
    blocks: Vec<(u64, Block)>,
    tool_calls: u64,
    /// Anthropic's running usage (`message_start`, then `message_delta` fields).
    raw_usage: Map<String, Value>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// A content token (text, thinking, tool call) or a finish reason has been seen.
    pub content_started: bool,
    /// `message_delta` carried a stop reason: the answer is complete even without `message_stop`.
    pub finished: bool,
    /// `message_stop` has been seen and `[DONE]` written.
    pub done: bool,
    /// Events that were not JSON, skipped.
    pub malformed: u32,
}

impl AnthropicStream {
    pub fn new(include_usage: bool, created: u64) -> Self {
        AnthropicStream {
            include_usage,
            writer: ChunkWriter {
                created,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    pub fn set_created(&mut self, created: u64) {
        self.writer.created = created;
    }

    /// The upstream body ended: complete (`message_stop`, or at least a stop reason) → `[DONE]`;
    /// anything else is a truncation.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        self.drain(out)?;
        if self.done {
            return Ok(());
        }
        if self.finished {
            self.end(out);
            return Ok(());
        }
        Err(common::truncated())
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.include_usage {
            let usage = self.usage.unwrap_or_default();
            out.extend_from_slice(&self.writer.usage(&usage));
        }
        out.extend_from_slice(&frame_data("[DONE]"));
        self.done = true;
    }

    fn role(&mut self, out: &mut Vec<u8>) {
        if !self.role_sent {
            self.role_sent = true;
            out.extend_from_slice(&self.writer.delta(
                0,
                json!({"role": "assistant", "content": ""}),
                None,
            ));
        }
    }

    fn block(&self, index: u64) -> Block {
        self.blocks
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| *b)
            .unwrap_or(Block::Ignored)
    }

    fn merge_usage(&mut self, u: &Value) {
        if let Some(o) = u.as_object() {
            for (k, v) in o {
                if !v.is_null() {
                    self.raw_usage.insert(k.clone(), v.clone());
                }
            }
            self.usage = Some(Usage::from_anthropic(&Value::Object(
                self.raw_usage.clone(),
            )));
        }
    }

    pub(super) fn handle(
        &mut self,
        events: &[SseEvent],
        out: &mut Vec<u8>,
    ) -> Result<(), AttemptFailure> {
        for ev in events {
            if self.done {
                break;
            }
            let Ok(data) = serde_json::from_slice::<Value>(ev.data.trim().as_bytes()) else {
                self.malformed += 1;
                continue;
            };
            let kind = data
                .get("type")
                .and_then(Value::as_str)
                .or(ev.event.as_deref())
                .unwrap_or("");
            let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
            match kind {
                "message_start" => {
                    let m = data.get("message").unwrap_or(&Value::Null);
                    if let Some(id) = m.get("id").and_then(Value::as_str) {
                        self.writer.id = id.to_string();
                    }
                    if let Some(model) = m.get("model").and_then(Value::as_str) {
                        self.writer.model = model.to_string();
                        self.model = Some(model.to_string());
                    }
                    if let Some(u) = m.get("usage") {
                        self.merge_usage(u);
                    }
                    self.role(out);
                }
                "content_block_start" => {
                    self.role(out);
                    let b = data.get("content_block").unwrap_or(&Value::Null);
                    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
                    let block = match s("type") {
                        "text" => {
                            let text = s("text");
                            if !text.is_empty() {
                                self.text(out, "content", text);
                            }
                            Block::Text
                        }
                        "thinking" => Block::Thinking,
                        "tool_use" if s("name") == JSON_TOOL => Block::Json,
                        "tool_use" => {
                            let n = self.tool_calls;
                            self.tool_calls += 1;
                            let mut call = common::tool_call(s("id"), s("name"), "");
                            if let Some(o) = call.as_object_mut() {
                                o.insert("index".into(), json!(n));
                            }
                            out.extend_from_slice(&self.writer.delta(
                                0,
                                json!({"tool_calls": [call]}),
                                None,
                            ));
                            self.content_started = true;
                            Block::Tool(n)
                        }
                        _ => Block::Ignored,
                    };
                    self.blocks.retain(|(i, _)| *i != index);
                    self.blocks.push((index, block));
                }
                "content_block_delta" => {
                    self.role(out);
                    let d = data.get("delta").unwrap_or(&Value::Null);
                    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
                    match (s("type"), self.block(index)) {
                        ("text_delta", _) => self.text(out, "content", s("text")),
                        ("thinking_delta", _) => self.text(out, "reasoning_content", s("thinking")),
                        ("input_json_delta", Block::Json) => {
                            self.text(out, "content", s("partial_json"))
                        }
                        ("input_json_delta", Block::Tool(n)) => {
                            let piece = s("partial_json");
                            if !piece.is_empty() {
                                let delta = json!({"tool_calls": [
                                    {"index": n, "function": {"arguments": piece}}
                                ]});
                                out.extend_from_slice(&self.writer.delta(0, delta, None));
                                self.content_started = true;
                            }
                        }
                        _ => {}
                    }
                }
                "message_delta" => {
                    self.role(out);
                    if let Some(u) = data.get("usage") {
                        self.merge_usage(u);
                    }
                    if let Some(reason) =
                        crate::json::at(&data, "/delta/stop_reason").and_then(Value::as_str)
                    {
                        let finish = finish_reason(Some(reason), self.tool_calls > 0);
                        out.extend_from_slice(&self.writer.delta(0, json!({}), Some(finish)));
                        self.finished = true;
                        self.content_started = true;
                    }
                }
                "message_stop" => {
                    self.role(out);
                    self.end(out);
                }
                "error" => {
                    let (class, message) =
                        error_class(data.get("error").unwrap_or(&Value::Null), None);
                    return Err(common::in_stream_error(class, &message));
                }
                // `ping`, `content_block_stop`, and event types added later.
                _ => {}
            }
        }
        Ok(())
    }

    fn text(&mut self, out: &mut Vec<u8>, field: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut delta = Map::new();
        delta.insert(field.into(), json!(text));
        out.extend_from_slice(&self.writer.delta(0, Value::Object(delta), None));
        self.content_started = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::ErrorKind;

    fn provider() -> ProviderConfig {
        let c = Config::parse(
            r#"{"providers":[{"id":"claude","kind":"anthropic","api_key_secrets":["K"]}],
                "routes":[{"model":"m","targets":[{"provider":"claude","model":"claude-x"}]}]}"#,
        )
        .unwrap();
        c.providers[0].clone()
    }

    fn build(body: Value) -> Result<(Value, UpstreamRequest), GatewayError> {
        let req = ChatRequest::parse(body.to_string().as_bytes())?;
        let up = build_chat(&provider(), "claude-x", &req, Some("sk-ant-test"))?;
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        Ok((v, up))
    }

    fn with(extra: Value) -> Value {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    }

    #[test]
    fn url_headers_and_defaults() {
        let (v, up) = build(with(json!({}))).unwrap();
        assert_eq!(up.url, "https://api.anthropic.com/v1/messages");
        assert!(up.headers.contains(&("x-api-key", "sk-ant-test".into())));
        assert!(up
            .headers
            .contains(&("anthropic-version", "2023-06-01".into())));
        assert_eq!(v["max_tokens"], ANTHROPIC_DEFAULT_MAX_TOKENS);
        assert_eq!(v["model"], "claude-x");
        assert!(v.get("stream").is_none());
        assert!(up.warnings.is_empty());
        let (v, _) = build(with(json!({"max_tokens": 50, "max_completion_tokens": 70}))).unwrap();
        assert_eq!(v["max_tokens"], 70, "max_completion_tokens wins");
    }

    #[test]
    fn n_and_hot_temperature_are_rejected() {
        let e = build(with(json!({"n": 2}))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(e.param.as_deref(), Some("n"));
        assert!(e.message.contains("\"claude\""), "{e}");
        build(with(json!({"n": 1}))).unwrap();
        let e = build(with(json!({"temperature": 1.5}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(
            e.message.contains("between 0 and 1, got 1.5"),
            "{}",
            e.message
        );
        assert!(e.message.contains("claude-x"), "{e}");
        let (v, _) = build(with(json!({"temperature": 1}))).unwrap();
        assert_eq!(v["temperature"], 1);
    }

    #[test]
    fn unknown_and_unsupported_parameters_are_warned() {
        let (v, up) = build(with(
            json!({"seed": 3, "logprobs": true, "presence_penalty": 0,
            "frequency_penalty": 0.5, "logit_bias": {"1": 2}, "top_logprobs": 2, "store": false}),
        ))
        .unwrap();
        for p in [
            "seed",
            "logprobs",
            "frequency_penalty",
            "logit_bias",
            "top_logprobs",
        ] {
            assert!(
                up.warnings.iter().any(|w| w.starts_with(&format!("{p} "))),
                "{p}: {:?}",
                up.warnings
            );
            assert!(v.get(p).is_none());
        }
        assert!(
            !up.warnings
                .iter()
                .any(|w| w.contains("presence_penalty") || w.contains("store")),
            "neutral values are dropped silently: {:?}",
            up.warnings
        );
        assert!(up
            .warnings
            .iter()
            .all(|w| w.is_ascii() && !w.contains('\n')));
    }

    #[test]
    fn reasoning_effort_maps_to_thinking() {
        let (v, up) = build(with(json!({"reasoning_effort": "medium"}))).unwrap();
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 8192})
        );
        assert_eq!(v["max_tokens"], 8192 + ANTHROPIC_DEFAULT_MAX_TOKENS);
        assert!(up.warnings.is_empty());
        let (v, _) = build(with(
            json!({"reasoning_effort": "high", "max_tokens": 10000}),
        ))
        .unwrap();
        assert_eq!(
            v["thinking"]["budget_tokens"], 5000,
            "half of an explicit cap"
        );
        assert_eq!(v["max_tokens"], 10000);
        let (v, _) = build(with(json!({"reasoning_effort": "low", "max_tokens": 1500}))).unwrap();
        assert_eq!(
            v["thinking"]["budget_tokens"], 1024,
            "never under the minimum"
        );
        let (v, up) = build(with(json!({"reasoning_effort": "low", "max_tokens": 1000}))).unwrap();
        assert!(v.get("thinking").is_none());
        assert!(up.warnings[0].starts_with("reasoning_effort ignored"));
        let (v, _) = build(with(json!({"reasoning_effort": "none"}))).unwrap();
        assert!(v.get("thinking").is_none());
        let (v, up) = build(with(
            json!({"reasoning_effort": "low", "temperature": 0.2, "top_p": 0.5}),
        ))
        .unwrap();
        assert!(v.get("temperature").is_none() && v.get("top_p").is_none());
        assert_eq!(up.warnings.len(), 2, "{:?}", up.warnings);
        let e = build(with(json!({"reasoning_effort": "extreme"}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    }

    #[test]
    fn thinking_is_left_off_in_a_tool_loop_and_with_forced_tools() {
        let body = json!({"model": "m", "reasoning_effort": "low", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"}],
            "tools": [{"type": "function", "function": {"name": "w"}}]});
        let (v, up) = build(body).unwrap();
        assert!(v.get("thinking").is_none());
        assert!(
            up.warnings[0].contains("tool call turn"),
            "{:?}",
            up.warnings
        );
        let (v, up) = build(with(json!({"reasoning_effort": "low",
            "response_format": {"type": "json_object"}})))
        .unwrap();
        assert!(v.get("thinking").is_none());
        assert!(up.warnings[0].contains("forced tool"), "{:?}", up.warnings);
    }

    #[test]
    fn roles_merge_and_tool_results_become_user_turns() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": ""}]},
            {"role": "assistant", "content": "calling", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "t2", "type": "function", "function": {"name": "w", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "rain"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "sun"}]},
            {"role": "user", "content": "thanks"}]});
        let (v, _) = build(body).unwrap();
        assert_eq!(v["system"], "Be brief.\n\nUse metric.");
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[0]["content"],
            json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
        );
        assert_eq!(m[1]["content"][1]["input"], json!({"city": "Oslo"}));
        assert_eq!(m[1]["content"][2]["input"], json!({}));
        assert_eq!(m[2]["role"], "user");
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1", "content": "rain"})
        );
        assert_eq!(
            m[2]["content"][1]["content"],
            json!([{"type": "text", "text": "sun"}])
        );
        assert_eq!(
            m[2]["content"][2],
            json!({"type": "text", "text": "thanks"})
        );
    }

    #[test]
    fn bad_tool_arguments_name_the_message() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{nope"}}]}]});
        let e = build(body).unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }

    #[test]
    fn bad_media_and_parts_are_400s() {
        let img = |url: &str| {
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]})
        };
        let e = build(img("http://example.com/a.png")).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].content[0].image_url.url")
        );
        let e = build(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = build(
            json!({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let (v, _) = build(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}]}]}),
        )
        .unwrap();
        assert_eq!(v["messages"][0]["content"][0]["type"], "document");
    }

    #[test]
    fn tool_choice_mapping() {
        let tools = json!([{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]);
        let tc = |choice: Value| {
            let (v, _) = build(with(json!({"tools": tools, "tool_choice": choice}))).unwrap();
            v["tool_choice"].clone()
        };
        assert_eq!(tc(json!("auto")), json!({"type": "auto"}));
        assert_eq!(tc(json!("required")), json!({"type": "any"}));
        assert_eq!(tc(json!("none")), json!({"type": "none"}));
        assert_eq!(
            tc(json!({"type": "function", "function": {"name": "w"}})),
            json!({"type": "tool", "name": "w"})
        );
        let (v, _) = build(with(json!({"tools": tools, "parallel_tool_calls": false}))).unwrap();
        assert_eq!(
            v["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        let (v, _) = build(with(json!({"tools": tools}))).unwrap();
        assert!(v.get("tool_choice").is_none());
        assert_eq!(
            v["tools"][0],
            json!({"name": "w", "input_schema": {"type": "object"}})
        );
        let reserved = json!([{"type": "function", "function": {"name": "json_output"}}]);
        let e = build(with(json!({"tools": reserved}))).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
    }

    #[test]
    fn json_mode_with_caller_tools_lets_the_model_choose() {
        let tools = json!([{"type": "function", "function": {"name": "w"}}]);
        let (v, _) = build(with(
            json!({"tools": tools, "response_format": {"type": "json_object"}}),
        ))
        .unwrap();
        assert_eq!(v["tool_choice"], json!({"type": "any"}));
        assert_eq!(v["tools"][1]["name"], JSON_TOOL);
        let (v, _) = build(with(json!({"tools": tools, "tool_choice": "none",
            "response_format": {"type": "json_object"}})))
        .unwrap();
        assert_eq!(v["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    }

    #[test]
    fn errors_are_classified() {
        let c = |status: u16, etype: &str, msg: &str| {
            let body = json!({"type": "error", "error": {"type": etype, "message": msg}});
            classify_error(status, None, body.to_string().as_bytes(), 0).class
        };
        assert_eq!(
            c(529, "overloaded_error", "Overloaded"),
            FailureClass::Retryable
        );
        assert_eq!(
            c(429, "rate_limit_error", "slow down"),
            FailureClass::RateLimited
        );
        assert_eq!(c(500, "api_error", "oops"), FailureClass::Retryable);
        assert_eq!(
            c(401, "authentication_error", "invalid x-api-key"),
            FailureClass::Auth
        );
        assert_eq!(c(403, "permission_error", "no"), FailureClass::Auth);
        assert_eq!(
            c(404, "not_found_error", "model: x"),
            FailureClass::TargetMissing
        );
        assert_eq!(
            c(400, "invalid_request_error", "max_tokens: bad"),
            FailureClass::Rejected
        );
        assert_eq!(
            c(
                400,
                "invalid_request_error",
                "prompt is too long: 200001 tokens > 200000 maximum"
            ),
            FailureClass::ContextLength
        );
        assert_eq!(
            c(
                400,
                "invalid_request_error",
                "Output blocked by content filtering policy"
            ),
            FailureClass::ContentPolicy
        );
        assert_eq!(c(529, "", ""), FailureClass::Retryable);
        assert_eq!(
            classify_error(503, None, b"<html>", 0).class,
            FailureClass::Retryable
        );
        let f = classify_error(429, Some("7"), b"{}", 0);
        assert_eq!(f.retry_after_ms, Some(7_000));
        // A key-shaped string built at run time, so no key-like literal sits in the repository.
        let fake_key = format!("sk-ant-api03-{}", "abcdefghij".repeat(3));
        let body = format!(
            r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid key {fake_key} see https://console.anthropic.com"}}}}"#
        );
        let f = classify_error(401, None, body.as_bytes(), 0);
        assert!(
            !f.message.contains("sk-ant") && !f.message.contains("https"),
            "{}",
            f.message
        );
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(Some("end_turn"), false), "stop");
        assert_eq!(finish_reason(Some("stop_sequence"), false), "stop");
        assert_eq!(finish_reason(Some("max_tokens"), true), "length");
        assert_eq!(finish_reason(Some("tool_use"), true), "tool_calls");
        assert_eq!(finish_reason(Some("tool_use"), false), "stop", "JSON mode");
        assert_eq!(finish_reason(Some("refusal"), false), "content_filter");
        assert_eq!(finish_reason(None, false), "stop");
    }
}
