//! Starts the real binary on a free port and talks raw HTTP/1.1 to it.

use serde_json::{json, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .args(["--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn fake-provider");
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        panic!("no stdout");
    };
    // The guard owns the child from here on, so a failed assertion kills it.
    let mut server = Server {
        child,
        addr: "127.0.0.1:1".parse().expect("addr"),
        _stdout: BufReader::new(stdout),
    };
    let mut line = String::new();
    server
        ._stdout
        .read_line(&mut line)
        .expect("read first line");
    let addr = line
        .trim()
        .strip_prefix("fake-provider listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    server.addr = addr.parse().expect("socket address");
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0);
    server
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Chunked body ended with the zero-length chunk (or the full
    /// Content-Length arrived).
    complete: bool,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// `data:` payloads of an SSE body, in order.
    fn sse_data(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    /// `event:` names of an SSE body, in order.
    fn sse_events(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_string)
            .collect()
    }
}

struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(server: &Server) -> Conn {
        let writer = TcpStream::connect(server.addr).expect("connect");
        writer
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        Conn { writer, reader }
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: fake\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.writer
            .write_all(req.as_bytes())
            .expect("write request");
    }

    fn line(&mut self) -> io::Result<Option<String>> {
        let mut buf = String::new();
        if self.reader.read_line(&mut buf)? == 0 {
            return Ok(None);
        }
        Ok(Some(buf.trim_end_matches(['\r', '\n']).to_string()))
    }

    fn response(&mut self) -> Response {
        let status_line = self
            .line()
            .expect("status line")
            .expect("connection closed before status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line().expect("header").expect("eof in headers");
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header colon");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
            complete: false,
        };
        if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let Ok(Some(size_line)) = self.line() else {
                    return resp;
                };
                let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
                    panic!("bad chunk size line {size_line:?}");
                };
                if size == 0 {
                    let trailer_end = self.line().expect("after last chunk");
                    assert_eq!(trailer_end.as_deref(), Some(""));
                    resp.complete = true;
                    return resp;
                }
                let mut chunk = vec![0u8; size + 2];
                if self.reader.read_exact(&mut chunk).is_err() {
                    return resp;
                }
                assert_eq!(&chunk[size..], b"\r\n", "chunk not followed by CRLF");
                resp.body.extend_from_slice(&chunk[..size]);
            }
        }
        let len: usize = resp
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .expect("content-length on a non-chunked response");
        resp.body = vec![0u8; len];
        self.reader.read_exact(&mut resp.body).expect("body");
        resp.complete = true;
        resp
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        self.send(method, path, headers, body);
        self.response()
    }
}

fn request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Response {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    Conn::open(server).request(method, path, headers, &body)
}

fn chat_body(content: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": content}
        ]
    })
}

#[test]
fn openai_json_answer_has_exact_content_and_usage() {
    let s = start();
    let r = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[],
        &chat_body("Say hello to me", false),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_some());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-fake-")));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from primary (gpt-4o)."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 7);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 11);
}

#[test]
fn openai_stream_ends_with_done() {
    let s = start();
    let r = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[],
        &chat_body("[[fake:words=3,cached=2]] hi", true),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.complete, "stream body did not end cleanly");
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "w1 w2 w3");
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 5);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

