//! Gemini `generateContent` / `streamGenerateContent?alt=sse` (`{base_url}/models/{model}:…`,
//! the base URL ending in `/v1beta`), translated from and to OpenAI chat completions.
//!
//! # Request
//!
//! | OpenAI | Gemini |
//! | --- | --- |
//! | `system` / `developer` messages | `systemInstruction.parts` (one text part each) |
//! | `user` / `assistant` messages | `contents` with roles `user` / `model`; consecutive turns of one role merged |
//! | text parts | `{text}` (empty ones skipped) |
//! | `image_url` / `file` `data:` URLs | `{inlineData: {mimeType, data}}` |
//! | `image_url` `https:` URLs | `{fileData: {mimeType?, fileUri}}` (mimeType guessed from the extension) |
//! | assistant `tool_calls` | `{functionCall: {name, args}}` parts (arguments parsed; unparseable → 400) |
//! | `tool` messages | `user` turns of `{functionResponse: {name, response}}`; the name is looked up from the earlier tool call with that id; `response` is the content parsed as JSON when it is an object, else `{"content": …}` |
//! | `tools` | `tools: [{functionDeclarations: [{name, description, parameters}]}]` (schema converted, see below; an empty parameter object is omitted) |
//! | `tool_choice` auto / required / none / named | `toolConfig.functionCallingConfig.mode` AUTO / ANY / NONE / ANY + `allowedFunctionNames` |
//! | `temperature`, `top_p`, `max_completion_tokens` / `max_tokens`, `stop`, `n`, `seed`, `presence_penalty`, `frequency_penalty` | `generationConfig` `temperature`, `topP`, `maxOutputTokens`, `stopSequences`, `candidateCount`, `seed`, `presencePenalty`, `frequencyPenalty` |
//! | `response_format` json_object / json_schema | `responseMimeType: "application/json"` (+ `responseSchema` from the schema) |
//! | `reasoning_effort` | `generationConfig.thinkingConfig.thinkingBudget`, see [`thinking_budget`] |
//! | `logprobs: true` | 400 `unsupported_parameter`: Gemini's log-probabilities are model-dependent and not translated, and an answer silently without them would be misread |
//! | `parallel_tool_calls`, `user`, and any other parameter Gemini has no equivalent for | dropped, with a warning (neutral values silently) |
//!
//! ## Schemas
//!
//! Gemini's `Schema` is a subset of OpenAPI 3.0, so JSON Schemas (`response_format.json_schema`,
//! tool `parameters`) are converted by [`gemini_schema`]: local `$ref`s into `$defs` /
//! `definitions` are inlined (to a depth of 8, so recursive schemas end); `type` becomes upper case, a `["T", "null"]` type
//! becomes `T` + `nullable: true` (several non-null types become `anyOf`); `const` becomes a
//! one-value `enum`; `oneOf` becomes `anyOf`; every keyword outside Gemini's subset
//! (`additionalProperties`, `$schema`, `$id`, `strict`, `patternProperties`, `allOf`, `not`,
//! `examples`, …) is removed, and each schema that lost keywords yields one warning listing them.
//!
//! ## Gemini 3 thought signatures
//!
//! Gemini 3 models reject a replayed `functionCall` without its `thoughtSignature`, which the
//! OpenAI format cannot carry. For those models (names `gemini-3…` and later) the first
//! `functionCall` part of each replayed model turn carries Google's documented placeholder
//! [`THOUGHT_SIGNATURE_PLACEHOLDER`].
//!
//! # Answer
//!
//! Candidates become choices (by `index`); text parts are concatenated (`thought: true` parts go
//! to `reasoning_content`); `functionCall` parts become `tool_calls` with the call's own `id`, else
//! `call_<responseId>_<n>` (unique within the conversation, which Anthropic requires of ids
//! replayed to it), and `finish_reason` `tool_calls`. `finishReason` STOP → `stop`, MAX_TOKENS →
//! `length`, SAFETY / RECITATION / BLOCKLIST / PROHIBITED_CONTENT / SPII / IMAGE_SAFETY →
//! `content_filter`, anything else → `stop`. A prompt blocked outright (`promptFeedback.blockReason`,
//! no candidates) is a content-policy failure. The id is `chatcmpl-gemini-<responseId>` (a digest
//! of the answer when there is no `responseId`); the model is `modelVersion`.

use super::common::{self, ChunkWriter, Target};
use super::openai::class_of_status;
use super::{sanitize_message, UpstreamAnswer, UpstreamRequest};
use super::{EventDecoder, SseInput};
use crate::chat::{
    media_source, ChatRequest, ContentPart, MediaSource, ResponseFormat, ToolChoice,
};
use crate::config::ProviderConfig;
use crate::error::GatewayError;
use crate::policy::{parse_retry_after, AttemptFailure, FailureClass};
use crate::sse::{frame_data, SseEvent};
use crate::usage::Usage;
use serde_json::{json, Map, Value};

