//! Gemini ingress (`POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`), so the `google-genai` SDKs can use the gateway: the request
//! becomes the canonical OpenAI request, the answer goes back as a `GenerateContentResponse` (or
//! a stream of them). `{model}` is the public route name.
//!
//! # Request
//!
//! | Gemini | canonical (OpenAI) |
//! | --- | --- |
//! | `systemInstruction.parts[].text` | a leading `system` message |
//! | `contents` with roles `user` / `model` | `user` / `assistant` messages |
//! | `text` parts (`thought: true` parts are dropped) | text |
//! | `inlineData` (`image/*` → `image_url`, else `file`), `fileData` | `data:` URL / `image_url` URL parts |
//! | `functionCall` parts | `tool_calls`; the id is the part's `id`, else `call_<n>` |
//! | `functionResponse` parts | `tool` messages, paired with the call by `id`, else by name; `response` as JSON text |
//! | `generationConfig` `temperature`, `topP`, `topK`, `maxOutputTokens`, `stopSequences`, `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty` | `temperature`, `top_p`, `top_k`, `max_tokens`, `stop`, `n`, `seed`, `presence_penalty`, `frequency_penalty` |
//! | `responseMimeType: application/json` (+ `responseSchema` / `responseJsonSchema`) | `response_format` `json_object` / `json_schema` (OpenAPI types lowered); other MIME types are plain text |
//! | `thinkingConfig.thinkingBudget` | `reasoning_effort` (0 none, ≤ 512 minimal, ≤ 1024 low, ≤ 8192 medium, more high; −1, the model's default, and `thinkingLevel` set nothing) |
//! | `tools[].functionDeclarations` | function tools (`parameters` or `parametersJsonSchema`) |
//! | `toolConfig.functionCallingConfig` AUTO / ANY / NONE (+ one `allowedFunctionNames`) | `tool_choice` auto / required / none / named |
//! | other tools (`googleSearch`, `codeExecution`, …), `executableCode` parts | 400 `unsupported_parameter` |
//! | `safetySettings`, `cachedContent` and any other parameter | dropped with a warning; neutral values silently |
//!
//! # Answer
//!
//! Choices become candidates (`content.role: model`): `reasoning_content` → a `thought: true`
//! part, text → a text part, tool calls → `functionCall` parts carrying the call's `id`.
//! `finish_reason` stop / tool_calls → `STOP`, length → `MAX_TOKENS`, content_filter → `SAFETY`.
//! `usageMetadata`: `promptTokenCount`, `candidatesTokenCount` (completion − reasoning),
//! `thoughtsTokenCount`, `cachedContentTokenCount`, `totalTokenCount`.
//!
//! # Stream
//!
//! One `data: GenerateContentResponse` per text piece, as it arrives (one candidate: the answer's
//! first choice). Tool calls are sent whole (Gemini never splits a `functionCall`) in the last
//! chunk, which also carries the finish reason and `usageMetadata`. A broken stream ends with a `data: {"error":{…}}` chunk, which
//! the SDKs raise.

use super::anthropic::{assistant_message, chat_message, tool_call, tool_message};
use super::{
    arguments_object, dropped, esc, invalid, list, str_of, unsupported, Chunk, ChunkReader, Delta,
    Json,
};
use crate::chat::ChatRequest;
use crate::error::{ErrorKind, GatewayError};
use crate::providers::put;
use crate::sse::frame_data;
use crate::usage::Usage;
use serde_json::{Map, Value};

/// `{model}:{method}` of a Gemini path (`/v1beta/models/…`, or `/v1/models/…` as the SDKs use
/// with `api_version="v1"`).
pub fn model_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))
        .filter(|rest| rest.contains(':'))
}

/// The route name and whether a stream was asked for, from the path (and `alt=sse`).
pub fn target<'a>(path: &'a str, query: &str) -> Result<(&'a str, bool), GatewayError> {
    let rest = model_path(path).unwrap_or("");
    if let Some(model) = rest.strip_suffix(":generateContent") {
        return Ok((model, false));
    }
    if let Some(model) = rest.strip_suffix(":streamGenerateContent") {
        if !query.split('&').any(|p| p == "alt=sse") {
            return Err(invalid("alt", "must be \"sse\" for streams"));
        }
        return Ok((model, true));
    }
    Err(GatewayError::new(
        ErrorKind::NotFound,
        "Unknown path; see /v1beta/models/{model}:generateContent",
    ))
}