#[test]
fn anthropic_stream_has_the_real_event_sequence() {
    let s = start();
    let body = json!({
        "model": "claude-x",
        "max_tokens": 100,
        "stream": true,
        "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    });
    let r = request(
        &s,
        "POST",
        "/backup/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(
        r.sse_events(),
        vec![
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = r
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).expect("event JSON"))
        .collect();
    assert_eq!(data[0]["message"]["usage"]["input_tokens"], 4);
    let text: String = data
        .iter()
        .filter_map(|d| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from backup (claude-x).");
    assert_eq!(data[8]["delta"]["stop_reason"], "end_turn");
    assert_eq!(data[8]["usage"]["output_tokens"], 4);
}

#[test]
fn gemini_stream_ends_with_stop_and_usage() {
    let s = start();
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [{"role": "user", "parts": [{"text": "hello there friend"}]}]
    });
    let r = request(
        &s,
        "POST",
        "/gem/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        &[("x-fake-behavior", "reasoning=2")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert!(r.complete);
    let data = r.sse_data();
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let chunks: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from gem (gemini-2.0-flash).");
    let last = chunks.last().expect("chunks");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["promptTokenCount"], 5);
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(last["usageMetadata"]["thoughtsTokenCount"], 2);
    assert_eq!(last["usageMetadata"]["totalTokenCount"], 11);
    assert_eq!(last["modelVersion"], "gemini-2.0-flash");
}

#[test]
fn status_with_retry_after_sends_header_and_provider_error() {
    let s = start();
    let r = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[("x-fake-behavior", "status=429,retry_after=2")],
        &chat_body("hi", false),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");

    let r = request(
        &s,
        "POST",
        "/backup/v1/messages",
        &[("x-fake-behavior", "error=overloaded")],
        &json!({"model": "c", "messages": []}),
    );
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
}

#[test]
fn only_key_limits_the_misbehaviour_to_one_key() {
    let s = start();
    let spec = ("x-fake-behavior", "status=503,only_key=bad-one");
    let bad = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[spec, ("authorization", "Bearer key-bad-one")],
        &chat_body("hi", false),
    );
    assert_eq!(bad.status, 503);
    let good = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[spec, ("authorization", "Bearer key-good-two")],
        &chat_body("hi", false),
    );
    assert_eq!(good.status, 200);
    let models = request(
        &s,
        "GET",
        "/primary/v1/models",
        &[spec, ("x-api-key", "bad-one")],
        &Value::Null,
    );
    assert_eq!(models.status, 503, "the model list too");
}

#[test]
fn times_limits_the_misbehaviour() {
    let s = start();
    let body = chat_body(
        "[[fake@primary:status=503,times=1,id=t1]] [[fake@backup:ok]]",
        false,
    );
    let first = request(&s, "POST", "/primary/v1/chat/completions", &[], &body);
    assert_eq!(first.status, 503);
    let second = request(&s, "POST", "/primary/v1/chat/completions", &[], &body);
    assert_eq!(second.status, 200);
    assert_eq!(
        second.json()["choices"][0]["message"]["content"],
        "Hello from primary (gpt-4o)."
    );
    let other = request(&s, "POST", "/backup/v1/chat/completions", &[], &body);
    assert_eq!(other.status, 200);
}

#[test]
fn cut_after_ends_the_body_without_done() {
    let s = start();
    let r = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[("x-fake-behavior", "cut_after=2")],
        &chat_body("hi", true),
    );
    assert_eq!(r.status, 200);
    assert!(!r.complete, "a cut stream must not end with the last chunk");
    let data = r.sse_data();
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let deltas: Vec<String> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(deltas, vec!["Hello", " from"]);
}

#[test]
fn reset_closes_before_any_byte() {
    let s = start();
    let mut conn = Conn::open(&s);
    let body = chat_body("[[fake:reset,id=r1]]", false).to_string();
    conn.send("POST", "/primary/v1/chat/completions", &[], &body);
    let mut buf = [0u8; 64];
    match conn.reader.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {n} bytes before the reset: {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "unexpected error {e:?}"
        ),
    }
    let recs = request(&s, "GET", "/_fake/requests?id=r1", &[], &Value::Null).json();
    assert_eq!(recs.as_array().map(Vec::len), Some(1));
    assert_eq!(recs[0]["status"], Value::Null);
}

