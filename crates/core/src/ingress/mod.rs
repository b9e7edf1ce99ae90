//! Ingress: the wire formats callers may speak, besides OpenAI chat completions.
//!
//! A request in another format is translated into the canonical OpenAI request
//! ([`ChatRequest`]) before anything else happens, so routing, budgets, failover and every
//! egress adapter see one shape. The answer — a complete OpenAI `chat.completion`, or the OpenAI
//! chunk stream the relay produces — is translated back at the very end: [`Format::answer`] for
//! complete answers, a [`StreamEncoder`] fed the relay's bytes for streams. Errors are written in
//! the caller's format by [`Format::error_body`].
//!
//! | format | path | module |
//! | --- | --- | --- |
//! | OpenAI | `POST /v1/chat/completions` | the canonical shape, passed through |
//! | Anthropic Messages | `POST /v1/messages` | [`anthropic`] |
//! | Gemini | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` (also under `/v1/`) | [`gemini`] |
//!
//! Streams stay honest in every format: the relay ends a broken stream with an OpenAI error
//! event and no `[DONE]`; the encoders turn that into the format's own error event
//! (Anthropic `event: error`, never followed by `message_stop`; Gemini a `{"error":…}` chunk)
//! and write nothing after it.

pub mod anthropic;
pub mod gemini;

use crate::chat::ChatRequest;
use crate::error::{ErrorKind, GatewayError};
use crate::providers::embeddings::EmbeddingsRequest;
use crate::providers::{esc, Work};
use crate::sse::{SseEvent, SseParser};
use crate::usage::Usage;
use serde_json::{Map, Value};

/// The wire format a caller speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Format {
    /// The format a path's callers speak (and expect errors in), known from the path alone.
    pub fn of_path(path: &str) -> Format {
        if path == "/v1/messages" {
            Format::Anthropic
        } else if path.starts_with("/v1beta/") || gemini::model_path(path).is_some() {
            Format::Gemini
        } else {
            Format::OpenAi
        }
    }

    /// The caller's request as the canonical request (an OpenAI chat request, or embeddings at
    /// `/v1/embeddings`), and the parameters dropped on the way (one warning each, for
    /// `x-switchyard-warnings`). Gemini takes the model and the streaming flag from the path
    /// (and `alt=sse` from the query).
    pub fn parse(
        self,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<(Work, Vec<String>), GatewayError> {
        let (chat, warnings) = match self {
            Format::OpenAi if path == "/v1/embeddings" => {
                return Ok((
                    Work::Embeddings(EmbeddingsRequest::parse(body)?),
                    Vec::new(),
                ))
            }
            Format::OpenAi => (ChatRequest::parse(body)?, Vec::new()),
            Format::Anthropic => anthropic::to_chat(object(body)?)?,
            Format::Gemini => {
                let (model, stream) = gemini::target(path, query)?;
                gemini::to_chat(model, stream, object(body)?)?
            }
        };
        Ok((Work::Chat(chat), warnings))
    }

    /// A complete OpenAI `chat.completion` (and its usage, which keeps what OpenAI's shape
    /// cannot: cache writes) in the caller's format.
    pub fn answer(self, completion: Vec<u8>, usage: &Usage) -> Vec<u8> {
        let v = || serde_json::from_slice::<Value>(&completion).unwrap_or_default();
        match self {
            Format::OpenAi => completion,
            Format::Anthropic => anthropic::answer(&v(), usage).into_bytes(),
            Format::Gemini => gemini::answer(&v(), usage).into_bytes(),
        }
    }

    /// An error body in the caller's format (the HTTP status is the error's own).
    pub fn error_body(self, err: &GatewayError) -> String {
        match self {
            Format::OpenAi => err.to_body(),
            Format::Anthropic => anthropic::error(err.status(), &err.message),
            Format::Gemini => gemini::error(err.status(), &err.message),
        }
    }

    /// The encoder for a streamed answer in this format.
    pub fn encoder(self) -> StreamEncoder {
        match self {
            Format::OpenAi => StreamEncoder::OpenAi,
            Format::Anthropic => StreamEncoder::Anthropic(Box::default()),
            Format::Gemini => StreamEncoder::Gemini(Box::default()),
        }
    }
}

/// Re-frames the relay's OpenAI chunk stream in the caller's format, chunk by chunk: it holds
/// at most one unfinished SSE event and, for Gemini, the pieces of tool calls in progress.
#[derive(Debug)]
pub enum StreamEncoder {
    OpenAi,
    Anthropic(Box<anthropic::Encoder>),
    Gemini(Box<gemini::Encoder>),
}

