//! Golden fixtures for the Anthropic and Gemini translations, through the public API the edge
//! uses (`build_chat`, `parse_chat_answer_at`, `ChatStream`, `classify_error`).
//!
//! Fixtures live in `tests/fixtures/{anthropic,gemini}/`, written from the providers' published
//! API references; `fake_*` streams are verbatim captures of `crates/fake-provider` so the
//! gateway is known to decode what the local demo and e2e suite send.
//!
//! - `request_*.json`: an OpenAI request → the expected URL, headers, upstream body, warnings.
//! - `response_*.json`: an upstream answer → the expected OpenAI `chat.completion` and usage.
//! - `*.sse` + `*.expected.json`: an upstream stream → the expected OpenAI chunks (each fed whole,
//!   in 7-byte and in 1-byte pieces, which must all give the same bytes), usage, malformed
//!   count, and failure.
//! - `errors.json`: error bodies → failure classes.

use serde_json::{json, Value};
use switchyard_core::chat::ChatRequest;
use switchyard_core::config::{Config, Protocol, ProviderConfig};
use switchyard_core::error::ErrorKind;
use switchyard_core::policy::FailureClass;
use switchyard_core::providers::{build_chat, classify_error, parse_chat_answer_at, ChatStream};
use switchyard_core::sse::SseParser;
use switchyard_core::usage::Usage;

const CREATED: u64 = 1_700_000_000;

fn provider(protocol: Protocol) -> ProviderConfig {
    let config = Config::parse(
        r#"{"providers":[
              {"id":"claude","kind":"anthropic","api_key_secrets":["ANTHROPIC_KEY"]},
              {"id":"gem","kind":"gemini","api_key_secrets":["GEMINI_KEY"]},
              {"id":"oa","kind":"openai","api_key_secrets":["OPENAI_KEY"]}],
            "routes":[{"model":"smart","targets":[{"provider":"claude","model":"c"}]}]}"#,
    )
    .expect("test config is valid");
    let id = match protocol {
        Protocol::Anthropic => "claude",
        Protocol::Gemini => "gem",
        Protocol::OpenAi => "oa",
    };
    config.provider(id).expect("provider exists").clone()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Tool-call arguments and JSON-mode content are JSON texts whose key order is not meaningful:
/// compare them as JSON values.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("arguments" | "content", Value::String(s)) => {
                            match serde_json::from_str::<Value>(s) {
                                Ok(parsed @ (Value::Object(_) | Value::Array(_))) => {
                                    json!({ "$json": parsed })
                                }
                                _ => v.clone(),
                            }
                        }
                        _ => normalize(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn usage_of(v: &Value) -> Option<Usage> {
    if v.is_null() {
        return None;
    }
    let n = |k: &str| v[k].as_u64().expect("usage field");
    Some(Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
        cached_tokens: n("cached_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
    })
}

fn class_of(name: &str) -> FailureClass {
    match name {
        "Retryable" => FailureClass::Retryable,
        "RateLimited" => FailureClass::RateLimited,
        "Timeout" => FailureClass::Timeout,
        "Auth" => FailureClass::Auth,
        "TargetMissing" => FailureClass::TargetMissing,
        "Rejected" => FailureClass::Rejected,
        "ContextLength" => FailureClass::ContextLength,
        "ContentPolicy" => FailureClass::ContentPolicy,
        other => panic!("unknown class {other}"),
    }
}

fn body_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).expect("serialisable"),
    }
}

// ------------------------------------------------------------------------------------------
// Requests
// ------------------------------------------------------------------------------------------