/// The placeholder Google documents for replayed Gemini 3 function calls without a signature.
pub const THOUGHT_SIGNATURE_PLACEHOLDER: &str = "skip_thought_signature_validator";

/// `reasoning_effort` → `thinkingBudget` in tokens.
///
/// | effort | budget |
/// | --- | --- |
/// | none | 0 (thinking off; models that cannot turn thinking off reject it) |
/// | minimal | 512 |
/// | low | 1024 |
/// | medium | 8192 |
/// | high, xhigh | 24576 (the largest budget every 2.5 model accepts) |
pub fn thinking_budget(effort: &str) -> u64 {
    match effort {
        "none" => 0,
        "minimal" => 512,
        "low" => 1024,
        "medium" => 8192,
        _ => 24576,
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
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning_effort",
    "logprobs",
    "modalities",
];

/// The model id without a `models/` prefix.
fn model_id(target_model: &str) -> &str {
    target_model.strip_prefix("models/").unwrap_or(target_model)
}

/// Gemini 3 and later want thought signatures on replayed function calls.
fn wants_signatures(model: &str) -> bool {
    let Some(rest) = model.strip_prefix("gemini-") else {
        return false;
    };
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 3)
}

pub fn build_chat(
    provider: &ProviderConfig,
    target_model: &str,
    req: &ChatRequest,
    api_key: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let t = Target {
        provider_id: &provider.id,
        model: target_model,
        protocol: "gemini",
    };
    let model = model_id(target_model);
    let mut warnings = Vec::new();

    if req.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(t.unsupported(
            "logprobs",
            "log-probabilities are not translated for Gemini",
        ));
    }
    if let Some(m) = req.get("modalities").and_then(Value::as_array) {
        if m.iter().any(|x| x.as_str() != Some("text")) {
            return Err(t.unsupported("modalities", "only text answers are translated"));
        }
    }
    common::warn_unhandled(&t, req, HANDLED, &mut warnings);

    let (system, contents) = convert_messages(req, &t, wants_signatures(model))?;
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }

    let tools = req.tools()?;
    if !tools.is_empty() {
        let mut decls = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            let mut d = Map::new();
            d.insert("name".into(), json!(tool.name));
            if let Some(desc) = tool.description.filter(|d| !d.is_empty()) {
                d.insert("description".into(), json!(desc));
            }
            if let Some(p) = tool.parameters {
                let has_properties = p
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|o| !o.is_empty());
                if has_properties {
                    let (schema, removed) = gemini_schema(p);
                    if !removed.is_empty() {
                        warnings.push(removed_warning(
                            &format!("tools[{i}].function.parameters"),
                            &removed,
                        ));
                    }
                    d.insert("parameters".into(), schema);
                }
            }
            decls.push(Value::Object(d));
        }
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        if let Some(choice) = req.tool_choice()? {
            let config = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Function(name) => {
                    json!({"mode": "ANY", "allowedFunctionNames": [name]})
                }
            };
            body.insert(
                "toolConfig".into(),
                json!({ "functionCallingConfig": config }),
            );
        }
    } else {
        req.tool_choice()?;
    }
    if req.get("parallel_tool_calls") == Some(&Value::Bool(false)) && !tools.is_empty() {
        warnings.push(t.dropped("parallel_tool_calls"));
    }

    let mut gen = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            gen.insert(k.into(), v);
        }
    };
    put("temperature", req.get("temperature").cloned());
    put("topP", req.get("top_p").cloned());
    put("maxOutputTokens", req.max_output_tokens().map(Value::from));
    let stop = req.stop_sequences();
    put("stopSequences", (!stop.is_empty()).then(|| json!(stop)));
    put("candidateCount", req.get("n").cloned());
    put("seed", req.get("seed").cloned());
    put("presencePenalty", req.get("presence_penalty").cloned());
    put("frequencyPenalty", req.get("frequency_penalty").cloned());
    match req.response_format()? {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => put("responseMimeType", Some(json!("application/json"))),
        ResponseFormat::JsonSchema { schema, .. } => {
            put("responseMimeType", Some(json!("application/json")));
            if let Some(s) = schema {
                let (schema, removed) = gemini_schema(s);
                if !removed.is_empty() {
                    warnings.push(removed_warning(
                        "response_format.json_schema.schema",
                        &removed,
                    ));
                }
                put("responseSchema", Some(schema));
            }
        }
    }
    if let Some(effort) = common::reasoning_effort(req)? {
        put(
            "thinkingConfig",
            Some(json!({"thinkingBudget": thinking_budget(effort)})),
        );
    }
    if !gen.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen));
    }

    let base = provider.base_url();
    let url = if req.stream {
        format!("{base}/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("{base}/models/{model}:generateContent")
    };
    let mut headers = vec![("content-type", "application/json".to_string())];
    if req.stream {
        headers.push(("accept", "text/event-stream".to_string()));
    }
    if let Some(key) = api_key {
        headers.push(("x-goog-api-key", key.to_string()));
    }
    Ok(UpstreamRequest {
        url,
        headers,
        body: crate::json::to_bytes(&Value::Object(body)),
        warnings,
    })
}