/// The request as the canonical OpenAI request, and the warnings for what was dropped.
pub fn to_chat(
    model: &str,
    stream: bool,
    src: Map<String, Value>,
) -> Result<(ChatRequest, Vec<String>), GatewayError> {
    let mut out = Json::default();
    let mut warnings = Vec::new();
    let mut messages = Vec::new();
    let mut choice = None;
    let mut tools = Vec::new();
    out.raw("model", &esc(model));
    if stream {
        out.raw("stream", "true");
        out.raw("stream_options", r#"{"include_usage":true}"#);
    }
    for (key, v) in &src {
        match key.as_str() {
            "contents" | "model" => {}
            "systemInstruction" => {
                let mut text = String::new();
                for p in parts(v) {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(str_of(p, "text"));
                }
                if !text.is_empty() {
                    messages.push(chat_message("system", &esc(&text)));
                }
            }
            "generationConfig" => generation_config(v, &mut out, &mut warnings),
            "tools" => tools = tool_list(v)?,
            "toolConfig" => {
                let c = v.get("functionCallingConfig").unwrap_or(&Value::Null);
                let names = c.get("allowedFunctionNames").and_then(Value::as_array);
                choice = Some(match (str_of(c, "mode"), names.map(Vec::as_slice)) {
                    ("ANY", Some([one])) => super::named_choice(one.as_str().unwrap_or("")),
                    ("ANY" | "VALIDATED", _) => "\"required\"".into(),
                    ("NONE", _) => "\"none\"".into(),
                    _ => "\"auto\"".into(),
                });
            }
            _ if crate::providers::is_neutral(v) => {}
            k => warnings.push(dropped(k, "gemini")),
        }
    }
    if !tools.is_empty() {
        out.raw("tools", &format!("[{}]", tools.join(",")));
        if let Some(c) = choice {
            out.raw("tool_choice", &c);
        }
    }
    let Some(Value::Array(contents)) = src.get("contents") else {
        return Err(invalid("contents", "must be an array of contents"));
    };
    let mut calls = Calls::default();
    for (i, c) in contents.iter().enumerate() {
        content(c, i, &mut calls, &mut messages)?;
    }
    out.raw("messages", &format!("[{}]", messages.join(",")));
    Ok((out.into_chat()?, warnings))
}

fn parts(content: &Value) -> &[Value] {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `generationConfig` fields passed on under their OpenAI names.
const RENAMED: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("topP", "top_p"),
    ("topK", "top_k"),
    ("maxOutputTokens", "max_tokens"),
    ("stopSequences", "stop"),
    ("candidateCount", "n"),
    ("seed", "seed"),
    ("presencePenalty", "presence_penalty"),
    ("frequencyPenalty", "frequency_penalty"),
];

fn generation_config(v: &Value, out: &mut Json, warnings: &mut Vec<String>) {
    let Some(config) = v.as_object() else {
        return;
    };
    for (key, v) in config {
        if let Some((_, name)) = RENAMED.iter().find(|(k, _)| k == key) {
            out.field(name, v);
            continue;
        }
        match key.as_str() {
            "responseMimeType" | "responseSchema" | "responseJsonSchema" => {}
            "thinkingConfig" => {
                // A budget as an effort; -1 (the model decides) leaves the default.
                let effort = match v.get("thinkingBudget").and_then(Value::as_i64) {
                    Some(0) => "none",
                    Some(1..=512) => "minimal",
                    Some(513..=1024) => "low",
                    Some(1025..=8192) => "medium",
                    Some(8193..) => "high",
                    _ => continue,
                };
                out.raw("reasoning_effort", &esc(effort));
            }
            k if !crate::providers::is_neutral(v) => {
                warnings.push(dropped(&format!("generationConfig.{k}"), "gemini"))
            }
            _ => {}
        }
    }
    if v.get("responseMimeType").and_then(Value::as_str) == Some("application/json") {
        let schema = match (v.get("responseJsonSchema"), v.get("responseSchema")) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => json_schema(s),
            _ => Value::Null,
        };
        let format = if schema.is_null() {
            r#"{"type":"json_object"}"#.to_string()
        } else {
            format!(
                r#"{{"type":"json_schema","json_schema":{{"name":"response","schema":{}}}}}"#,
                crate::json::to_text(&schema)
            )
        };
        out.raw("response_format", &format);
    }
}