fn check_request(protocol: Protocol, name: &str, text: &str) {
    let f = json(text);
    let req = ChatRequest::parse(f["request"].to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{name}: request does not parse: {e}"));
    let model = f["target_model"].as_str().expect("target_model");
    let up = build_chat(&provider(protocol), model, &req, Some("test-key"))
        .unwrap_or_else(|e| panic!("{name}: build failed: {e}"));
    assert_eq!(up.url, f["url"], "{name}: url");
    for h in f["headers"].as_array().expect("headers") {
        let (k, v) = (h[0].as_str().unwrap(), h[1].as_str().unwrap());
        assert!(
            up.headers.iter().any(|(hk, hv)| *hk == k && hv == v),
            "{name}: header {k}: {v} missing from {:?}",
            up.headers
        );
    }
    let body: Value = serde_json::from_slice(&up.body).expect("upstream body is JSON");
    assert_eq!(
        body,
        f["upstream"],
        "{name}: upstream body\n got: {}\nwant: {}",
        serde_json::to_string_pretty(&body).unwrap(),
        serde_json::to_string_pretty(&f["upstream"]).unwrap()
    );
    let mut warnings = up.warnings.clone();
    warnings.sort();
    let want: Vec<String> = f["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert_eq!(warnings, want, "{name}: warnings");
}

#[test]
fn anthropic_requests() {
    for (name, text) in [
        (
            "request_full",
            include_str!("fixtures/anthropic/request_full.json"),
        ),
        (
            "request_json_mode",
            include_str!("fixtures/anthropic/request_json_mode.json"),
        ),
        (
            "request_reasoning",
            include_str!("fixtures/anthropic/request_reasoning.json"),
        ),
    ] {
        check_request(Protocol::Anthropic, name, text);
    }
}

#[test]
fn gemini_requests() {
    for (name, text) in [
        (
            "request_full",
            include_str!("fixtures/gemini/request_full.json"),
        ),
        (
            "request_json_schema",
            include_str!("fixtures/gemini/request_json_schema.json"),
        ),
        (
            "request_json_object",
            include_str!("fixtures/gemini/request_json_object.json"),
        ),
    ] {
        check_request(Protocol::Gemini, name, text);
    }
}

#[test]
fn openai_requests_carry_no_warnings() {
    let req = ChatRequest::parse(
        br#"{"model":"smart","messages":[{"role":"user","content":"hi"}],"seed":1,"n":3,"logprobs":true}"#,
    )
    .unwrap();
    let up = build_chat(&provider(Protocol::OpenAi), "gpt-x", &req, Some("k")).unwrap();
    assert!(up.warnings.is_empty());
}

/// What each translating target refuses (400 naming the parameter and the target) and what it
/// drops with a warning.
#[test]
fn unsupported_parameters() {
    let base = |extra: Value| {
        let mut body = json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    };
    let refused = [
        (Protocol::Anthropic, json!({"n": 2}), "n"),
        (
            Protocol::Anthropic,
            json!({"temperature": 1.2}),
            "temperature",
        ),
        (
            Protocol::Anthropic,
            json!({"modalities": ["text", "audio"]}),
            "modalities",
        ),
        (Protocol::Gemini, json!({"logprobs": true}), "logprobs"),
        (
            Protocol::Gemini,
            json!({"modalities": ["audio"]}),
            "modalities",
        ),
    ];
    for (protocol, extra, param) in refused {
        let p = provider(protocol);
        let e = build_chat(&p, "target-model-1", &base(extra.clone()), None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter, "{extra}");
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some(param), "{extra}");
        assert!(
            e.message.contains(&format!("`{param}`"))
                && e.message.contains(&p.id)
                && e.message.contains("target-model-1"),
            "{extra}: {e}"
        );
    }
    let warned = [
        (Protocol::Anthropic, json!({"seed": 1}), "seed"),
        (Protocol::Anthropic, json!({"logprobs": true}), "logprobs"),
        (
            Protocol::Anthropic,
            json!({"top_logprobs": 2}),
            "top_logprobs",
        ),
        (
            Protocol::Anthropic,
            json!({"presence_penalty": 1}),
            "presence_penalty",
        ),
        (
            Protocol::Anthropic,
            json!({"frequency_penalty": 1}),
            "frequency_penalty",
        ),
        (
            Protocol::Anthropic,
            json!({"logit_bias": {"1": 1}}),
            "logit_bias",
        ),
        (
            Protocol::Anthropic,
            json!({"service_tier": "flex"}),
            "service_tier",
        ),
        (Protocol::Gemini, json!({"user": "u"}), "user"),
        (
            Protocol::Gemini,
            json!({"logit_bias": {"1": 1}}),
            "logit_bias",
        ),
        (Protocol::Gemini, json!({"top_logprobs": 2}), "top_logprobs"),
    ];
    for (protocol, extra, param) in warned {
        let up = build_chat(&provider(protocol), "m", &base(extra.clone()), None)
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert_eq!(up.warnings.len(), 1, "{extra}: {:?}", up.warnings);
        assert!(
            up.warnings[0].starts_with(&format!("{param} ")),
            "{:?}",
            up.warnings
        );
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(body.get(param).is_none(), "{param} must not be forwarded");
    }
}

// ------------------------------------------------------------------------------------------
// Complete answers
// ------------------------------------------------------------------------------------------

fn check_response(protocol: Protocol, name: &str, text: &str) {
    let f = json(text);
    let a = parse_chat_answer_at(protocol, body_bytes(&f["upstream"]), CREATED)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let got: Value = serde_json::from_slice(&a.body).expect("answer is JSON");
    assert_eq!(
        normalize(&got),
        normalize(&f["expected"]),
        "{name}: answer\n got: {}\nwant: {}",
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&f["expected"]).unwrap()
    );
    assert_eq!(a.usage, usage_of(&f["usage"]), "{name}: usage");
    assert_eq!(
        a.model.as_deref(),
        f["expected"]["model"].as_str(),
        "{name}: model"
    );
}