fn removed_warning(at: &str, removed: &[String]) -> String {
    let list: Vec<String> = removed
        .iter()
        .take(common::MAX_LISTED)
        .map(|k| common::header_safe(k))
        .collect();
    let more = removed.len().saturating_sub(common::MAX_LISTED);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(
        "{at}: keywords unsupported by gemini removed: {}{tail}",
        list.join(" ")
    )
}

/// System parts and the merged `contents`.
fn convert_messages(
    req: &ChatRequest,
    t: &Target<'_>,
    signatures: bool,
) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool call id → function name, from the assistant messages seen so far.
    // (A Vec: a request has few calls; the latest entry for an id wins, as an insert would.)
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for m in req.messages() {
        let at = m.path();
        let (role, parts) = match m.role {
            "system" | "developer" => {
                for (k, p) in m.parts().into_iter().enumerate() {
                    match p {
                        ContentPart::Text("") => {}
                        ContentPart::Text(text) => system.push(json!({ "text": text })),
                        _ => {
                            return Err(t.unsupported(
                                &format!("{at}.content[{k}]"),
                                "Gemini system instructions hold text only",
                            ))
                        }
                    }
                }
                continue;
            }
            "user" => (
                "user",
                user_parts(&m.parts(), &at, m.content.is_string(), t)?,
            ),
            "assistant" => {
                let mut parts = Vec::new();
                for (k, p) in m.parts().into_iter().enumerate() {
                    match p {
                        ContentPart::Text("") => {}
                        ContentPart::Text(text) => parts.push(json!({ "text": text })),
                        _ => {
                            return Err(t.unsupported(
                                &format!("{at}.content[{k}]"),
                                "assistant messages hold text only",
                            ))
                        }
                    }
                }
                let mut first_call = true;
                for (k, call) in m.tool_calls()?.into_iter().enumerate() {
                    let args = common::parse_arguments(
                        &format!("{at}.tool_calls[{k}].function.arguments"),
                        call.arguments,
                    )?;
                    call_names.push((call.id, call.name));
                    let mut part = json!({"functionCall": {"name": call.name, "args": args}});
                    if signatures && first_call {
                        if let Some(o) = part.as_object_mut() {
                            o.insert(
                                "thoughtSignature".into(),
                                json!(THOUGHT_SIGNATURE_PLACEHOLDER),
                            );
                        }
                    }
                    first_call = false;
                    parts.push(part);
                }
                ("model", parts)
            }
            "tool" => {
                let id = m.str_field("tool_call_id");
                let Some(name) = id
                    .and_then(|id| call_names.iter().rev().find(|(c, _)| *c == id))
                    .map(|(_, name)| *name)
                    .or_else(|| m.str_field("name"))
                else {
                    return Err(GatewayError::invalid(
                        format!(
                            "`{at}.tool_call_id` must name a tool call of an earlier assistant message (Gemini needs the function name)"
                        ),
                        &format!("{at}.tool_call_id"),
                    ));
                };
                let text = match m.content {
                    Value::String(s) => s.clone(),
                    _ => m.text(""),
                };
                let response = match serde_json::from_slice::<Value>(text.as_bytes()) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    Ok(other) if !text.trim().is_empty() => json!({ "content": other }),
                    _ => json!({ "content": text }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            _ => {
                return Err(t.unsupported(
                    &format!("{at}.role"),
                    "the deprecated `function` role cannot be translated; send `tool` messages",
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    Ok((system, contents))
}

fn user_parts(
    parts: &[ContentPart<'_>],
    at: &str,
    is_string: bool,
    t: &Target<'_>,
) -> Result<Vec<Value>, GatewayError> {
    let mut out = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let here = if is_string {
            format!("{at}.content")
        } else {
            format!("{at}.content[{k}]")
        };
        match *part {
            ContentPart::Text("") => {}
            ContentPart::Text(text) => out.push(json!({ "text": text })),
            ContentPart::ImageUrl(url) => match media_source(url) {
                Some(MediaSource::Base64 { media_type, data }) => {
                    out.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                }
                Some(MediaSource::Https(url)) => {
                    let mut fd = Map::new();
                    if let Some(mime) = guess_mime(url) {
                        fd.insert("mimeType".into(), json!(mime));
                    }
                    fd.insert("fileUri".into(), json!(url));
                    out.push(json!({ "fileData": fd }));
                }
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
                Some(MediaSource::Base64 { media_type, data }) => {
                    out.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                }
                _ => {
                    return Err(
                        t.unsupported(&format!("{here}.file"), "files must be base64 data: URLs")
                    )
                }
            },
            ContentPart::Other(kind) => {
                return Err(t.unsupported(
                    &here,
                    format!("content parts of type {kind:?} are not translated for Gemini"),
                ))
            }
        }
    }
    Ok(out)
}

/// The MIME type of a URL from its extension, when it is a common image or document type.
fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// Keywords of Gemini's `Schema` (an OpenAPI 3.0 subset) that are kept.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "anyOf",
    "propertyOrdering",
    "default",
    "example",
];

const MAX_REF_DEPTH: usize = 8;

/// Convert a JSON Schema to Gemini's schema subset; also returns the keywords removed (sorted,
/// each once).
pub fn gemini_schema(schema: &Value) -> (Value, Vec<String>) {
    let mut removed = Vec::new();
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object);
    let out = convert_schema(schema, defs, 0, &mut removed);
    (out, removed)
}

/// Add `k` to the sorted set of removed keywords.
fn note_removed(removed: &mut Vec<String>, k: &str) {
    if let Err(i) = removed.binary_search_by(|r| r.as_str().cmp(k)) {
        removed.insert(i, k.to_string());
    }
}

fn convert_schema(
    schema: &Value,
    defs: Option<&Map<String, Value>>,
    depth: usize,
    removed: &mut Vec<String>,
) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"));
        match (name.and_then(|n| defs?.get(n)), depth < MAX_REF_DEPTH) {
            (Some(target), true) => {
                let mut resolved = convert_schema(target, defs, depth + 1, removed);
                // Sibling keywords of `$ref` (e.g. a description) refine the target.
                if let Some(o) = resolved.as_object_mut() {
                    for (k, v) in obj {
                        if k != "$ref" && SCHEMA_KEYS.contains(&k.as_str()) {
                            o.insert(k.clone(), convert_schema(v, defs, depth + 1, removed));
                        }
                    }
                }
                return resolved;
            }
            _ => {
                note_removed(removed, "$ref");
                return json!({"type": "OBJECT"});
            }
        }
    }
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "type" => match v {
                Value::String(s) => {
                    out.insert("type".into(), json!(s.to_ascii_uppercase()));
                }
                Value::Array(types) => {
                    let names: Vec<String> = types
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| *s != "null")
                        .map(str::to_ascii_uppercase)
                        .collect();
                    if names.len() < types.len() {
                        out.insert("nullable".into(), Value::Bool(true));
                    }
                    match names.as_slice() {
                        [] => {}
                        [one] => {
                            out.insert("type".into(), json!(one));
                        }
                        many => {
                            let any: Vec<Value> =
                                many.iter().map(|t| json!({ "type": t })).collect();
                            out.insert("anyOf".into(), Value::Array(any));
                        }
                    }
                }
                _ => {}
            },
            "properties" => {
                if let Some(props) = v.as_object() {
                    // Inserted one by one: collecting into a map sorts the pairs first (a
                    // stable sort and a bulk build the worker has no other use for).
                    let mut converted = Map::new();
                    for (name, s) in props {
                        converted.insert(name.clone(), convert_schema(s, defs, depth, removed));
                    }
                    out.insert("properties".into(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert("items".into(), convert_schema(v, defs, depth, removed));
            }
            "anyOf" | "oneOf" => {
                if let Some(list) = v.as_array() {
                    let converted: Vec<Value> = list
                        .iter()
                        .map(|s| convert_schema(s, defs, depth, removed))
                        .collect();
                    out.insert("anyOf".into(), Value::Array(converted));
                }
            }
            "const" => {
                out.insert("enum".into(), json!([v]));
            }
            "$defs" | "definitions" => {}
            key if SCHEMA_KEYS.contains(&key) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {
                note_removed(removed, k);
            }
        }
    }
    Value::Object(out)
}

/// Gemini's `finishReason` as an OpenAI `finish_reason`.
pub fn finish_reason(reason: &str, has_tool_calls: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// A prompt Gemini refused outright: `promptFeedback.blockReason` and no candidates.
fn prompt_blocked(v: &Value) -> Option<AttemptFailure> {
    let reason = crate::json::at(v, "/promptFeedback/blockReason").and_then(Value::as_str)?;
    let has_candidates = v
        .get("candidates")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    (!has_candidates).then(|| {
        AttemptFailure::new(
            FailureClass::ContentPolicy,
            Some(200),
            format!(
                "the prompt was blocked by Gemini (blockReason {})",
                sanitize_message(reason)
            ),
        )
    })
}

/// A tool call id: the call's own, else `call_<responseId>_<n>`.
fn call_id(call: &Value, response_id: &str, n: u64) -> String {
    if let Some(id) = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return id.to_string();
    }
    let clean: String = response_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(24)
        .collect();
    if clean.is_empty() {
        format!("call_{n}")
    } else {
        format!("call_{clean}_{n}")
    }
}

/// What one candidate (or one streamed piece of it) says.
#[derive(Default)]
struct Pieces {
    text: String,
    reasoning: String,
    tool_calls: Vec<Value>,
}

/// Read a candidate's parts; tool calls are numbered from `*calls`.
fn read_parts(candidate: &Value, response_id: &str, calls: &mut u64) -> Pieces {
    let mut p = Pieces::default();
    let parts = crate::json::at(candidate, "/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            let id = call_id(call, response_id, *calls);
            *calls += 1;
            p.tool_calls
                .push(common::tool_call(&id, name, &crate::json::to_text(&args)));
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                p.reasoning.push_str(text);
            } else {
                p.text.push_str(text);
            }
        }
    }
    p
}

