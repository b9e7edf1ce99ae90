//! Providers: each module *builds* an upstream request value and *parses* bytes back. None of
//! them performs I/O, so all translation — streaming included — runs under `cargo test`.
//!
//! Dispatch is a closed `match` on [`Protocol`]; OpenAI-compatible services (DeepSeek, Groq,
//! Together, Mistral, Fireworks, OpenRouter, Ollama) are presets of the `openai` module.
//! `anthropic` and `gemini` translate the OpenAI request to their native APIs and their answers
//! (complete or streamed) back to OpenAI's shapes; each module documents its mapping.

pub mod anthropic;
mod common;
pub mod embeddings;
pub mod gemini;
pub mod openai;

pub use common::{esc, header_safe, is_neutral, obj, put};

use crate::chat::ChatRequest;
use crate::config::{Protocol, ProviderConfig};
use crate::error::GatewayError;
use crate::policy::AttemptFailure;
use crate::sse::{SseEvent, SseParser};
use crate::usage::Usage;

/// An HTTP request for the edge to send. Header values may hold the API key: the edge must never
/// log this value.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Parameters the target cannot honour that were dropped rather than refused, one short
    /// ASCII sentence each (for the `x-switchyard-warnings` header). Empty for OpenAI targets.
    pub warnings: Vec<String>,
}

/// What a complete (non-streamed) upstream answer told us.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamAnswer {
    /// The body to send to the caller: an OpenAI `chat.completion`, whatever the protocol.
    pub body: Vec<u8>,
    pub usage: Option<Usage>,
    /// The model the upstream says answered.
    pub model: Option<String>,
}

/// What one request asks of its targets: the request path and the attempt loop are the same
/// for every kind.
#[derive(Debug, Clone)]
pub enum Work {
    Chat(ChatRequest),
    Embeddings(embeddings::EmbeddingsRequest),
}

impl Work {
    /// The public model name (the route) asked for.
    pub fn model(&self) -> &str {
        match self {
            Work::Chat(r) => &r.model,
            Work::Embeddings(r) => &r.model,
        }
    }

    /// The caller's output token cap (embeddings have no output).
    pub fn max_output_tokens(&self) -> Option<u64> {
        match self {
            Work::Chat(r) => r.max_output_tokens(),
            Work::Embeddings(_) => Some(0),
        }
    }

    /// The upstream request for `target_model` on `provider`.
    pub fn build(
        &self,
        provider: &ProviderConfig,
        target_model: &str,
        api_key: Option<&str>,
    ) -> Result<UpstreamRequest, GatewayError> {
        match self {
            Work::Chat(r) => build_chat(provider, target_model, r, api_key),
            Work::Embeddings(r) => embeddings::build(provider, target_model, r, api_key),
        }
    }

    /// Whether the caller asked for a stream (and, if so, for the usage chunk).
    pub fn stream(&self) -> Option<bool> {
        match self {
            Work::Chat(r) if r.stream => Some(r.include_usage),
            _ => None,
        }
    }

    /// Read a successful (2xx) complete answer, in OpenAI's shape.
    pub fn parse_answer(
        &self,
        protocol: Protocol,
        body: Vec<u8>,
        target_model: &str,
        created_unix_secs: u64,
    ) -> Result<UpstreamAnswer, AttemptFailure> {
        match self {
            Work::Chat(_) => parse_chat_answer_at(protocol, body, created_unix_secs),
            Work::Embeddings(r) => embeddings::parse_answer(protocol, body, r, target_model),
        }
    }
}

/// Build the upstream chat request for `target_model` on `provider`.
pub fn build_chat(
    provider: &ProviderConfig,
    target_model: &str,
    req: &ChatRequest,
    api_key: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    match provider.kind.protocol() {
        Protocol::OpenAi => Ok(openai::build_chat(provider, target_model, req, api_key)),
        Protocol::Anthropic => anthropic::build_chat(provider, target_model, req, api_key),
        Protocol::Gemini => gemini::build_chat(provider, target_model, req, api_key),
    }
}