#[test]
fn anthropic_responses() {
    for (name, text) in [
        (
            "response_text",
            include_str!("fixtures/anthropic/response_text.json"),
        ),
        (
            "response_tool_use",
            include_str!("fixtures/anthropic/response_tool_use.json"),
        ),
        (
            "response_json_mode",
            include_str!("fixtures/anthropic/response_json_mode.json"),
        ),
        (
            "response_limits",
            include_str!("fixtures/anthropic/response_limits.json"),
        ),
        (
            "response_refusal",
            include_str!("fixtures/anthropic/response_refusal.json"),
        ),
    ] {
        check_response(Protocol::Anthropic, name, text);
    }
}

#[test]
fn gemini_responses() {
    for (name, text) in [
        (
            "response_text",
            include_str!("fixtures/gemini/response_text.json"),
        ),
        (
            "response_tool_calls",
            include_str!("fixtures/gemini/response_tool_calls.json"),
        ),
        (
            "response_candidates",
            include_str!("fixtures/gemini/response_candidates.json"),
        ),
        (
            "response_fake_json",
            include_str!("fixtures/gemini/response_fake_json.json"),
        ),
    ] {
        check_response(Protocol::Gemini, name, text);
    }
}

#[test]
fn gemini_answers_that_are_failures() {
    let f = json(include_str!("fixtures/gemini/answer_failures.json"));
    for case in f["cases"].as_array().unwrap() {
        let e = parse_chat_answer_at(Protocol::Gemini, body_bytes(&case["body"]), CREATED)
            .expect_err("must fail");
        assert_eq!(e.class, class_of(case["class"].as_str().unwrap()), "{case}");
        let needle = case["message_contains"].as_str().unwrap();
        assert!(e.message.contains(needle), "{case}: {}", e.message);
    }
}

#[test]
fn anthropic_answer_not_a_message_is_malformed() {
    for body in [&b"<html>"[..], b"{}", b"{\"content\": 5}"] {
        let e = parse_chat_answer_at(Protocol::Anthropic, body.to_vec(), CREATED).unwrap_err();
        assert_eq!(e.class, FailureClass::Retryable);
        assert!(
            e.message.starts_with("malformed upstream answer"),
            "{}",
            e.message
        );
    }
}

// ------------------------------------------------------------------------------------------
// Streams
// ------------------------------------------------------------------------------------------

struct Run {
    out: Vec<u8>,
    result: Result<(), switchyard_core::policy::AttemptFailure>,
    stream: ChatStream,
}

