//! OpenAI chat completions and every OpenAI-compatible service.
//!
//! Requests are forwarded as the caller sent them, with `model` set to the target's upstream
//! model and, for streams, `stream_options.include_usage` forced on so every answer can be
//! accounted; the usage chunk is removed again when the caller did not ask for it.

use super::{sanitize_message, UpstreamAnswer, UpstreamRequest};
use super::{EventDecoder, SseInput};
use crate::chat::ChatRequest;
use crate::config::{ProviderConfig, ProviderKind};
use crate::policy::{parse_retry_after, AttemptFailure, FailureClass};
use crate::sse::{frame_data, SseEvent};
use crate::usage::Usage;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

pub fn build_chat(
    provider: &ProviderConfig,
    target_model: &str,
    req: &ChatRequest,
    api_key: Option<&str>,
) -> UpstreamRequest {
    // The caller's body with `model` (and, for streams, `stream_options`) replaced, written
    // straight from the caller's object: no copy of it per attempt.
    let mut opts = None;
    if req.stream {
        let mut o = match req.body.get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        o.insert("include_usage".into(), Value::Bool(true));
        opts = Some(Value::Object(o));
    }
    let model = Value::String(target_model.to_string());
    // Sorted by key; `None` leaves the key out.
    let mut overrides = vec![("model", Some(&model))];
    if let Some(o) = &opts {
        overrides.push(("stream_options", Some(o)));
    }
    let mut warnings = Vec::new();
    // `top_k` (from Anthropic or Gemini callers) is accepted by most OpenAI-compatible services
    // but refused by OpenAI's own API.
    if provider.kind == ProviderKind::Openai && req.body.contains_key("top_k") {
        overrides.push(("top_k", None));
        warnings.push("top_k ignored: not supported by OpenAI".to_string());
    }
    let mut headers = vec![("content-type", "application/json".to_string())];
    if req.stream {
        headers.push(("accept", "text/event-stream".to_string()));
    }
    if let Some(key) = api_key {
        headers.push(("authorization", format!("Bearer {key}")));
    }
    UpstreamRequest {
        url: format!("{}/chat/completions", provider.base_url()),
        headers,
        body: write_object(&req.body, &overrides),
        warnings,
    }
}