/// The active health probe of a provider (`docs/ROUTING.md`, "Active probes"): a `GET` of its
/// model list — free on every supported kind, and it checks reachability and the key. The
/// `body` is empty (a `GET`).
pub fn build_probe(provider: &ProviderConfig, api_key: Option<&str>) -> UpstreamRequest {
    let base = provider.base_url();
    let (url, key_header) = match provider.kind.protocol() {
        Protocol::OpenAi => (format!("{base}/models"), "authorization"),
        Protocol::Anthropic => (format!("{base}/v1/models"), "x-api-key"),
        Protocol::Gemini => (format!("{base}/models"), "x-goog-api-key"),
    };
    let mut headers = Vec::new();
    if provider.kind.protocol() == Protocol::Anthropic {
        headers.push((
            "anthropic-version",
            anthropic::ANTHROPIC_VERSION.to_string(),
        ));
    }
    if let Some(key) = api_key {
        let value = match key_header {
            "authorization" => format!("Bearer {key}"),
            _ => key.to_string(),
        };
        headers.push((key_header, value));
    }
    UpstreamRequest {
        url,
        headers,
        body: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Read a successful (2xx) non-streamed answer. Translated answers carry `created: 0`; use
/// [`parse_chat_answer_at`] to stamp the time.
pub fn parse_chat_answer(
    protocol: Protocol,
    body: Vec<u8>,
) -> Result<UpstreamAnswer, AttemptFailure> {
    parse_chat_answer_at(protocol, body, 0)
}

/// [`parse_chat_answer`], with the `created` time (Unix seconds) written into translated answers
/// (Anthropic and Gemini answers carry no timestamp; the core has no clock). OpenAI answers are
/// passed through unchanged.
pub fn parse_chat_answer_at(
    protocol: Protocol,
    body: Vec<u8>,
    created_unix_secs: u64,
) -> Result<UpstreamAnswer, AttemptFailure> {
    match protocol {
        Protocol::OpenAi => openai::parse_chat_answer(body),
        Protocol::Anthropic => anthropic::parse_chat_answer(&body, created_unix_secs),
        Protocol::Gemini => gemini::parse_chat_answer(&body, created_unix_secs),
    }
}

/// The SSE half the three stream decoders share: the parser and a reusable event buffer.
#[derive(Debug, Default)]
pub struct SseInput {
    parser: SseParser,
    events: Vec<SseEvent>,
}

/// A stream decoder: it says how to handle a batch of complete SSE events; feeding bytes and
/// draining the end of the body are the same for every provider.
pub trait EventDecoder {
    fn input(&mut self) -> &mut SseInput;

    fn handle(&mut self, events: &[SseEvent], out: &mut Vec<u8>) -> Result<(), AttemptFailure>;

    /// Feed upstream bytes; bytes for the caller are appended to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        let mut events = std::mem::take(&mut self.input().events);
        let parsed = self.input().parser.push(bytes, &mut events);
        let result = self.handle(&events, out);
        events.clear();
        self.input().events = events;
        parsed.map_err(|_| AttemptFailure::malformed("an event exceeds 4 MiB"))?;
        result
    }

    /// The body ended: handle an event it left without its closing blank line.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        let mut events = Vec::new();
        self.input().parser.finish(&mut events);
        self.handle(&events, out)
    }
}

macro_rules! event_decoders {
    ($($t:ty),*) => {$(
        impl EventDecoder for $t {
            fn input(&mut self) -> &mut SseInput {
                &mut self.input
            }
            fn handle(&mut self, e: &[SseEvent], out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
                <$t>::handle(self, e, out)
            }
        }
    )*};
}
event_decoders!(
    openai::OpenAiStream,
    anthropic::AnthropicStream,
    gemini::GeminiStream
);

/// Re-frames an upstream stream as OpenAI chat-completion chunks for the caller, whatever the
/// upstream protocol. The edge feeds it bytes and forwards what comes out.
#[derive(Debug)]
pub enum ChatStream {
    OpenAi(openai::OpenAiStream),
    Anthropic(anthropic::AnthropicStream),
    Gemini(gemini::GeminiStream),
}

impl ChatStream {
    pub fn new(protocol: Protocol, include_usage: bool) -> Result<ChatStream, GatewayError> {
        Ok(match protocol {
            Protocol::OpenAi => ChatStream::OpenAi(openai::OpenAiStream::new(include_usage)),
            Protocol::Anthropic => {
                ChatStream::Anthropic(anthropic::AnthropicStream::new(include_usage, 0))
            }
            Protocol::Gemini => ChatStream::Gemini(gemini::GeminiStream::new(include_usage, 0)),
        })
    }

    /// Stamp translated chunks with `created` (Unix seconds); without it they carry 0. OpenAI
    /// chunks are passed through unchanged.
    pub fn with_created(mut self, created_unix_secs: u64) -> ChatStream {
        match &mut self {
            ChatStream::OpenAi(_) => {}
            ChatStream::Anthropic(s) => s.set_created(created_unix_secs),
            ChatStream::Gemini(s) => s.set_created(created_unix_secs),
        }
        self
    }