/// Gemini's OpenAPI-subset `Schema` as JSON Schema: types lowered, `nullable` folded into the
/// type, `propertyOrdering` dropped.
pub fn json_schema(schema: &Value) -> Value {
    let Some(o) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in o {
        let v = match k.as_str() {
            "type" => {
                let t = Value::String(v.as_str().unwrap_or("").to_ascii_lowercase());
                if o.get("nullable") == Some(&Value::Bool(true)) {
                    Value::Array(vec![t, Value::String("null".into())])
                } else {
                    t
                }
            }
            "items" => json_schema(v),
            "properties" => {
                let mut props = Map::new();
                for (name, p) in v.as_object().into_iter().flatten() {
                    put(&mut props, name, json_schema(p));
                }
                Value::Object(props)
            }
            "anyOf" => Value::Array(list(Some(v)).iter().map(json_schema).collect()),
            "nullable" | "propertyOrdering" => continue,
            _ => v.clone(),
        };
        put(&mut out, k, v);
    }
    Value::Object(out)
}

/// Function declarations as OpenAI function tools (JSON texts).
fn tool_list(v: &Value) -> Result<Vec<String>, GatewayError> {
    let mut out = Vec::new();
    for (i, tool) in list(Some(v)).iter().enumerate() {
        for (kind, decls) in tool.as_object().into_iter().flatten() {
            if kind != "functionDeclarations" {
                return Err(unsupported(
                    &format!("tools[{i}].{kind}"),
                    "only functionDeclarations are translated",
                ));
            }
            for d in list(Some(decls)) {
                let converted;
                let params = match (d.get("parametersJsonSchema"), d.get("parameters")) {
                    (Some(p), _) => Some(p),
                    (None, Some(p)) => {
                        converted = json_schema(p);
                        Some(&converted)
                    }
                    _ => None,
                };
                out.push(super::function_tool(
                    str_of(d, "name"),
                    d.get("description"),
                    params,
                ));
            }
        }
    }
    Ok(out)
}

/// Tool calls seen so far and not yet answered: (id, name).
#[derive(Default)]
struct Calls {
    open: Vec<(String, String)>,
    made: u64,
}

impl Calls {
    fn call(&mut self, part: &Value, name: &str) -> String {
        let id = match str_of(part, "id") {
            "" => format!("call_{}", self.made),
            id => id.to_string(),
        };
        self.made += 1;
        self.open.push((id.clone(), name.to_string()));
        id
    }

    /// The call a response answers: by id, else the oldest open call of that name.
    fn answer(&mut self, id: &str, name: &str) -> Option<String> {
        let at = self
            .open
            .iter()
            .position(|(i, _)| !id.is_empty() && i == id)
            .or_else(|| self.open.iter().position(|(_, n)| n == name))?;
        Some(self.open.remove(at).0)
    }
}