fn response_id(v: &Value) -> &str {
    v.get("responseId").and_then(Value::as_str).unwrap_or("")
}

/// Read a successful `generateContent` answer and write it as an OpenAI `chat.completion`.
pub fn parse_chat_answer(body: &[u8], created: u64) -> Result<UpstreamAnswer, AttemptFailure> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| AttemptFailure::malformed("the answer is not JSON"))?;
    if let Some(err) = v.get("error") {
        let (class, message) = error_class(err, None);
        return Err(common::in_stream_error(class, &message));
    }
    if let Some(blocked) = prompt_blocked(&v) {
        return Err(blocked);
    }
    let Some(candidates) = v
        .get("candidates")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    else {
        return Err(AttemptFailure::malformed("the answer has no `candidates`"));
    };
    let rid = response_id(&v);
    let mut calls = 0;
    let mut choices = Vec::with_capacity(candidates.len());
    for (pos, c) in candidates.iter().enumerate() {
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
        let p = read_parts(c, rid, &mut calls);
        let reason = c.get("finishReason").and_then(Value::as_str).unwrap_or("");
        let finish = finish_reason(reason, !p.tool_calls.is_empty());
        choices.push(common::choice(
            index,
            p.text,
            p.reasoning,
            p.tool_calls,
            finish,
        ));
    }
    let usage = v
        .get("usageMetadata")
        .filter(|u| u.is_object())
        .map(Usage::from_gemini);
    let model = v
        .get("modelVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = if rid.is_empty() {
        format!("chatcmpl-gemini-{}", common::digest(body))
    } else {
        format!("chatcmpl-gemini-{rid}")
    };
    let out = common::completion(
        &id,
        model.as_deref().unwrap_or(""),
        created,
        choices,
        usage.as_ref(),
    );
    Ok(UpstreamAnswer {
        body: out,
        usage,
        model,
    })
}