    /// Feed upstream bytes; bytes for the caller are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        match self {
            ChatStream::OpenAi(s) => s.feed(bytes, out),
            ChatStream::Anthropic(s) => s.feed(bytes, out),
            ChatStream::Gemini(s) => s.feed(bytes, out),
        }
    }

    /// The upstream body ended cleanly: finalise a complete answer, or report a truncation.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), AttemptFailure> {
        match self {
            ChatStream::OpenAi(s) => s.finish(out),
            ChatStream::Anthropic(s) => s.finish(out),
            ChatStream::Gemini(s) => s.finish(out),
        }
    }

    /// A content token (text, tool call, refusal) or a finish reason has been seen.
    pub fn content_started(&self) -> bool {
        match self {
            ChatStream::OpenAi(s) => s.content_started,
            ChatStream::Anthropic(s) => s.content_started,
            ChatStream::Gemini(s) => s.content_started,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        match self {
            ChatStream::OpenAi(s) => s.usage,
            ChatStream::Anthropic(s) => s.usage,
            ChatStream::Gemini(s) => s.usage,
        }
    }

    /// The model the upstream says is answering.
    pub fn model(&self) -> Option<&str> {
        match self {
            ChatStream::OpenAi(s) => s.model.as_deref(),
            ChatStream::Anthropic(s) => s.model.as_deref(),
            ChatStream::Gemini(s) => s.model.as_deref(),
        }
    }

    /// Malformed chunks skipped so far.
    pub fn malformed(&self) -> u32 {
        match self {
            ChatStream::OpenAi(s) => s.malformed,
            ChatStream::Anthropic(s) => s.malformed,
            ChatStream::Gemini(s) => s.malformed,
        }
    }
}

/// Classify an upstream error response (non-2xx).
pub fn classify_error(
    protocol: Protocol,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now_ms: u64,
) -> AttemptFailure {
    match protocol {
        Protocol::OpenAi => openai::classify_error(status, retry_after, body, now_ms),
        Protocol::Anthropic => anthropic::classify_error(status, retry_after, body, now_ms),
        Protocol::Gemini => gemini::classify_error(status, retry_after, body, now_ms),
    }
}

/// Make an upstream's message safe to show a caller: no URLs, nothing key-shaped, bounded length.
pub fn sanitize_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(400));
    for (i, word) in msg.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        if lower.contains("http://") || lower.contains("https://") || lower.contains("://") {
            out.push_str("[url]");
        } else if looks_like_key(word) {
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        if out.len() > 400 {
            let mut cut = 400;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

fn looks_like_key(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let prefixed = ["sk-", "sk_", "AIza", "key-", "gsk_", "xai-", "sy_"]
        .iter()
        .any(|p| w.starts_with(p) && w.len() >= 16);
    let long_token = w.len() >= 32
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && w.chars().any(|c| c.is_ascii_digit())
        && w.chars().any(|c| c.is_ascii_alphabetic());
    prefixed || long_token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_list_the_models() {
        let provider = |kind: &str, base: &str| -> ProviderConfig {
            crate::config::read_provider(
                &serde_json::json!({
                    "id": "p", "kind": kind, "base_url": base, "api_key_secrets": ["K"]
                }),
                String::new(),
            )
            .expect("provider")
        };
        // (kind, base, url, key header)
        let cases = [
            (
                "openai",
                "https://api.example/v1/",
                "https://api.example/v1/models",
                ("authorization", "Bearer k1"),
            ),
            (
                "groq",
                "https://g.example/openai/v1",
                "https://g.example/openai/v1/models",
                ("authorization", "Bearer k1"),
            ),
            (
                "anthropic",
                "https://a.example",
                "https://a.example/v1/models",
                ("x-api-key", "k1"),
            ),
            (
                "gemini",
                "https://ge.example/v1beta",
                "https://ge.example/v1beta/models",
                ("x-goog-api-key", "k1"),
            ),
        ];
        for (kind, base, url, (h, v)) in cases {
            let up = build_probe(&provider(kind, base), Some("k1"));
            assert_eq!(up.url, url, "{kind}");
            assert!(up.body.is_empty(), "{kind}: a GET");
            assert!(
                up.headers.contains(&(h, v.to_string())),
                "{kind}: {:?}",
                up.headers
            );
            let anonymous = build_probe(&provider(kind, base), None);
            assert!(anonymous.headers.iter().all(|(k, _)| *k != h), "{kind}");
        }
        let up = build_probe(&provider("anthropic", "https://a.example"), None);
        assert_eq!(
            up.headers,
            [(
                "anthropic-version",
                anthropic::ANTHROPIC_VERSION.to_string()
            )]
        );
    }

    #[test]
    fn sanitize_removes_urls_and_keys() {
        let m = sanitize_message(
            "Incorrect API key provided: sk-proj-abcdefghijklmnop1234. See https://platform.example/keys or http://10.0.0.1:8080/v1 for help",
        );
        assert!(!m.contains("sk-proj"), "{m}");
        assert!(!m.contains("http"), "{m}");
        assert!(
            m.starts_with("Incorrect API key provided: [redacted]"),
            "{m}"
        );
        let long = "word ".repeat(200);
        assert!(sanitize_message(&long).chars().count() <= 402);
        assert_eq!(sanitize_message("plain  text\nhere"), "plain text here");
    }
}