/// `body` as compact JSON with the `overrides` (sorted by key) set, or left out where `None`:
/// the bytes `serde_json::to_vec` gives for a copy of `body` with them inserted or removed (its
/// keys are in order).
fn write_object(body: &Map<String, Value>, overrides: &[(&str, Option<&Value>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    let mut first = true;
    let mut put = |out: &mut Vec<u8>, k: &str, v: Option<&Value>| {
        let Some(v) = v else { return };
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    };
    let mut extra = overrides.iter().peekable();
    for (k, v) in body {
        while let Some((ek, ev)) = extra.next_if(|(ek, _)| *ek < k.as_str()) {
            put(&mut out, ek, *ev);
        }
        match extra.next_if(|(ek, _)| *ek == k.as_str()) {
            Some((ek, ev)) => put(&mut out, ek, *ev),
            None => put(&mut out, k, Some(v)),
        }
    }
    for (ek, ev) in extra {
        put(&mut out, ek, *ev);
    }
    out.push(b'}');
    out
}

pub fn parse_chat_answer(body: Vec<u8>) -> Result<UpstreamAnswer, AttemptFailure> {
    // The common case in one pass that builds no tree of the answer; anything it does not
    // accept (not JSON, no `choices` array, …) is judged by the full reader below.
    if let Some(head) = (!too_deep(&body))
        .then(|| serde_json::from_slice::<AnswerHead>(&body).ok())
        .flatten()
    {
        if head.choices {
            return Ok(UpstreamAnswer {
                body,
                usage: head.usage,
                model: head.model,
            });
        }
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| AttemptFailure::malformed("the answer is not JSON"))?;
    if v.get("choices").and_then(Value::as_array).is_none() {
        return Err(AttemptFailure::malformed("the answer has no `choices`"));
    }
    let usage = v
        .get("usage")
        .filter(|u| u.is_object())
        .map(Usage::from_openai);
    let model = v.get("model").and_then(Value::as_str).map(str::to_string);
    Ok(UpstreamAnswer { body, usage, model })
}

/// The visitors below are driven by `deserialize_any` and refuse every scalar with a plain
/// error of their own: serde's typed entry points and default `visit_*` methods build
/// "invalid type" messages that format floats, which alone costs the worker ~14 KB.
macro_rules! refuse_scalars {
    ($t:ty) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<$t, E> {
            Err(E::custom("unexpected value"))
        }
    };
}

/// What a plain answer says about itself — whether `choices` is an array, `usage`, `model` —
/// read without building a tree of the answer (its choices are skipped, not kept). Duplicate
/// keys: the last one counts, as in a `Value`. Fails (and the full reader decides) when the
/// answer is not an object or its last `choices` is not an array.
#[derive(Default)]
struct AnswerHead {
    choices: bool,
    usage: Option<Usage>,
    model: Option<String>,
}

enum Key {
    Choices,
    Usage,
    Model,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "choices" => Key::Choices,
                    "usage" => Key::Usage,
                    "model" => Key::Model,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// An array, skipped element by element (anything else fails).
struct SkippedArray;

impl<'de> Deserialize<'de> for SkippedArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SkippedArray;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SkippedArray, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SkippedArray)
            }
            refuse_scalars!(SkippedArray);
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<SkippedArray, A::Error> {
                Err(de::Error::custom("not an array"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether arrays and objects nest deeper than serde_json reads into a `Value` (it refuses
/// the 128th level; skipping values does not count levels, so the reader checks first).
fn too_deep(body: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= 128 {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl<'de> Deserialize<'de> for AnswerHead {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnswerHead;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an answer")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnswerHead, A::Error> {
                let mut head = AnswerHead::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Choices => {
                            map.next_value::<SkippedArray>()?;
                            head.choices = true;
                        }
                        Key::Usage => {
                            let v: Value = map.next_value()?;
                            head.usage = v.is_object().then(|| Usage::from_openai(&v));
                        }
                        Key::Model => {
                            let v: Value = map.next_value()?;
                            head.model = v.as_str().map(str::to_string);
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(head)
            }
            refuse_scalars!(AnswerHead);
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<AnswerHead, A::Error> {
                Err(de::Error::custom("not an object"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Classify a non-2xx answer from an OpenAI-compatible upstream.
pub fn classify_error(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> AttemptFailure {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&Value::Null);
    let code = err.get("code").and_then(Value::as_str).unwrap_or("");
    let etype = err.get("type").and_then(Value::as_str).unwrap_or("");
    let raw_message = err
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| err.as_str())
        .unwrap_or("");
    let lower = raw_message.to_ascii_lowercase();
    let class = if code == "context_length_exceeded"
        || lower.contains("maximum context length")
        || lower.contains("context length")
        || lower.contains("too many tokens")
    {
        FailureClass::ContextLength
    } else if code == "content_policy_violation"
        || code == "content_filter"
        || etype == "content_policy_violation"
        || lower.contains("content policy")
        || lower.contains("content management policy")
    {
        FailureClass::ContentPolicy
    } else {
        class_of_status(status)
    };
    let message = if raw_message.is_empty() {
        format!("status {status}")
    } else {
        format!("status {status}: {}", sanitize_message(raw_message))
    };
    let mut f = AttemptFailure::new(class, Some(status), message);
    f.retry_after_ms = retry_after.and_then(|r| parse_retry_after(r, now_ms));
    f
}

/// The class an HTTP status implies when the body says nothing more specific.
pub fn class_of_status(status: u16) -> FailureClass {
    match status {
        429 => FailureClass::RateLimited,
        401 | 403 => FailureClass::Auth,
        404 => FailureClass::TargetMissing,
        408 | 409 | 425 => FailureClass::Retryable,
        400..=499 => FailureClass::Rejected,
        _ => FailureClass::Retryable,
    }
}

/// Re-frames an upstream OpenAI SSE stream for the caller, event by event, keeping usage.
#[derive(Debug, Default)]
pub struct OpenAiStream {
    pub(super) input: SseInput,
    /// The caller asked for the usage chunk.
    include_usage: bool,
    pub usage: Option<Usage>,
    pub model: Option<String>,
    /// A content token (text, tool call, refusal) or a finish reason has been seen.
    pub content_started: bool,
    /// A `finish_reason` has been seen: the answer is complete even without `[DONE]`.
    pub finished: bool,
    /// `[DONE]` has been seen.
    pub done: bool,
    /// Chunks that were not JSON, skipped.
    pub malformed: u32,
}

impl OpenAiStream {
    pub fn new(include_usage: bool) -> Self {
        OpenAiStream {
            include_usage,
            ..Default::default()
        }
    }

    /// The upstream body ended. A complete answer (finish reason or `[DONE]`) is finalised with
    /// `[DONE]`; anything else is a truncation and an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        self.drain(out)?;
        if self.done {
            return Ok(());
        }
        if self.finished {
            out.extend_from_slice(&frame_data("[DONE]"));
            self.done = true;
            return Ok(());
        }
        Err(AttemptFailure::new(
            FailureClass::Retryable,
            None,
            "the upstream stream ended before the answer was complete",
        ))
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
            if data == "[DONE]" {
                self.done = true;
                out.extend_from_slice(&frame_data("[DONE]"));
                continue;
            }
            let Ok(chunk) = serde_json::from_slice::<Value>(data.as_bytes()) else {
                self.malformed += 1;
                continue;
            };
            if let Some(err) = chunk.get("error") {
                let msg = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream reported an error mid-stream");
                return Err(AttemptFailure::new(
                    FailureClass::Retryable,
                    None,
                    format!("in-stream error: {}", sanitize_message(msg)),
                ));
            }
            if self.model.is_none() {
                self.model = chunk
                    .get("model")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let choices = chunk.get("choices").and_then(Value::as_array);
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                self.usage = Some(Usage::from_openai(u));
                if !self.include_usage && choices.is_none_or(|c| c.is_empty()) {
                    continue;
                }
            }
            if let Some(choices) = choices {
                for c in choices {
                    if c.get("finish_reason").is_some_and(|f| !f.is_null()) {
                        self.finished = true;
                        self.content_started = true;
                    }
                    if let Some(d) = c.get("delta") {
                        let has = |k: &str| match d.get(k) {
                            Some(Value::String(s)) => !s.is_empty(),
                            Some(Value::Array(a)) => !a.is_empty(),
                            Some(Value::Null) | None => false,
                            Some(_) => true,
                        };
                        if has("content")
                            || has("tool_calls")
                            || has("refusal")
                            || has("reasoning_content")
                            || has("function_call")
                        {
                            self.content_started = true;
                        }
                    }
                }
            }
            out.extend_from_slice(&frame_data(data));
        }
        Ok(())
    }
}

/// The in-band error event that ends a broken stream (OpenAI's own shape: the SDKs raise it).
pub fn stream_error_event(err: &crate::error::GatewayError) -> Vec<u8> {
    frame_data(&err.to_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn provider() -> ProviderConfig {
        let c = Config::parse(
            r#"{"providers":[{"id":"p","kind":"groq","api_key_secrets":["K"]}],
                "routes":[{"model":"m","targets":[{"provider":"p","model":"llama"}]}]}"#,
        )
        .unwrap();
        c.providers[0].clone()
    }

    #[test]
    fn build_sets_model_usage_and_auth() {
        let req = ChatRequest::parse(
            br#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":true,"logit_bias":{"1":2}}"#,
        )
        .unwrap();
        let up = build_chat(&provider(), "llama", &req, Some("secret-key"));
        assert_eq!(up.url, "https://api.groq.com/openai/v1/chat/completions");
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["model"], "llama");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["logit_bias"]["1"], 2, "unknown fields pass through");
        assert!(up
            .headers
            .contains(&("authorization", "Bearer secret-key".into())));
        let no_key = build_chat(&provider(), "llama", &req, None);
        assert!(no_key.headers.iter().all(|(k, _)| *k != "authorization"));
    }

    #[test]
    fn answer_usage_and_model() {
        let a = parse_chat_answer(
            br#"{"id":"x","model":"llama-3","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(a.model.as_deref(), Some("llama-3"));
        assert_eq!(a.usage.map(|u| u.total_tokens()), Some(4));
        assert!(parse_chat_answer(b"<html>".to_vec()).is_err());
        assert!(parse_chat_answer(b"{}".to_vec()).is_err());
    }

    /// What the answer reader did before it had a fast path: the whole answer as a `Value`.
    fn reference(body: &[u8]) -> Result<(Option<Usage>, Option<String>), String> {
        let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON".to_string())?;
        if v.get("choices").and_then(Value::as_array).is_none() {
            return Err("no choices".into());
        }
        let usage = v
            .get("usage")
            .filter(|u| u.is_object())
            .map(Usage::from_openai);
        let model = v.get("model").and_then(Value::as_str).map(str::to_string);
        Ok((usage, model))
    }

    #[test]
    fn the_answer_reader_agrees_with_a_full_parse() {
        let answers: &[&str] = &[
            // OpenAI, with every usage detail.
            r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":4,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_50cad350e4"}"#,
            // Tool calls, pretty-printed, usage before choices.
            "{\n  \"usage\": {\"prompt_tokens\": 82, \"completion_tokens\": 17, \"total_tokens\": 99},\n  \"choices\": [ {\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call_1\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}]}, \"finish_reason\": \"tool_calls\"} ],\n  \"model\": \"gpt-4o-mini\"\n}",
            // DeepSeek and Groq extras.
            r#"{"id":"x","object":"chat.completion","model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning_content":"…"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,"prompt_cache_hit_tokens":8,"prompt_cache_miss_tokens":2,"prompt_tokens_details":{"cached_tokens":8}}}"#,
            r#"{"id":"x","model":"llama-3.3-70b-versatile","choices":[],"usage":{"queue_time":0.02,"prompt_tokens":5,"prompt_time":0.001,"completion_tokens":0,"total_tokens":5},"x_groq":{"id":"req_1"}}"#,
            // No usage, null usage, odd usage and model values.
            r#"{"choices":[{"message":{"content":"x"}}]}"#,
            r#"{"choices":[],"usage":null,"model":null}"#,
            r#"{"choices":[],"usage":[1,2],"model":42}"#,
            r#"{"choices":[],"usage":"lots","model":{"name":"m"}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":-1,"completion_tokens":2.5,"prompt_tokens_details":null}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551616}}"#,
            // Duplicate keys: the last one counts.
            r#"{"model":"a","choices":[],"model":"b","usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1},"usage":null}"#,
            r#"{"choices":[],"choices":{"not":"an array"}}"#,
            r#"{"choices":"none","choices":[{"index":0}]}"#,
            // Escaped keys and strings.
            r#"{"cho\u0069ces":[],"mod\u0065l":"\u00e9\ud83d\ude00","us\u0061ge":{"prompt_tokens":7}}"#,
            r#"{"choices":[{"message":{"content":"\"quoted\" \\ \n [not] {an} array"}}],"model":"m\"x"}"#,
            // Not answers.
            r#"{"type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":1}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":3}}"#,
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            r#"{}"#,
            r#"[]"#,
            r#"[{"choices":[]}]"#,
            r#""choices""#,
            "null",
            "",
            " ",
            "<html>502 Bad Gateway</html>",
            r#"{"choices":[]"#,
            r#"{"choices":[],}"#,
            r#"{"choices":[1,]}"#,
            r#"{"choices":[]} trailing"#,
            r#"{"choices":[]}{"choices":[]}"#,
            "{\"choices\":[\"\u{0}\"]}",
            "{\"choices\":[],\"model\":\"\\ud800\"}",
            "\u{feff}{\"choices\":[]}",
            r#"{"choices":[],"model":"ok"}   "#,
        ];
        // serde_json reads 127 levels into a `Value` and refuses the 128th.
        let nested = |n: usize, open: &str, close: &str| {
            format!(
                "{{\"choices\":[{}{}],\"model\":\"m\"}}",
                open.repeat(n),
                close.repeat(n)
            )
        };
        let deep = nested(200, "[", "]");
        let deep_ok = nested(125, "[", "]");
        let deep_edge = nested(126, "[", "]");
        let deep_objects = nested(126, "{\"a\":", "}").replace("{\"a\":}", "0");
        let deep_in_string = format!(
            "{{\"choices\":[\"{}\\\"{}\"],\"model\":\"m\"}}",
            "[".repeat(300),
            "{".repeat(300)
        );
        let mut bodies: Vec<Vec<u8>> = answers.iter().map(|a| a.as_bytes().to_vec()).collect();
        bodies.push(deep.into_bytes());
        bodies.push(deep_ok.into_bytes());
        bodies.push(deep_edge.into_bytes());
        bodies.push(deep_objects.into_bytes());
        bodies.push(deep_in_string.into_bytes());
        bodies.push(vec![b'{', 0xff, 0xfe, b'}']);
        for body in bodies {
            let want = reference(&body);
            let got = parse_chat_answer(body.clone());
            let shown = String::from_utf8_lossy(&body)
                .chars()
                .take(80)
                .collect::<String>();
            match (&want, &got) {
                (Ok((usage, model)), Ok(a)) => {
                    assert_eq!((&a.usage, &a.model), (usage, model), "{shown}");
                    assert_eq!(a.body, body, "{shown}: the body is passed through");
                }
                (Err(w), Err(g)) => {
                    let m = if w == "not JSON" {
                        "the answer is not JSON"
                    } else {
                        "the answer has no `choices`"
                    };
                    assert!(g.message.contains(m), "{shown}: {} vs {w}", g.message);
                }
                _ => panic!("{shown}: {want:?} vs {:?}", got.map(|a| (a.usage, a.model))),
            }
        }
        let a = parse_chat_answer(answers[0].as_bytes().to_vec()).unwrap();
        assert_eq!(
            a.usage,
            Some(Usage {
                prompt_tokens: 19,
                completion_tokens: 10,
                cached_tokens: 3,
                cache_write_tokens: 0,
                reasoning_tokens: 4
            })
        );
        let dup = parse_chat_answer(answers[10].as_bytes().to_vec()).unwrap();
        assert_eq!(
            (dup.model.as_deref(), dup.usage.map(|u| u.prompt_tokens)),
            (Some("b"), Some(2))
        );
    }

    /// What `build_chat` wrote before it stopped copying the caller's body.
    fn reference_body(req: &ChatRequest, target_model: &str) -> Vec<u8> {
        let mut body = req.body.clone();
        body.insert("model".into(), Value::String(target_model.to_string()));
        if req.stream {
            let opts = body.entry("stream_options").or_insert_with(|| json!({}));
            if !opts.is_object() {
                *opts = json!({});
            }
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        }
        serde_json::to_vec(&Value::Object(body)).unwrap()
    }

    #[test]
    fn the_upstream_body_is_the_callers_with_model_and_stream_options_set() {
        let bodies = [
            r#"{"model":"public","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            r#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#,
            r#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":null,"temperature":0.5,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
            r#"{"model":"public","messages":[{"role":"user","content":"hi"}],"stream":false,"stream_options":{"include_usage":true},"zeta":[1,2.5,-3e-7,"\u2028"],"Ärger":"ü","":0,"a\"b":{"c\\d":null}}"#,
            r#"{"messages":[{"role":"user","content":"first"}],"model":"z-last","metadata":{"k":"v"},"n":1,"seed":18446744073709551615,"stream":true,"user":"u"}"#,
        ];
        for text in bodies {
            let req = ChatRequest::parse(text.as_bytes()).unwrap();
            for model in ["llama", "", "a\"b\\c\u{1}é"] {
                let up = build_chat(&provider(), model, &req, None);
                assert_eq!(
                    String::from_utf8(up.body).unwrap(),
                    String::from_utf8(reference_body(&req, model)).unwrap(),
                    "{text}"
                );
            }
        }
        let mut empty = ChatRequest::parse(bodies[1].as_bytes()).unwrap();
        empty.body.clear();
        let up = build_chat(&provider(), "m", &empty, None);
        assert_eq!(up.body, reference_body(&empty, "m"));
        assert_eq!(
            String::from_utf8(up.body).unwrap(),
            r#"{"model":"m","stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn errors_are_classified() {
        let c = |s: u16, body: &str| classify_error(s, None, body.as_bytes(), 0).class;
        assert_eq!(c(429, "{}"), FailureClass::RateLimited);
        assert_eq!(c(503, "oops"), FailureClass::Retryable);
        assert_eq!(c(529, ""), FailureClass::Retryable);
        assert_eq!(c(408, ""), FailureClass::Retryable);
        assert_eq!(c(401, ""), FailureClass::Auth);
        assert_eq!(c(404, ""), FailureClass::TargetMissing);
        assert_eq!(c(422, ""), FailureClass::Rejected);
        assert_eq!(
            c(
                400,
                r#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 8192 tokens"}}"#
            ),
            FailureClass::ContextLength
        );
        assert_eq!(
            c(
                400,
                r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected by our content policy"}}"#
            ),
            FailureClass::ContentPolicy
        );
        assert_eq!(
            c(400, r#"{"error":{"message":"bad temperature"}}"#),
            FailureClass::Rejected
        );
        let f = classify_error(429, Some("3"), b"{}", 0);
        assert_eq!(f.retry_after_ms, Some(3_000));
        let f = classify_error(
            401,
            None,
            br#"{"error":{"message":"Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz. You can find your key at https://platform.openai.com/account"}}"#,
            0,
        );
        assert!(
            !f.message.contains("sk-abc") && !f.message.contains("https"),
            "{}",
            f.message
        );
    }

    fn run(
        stream: &mut OpenAiStream,
        input: &str,
        piece: usize,
    ) -> (String, Result<(), AttemptFailure>) {
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(piece) {
            if let Err(e) = stream.feed(c, &mut out) {
                return (String::from_utf8(out).unwrap(), Err(e));
            }
        }
        let r = stream.finish(&mut out);
        (String::from_utf8(out).unwrap(), r)
    }

    const ROLE: &str = r#"data: {"id":"c","model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
    const HELLO: &str = r#"data: {"id":"c","model":"gpt-x","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}"#;
    const STOP: &str = r#"data: {"id":"c","model":"gpt-x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
    const USAGE: &str = r#"data: {"id":"c","model":"gpt-x","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;

    #[test]
    fn stream_passes_chunks_and_keeps_usage() {
        let input = format!("{ROLE}\n\n{HELLO}\n\n{STOP}\n\n{USAGE}\n\ndata: [DONE]\n\n");
        for piece in [1, 7, 4096] {
            let mut s = OpenAiStream::new(true);
            let (out, r) = run(&mut s, &input, piece);
            r.unwrap();
            assert_eq!(out, input, "verbatim re-framing");
            assert_eq!(s.usage.map(|u| u.prompt_tokens), Some(5));
            assert_eq!(s.model.as_deref(), Some("gpt-x"));
            assert!(s.done && s.finished && s.content_started);
        }
    }

    #[test]
    fn usage_chunk_hidden_when_not_asked() {
        let input = format!("{ROLE}\n\n{HELLO}\n\n{STOP}\n\n{USAGE}\n\ndata: [DONE]\n\n");
        let mut s = OpenAiStream::new(false);
        let (out, r) = run(&mut s, &input, 3);
        r.unwrap();
        assert!(!out.contains("prompt_tokens"));
        assert_eq!(
            s.usage.map(|u| u.total_tokens()),
            Some(6),
            "still accounted"
        );
    }

    #[test]
    fn role_chunk_is_not_content() {
        let mut s = OpenAiStream::new(false);
        let mut out = Vec::new();
        s.feed(format!("{ROLE}\n\n").as_bytes(), &mut out).unwrap();
        assert!(!s.content_started);
        s.feed(format!("{HELLO}\n\n").as_bytes(), &mut out).unwrap();
        assert!(s.content_started);
    }

    #[test]
    fn missing_done_after_finish_is_finalised() {
        let input = format!("{ROLE}\n\n{HELLO}\n\n{STOP}\n\n{USAGE}\n\n");
        let mut s = OpenAiStream::new(true);
        let (out, r) = run(&mut s, &input, 5);
        r.unwrap();
        assert!(out.ends_with("data: [DONE]\n\n"));
        assert_eq!(s.usage.map(|u| u.completion_tokens), Some(1));
    }

    #[test]
    fn truncation_is_an_error_not_a_done() {
        let input = format!("{ROLE}\n\n{HELLO}\n\n");
        let mut s = OpenAiStream::new(true);
        let (out, r) = run(&mut s, &input, 5);
        assert!(r.is_err());
        assert!(!out.contains("[DONE]"));
    }

    #[test]
    fn malformed_chunk_is_skipped_and_counted() {
        let input = format!(
            "{ROLE}\n\ndata: {{\"choices\": [ broken\n\n{HELLO}\n\n{STOP}\n\ndata: [DONE]\n\n"
        );
        let mut s = OpenAiStream::new(false);
        let (out, r) = run(&mut s, &input, 9);
        r.unwrap();
        assert_eq!(s.malformed, 1);
        assert!(!out.contains("broken"));
        assert!(out.contains("Hello"));
    }

    #[test]
    fn in_band_upstream_error_is_a_failure() {
        let input = format!("{HELLO}\n\ndata: {{\"error\":{{\"message\":\"overloaded\"}}}}\n\n");
        let mut s = OpenAiStream::new(false);
        let (_, r) = run(&mut s, &input, 64);
        let e = r.unwrap_err();
        assert!(e.message.contains("overloaded"));
    }
}