/// The class and raw message of a Gemini `error` object.
fn error_class(err: &Value, status: Option<u16>) -> (FailureClass, String) {
    let code = err
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let grpc = err.get("status").and_then(Value::as_str).unwrap_or("");
    let message = err.get("message").and_then(Value::as_str).unwrap_or("");
    let lower = message.to_ascii_lowercase();
    let key_invalid = err
        .get("details")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        })
        || lower.contains("api key not valid");
    let class = match grpc {
        "RESOURCE_EXHAUSTED" => FailureClass::RateLimited,
        "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "ABORTED" | "UNKNOWN" => {
            FailureClass::Retryable
        }
        "UNAUTHENTICATED" | "PERMISSION_DENIED" => FailureClass::Auth,
        "NOT_FOUND" => FailureClass::TargetMissing,
        _ if key_invalid => FailureClass::Auth,
        "INVALID_ARGUMENT"
            if lower.contains("token count")
                || lower.contains("exceeds the maximum number of tokens")
                || lower.contains("too many tokens") =>
        {
            FailureClass::ContextLength
        }
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => FailureClass::Rejected,
        _ => match status.or(code) {
            Some(s) => class_of_status(s),
            None => FailureClass::Retryable,
        },
    };
    (class, message.to_string())
}

/// Classify a non-2xx answer from Gemini.
pub fn classify_error(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> AttemptFailure {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // Errors of the array-shaped (non-SSE) stream come as `[{"error": …}]`.
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    let err = v.get("error").unwrap_or(&Value::Null);
    let (mut class, raw) = error_class(err, Some(status));
    if status == 429 {
        class = FailureClass::RateLimited;
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

/// One streamed candidate's progress.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    index: u64,
    tool_calls: u64,
    finished: bool,
}

/// Re-frames a Gemini `streamGenerateContent?alt=sse` stream as OpenAI chat-completion chunks.
#[derive(Debug, Default)]
pub struct GeminiStream {
    pub(super) input: SseInput,
    include_usage: bool,
    writer: ChunkWriter,
    started: bool,
    response_id: String,
    candidates: Vec<Candidate>,
    /// Tool calls numbered across the whole answer, for ids.
    calls: u64,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// A content token (text, thought, tool call) or a finish reason has been seen.
    pub content_started: bool,
    /// Every candidate seen has a finish reason.
    pub finished: bool,
    /// `[DONE]` has been written.
    pub done: bool,
    /// Events that were not JSON, skipped.
    pub malformed: u32,
}

impl GeminiStream {
    pub fn new(include_usage: bool, created: u64) -> Self {
        GeminiStream {
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

    /// The upstream body ended (Gemini sends no `[DONE]`): after a finish reason, write the
    /// usage chunk (if asked) and `[DONE]`; without one it is a truncation.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        self.drain(out)?;
        if self.done {
            return Ok(());
        }
        if !self.finished {
            return Err(common::truncated());
        }
        if self.include_usage {
            let usage = self.usage.unwrap_or_default();
            out.extend_from_slice(&self.writer.usage(&usage));
        }
        out.extend_from_slice(&frame_data("[DONE]"));
        self.done = true;
        Ok(())
    }

    fn candidate(&mut self, index: u64, out: &mut Vec<u8>) -> usize {
        if let Some(pos) = self.candidates.iter().position(|c| c.index == index) {
            return pos;
        }
        out.extend_from_slice(&self.writer.delta(
            index,
            json!({"role": "assistant", "content": ""}),
            None,
        ));
        self.candidates.push(Candidate {
            index,
            tool_calls: 0,
            finished: false,
        });
        self.candidates.len() - 1
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
            let data = ev.data.trim();
            let Ok(v) = serde_json::from_slice::<Value>(data.as_bytes()) else {
                self.malformed += 1;
                continue;
            };
            if let Some(err) = v.get("error") {
                let (class, message) = error_class(err, None);
                return Err(common::in_stream_error(class, &message));
            }
            if let Some(blocked) = prompt_blocked(&v) {
                return Err(blocked);
            }
            if !self.started {
                self.started = true;
                let rid = response_id(&v);
                self.response_id = rid.to_string();
                self.writer.id = if rid.is_empty() {
                    format!("chatcmpl-gemini-{}", common::digest(data.as_bytes()))
                } else {
                    format!("chatcmpl-gemini-{rid}")
                };
            }
            if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                if self.model.is_none() {
                    self.model = Some(m.to_string());
                    self.writer.model = m.to_string();
                }
            }
            if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
                self.usage = Some(Usage::from_gemini(u));
            }
            let candidates = v
                .get("candidates")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (pos, c) in candidates.iter().enumerate() {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(pos as u64);
                let slot = self.candidate(index, out);
                let rid = self.response_id.clone();
                let p = read_parts(c, &rid, &mut self.calls);
                if !p.reasoning.is_empty() {
                    out.extend_from_slice(&self.writer.delta(
                        index,
                        json!({ "reasoning_content": p.reasoning }),
                        None,
                    ));
                    self.content_started = true;
                }
                if !p.text.is_empty() {
                    out.extend_from_slice(&self.writer.delta(
                        index,
                        json!({ "content": p.text }),
                        None,
                    ));
                    self.content_started = true;
                }
                if !p.tool_calls.is_empty() {
                    let mut calls = Vec::with_capacity(p.tool_calls.len());
                    for mut call in p.tool_calls {
                        if let Some(o) = call.as_object_mut() {
                            o.insert("index".into(), json!(self.candidates[slot].tool_calls));
                        }
                        self.candidates[slot].tool_calls += 1;
                        calls.push(call);
                    }
                    out.extend_from_slice(&self.writer.delta(
                        index,
                        json!({ "tool_calls": calls }),
                        None,
                    ));
                    self.content_started = true;
                }
                if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                    if !self.candidates[slot].finished {
                        self.candidates[slot].finished = true;
                        let finish = finish_reason(reason, self.candidates[slot].tool_calls > 0);
                        out.extend_from_slice(&self.writer.delta(index, json!({}), Some(finish)));
                        self.content_started = true;
                    }
                }
            }
            self.finished =
                !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::ErrorKind;

    fn provider() -> ProviderConfig {
        let c = Config::parse(
            r#"{"providers":[{"id":"gem","kind":"gemini","api_key_secrets":["K"]}],
                "routes":[{"model":"m","targets":[{"provider":"gem","model":"gemini-2.5-flash"}]}]}"#,
        )
        .unwrap();
        c.providers[0].clone()
    }

    fn build_for(model: &str, body: Value) -> Result<(Value, UpstreamRequest), GatewayError> {
        let req = ChatRequest::parse(body.to_string().as_bytes())?;
        let up = build_chat(&provider(), model, &req, Some("AIza-test"))?;
        let v: Value = serde_json::from_slice(&up.body).unwrap();
        Ok((v, up))
    }

    fn build(body: Value) -> Result<(Value, UpstreamRequest), GatewayError> {
        build_for("gemini-2.5-flash", body)
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
    fn urls_and_headers() {
        let (v, up) = build(with(json!({}))).unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert!(up.headers.contains(&("x-goog-api-key", "AIza-test".into())));
        assert_eq!(
            v["contents"],
            json!([{"role": "user", "parts": [{"text": "hi"}]}])
        );
        assert!(v.get("generationConfig").is_none());
        let (_, up) = build_for("models/gemini-2.5-pro", with(json!({"stream": true}))).unwrap();
        assert_eq!(
            up.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn generation_config() {
        let (v, up) = build(with(
            json!({"temperature": 1.5, "top_p": 0.9, "max_tokens": 100,
            "stop": "END", "n": 2, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5,
            "reasoning_effort": "low"}),
        ))
        .unwrap();
        assert_eq!(
            v["generationConfig"],
            json!({"temperature": 1.5, "topP": 0.9, "maxOutputTokens": 100,
                   "stopSequences": ["END"], "candidateCount": 2, "seed": 7,
                   "presencePenalty": 0.5, "frequencyPenalty": -0.5,
                   "thinkingConfig": {"thinkingBudget": 1024}})
        );
        assert!(up.warnings.is_empty(), "{:?}", up.warnings);
        let (v, _) = build(with(json!({"reasoning_effort": "none"}))).unwrap();
        assert_eq!(v["generationConfig"]["thinkingConfig"]["thinkingBudget"], 0);
    }

    #[test]
    fn logprobs_are_rejected_and_unknown_parameters_warned() {
        let e = build(with(json!({"logprobs": true}))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert_eq!(e.param.as_deref(), Some("logprobs"));
        assert!(
            e.message.contains("gemini-2.5-flash") && e.message.contains("\"gem\""),
            "{e}"
        );
        build(with(json!({"logprobs": false}))).unwrap();
        let (_, up) = build(with(
            json!({"user": "u1", "logit_bias": {"5": 1}, "store": false}),
        ))
        .unwrap();
        assert_eq!(up.warnings.len(), 2, "{:?}", up.warnings);
        assert!(up.warnings.iter().any(|w| w.starts_with("user ")));
        assert!(up.warnings.iter().any(|w| w.starts_with("logit_bias ")));
    }

    #[test]
    fn tools_and_tool_choice() {
        let tools = json!([
            {"type": "function", "function": {"name": "w", "description": "Weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]);
        let (v, up) = build(with(json!({"tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "w"}}})))
        .unwrap();
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [
                {"name": "w", "description": "Weather", "parameters": {"type": "OBJECT",
                  "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
                {"name": "now"}]}])
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}})
        );
        assert_eq!(up.warnings.len(), 1);
        assert!(
            up.warnings[0].contains("additionalProperties"),
            "{:?}",
            up.warnings
        );
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
            let (v, _) = build(with(json!({"tools": tools, "tool_choice": choice}))).unwrap();
            assert_eq!(v["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
    }

    #[test]
    fn tool_messages_find_their_function_name() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "b", "type": "function", "function": {"name": "t", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "{\"temp\":3}"},
            {"role": "tool", "tool_call_id": "b", "content": "noon"},
            {"role": "tool", "tool_call_id": "b", "content": "[1,2]"}]});
        let (v, _) = build(body.clone()).unwrap();
        let c = v["contents"].as_array().unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[1]["role"], "model");
        assert_eq!(
            c[1]["parts"][0],
            json!({"functionCall": {"name": "w", "args": {"city": "Oslo"}}})
        );
        assert_eq!(
            c[2]["parts"][0],
            json!({"functionResponse": {"name": "w", "response": {"temp": 3}}})
        );
        assert_eq!(
            c[2]["parts"][1],
            json!({"functionResponse": {"name": "t", "response": {"content": "noon"}}})
        );
        assert_eq!(
            c[2]["parts"][2]["functionResponse"]["response"],
            json!({"content": [1, 2]})
        );
        // Gemini 3 gets the documented placeholder signature on the first call of a turn.
        let (v, _) = build_for("gemini-3-pro-preview", body).unwrap();
        let parts = v["contents"][1]["parts"].as_array().unwrap();
        assert_eq!(parts[0]["thoughtSignature"], THOUGHT_SIGNATURE_PLACEHOLDER);
        assert!(parts[1].get("thoughtSignature").is_none());
        let orphan = json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "zzz", "content": "y"}]});
        let e = build(orphan).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[1].tool_call_id"));
    }

    #[test]
    fn signature_models() {
        assert!(wants_signatures("gemini-3-pro-preview"));
        assert!(wants_signatures("gemini-3.1-flash"));
        assert!(wants_signatures("gemini-10-ultra"));
        assert!(!wants_signatures("gemini-2.5-flash"));
        assert!(!wants_signatures("gemma-3-27b"));
        assert!(!wants_signatures("gemini-exp-1206"));
    }

    #[test]
    fn schema_conversion() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "name": {"type": ["string", "null"], "description": "who"},
                "kind": {"const": "person"},
                "pet": {"$ref": "#/$defs/Pet"},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "any": {"type": ["string", "number"]}
            },
            "required": ["name"],
            "$defs": {"Pet": {"type": "object", "properties": {"n": {"type": "string"}},
                              "additionalProperties": false}}
        });
        let (out, removed) = gemini_schema(&schema);
        assert_eq!(
            out,
            json!({
                "type": "OBJECT",
                "properties": {
                    "name": {"type": "STRING", "nullable": true, "description": "who"},
                    "kind": {"enum": ["person"]},
                    "pet": {"type": "OBJECT", "properties": {"n": {"type": "STRING"}}},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
                    "id": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
                    "any": {"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]}
                },
                "required": ["name"]
            })
        );
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        assert_eq!(removed, ["$schema", "additionalProperties", "uniqueItems"]);
        // A recursive reference stops at the depth limit instead of looping.
        let recursive = json!({"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
                               "$ref": "#/$defs/N"});
        let (_, removed) = gemini_schema(&recursive);
        assert!(removed.iter().any(|k| k == "$ref"));
    }

    #[test]
    fn errors_are_classified() {
        let c = |status: u16, grpc: &str, msg: &str| {
            let body = json!({"error": {"code": status, "message": msg, "status": grpc}});
            classify_error(status, None, body.to_string().as_bytes(), 0).class
        };
        assert_eq!(
            c(429, "RESOURCE_EXHAUSTED", "quota"),
            FailureClass::RateLimited
        );
        assert_eq!(c(503, "UNAVAILABLE", "overloaded"), FailureClass::Retryable);
        assert_eq!(c(500, "INTERNAL", "oops"), FailureClass::Retryable);
        assert_eq!(c(504, "DEADLINE_EXCEEDED", "slow"), FailureClass::Retryable);
        assert_eq!(c(401, "UNAUTHENTICATED", "no"), FailureClass::Auth);
        assert_eq!(c(403, "PERMISSION_DENIED", "no"), FailureClass::Auth);
        assert_eq!(
            c(404, "NOT_FOUND", "models/x is not found"),
            FailureClass::TargetMissing
        );
        assert_eq!(
            c(400, "INVALID_ARGUMENT", "bad field"),
            FailureClass::Rejected
        );
        assert_eq!(
            c(400, "INVALID_ARGUMENT", "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."),
            FailureClass::ContextLength
        );
        assert_eq!(
            c(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key."
            ),
            FailureClass::Auth
        );
        assert_eq!(
            classify_error(502, None, b"", 0).class,
            FailureClass::Retryable
        );
        let arr = br#"[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}]"#;
        assert_eq!(
            classify_error(429, Some("2"), arr, 0).retry_after_ms,
            Some(2_000)
        );
        let f = classify_error(400, None, br#"{"error":{"code":400,"status":"INVALID_ARGUMENT","message":"API key not valid: AIzaSyA1234567890abcdefghij see https://ai.google.dev"}}"#, 0);
        assert!(
            !f.message.contains("AIza") && !f.message.contains("https"),
            "{}",
            f.message
        );
    }

    #[test]
    fn grpc_status_alone_classifies() {
        // In-stream errors have no HTTP status; some carry no `code` either.
        let c = |grpc: &str| error_class(&json!({"status": grpc, "message": "m"}), None).0;
        assert_eq!(c("RESOURCE_EXHAUSTED"), FailureClass::RateLimited);
        assert_eq!(c("UNAVAILABLE"), FailureClass::Retryable);
        assert_eq!(c("PERMISSION_DENIED"), FailureClass::Auth);
        assert_eq!(c("NOT_FOUND"), FailureClass::TargetMissing);
        assert_eq!(c("INVALID_ARGUMENT"), FailureClass::Rejected);
        assert_eq!(c(""), FailureClass::Retryable);
    }

    #[test]
    fn every_candidate_must_finish() {
        let one_done = concat!(
            r#"data: {"candidates":[{"content":{"parts":[{"text":"A"}]},"index":0},{"content":{"parts":[{"text":"B"}]},"index":1}]}"#,
            "\n\n",
            r#"data: {"candidates":[{"content":{"parts":[{"text":"."}]},"finishReason":"STOP","index":0}]}"#,
            "\n\n"
        );
        let mut s = GeminiStream::new(false, 0);
        let mut out = Vec::new();
        s.feed(one_done.as_bytes(), &mut out).unwrap();
        assert!(s.finish(&mut out).is_err(), "candidate 1 never finished");
        assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
        let both = format!(
            "{one_done}{}\n\n",
            r#"data: {"candidates":[{"finishReason":"STOP","index":1}]}"#
        );
        let mut s = GeminiStream::new(false, 0);
        let mut out = Vec::new();
        s.feed(both.as_bytes(), &mut out).unwrap();
        s.finish(&mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(finish_reason(r, false), "content_filter", "{r}");
        }
        assert_eq!(finish_reason("OTHER", false), "stop");
    }

    #[test]
    fn call_ids() {
        assert_eq!(call_id(&json!({"id": "x1"}), "r", 0), "x1");
        assert_eq!(call_id(&json!({}), "abc/def", 2), "call_abcdef_2");
        assert_eq!(call_id(&json!({}), "", 3), "call_3");
    }
}