fn run_stream(protocol: Protocol, include_usage: bool, input: &[u8], piece: usize) -> Run {
    let mut stream = ChatStream::new(protocol, include_usage)
        .expect("protocol streams")
        .with_created(CREATED);
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        if let Err(e) = stream.feed(chunk, &mut out) {
            return Run {
                out,
                result: Err(e),
                stream,
            };
        }
    }
    let result = stream.finish(&mut out);
    Run {
        out,
        result,
        stream,
    }
}

/// The `data` of every event the caller would receive.
fn events(out: &[u8]) -> Vec<String> {
    let mut parser = SseParser::new();
    let mut evs = Vec::new();
    parser.push(out, &mut evs).expect("output events are small");
    parser.finish(&mut evs);
    for e in &evs {
        assert!(e.event.is_none(), "OpenAI streams have no event names");
    }
    evs.into_iter().map(|e| e.data).collect()
}

fn check_stream(protocol: Protocol, name: &str, sse: &str, expected: &str) {
    let f = json(expected);
    let include_usage = f["include_usage"].as_bool().expect("include_usage");
    let header = json!({
        "id": f["id"],
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": f["model"],
    });
    let want: Vec<Value> = f["chunks"]
        .as_array()
        .expect("chunks")
        .iter()
        .map(|c| match c {
            Value::String(s) => Value::String(s.clone()),
            Value::Object(o) => {
                let mut full = header.clone();
                for (k, v) in o {
                    full[k] = v.clone();
                }
                normalize(&full)
            }
            other => panic!("{name}: bad expected chunk {other}"),
        })
        .collect();

    let mut first: Option<Vec<u8>> = None;
    for piece in [sse.len(), 7, 1] {
        let run = run_stream(protocol, include_usage, sse.as_bytes(), piece);
        let got: Vec<Value> = events(&run.out)
            .into_iter()
            .map(|d| {
                if d == "[DONE]" {
                    Value::String(d)
                } else {
                    normalize(&serde_json::from_str::<Value>(&d).expect("chunks are JSON"))
                }
            })
            .collect();
        assert_eq!(
            got,
            want,
            "{name} (pieces of {piece}): chunks\n got: {}\nwant: {}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        );
        match &f["error"] {
            Value::Null => {
                if let Err(e) = &run.result {
                    panic!("{name} (pieces of {piece}): unexpected failure {e:?}");
                }
                assert!(
                    run.out.ends_with(b"data: [DONE]\n\n"),
                    "{name}: ends with [DONE]"
                );
                assert!(run.stream.content_started(), "{name}: content started");
            }
            err => {
                let e = run.result.as_ref().expect_err("the stream must fail");
                assert_eq!(e.class, class_of(err["class"].as_str().unwrap()), "{name}");
                let needle = err["message_contains"].as_str().unwrap();
                assert!(e.message.contains(needle), "{name}: {}", e.message);
                assert!(
                    !events(&run.out).iter().any(|d| d == "[DONE]"),
                    "{name}: a failed stream never says [DONE]"
                );
            }
        }
        assert_eq!(run.stream.usage(), usage_of(&f["usage"]), "{name}: usage");
        assert_eq!(
            run.stream.malformed(),
            f["malformed"].as_u64().unwrap() as u32,
            "{name}: malformed count"
        );
        let model = f["model"].as_str().filter(|m| !m.is_empty());
        assert_eq!(run.stream.model(), model, "{name}: model");
        match &first {
            None => first = Some(run.out),
            Some(bytes) => assert_eq!(
                bytes, &run.out,
                "{name}: the chunking of the input changed the output"
            ),
        }
    }
}

macro_rules! stream_case {
    ($dir:literal, $name:literal) => {
        (
            $name,
            include_str!(concat!("fixtures/", $dir, "/", $name, ".sse")),
            include_str!(concat!("fixtures/", $dir, "/", $name, ".expected.json")),
        )
    };
}

#[test]
fn anthropic_streams() {
    for (name, sse, expected) in [
        stream_case!("anthropic", "stream_text"),
        stream_case!("anthropic", "stream_tools"),
        stream_case!("anthropic", "stream_json_mode"),
        stream_case!("anthropic", "stream_rate_limited"),
    ] {
        check_stream(Protocol::Anthropic, name, sse, expected);
    }
}

#[test]
fn anthropic_fake_provider_streams() {
    for (name, sse, expected) in [
        stream_case!("anthropic", "fake_stream_text"),
        stream_case!("anthropic", "fake_stream_tool"),
        stream_case!("anthropic", "fake_stream_malformed"),
        stream_case!("anthropic", "fake_stream_error_event"),
        stream_case!("anthropic", "fake_stream_cut"),
        stream_case!("anthropic", "fake_stream_no_message_stop"),
    ] {
        check_stream(Protocol::Anthropic, name, sse, expected);
    }
}

#[test]
fn gemini_streams() {
    for (name, sse, expected) in [
        stream_case!("gemini", "stream_text"),
        stream_case!("gemini", "stream_tools"),
        stream_case!("gemini", "stream_candidates"),
        stream_case!("gemini", "stream_rate_limited"),
    ] {
        check_stream(Protocol::Gemini, name, sse, expected);
    }
}

#[test]
fn gemini_fake_provider_streams() {
    for (name, sse, expected) in [
        stream_case!("gemini", "fake_stream_text"),
        stream_case!("gemini", "fake_stream_tool"),
        stream_case!("gemini", "fake_stream_malformed"),
        stream_case!("gemini", "fake_stream_error_event"),
        stream_case!("gemini", "fake_stream_cut"),
        stream_case!("gemini", "fake_stream_safety"),
        stream_case!("gemini", "fake_stream_prompt_blocked"),
    ] {
        check_stream(Protocol::Gemini, name, sse, expected);
    }
}

/// Cutting a complete stream anywhere before its stop reason is a truncation; from the stop
/// reason on, the answer is complete.
#[test]
fn truncation_at_every_event_boundary() {
    let cases = [
        (
            Protocol::Anthropic,
            include_str!("fixtures/anthropic/stream_tools.sse"),
            "\"stop_reason\":\"tool_use\"",
        ),
        (
            Protocol::Gemini,
            include_str!("fixtures/gemini/stream_text.sse"),
            "\"finishReason\": \"STOP\"",
        ),
    ];
    for (protocol, sse, stop_marker) in cases {
        let stop_at = sse.find(stop_marker).expect("fixture has a stop reason");
        let boundaries: Vec<usize> = sse
            .match_indices("\n\n")
            .map(|(i, _)| i + 2)
            .chain(sse.match_indices("\r\n\r\n").map(|(i, _)| i + 4))
            .collect();
        assert!(boundaries.len() > 2);
        for cut in boundaries {
            let run = run_stream(protocol, true, &sse.as_bytes()[..cut], 5);
            let has_done = run.out.ends_with(b"data: [DONE]\n\n");
            if cut < stop_at {
                let e = run.result.expect_err("a cut stream fails");
                assert_eq!(e.class, FailureClass::Retryable);
                assert!(!has_done, "{protocol:?} cut at {cut}");
            } else {
                run.result
                    .unwrap_or_else(|e| panic!("{protocol:?} cut at {cut}: {e:?}"));
                assert!(has_done, "{protocol:?} cut at {cut}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

fn check_errors(protocol: Protocol, text: &str) {
    let f = json(text);
    for case in f["cases"].as_array().unwrap() {
        let status = case["status"].as_u64().unwrap() as u16;
        let failure = classify_error(
            protocol,
            status,
            case["retry_after"].as_str(),
            &body_bytes(&case["body"]),
            0,
        );
        assert_eq!(
            failure.class,
            class_of(case["class"].as_str().unwrap()),
            "{protocol:?} {case}"
        );
        assert_eq!(failure.status, Some(status));
        assert_eq!(
            failure.retry_after_ms,
            case["retry_after_ms"].as_u64(),
            "{case}"
        );
        assert!(failure.message.starts_with(&format!("status {status}")));
    }
}

#[test]
fn anthropic_errors() {
    check_errors(
        Protocol::Anthropic,
        include_str!("fixtures/anthropic/errors.json"),
    );
}

#[test]
fn gemini_errors() {
    check_errors(
        Protocol::Gemini,
        include_str!("fixtures/gemini/errors.json"),
    );
}