impl StreamEncoder {
    /// OpenAI chunk bytes in, the caller's bytes out (possibly none yet).
    pub fn encode(&mut self, openai: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            StreamEncoder::OpenAi => return openai,
            StreamEncoder::Anthropic(e) => {
                for c in e.reader.read(&openai) {
                    e.chunk(c, &mut out)
                }
            }
            StreamEncoder::Gemini(e) => {
                for c in e.reader.read(&openai) {
                    e.chunk(c, &mut out)
                }
            }
        }
        out
    }
}

/// One event of the relay's OpenAI stream.
#[derive(Debug)]
pub enum Chunk {
    /// A `chat.completion.chunk`.
    Data(Value),
    /// `[DONE]`: the answer is complete.
    Done,
    /// The in-band error that ends a broken stream: its message and whether it was a timeout.
    Error(String, bool),
}

/// What one chunk of the relay's stream says about choice 0 (both formats stream one answer).
#[derive(Debug, Default)]
struct Delta<'a> {
    usage: Option<Usage>,
    reasoning: &'a str,
    /// `content` (or a `refusal`).
    text: &'a str,
    /// Tool call pieces: OpenAI index, id and name (on a call's first piece), argument piece.
    calls: Vec<(u64, &'a str, &'a str, &'a str)>,
    finish: Option<&'a str>,
}

impl<'a> Delta<'a> {
    fn of(c: &'a Value) -> Delta<'a> {
        let mut d = Delta {
            usage: c
                .get("usage")
                .filter(|u| u.is_object())
                .map(Usage::from_openai),
            ..Delta::default()
        };
        let Some(choice) = crate::json::at(c, "/choices/0") else {
            return d;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        d.reasoning = str_of(delta, "reasoning_content");
        d.text = match str_of(delta, "content") {
            "" => str_of(delta, "refusal"),
            t => t,
        };
        for tc in list(delta.get("tool_calls")) {
            let f = tc.get("function").unwrap_or(&Value::Null);
            let n = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
            d.calls.push((
                n,
                str_of(tc, "id"),
                str_of(f, "name"),
                str_of(f, "arguments"),
            ));
        }
        d.finish = choice.get("finish_reason").and_then(Value::as_str);
        d
    }
}

/// Reads the relay's OpenAI SSE bytes back into chunks. Once the stream has ended (`[DONE]` or
/// an error) nothing more is read.
#[derive(Debug, Default)]
pub struct ChunkReader {
    parser: SseParser,
    events: Vec<SseEvent>,
    ended: bool,
}

impl ChunkReader {
    pub fn read(&mut self, bytes: &[u8]) -> Vec<Chunk> {
        self.events.clear();
        // The relay writes its own, well-formed frames; an oversized one cannot occur.
        let _ = self.parser.push(bytes, &mut self.events);
        let mut out = Vec::with_capacity(self.events.len());
        for ev in &self.events {
            if self.ended {
                break;
            }
            let data = ev.data.trim();
            if data == "[DONE]" {
                self.ended = true;
                out.push(Chunk::Done);
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(data.as_bytes()) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                self.ended = true;
                let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                let timeout = e.get("code").and_then(Value::as_str) == Some("upstream_timeout");
                out.push(Chunk::Error(message.to_string(), timeout));
                continue;
            }
            out.push(Chunk::Data(v));
        }
        out
    }
}

/// The body as a JSON object (the same 400s as the OpenAI path).
fn object(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "The request body must be a JSON object",
        )),
        Err(e) => Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

/// A 400 naming the parameter at fault (in the caller's own terms).
fn invalid(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid(format!("`{param}` {why}"), param)
}

/// A 400 `unsupported_parameter`: the caller's format allows it; the gateway cannot honour it.
fn unsupported(param: &str, why: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::UnsupportedParameter,
        format!("`{param}` is not supported by this gateway: {why}"),
    )
    .with_param(param)
}

/// The warning for a parameter of the caller's format that was dropped.
fn dropped(param: &str, format: &str) -> String {
    format!(
        "{} ignored: not translated from the {format} format",
        crate::providers::header_safe(param)
    )
}