/// One `Content` as one or more OpenAI messages (JSON texts).
fn content(
    c: &Value,
    i: usize,
    calls: &mut Calls,
    out: &mut Vec<String>,
) -> Result<(), GatewayError> {
    let assistant = match c.get("role").and_then(Value::as_str) {
        None | Some("user") => false,
        Some("model") => true,
        Some(_) => {
            return Err(invalid(
                &format!("contents[{i}].role"),
                "must be \"user\" or \"model\"",
            ))
        }
    };
    let mut items = Vec::new();
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for (k, p) in parts(c).iter().enumerate() {
        let media = |url: &str, image: bool| {
            if image {
                format!(
                    r#"{{"type":"image_url","image_url":{{"url":{}}}}}"#,
                    esc(url)
                )
            } else {
                format!(r#"{{"type":"file","file":{{"file_data":{}}}}}"#, esc(url))
            }
        };
        let translated = if let Some(t) = p.get("text").and_then(Value::as_str) {
            if p.get("thought") != Some(&Value::Bool(true)) && !t.is_empty() {
                text.push_str(t);
                items.push(format!(r#"{{"type":"text","text":{}}}"#, esc(t)));
            }
            true
        } else if let Some(d) = p.get("inlineData") {
            let mime = str_of(d, "mimeType");
            let url = format!("data:{mime};base64,{}", str_of(d, "data"));
            items.push(media(&url, mime.starts_with("image/")));
            true
        } else if let Some(d) = p.get("fileData") {
            items.push(media(str_of(d, "fileUri"), true));
            true
        } else if let Some(f) = p.get("functionCall") {
            let name = str_of(f, "name");
            let id = calls.call(f, name);
            let args = f
                .get("args")
                .map_or_else(|| "{}".into(), crate::json::to_text);
            tool_calls.push(tool_call(&id, name, &args));
            true
        } else if let Some(r) = p.get("functionResponse") {
            // A response must answer an earlier call (OpenAI pairs them by id).
            let id = calls.answer(str_of(r, "id"), str_of(r, "name"));
            let response = r.get("response").unwrap_or(&Value::Null);
            if let Some(id) = &id {
                out.push(tool_message(id, &esc(&crate::json::to_text(response))));
            }
            id.is_some()
        } else {
            p.get("thoughtSignature").is_some()
        };
        if !translated {
            return Err(unsupported(
                &format!("contents[{i}].parts[{k}]"),
                "this part cannot be translated (or answers no earlier functionCall)",
            ));
        }
    }
    if assistant {
        out.push(assistant_message(&text, &tool_calls));
    } else if !items.is_empty() {
        out.push(chat_message("user", &format!("[{}]", items.join(","))));
    }
    Ok(())
}

/// OpenAI's `finish_reason` as Gemini's `finishReason`.
pub fn finish_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "STOP",
    }
}

/// `usageMetadata`, as JSON text.
pub fn usage(u: &Usage) -> String {
    let mut extra = String::new();
    if u.reasoning_tokens > 0 {
        extra = format!(r#","thoughtsTokenCount":{}"#, u.reasoning_tokens);
    }
    if u.cached_tokens > 0 {
        extra.push_str(&format!(
            r#","cachedContentTokenCount":{}"#,
            u.cached_tokens
        ));
    }
    format!(
        r#"{{"promptTokenCount":{},"candidatesTokenCount":{},"totalTokenCount":{}{extra}}}"#,
        u.prompt_tokens,
        u.completion_tokens.saturating_sub(u.reasoning_tokens),
        u.total_tokens()
    )
}

/// A `functionCall` part for an OpenAI tool call, with its arguments.
fn function_call(id: &str, name: &str, args: &Value) -> String {
    format!(
        r#"{{"functionCall":{{"id":{},"name":{},"args":{}}}}}"#,
        esc(id),
        esc(name),
        crate::json::to_text(args)
    )
}

/// Text and reasoning as parts (empty ones left out), JSON texts.
fn text_parts(reasoning: &str, text: &str, parts: &mut Vec<String>) {
    if !reasoning.is_empty() {
        parts.push(format!(r#"{{"text":{},"thought":true}}"#, esc(reasoning)));
    }
    if !text.is_empty() {
        parts.push(format!(r#"{{"text":{}}}"#, esc(text)));
    }
}

/// One candidate: its index, parts (JSON texts) and finish reason.
fn candidate(index: u64, parts: &[String], finish: Option<&str>) -> String {
    let finish = finish.map_or(String::new(), |f| {
        format!(r#","finishReason":"{}""#, finish_reason(f))
    });
    format!(
        r#"{{"content":{{"role":"model","parts":[{}]}},"index":{index}{finish}}}"#,
        parts.join(",")
    )
}

/// A `GenerateContentResponse` from its candidates and the answer's id and model (escaped),
/// with `usageMetadata` when given.
fn response(candidates: &[String], head: &str, usage: Option<&Usage>) -> String {
    let usage = usage.map_or(String::new(), |u| {
        format!(r#","usageMetadata":{}"#, self::usage(u))
    });
    format!(
        r#"{{"candidates":[{}]{head}{usage}}}"#,
        candidates.join(",")
    )
}

/// `,"modelVersion":…,"responseId":…` for an OpenAI answer or chunk.
fn head(c: &Value) -> String {
    format!(
        r#","modelVersion":{},"responseId":{}"#,
        esc(str_of(c, "model")),
        esc(str_of(c, "id"))
    )
}

fn index_of(choice: &Value, n: usize) -> u64 {
    choice
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(n as u64)
}

/// An OpenAI `chat.completion` as a `GenerateContentResponse` (JSON text).
pub fn answer(c: &Value, u: &Usage) -> String {
    let mut candidates = Vec::new();
    for (n, choice) in list(c.get("choices")).iter().enumerate() {
        let m = choice.get("message").unwrap_or(&Value::Null);
        let mut parts = Vec::new();
        text_parts(
            str_of(m, "reasoning_content"),
            str_of(m, "content"),
            &mut parts,
        );
        for call in list(m.get("tool_calls")).iter() {
            let name = crate::json::at(call, "/function/name").and_then(Value::as_str);
            let args = arguments_object(call);
            parts.push(function_call(str_of(call, "id"), name.unwrap_or(""), &args));
        }
        let finish = Some(str_of(choice, "finish_reason"));
        candidates.push(candidate(index_of(choice, n), &parts, finish));
    }
    response(&candidates, &head(c), Some(u))
}

/// Google's status name for an HTTP status.
fn status_name(status: u16) -> &'static str {
    match status {
        400 | 405 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// `{"error":{"code","message","status"}}`.
pub fn error(status: u16, message: &str) -> String {
    format!(
        r#"{{"error":{{"code":{status},"message":{},"status":"{}"}}}}"#,
        esc(message),
        status_name(status)
    )
}

/// Re-frames the OpenAI chunk stream as a stream of `GenerateContentResponse`s. Streams carry
/// one candidate (Gemini streams one), the caller's choice 0.
#[derive(Debug, Default)]
pub struct Encoder {
    pub(super) reader: ChunkReader,
    /// `,"modelVersion":…,"responseId":…` from the first chunk.
    head: Option<String>,
    /// Tool calls so far, by OpenAI index: their `function` objects (arguments still pieces).
    calls: Vec<(String, String, String)>,
    finish: String,
    usage: Usage,
}

impl Encoder {
    pub(super) fn chunk(&mut self, chunk: Chunk, out: &mut Vec<u8>) {
        let text = match chunk {
            Chunk::Data(c) => match self.data(&c) {
                Some(text) => text,
                None => return,
            },
            Chunk::Done => {
                let mut parts = Vec::new();
                for (id, name, args) in &self.calls {
                    let args = serde_json::from_slice::<Value>(args.as_bytes())
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| Value::Object(Map::new()));
                    parts.push(function_call(id, name, &args));
                }
                let head = self.head.as_deref().unwrap_or("");
                let last = candidate(0, &parts, Some(&self.finish));
                response(&[last], head, Some(&self.usage))
            }
            Chunk::Error(message, timeout) => error(if timeout { 504 } else { 502 }, &message),
        };
        out.extend_from_slice(&frame_data(&text));
    }

    /// A chunk's text and reasoning, re-framed at once; tool calls and the finish reason are
    /// kept for the last chunk.
    fn data(&mut self, c: &Value) -> Option<String> {
        let head = self.head.get_or_insert_with(|| head(c)).clone();
        let d = Delta::of(c);
        if let Some(u) = d.usage {
            self.usage = u;
        }
        for (n, id, name, piece) in d.calls {
            match self.calls.get_mut(n as usize) {
                Some(call) => call.2.push_str(piece),
                None => self
                    .calls
                    .push((id.to_string(), name.to_string(), piece.to_string())),
            }
        }
        if let Some(f) = d.finish {
            self.finish = f.to_string();
        }
        let mut parts = Vec::new();
        text_parts(d.reasoning, d.text, &mut parts);
        (!parts.is_empty()).then(|| response(&[candidate(0, &parts, None)], &head, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::Format;
    use serde_json::json;

    fn parse(path: &str, body: Value) -> Result<(ChatRequest, Vec<String>), GatewayError> {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let (work, warnings) = Format::Gemini.parse(p, q, body.to_string().as_bytes())?;
        match work {
            crate::providers::Work::Chat(c) => Ok((c, warnings)),
            other => panic!("not chat: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            target("/v1beta/models/gemini:generateContent", "").unwrap(),
            ("gemini", false)
        );
        assert_eq!(
            target("/v1beta/models/a/b:streamGenerateContent", "x=1&alt=sse").unwrap(),
            ("a/b", true)
        );
        let e = target("/v1beta/models/m:streamGenerateContent", "").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("alt"));
        let e = target("/v1beta/models/m:countTokens", "").unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(target("/v1beta/models/m", "").unwrap_err().status(), 404);
        assert_eq!(
            target("/v1/models/m:generateContent", "").unwrap(),
            ("m", false)
        );
    }

    #[test]
    fn request_translates_to_the_canonical_shape() {
        let (req, warnings) = parse(
            "/v1beta/models/gemini:streamGenerateContent?alt=sse",
            json!({
                "systemInstruction": {"parts": [{"text": "be"}, {"text": "brief"}]},
                "safetySettings": [{"category": "X", "threshold": "BLOCK_NONE"}],
                "generationConfig": {"temperature": 0.5, "maxOutputTokens": 20, "topK": 3,
                    "stopSequences": ["END"], "responseMimeType": "application/json",
                    "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": true}},
                                       "propertyOrdering": ["a"]},
                    "thinkingConfig": {"thinkingBudget": 1024}, "speechConfig": {"voice": "x"}},
                "tools": [{"functionDeclarations": [{"name": "w", "description": "weather",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}},
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
                    {"role": "model", "parts": [{"text": "hm", "thought": true}, {"functionCall": {"name": "w", "args": {"city": "Oslo"}}},
                                                {"functionCall": {"name": "w", "args": {"city": "Rome"}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"t": 1}}},
                                               {"functionResponse": {"name": "w", "response": {"t": 2}}}]}]
            }),
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec![
                "generationConfig.speechConfig ignored: not translated from the gemini format",
                "safetySettings ignored: not translated from the gemini format"
            ]
        );
        assert!(req.stream && req.include_usage);
        assert_eq!(req.model, "gemini");
        let b = Value::Object(req.body);
        assert_eq!(b["max_tokens"], 20);
        assert_eq!(b["top_k"], 3);
        assert_eq!(b["stop"], json!(["END"]));
        assert_eq!(b["reasoning_effort"], "low");
        assert_eq!(
            b["response_format"]["json_schema"]["schema"],
            json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}})
        );
        assert_eq!(b["tool_choice"]["function"]["name"], "w");
        assert_eq!(
            b["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
            "string"
        );
        let m = b["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "be\nbrief"}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(m[2]["content"], "");
        assert_eq!(m[2]["tool_calls"][1]["id"], "call_1");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "call_0", "content": "{\"t\":1}"})
        );
        assert_eq!(m[4]["tool_call_id"], "call_1");
    }

    #[test]
    fn plain_json_mode_and_defaults() {
        let (req, w) = parse(
            "/v1beta/models/m:generateContent",
            json!({"contents": [{"parts": [{"text": "x"}]}],
                   "generationConfig": {"responseMimeType": "application/json"}}),
        )
        .unwrap();
        assert!(w.is_empty() && !req.stream);
        assert_eq!(req.body["response_format"], json!({"type": "json_object"}));
        assert_eq!(req.body["messages"][0]["role"], "user");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let bad = |body: Value| parse("/v1beta/models/m:generateContent", body).unwrap_err();
        let e = bad(json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}));
        assert_eq!(e.param.as_deref(), Some("contents[0].role"));
        let e = bad(
            json!({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}),
        );
        assert_eq!(e.param.as_deref(), Some("contents[0].parts[0]"));
        let e =
            bad(json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}));
        assert_eq!(e.param.as_deref(), Some("tools[0].googleSearch"));
        let e = bad(json!({"contents": [{"parts": [{"executableCode": {"code": "1"}}]}]}));
        assert_eq!(e.param.as_deref(), Some("contents[0].parts[0]"));
        let e = bad(json!({}));
        assert_eq!(e.param.as_deref(), Some("contents"));
    }

    #[test]
    fn answer_translates_back() {
        let c = json!({"id": "chatcmpl-1", "model": "gpt-x", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]}}]});
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 7,
            cached_tokens: 4,
            cache_write_tokens: 0,
            reasoning_tokens: 3,
        };
        let a: Value =
            serde_json::from_slice(&Format::Gemini.answer(c.to_string().into_bytes(), &u)).unwrap();
        assert_eq!(
            a["candidates"][0],
            json!({"content": {"role": "model", "parts": [{"functionCall": {"id": "call_9", "name": "w", "args": {"a": 1}}}]},
                   "index": 0, "finishReason": "STOP"})
        );
        assert_eq!(
            a["usageMetadata"],
            json!({"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 3,
                   "cachedContentTokenCount": 4, "totalTokenCount": 17})
        );
        assert_eq!(a["modelVersion"], "gpt-x");
        let e: Value = serde_json::from_str(
            &Format::Gemini.error_body(&GatewayError::new(ErrorKind::UpstreamTimeout, "slow")),
        )
        .unwrap();
        assert_eq!(
            e,
            json!({"error": {"code": 504, "message": "slow", "status": "DEADLINE_EXCEEDED"}})
        );
    }
}
