//! OpenAI chat completions and every OpenAI-compatible service.
//!
//! Requests are forwarded as the caller sent them, with `model` set to the target's upstream
//! model and, for streams, `stream_options.include_usage` forced on so every answer can be
//! accounted; the usage chunk is removed again when the caller did not ask for it.

use super::{sanitize_message, UpstreamAnswer, UpstreamRequest};
use super::{EventDecoder, SseInput};
use crate::chat::ChatRequest;
use crate::config::ProviderConfig;
use crate::policy::{parse_retry_after, AttemptFailure, FailureClass};
use crate::sse::{frame_data, SseEvent};
use crate::usage::Usage;
use serde_json::{json, Value};

pub fn build_chat(
    provider: &ProviderConfig,
    target_model: &str,
    req: &ChatRequest,
    api_key: Option<&str>,
) -> UpstreamRequest {
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
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
        warnings: Vec::new(),
    }
}

pub fn parse_chat_answer(body: Vec<u8>) -> Result<UpstreamAnswer, AttemptFailure> {
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