/// An array's items; none when it is absent or not an array.
fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An OpenAI function tool (JSON text).
fn function_tool(name: &str, description: Option<&Value>, parameters: Option<&Value>) -> String {
    let mut extra = String::new();
    if let Some(d) = description.filter(|d| d.is_string()) {
        extra = format!(r#","description":{}"#, crate::json::to_text(d));
    }
    if let Some(p) = parameters.filter(|p| p.is_object()) {
        extra.push_str(&format!(r#","parameters":{}"#, crate::json::to_text(p)));
    }
    format!(
        r#"{{"type":"function","function":{{"name":{}{extra}}}}}"#,
        esc(name)
    )
}

/// OpenAI's `tool_choice` naming one function (JSON text).
fn named_choice(name: &str) -> String {
    format!(
        r#"{{"type":"function","function":{{"name":{}}}}}"#,
        esc(name)
    )
}

/// The canonical request's body, written as JSON text field by field, then parsed once.
#[derive(Default)]
struct Json(String);

impl Json {
    /// A field with a JSON value written as is.
    fn raw(&mut self, key: &str, json: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(&format!("\"{key}\":{json}"));
    }

    fn field(&mut self, key: &str, value: &Value) {
        self.raw(key, &crate::json::to_text(value));
    }

    fn into_chat(mut self) -> Result<ChatRequest, GatewayError> {
        self.0.push('}');
        ChatRequest::parse(self.0.as_bytes())
    }
}

/// A `tool_calls` entry's arguments as a JSON object (anything else is `{}`).
fn arguments_object(call: &Value) -> Value {
    match serde_json::from_slice::<Value>(
        crate::json::at(call, "/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("")
            .as_bytes(),
    ) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_path() {
        assert_eq!(Format::of_path("/v1/messages"), Format::Anthropic);
        assert_eq!(
            Format::of_path("/v1beta/models/x:generateContent"),
            Format::Gemini
        );
        assert_eq!(Format::of_path("/v1/chat/completions"), Format::OpenAi);
        assert_eq!(Format::of_path("/v1/messagesx"), Format::OpenAi);
        assert_eq!(
            Format::of_path("/v1/models/m:generateContent"),
            Format::Gemini
        );
        assert_eq!(Format::of_path("/v1/models"), Format::OpenAi);
    }

    #[test]
    fn bodies_must_be_objects() {
        for f in [Format::Anthropic, Format::Gemini] {
            let path = "/v1beta/models/m:generateContent";
            let e = f.parse(path, "", b"[1]").unwrap_err();
            assert_eq!(e.status(), 400);
            let e = f.parse(path, "", b"{").unwrap_err();
            assert!(e.message.contains("not valid JSON"), "{e}");
        }
    }

    #[test]
    fn embeddings_are_parsed_at_their_path() {
        let body = br#"{"model":"e","input":"x"}"#;
        let (work, _) = Format::OpenAi.parse("/v1/embeddings", "", body).unwrap();
        assert!(matches!(work, Work::Embeddings(ref r) if r.count == 1));
        assert_eq!(
            (work.model(), work.max_output_tokens(), work.stream()),
            ("e", Some(0), None)
        );
        let chat = br#"{"model":"m","max_tokens":7,"stream":true,"messages":[{"role":"user","content":"x"}]}"#;
        let (work, _) = Format::OpenAi
            .parse("/v1/chat/completions", "", chat)
            .unwrap();
        assert_eq!(
            (work.max_output_tokens(), work.stream()),
            (Some(7), Some(false))
        );
    }

    #[test]
    fn reader_stops_at_the_end_and_reads_errors() {
        let mut r = ChunkReader::default();
        let c = r.read(b"data: {\"a\":1}\n\ndata: {\"error\":{\"message\":\"m\",\"code\":\"upstream_timeout\"}}\n\ndata: {\"b\":2}\n\n");
        assert!(matches!(&c[0], Chunk::Data(v) if v["a"] == 1));
        assert!(matches!(&c[1], Chunk::Error(m, true) if m == "m"));
        assert_eq!(c.len(), 2);
        assert!(
            r.read(b"data: [DONE]\n\n").is_empty(),
            "nothing after the end"
        );
        let mut r = ChunkReader::default();
        assert!(r.read(b"data: [DO").is_empty());
        assert!(matches!(r.read(b"NE]\n\n")[..], [Chunk::Done]));
    }

    #[test]
    fn openai_passes_through() {
        let mut e = Format::OpenAi.encoder();
        assert_eq!(e.encode(b"data: x\n\n".to_vec()), b"data: x\n\n");
        let body = b"{\"id\":1}".to_vec();
        assert_eq!(Format::OpenAi.answer(body.clone(), &Usage::default()), body);
        let err = GatewayError::invalid("bad", "x");
        assert_eq!(Format::OpenAi.error_body(&err), err.to_body());
    }
}
