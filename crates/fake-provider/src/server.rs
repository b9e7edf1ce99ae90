//! Connection handling, routing, directives and the control API.

use crate::common::{query_pairs, unix_ms, unix_secs, Answer};
use crate::http::{self, ReadError, Request};
use crate::spec::{spec_from_body, ErrorKind, Spec};
use crate::stream::{data_event, script, Event, EventKind, Step, StreamPlan, MALFORMED_DATA};
use crate::{anthropic, gemini, openai};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long an idle keep-alive connection, a `hang` or a `stall` is kept open.
pub const LINGER: Duration = Duration::from_secs(300);

/// One recorded request (see `GET /_fake/requests`).
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: u64,
    pub instance: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub spec: Option<String>,
    pub id: Option<String>,
    pub status: Option<u16>,
    pub ts_ms: u64,
}

impl Record {
    pub fn to_json(&self) -> Value {
        let mut headers = Map::new();
        for (n, v) in &self.headers {
            match headers.get_mut(n) {
                Some(Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(v);
                }
                _ => {
                    headers.insert(n.clone(), json!(v));
                }
            }
        }
        json!({
            "seq": self.seq,
            "instance": self.instance,
            "method": self.method,
            "path": self.path,
            "headers": headers,
            "body": self.body,
            "spec": self.spec,
            "id": self.id,
            "status": self.status,
            "ts_ms": self.ts_ms
        })
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub records: Vec<Record>,
    /// Requests seen per (instance, id or "").
    pub counters: HashMap<(String, String), u64>,
    /// Standing spec per instance.
    pub standing: HashMap<String, String>,
    pub next_seq: u64,
}

pub type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections forever, one thread each.
pub fn serve(listener: TcpListener, state: Shared) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let state = Arc::clone(&state);
                let spawned = thread::Builder::new()
                    .name("fake-conn".to_string())
                    .spawn(move || handle_connection(stream, state));
                if let Err(e) = spawned {
                    eprintln!("fake-provider: cannot spawn connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("fake-provider: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What the connection does after a request has been handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Read the next request (keep-alive).
    Next,
    /// Close normally.
    Close,
    /// Close with a TCP RST.
    Reset,
    /// Send nothing more; keep the socket open until the peer closes it.
    Linger,
}

fn handle_connection(stream: TcpStream, state: Shared) {
    // Best effort: small writes (SSE events) must leave at once.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    loop {
        if stream.set_read_timeout(Some(LINGER)).is_err() {
            return;
        }
        let req = http::read_request_with(&mut reader, || {
            (&stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        });
        let req = match req {
            Ok(r) => r,
            Err(ReadError::Bad(msg)) => {
                let body = openai::error_body(
                    &format!("fake-provider: bad request: {msg}"),
                    "invalid_request_error",
                    Value::Null,
                    Value::Null,
                );
                let _ = write_json(&mut &stream, 400, &[], &body, false);
                return;
            }
            Err(ReadError::Closed) | Err(ReadError::Io(_)) => return,
        };
        match handle_request(&stream, &req, &state) {
            Outcome::Next => continue,
            Outcome::Close => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Outcome::Reset => {
                reset_on_close(&stream);
                return;
            }
            Outcome::Linger => {
                linger(&mut reader, &stream);
                return;
            }
        }
    }
}

/// Makes the coming close send RST instead of FIN (SO_LINGER with timeout 0).
#[cfg(unix)]
fn reset_on_close(stream: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `stream`, pointer and length describe `l`.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "fake-provider: SO_LINGER failed: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn reset_on_close(_stream: &TcpStream) {}

/// Discards input until the peer closes or [`LINGER`] passes.
fn linger<R: Read>(reader: &mut R, stream: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_json<W: Write>(
    w: &mut W,
    status: u16,
    extra: &[(String, String)],
    body: &Value,
    keep_alive: bool,
) -> io::Result<()> {
    http::write_full(
        w,
        status,
        "application/json",
        extra,
        body.to_string().as_bytes(),
        keep_alive,
    )
}

fn after_write(res: io::Result<()>, keep_alive: bool) -> Outcome {
    match res {
        Ok(()) if keep_alive => Outcome::Next,
        _ => Outcome::Close,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Provider {
    fn error(self, kind: ErrorKind, status: Option<u16>) -> (u16, Value) {
        let (default, body) = match self {
            Provider::OpenAi => openai::error(kind),
            Provider::Anthropic => anthropic::error(kind),
            Provider::Gemini => gemini::error(kind),
        };
        match (self, status) {
            (Provider::Gemini, Some(s)) => (s, gemini::with_status(body, s)),
            (_, Some(s)) => (s, body),
            (_, None) => (default, body),
        }
    }

    fn bad_request(self, message: &str) -> Value {
        match self {
            Provider::OpenAi => {
                openai::error_body(message, "invalid_request_error", Value::Null, Value::Null)
            }
            Provider::Anthropic => anthropic::error_body("invalid_request_error", message),
            Provider::Gemini => gemini::error_body(400, message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    OpenAiChat,
    OpenAiEmbeddings,
    OpenAiModels,
    AnthropicMessages,
    AnthropicCountTokens,
    AnthropicModels,
    GeminiGenerate { model: String, stream: bool },
    GeminiEmbed,
    GeminiBatchEmbed,
    GeminiCountTokens,
    GeminiModels,
    NotFound,
}

impl Route {
    fn parse(method: &str, rest: &str, anthropic_headers: bool) -> Route {
        let rest = rest.replace("%3A", ":").replace("%3a", ":");
        match (method, rest.as_str()) {
            ("POST", "/v1/chat/completions") => return Route::OpenAiChat,
            ("POST", "/v1/embeddings") => return Route::OpenAiEmbeddings,
            ("POST", "/v1/messages") => return Route::AnthropicMessages,
            ("POST", "/v1/messages/count_tokens") => return Route::AnthropicCountTokens,
            ("GET", "/v1/models") if anthropic_headers => return Route::AnthropicModels,
            ("GET", "/v1/models") => return Route::OpenAiModels,
            ("GET", "/v1beta/models") => return Route::GeminiModels,
            _ => {}
        }
        let call = rest
            .strip_prefix("/v1beta/models/")
            .or_else(|| rest.strip_prefix("/v1/models/"));
        if let (true, Some((model, verb))) =
            (method == "POST", call.and_then(|c| c.rsplit_once(':')))
        {
            if !model.is_empty() && !model.contains('/') {
                let model = model.to_string();
                return match verb {
                    "generateContent" => Route::GeminiGenerate {
                        model,
                        stream: false,
                    },
                    "streamGenerateContent" => Route::GeminiGenerate {
                        model,
                        stream: true,
                    },
                    "embedContent" => Route::GeminiEmbed,
                    "batchEmbedContents" => Route::GeminiBatchEmbed,
                    "countTokens" => Route::GeminiCountTokens,
                    _ => Route::NotFound,
                };
            }
        }
        Route::NotFound
    }

    fn provider(&self) -> Provider {
        match self {
            Route::AnthropicMessages | Route::AnthropicCountTokens | Route::AnthropicModels => {
                Provider::Anthropic
            }
            Route::GeminiGenerate { .. }
            | Route::GeminiEmbed
            | Route::GeminiBatchEmbed
            | Route::GeminiCountTokens
            | Route::GeminiModels => Provider::Gemini,
            _ => Provider::OpenAi,
        }
    }
}

fn parse_body(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Everything needed to answer one instance request.
struct Ctx<'a> {
    stream: &'a TcpStream,
    state: &'a Shared,
    seq: u64,
    keep_alive: bool,
    extra: Vec<(String, String)>,
    spec: Spec,
    provider: Provider,
}

impl Ctx<'_> {
    fn set_status(&self, status: u16) {
        let mut st = lock(self.state);
        if let Some(r) = st.records.iter_mut().rev().find(|r| r.seq == self.seq) {
            r.status = Some(status);
        }
    }

    fn json(&self, status: u16, body: &Value) -> Outcome {
        self.set_status(status);
        let res = write_json(
            &mut &*self.stream,
            status,
            &self.extra,
            body,
            self.keep_alive,
        );
        after_write(res, self.keep_alive)
    }

    fn bad_request(&self, message: &str) -> Outcome {
        self.json(400, &self.provider.bad_request(message))
    }

    /// Status for a successful answer (`status=C` below 400 replaces 200).
    fn ok_status(&self) -> u16 {
        self.spec.status.filter(|s| *s < 400).unwrap_or(200)
    }

    fn stream(&self, plan: &StreamPlan) -> Outcome {
        let status = self.ok_status();
        self.set_status(status);
        let mut w = self.stream;
        if http::write_stream_head(&mut w, status, &self.extra, self.keep_alive).is_err() {
            return Outcome::Close;
        }
        for step in script(plan, &self.spec) {
            match step {
                Step::Sleep(ms) => thread::sleep(Duration::from_millis(ms)),
                Step::Send(text) => {
                    if http::write_chunk(&mut w, text.as_bytes()).is_err() {
                        return Outcome::Close;
                    }
                }
                Step::Cut => return Outcome::Close,
                Step::Stall => return Outcome::Linger,
                Step::Finish => {
                    return after_write(http::write_last_chunk(&mut w), self.keep_alive)
                }
            }
        }
        Outcome::Close
    }
}

fn handle_request(stream: &TcpStream, req: &Request, state: &Shared) -> Outcome {
    let keep_alive = req.keep_alive();
    let path = req.path();
    if path == "/_fake" || path.starts_with("/_fake/") {
        let (status, body) = control(req, state);
        return after_write(
            write_json(&mut &*stream, status, &[], &body, keep_alive),
            keep_alive,
        );
    }
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (instance, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, ""),
    };
    if instance.is_empty() {
        let body = openai::error_body(
            &format!("fake-provider: no instance in path {path}; use /INSTANCE/v1/..."),
            "invalid_request_error",
            Value::Null,
            json!("unknown_url"),
        );
        return after_write(
            write_json(&mut &*stream, 404, &[], &body, keep_alive),
            keep_alive,
        );
    }
    let route = Route::parse(&req.method, rest, req.header("anthropic-version").is_some());
    let body_text = String::from_utf8_lossy(&req.body);

    // Effective spec: header, then body marker, then standing behaviour.
    let mut st = lock(state);
    let spec_str = req
        .header("x-fake-behavior")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| spec_from_body(&body_text, instance))
        .or_else(|| st.standing.get(instance).cloned());
    let parsed = Spec::parse(spec_str.as_deref().unwrap_or(""));
    let counter = st
        .counters
        .entry((instance.to_string(), parsed.id.clone().unwrap_or_default()))
        .or_insert(0);
    *counter += 1;
    let active = parsed.times.is_none_or(|t| *counter <= t);
    let seq = st.next_seq + 1;
    st.next_seq = seq;
    st.records.push(Record {
        seq,
        instance: instance.to_string(),
        method: req.method.clone(),
        path: req.target.clone(),
        headers: req.headers.clone(),
        body: parse_body(&req.body),
        spec: spec_str,
        id: parsed.id.clone(),
        status: None,
        ts_ms: unix_ms(),
    });
    drop(st);

    let mut spec = if active {
        parsed
    } else {
        parsed.without_misbehaviour()
    };
    let presented = |key: &str| {
        ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .filter_map(|h| req.header(h))
            .any(|v| v.contains(key))
    };
    if spec.only_key.as_deref().is_some_and(|k| !presented(k)) {
        spec = spec.without_misbehaviour();
    }
    if spec.reject_key.as_deref().is_some_and(presented) {
        spec.error = Some(ErrorKind::Auth);
    }
    let mut extra = Vec::new();
    if let Some(ra) = &spec.retry_after {
        extra.push(("Retry-After".to_string(), ra.clone()));
    }
    if !spec.unknown.is_empty() {
        extra.push((
            "X-Fake-Unknown-Directives".to_string(),
            spec.unknown.join(" | "),
        ));
    }
    if let Some(ms) = spec.header_delay_ms.filter(|ms| *ms > 0) {
        thread::sleep(Duration::from_millis(ms));
    }
    if spec.reset {
        return Outcome::Reset;
    }
    if spec.hang {
        return Outcome::Linger;
    }
    let ctx = Ctx {
        stream,
        state,
        seq,
        keep_alive,
        extra,
        provider: route.provider(),
        spec,
    };
    answer(&ctx, req, instance, &route)
}

fn model_of(body: &Value) -> Option<String> {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

fn answer(ctx: &Ctx, req: &Request, instance: &str, route: &Route) -> Outcome {
    if *route == Route::NotFound {
        let body = openai::error_body(
            &format!("fake-provider: unknown route {} {}", req.method, req.path()),
            "invalid_request_error",
            Value::Null,
            json!("unknown_url"),
        );
        return ctx.json(404, &body);
    }
    let kind = ctx.spec.error_kind();
    let gemini_block = matches!(route, Route::GeminiGenerate { .. })
        && ctx.spec.status.is_none()
        && matches!(
            kind,
            Some(ErrorKind::ContentPolicy | ErrorKind::PromptBlocked)
        );
    if let (Some(kind), false) = (kind, gemini_block) {
        let (status, body) = ctx.provider.error(kind, ctx.spec.status);
        return ctx.json(status, &body);
    }

    let body: Value = if req.method == "POST" {
        match serde_json::from_slice(&req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return ctx.bad_request("fake-provider: request body must be a JSON object"),
        }
    } else {
        Value::Null
    };
    let status = ctx.ok_status();

    match route {
        Route::OpenAiChat => {
            let Some(model) = model_of(&body) else {
                return ctx.bad_request("you must provide a model parameter");
            };
            let a = Answer::new(
                instance,
                &model,
                openai::prompt_words(&body),
                openai::json_mode(&body),
                openai::first_tool(&body),
                &ctx.spec,
            );
            if body.get("stream") == Some(&Value::Bool(true)) {
                let include_usage =
                    body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
                ctx.stream(&openai::stream_plan(&a, include_usage))
            } else {
                ctx.json(status, &openai::completion_json(&a))
            }
        }
        Route::AnthropicMessages => {
            let Some(model) = model_of(&body) else {
                return ctx.bad_request("model: Field required");
            };
            // Like the real API, a forced `tool_choice` (`{"type":"tool","name":…}`) is obeyed:
            // the answer calls that tool.
            let forced = body
                .pointer("/tool_choice/type")
                .and_then(Value::as_str)
                .filter(|t| *t == "tool")
                .and_then(|_| body.pointer("/tool_choice/name").and_then(Value::as_str))
                .map(str::to_string);
            let mut spec = ctx.spec.clone();
            spec.tool_call |= forced.is_some();
            let a = Answer::new(
                instance,
                &model,
                anthropic::prompt_words(&body),
                false,
                forced.or_else(|| anthropic::first_tool(&body)),
                &spec,
            );
            if body.get("stream") == Some(&Value::Bool(true)) {
                ctx.stream(&anthropic::stream_plan(&a))
            } else {
                ctx.json(status, &anthropic::message_json(&a))
            }
        }
        Route::AnthropicCountTokens => ctx.json(
            status,
            &json!({"input_tokens": anthropic::prompt_words(&body)}),
        ),
        Route::GeminiGenerate { model, stream } => {
            let a = Answer::new(
                instance,
                model,
                gemini::prompt_words(&body),
                gemini::json_mode(&body),
                gemini::first_tool(&body),
                &ctx.spec,
            );
            let sse = req
                .query()
                .split('&')
                .any(|p| p.eq_ignore_ascii_case("alt=sse"));
            let plan = if gemini_block {
                let blocked = gemini::blocked_json(&a, kind == Some(ErrorKind::PromptBlocked));
                if !*stream {
                    return ctx.json(status, &blocked);
                }
                StreamPlan {
                    events: vec![Event::new(
                        EventKind::Other,
                        data_event(&blocked.to_string()),
                    )],
                    malformed: data_event(MALFORMED_DATA),
                    error_event: data_event(&gemini::error(ErrorKind::Overloaded).1.to_string()),
                }
            } else if !*stream {
                return ctx.json(status, &gemini::response_json(&a));
            } else {
                gemini::stream_plan(&a)
            };
            if sse {
                ctx.stream(&plan)
            } else {
                // Without alt=sse the real API streams a JSON array; here it
                // comes as one fixed-length array of the same chunks.
                let chunks: Vec<Value> = plan
                    .events
                    .iter()
                    .filter_map(|e| {
                        e.text
                            .strip_prefix("data: ")
                            .and_then(|d| serde_json::from_str(d.trim_end()).ok())
                    })
                    .collect();
                ctx.json(status, &Value::Array(chunks))
            }
        }
        Route::OpenAiEmbeddings => match openai::embeddings_json(&body, "text-embedding-fake") {
            Ok(v) => ctx.json(status, &v),
            Err(m) => ctx.bad_request(&m),
        },
        Route::GeminiEmbed => match gemini::embed_content_json(&body) {
            Ok(v) => ctx.json(status, &v),
            Err(m) => ctx.bad_request(&m),
        },
        Route::GeminiBatchEmbed => match gemini::batch_embed_json(&body) {
            Ok(v) => ctx.json(status, &v),
            Err(m) => ctx.bad_request(&m),
        },
        Route::GeminiCountTokens => ctx.json(status, &gemini::count_tokens_json(&body)),
        Route::OpenAiModels => ctx.json(status, &openai::models_json(unix_secs())),
        Route::AnthropicModels => ctx.json(status, &anthropic::models_json()),
        Route::GeminiModels => ctx.json(status, &gemini::models_json()),
        Route::NotFound => ctx.json(404, &json!({})),
    }
}

fn ok() -> (u16, Value) {
    (200, json!({"ok": true}))
}

fn control_error(status: u16, message: &str) -> (u16, Value) {
    (
        status,
        openai::error_body(message, "invalid_request_error", Value::Null, Value::Null),
    )
}

fn control(req: &Request, state: &Shared) -> (u16, Value) {
    match (req.method.as_str(), req.path()) {
        ("GET", "/_fake/health") => ok(),
        ("GET", "/_fake/requests") => {
            let filters = query_pairs(req.query());
            let want = |key: &str| {
                filters
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            let (instance, id) = (want("instance"), want("id"));
            let st = lock(state);
            let list: Vec<Value> = st
                .records
                .iter()
                .filter(|r| instance.as_ref().is_none_or(|i| *i == r.instance))
                .filter(|r| id.as_ref().is_none_or(|i| Some(i) == r.id.as_ref()))
                .map(Record::to_json)
                .collect();
            (200, Value::Array(list))
        }
        ("GET", "/_fake/behavior") => {
            let st = lock(state);
            let map: Map<String, Value> = st
                .standing
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            (200, Value::Object(map))
        }
        ("POST", "/_fake/behavior") => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return control_error(400, "body must be JSON"),
            };
            let (Some(instance), Some(spec)) = (
                body.get("instance").and_then(Value::as_str),
                body.get("spec").and_then(Value::as_str),
            ) else {
                return control_error(400, "expected {\"instance\": string, \"spec\": string}");
            };
            let mut st = lock(state);
            if spec.trim().is_empty() {
                st.standing.remove(instance);
            } else {
                st.standing.insert(instance.to_string(), spec.to_string());
            }
            ok()
        }
        ("POST", "/_fake/reset") => {
            let mut st = lock(state);
            st.records.clear();
            st.counters.clear();
            st.standing.clear();
            ok()
        }
        _ => control_error(404, &format!("unknown control route {}", req.path())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("POST", "/v1/chat/completions", false),
            Route::OpenAiChat
        );
        assert_eq!(
            Route::parse("GET", "/v1/models", true),
            Route::AnthropicModels
        );
        assert_eq!(
            Route::parse("GET", "/v1/models", false),
            Route::OpenAiModels
        );
        assert_eq!(
            Route::parse(
                "POST",
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                false
            ),
            Route::GeminiGenerate {
                model: "gemini-2.0-flash".to_string(),
                stream: true
            }
        );
        assert_eq!(
            Route::parse("POST", "/v1beta/models/m%3AgenerateContent", false),
            Route::GeminiGenerate {
                model: "m".to_string(),
                stream: false
            }
        );
        assert_eq!(
            Route::parse("POST", "/v1beta/models/e:batchEmbedContents", false),
            Route::GeminiBatchEmbed
        );
        assert_eq!(
            Route::parse("GET", "/v1/chat/completions", false),
            Route::NotFound
        );
        assert_eq!(
            Route::parse("POST", "/v1beta/models/m:frob", false),
            Route::NotFound
        );
        assert_eq!(Route::NotFound.provider(), Provider::OpenAi);
    }

    #[test]
    fn provider_errors_respect_status_override() {
        let (s, b) = Provider::Gemini.error(ErrorKind::Server, Some(503));
        assert_eq!(s, 503);
        assert_eq!(b["error"]["status"], "UNAVAILABLE");
        let (s, b) = Provider::Anthropic.error(ErrorKind::Overloaded, None);
        assert_eq!(s, 529);
        assert_eq!(b["error"]["type"], "overloaded_error");
        let (s, _) = Provider::OpenAi.error(ErrorKind::RateLimit, Some(420));
        assert_eq!(s, 420);
    }

    #[test]
    fn record_json_merges_duplicate_headers() {
        let r = Record {
            seq: 1,
            instance: "p".into(),
            method: "POST".into(),
            path: "/p/v1/x?y=1".into(),
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            body: json!({"k": 1}),
            spec: None,
            id: None,
            status: Some(200),
            ts_ms: 5,
        };
        let v = r.to_json();
        assert_eq!(v["headers"]["a"], "1, 2");
        assert_eq!(v["spec"], Value::Null);
        assert_eq!(v["path"], "/p/v1/x?y=1");
        assert_eq!(v["status"], 200);
    }
}