#[test]
fn records_filter_by_id_and_instance() {
    let s = start();
    for (instance, id) in [("primary", "a"), ("primary", "b"), ("backup", "a")] {
        let r = request(
            &s,
            "POST",
            &format!("/{instance}/v1/chat/completions?x=1"),
            &[("x-fake-behavior", &format!("id={id}")), ("X-Trace", "t")],
            &chat_body("hi", false),
        );
        assert_eq!(r.status, 200);
    }
    let all = request(&s, "GET", "/_fake/requests", &[], &Value::Null).json();
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    let a = request(&s, "GET", "/_fake/requests?id=a", &[], &Value::Null).json();
    let a = a.as_array().expect("array");
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|r| r["id"] == "a"));
    assert_eq!(a[0]["instance"], "primary");
    assert_eq!(a[1]["instance"], "backup");
    assert!(a[0]["seq"].as_u64() < a[1]["seq"].as_u64());
    assert_eq!(a[0]["path"], "/primary/v1/chat/completions?x=1");
    assert_eq!(a[0]["headers"]["x-trace"], "t");
    assert_eq!(a[0]["body"]["model"], "gpt-4o");
    assert_eq!(a[0]["spec"], "id=a");
    assert_eq!(a[0]["status"], 200);
    let both = request(
        &s,
        "GET",
        "/_fake/requests?instance=backup&id=a",
        &[],
        &Value::Null,
    )
    .json();
    assert_eq!(both.as_array().map(Vec::len), Some(1));
    assert_eq!(both[0]["instance"], "backup");

    let reset = request(&s, "POST", "/_fake/reset", &[], &json!({}));
    assert_eq!(reset.status, 200);
    let none = request(&s, "GET", "/_fake/requests", &[], &Value::Null).json();
    assert_eq!(none, json!([]));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = start();
    let mut conn = Conn::open(&s);
    let body = chat_body("one", true).to_string();
    let first = conn.request("POST", "/primary/v1/chat/completions", &[], &body);
    assert_eq!(first.status, 200);
    assert!(first.complete);
    let body = chat_body("two", false).to_string();
    let second = conn.request("POST", "/backup/v1/chat/completions", &[], &body);
    assert_eq!(second.status, 200);
    assert_eq!(
        second.json()["choices"][0]["message"]["content"],
        "Hello from backup (gpt-4o)."
    );
    let third = conn.request("GET", "/_fake/health", &[], "");
    assert_eq!(third.json(), json!({"ok": true}));
}

#[test]
fn standing_behaviour_and_chunked_request_bodies() {
    let s = start();
    let set = request(
        &s,
        "POST",
        "/_fake/behavior",
        &[],
        &json!({"instance": "primary", "spec": "error=server"}),
    );
    assert_eq!(set.status, 200);
    let failing = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[],
        &chat_body("x", false),
    );
    assert_eq!(failing.status, 500);
    let overridden = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[("x-fake-behavior", "ok")],
        &chat_body("x", false),
    );
    assert_eq!(overridden.status, 200);

    // Chunked request body, on a Gemini route of another instance.
    let body = json!({"contents": [{"parts": [{"text": "a b"}]}]}).to_string();
    let (head, tail) = body.split_at(10);
    let mut conn = Conn::open(&s);
    let raw = format!(
        "POST /other/v1beta/models/gm:generateContent HTTP/1.1\r\nHost: fake\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );
    conn.writer.write_all(raw.as_bytes()).expect("write");
    let r = conn.response();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from other (gm)."
    );
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 2);

    let clear = request(
        &s,
        "POST",
        "/_fake/behavior",
        &[],
        &json!({"instance": "primary", "spec": ""}),
    );
    assert_eq!(clear.status, 200);
    let healthy = request(
        &s,
        "POST",
        "/primary/v1/chat/completions",
        &[],
        &chat_body("x", false),
    );
    assert_eq!(healthy.status, 200);
}

#[test]
fn unknown_path_is_an_openai_shaped_404() {
    let s = start();
    let r = request(&s, "GET", "/primary/v2/nothing", &[], &Value::Null);
    assert_eq!(r.status, 404);
    let v = r.json();
    assert!(v["error"]["message"].is_string());
    assert!(v["error"].get("type").is_some());
}
