use super::*;
use crate::error::{ErrorKind, GatewayError};
use crate::providers::openai::{stream_error_event, OpenAiStream};
use crate::providers::EventDecoder;
use serde_json::json;

fn req(v: Value) -> ChatRequest {
    ChatRequest::parse(v.to_string().as_bytes()).expect("test request is valid")
}

fn greedy() -> Value {
    json!({"model": "small", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
}

fn on() -> CachePolicy {
    CachePolicy {
        enabled: true,
        ..Default::default()
    }
}

fn no_headers() -> CacheHeaders {
    CacheHeaders::default()
}

// ---------------------------------------------------------------------------------------------
// Policy

/// A policy as the config reader reads `routes[0].cache`.
fn policy(text: &str) -> Result<CachePolicy, ConfigError> {
    let v: Value = serde_json::from_str(text).expect("test policy is JSON");
    CachePolicy::read(&v, "routes[0].cache".into())
}

#[test]
fn policy_defaults_and_unknown_fields() {
    let p: CachePolicy = policy("{}").unwrap();
    assert_eq!(p, CachePolicy::default());
    assert!(!p.enabled && p.ttl_s == 3600 && p.stale_if_error_s == 0);
    assert!(!p.cache_tool_calls && !p.allow_nondeterministic && p.shared_namespace.is_none());
    p.validate("routes[0].cache").unwrap();
    let e = policy(r#"{"ttl":5}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `ttl`"), "{e}");
    assert_eq!(e.path, "routes[0].cache.ttl");
    assert!(policy(r#"{"ttl_s":-1}"#).is_err());
    assert!(policy(r#"{"ttl_s":4294967296}"#).is_err());
    assert!(policy(r#"{"enabled":null}"#).is_err());
    assert!(policy("[]").is_err());
    let full: CachePolicy = policy(
        r#"{"enabled":true,"ttl_s":60,"shared_namespace":"docs","cache_tool_calls":true,
            "allow_nondeterministic":true,"stale_if_error_s":600}"#,
    )
    .unwrap();
    full.validate("routes[0].cache").unwrap();
    assert!(full.enabled && full.cache_tool_calls && full.allow_nondeterministic);
    assert_eq!((full.ttl_s, full.stale_if_error_s), (60, 600));
    assert_eq!(full.shared_namespace.as_deref(), Some("docs"));
}

#[test]
fn policy_errors_name_the_field() {
    let at = "routes[0].cache";
    let read = |text: &str| CachePolicy::read(&serde_json::from_str(text).unwrap(), at.into());
    assert_eq!(read("{}"), Ok(CachePolicy::default()));
    let full = r#"{"enabled":true,"ttl_s":60,"shared_namespace":"docs","cache_tool_calls":true,
        "allow_nondeterministic":true,"stale_if_error_s":600}"#;
    let expected = CachePolicy {
        enabled: true,
        ttl_s: 60,
        shared_namespace: Some("docs".into()),
        cache_tool_calls: true,
        allow_nondeterministic: true,
        stale_if_error_s: 600,
    };
    assert_eq!(read(full), Ok(expected));
    assert_eq!(
        read(r#"{"shared_namespace":null}"#),
        Ok(CachePolicy::default())
    );
    let path = |text: &str| read(text).unwrap_err().path;
    for (bad, field) in [
        (r#"{"ttl":5}"#, "ttl"),
        (r#"{"ttl_s":-1}"#, "ttl_s"),
        (r#"{"ttl_s":1.5}"#, "ttl_s"),
        (r#"{"ttl_s":4294967296}"#, "ttl_s"),
        (r#"{"stale_if_error_s":"1"}"#, "stale_if_error_s"),
        (r#"{"enabled":"yes"}"#, "enabled"),
        (r#"{"cache_tool_calls":1}"#, "cache_tool_calls"),
        (r#"{"allow_nondeterministic":[]}"#, "allow_nondeterministic"),
        (r#"{"shared_namespace":5}"#, "shared_namespace"),
    ] {
        assert_eq!(path(bad), format!("{at}.{field}"), "{bad}");
    }
    assert_eq!(path("[]"), at);
    assert_eq!(path("true"), at);
    assert!(read(r#"{"ttl":5}"#)
        .unwrap_err()
        .to_string()
        .contains("unknown field"));
}

#[test]
fn policy_validation_names_the_field() {
    let at = "routes[2].cache";
    let check = |p: CachePolicy| p.validate(at).unwrap_err().path;
    assert_eq!(
        check(CachePolicy { ttl_s: 0, ..on() }),
        "routes[2].cache.ttl_s"
    );
    assert_eq!(
        check(CachePolicy {
            ttl_s: MAX_TTL_S + 1,
            ..on()
        }),
        "routes[2].cache.ttl_s"
    );
    assert_eq!(
        check(CachePolicy {
            stale_if_error_s: MAX_TTL_S + 1,
            ..on()
        }),
        "routes[2].cache.stale_if_error_s"
    );
    for bad in ["", "a:b", "with space", &"x".repeat(65)] {
        let p = CachePolicy {
            shared_namespace: Some(bad.into()),
            ..on()
        };
        assert_eq!(check(p), "routes[2].cache.shared_namespace");
    }
}

// ---------------------------------------------------------------------------------------------
// Headers

#[test]
fn cache_control_directives() {
    let cc = |v: &str| {
        let h = CacheHeaders::parse(Some(v), None, None).unwrap();
        (h.no_cache, h.no_store)
    };
    assert_eq!(cc("no-cache"), (true, false));
    assert_eq!(cc("No-Store"), (false, true));
    assert_eq!(cc("no-cache, no-store"), (true, true));
    assert_eq!(cc("max-age=0,NO-STORE ,  no-cache"), (true, true));
    assert_eq!(cc("no-cache=\"set-cookie\""), (true, false));
    assert_eq!(cc("private, max-age=60"), (false, false));
    assert_eq!(cc("no-cachex, xno-store"), (false, false));
    assert_eq!(cc(""), (false, false));
    assert_eq!(CacheHeaders::parse(None, None, None).unwrap(), no_headers());
}

#[test]
fn ttl_header() {
    let ttl = |v: &str| CacheHeaders::parse(None, Some(v), None).map(|h| h.ttl_s);
    assert_eq!(ttl("60"), Ok(Some(60)));
    assert_eq!(ttl(" 1 "), Ok(Some(1)));
    assert_eq!(ttl("31536000"), Ok(Some(MAX_TTL_S)));
    for bad in [
        "",
        "0",
        "-1",
        "+5",
        "1.5",
        "abc",
        "31536001",
        "99999999999999",
        "1e3",
    ] {
        let e: GatewayError = ttl(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{bad}");
        assert_eq!(e.status(), 400);
        assert_eq!(e.param.as_deref(), Some(HEADER_TTL));
        assert!(e.message.contains("x-switchyard-cache-ttl"), "{e}");
    }
}

#[test]
fn namespace_header() {
    let ns = |v: &str| CacheHeaders::parse(None, None, Some(v)).map(|h| h.namespace);
    assert_eq!(ns("exp-1.a_B"), Ok(Some("exp-1.a_B".into())));
    assert_eq!(ns(" team "), Ok(Some("team".into())));
    for bad in ["", "a:b", "a b", "ü", "a/b", &"n".repeat(65)] {
        let e = ns(bad).unwrap_err();
        assert_eq!(e.status(), 400, "{bad:?}");
        assert_eq!(e.param.as_deref(), Some(HEADER_NAMESPACE));
    }
    // The echoed value is bounded.
    let e = ns(&"?".repeat(10_000)).unwrap_err();
    assert!(e.message.len() < 200, "{}", e.message);
}

// ---------------------------------------------------------------------------------------------
// Decisions

#[test]
fn only_enabled_deterministic_requests_are_cached_by_default() {
    let d = decide(&on(), "small", &req(greedy()), &no_headers(), "acme");
    assert!(d.read && d.write && d.bypass.is_none());
    assert_eq!((d.ttl_s, d.stale_s), (3600, 0));
    assert!(d.key.starts_with("c1:t:acme::"), "{}", d.key);
    assert_eq!(d.upstream_status(), CacheStatus::Miss);

    let off = decide(
        &CachePolicy::default(),
        "small",
        &req(greedy()),
        &no_headers(),
        "acme",
    );
    assert!(!off.read && !off.write && off.key.is_empty());
    assert_eq!(off.upstream_status(), CacheStatus::Bypass);

    for temp in [json!(null), json!(0.7)] {
        let mut v = greedy();
        v["temperature"] = temp;
        let d = decide(&on(), "small", &req(v.clone()), &no_headers(), "acme");
        assert!(!d.read && !d.write, "{v}");
        assert!(d.bypass.unwrap().contains("deterministic"));
    }
    let mut top_p = greedy();
    top_p["temperature"] = Value::Null;
    top_p["top_p"] = json!(0);
    assert!(!decide(&on(), "small", &req(top_p), &no_headers(), "acme").write);
    let mut float_zero = greedy();
    float_zero["temperature"] = json!(0.0);
    assert!(decide(&on(), "small", &req(float_zero), &no_headers(), "acme").write);
}

#[test]
fn opt_ins_for_nondeterministic_requests() {
    let mut v = greedy();
    v["temperature"] = json!(0.9);
    let r = req(v);
    let allow = CachePolicy {
        allow_nondeterministic: true,
        ..on()
    };
    assert!(decide(&allow, "small", &r, &no_headers(), "acme").write);
    let h = CacheHeaders::parse(None, Some("120"), None).unwrap();
    let d = decide(&on(), "small", &r, &h, "acme");
    assert!(d.read && d.write);
    assert_eq!(d.ttl_s, 120, "the header sets the TTL");
    // The header does not turn on a disabled route.
    assert!(!decide(&CachePolicy::default(), "small", &r, &h, "acme").write);
}

#[test]
fn n_above_one_needs_temperature_zero() {
    let mut v = greedy();
    v["n"] = json!(2);
    assert!(decide(&on(), "small", &req(v.clone()), &no_headers(), "acme").write);
    v["temperature"] = json!(1);
    let allow = CachePolicy {
        allow_nondeterministic: true,
        ..on()
    };
    let h = CacheHeaders::parse(None, Some("60"), None).unwrap();
    for (p, h) in [(&allow, &no_headers()), (&on(), &h)] {
        let d = decide(p, "small", &req(v.clone()), h, "acme");
        assert!(!d.read && !d.write);
        assert_eq!(d.bypass, Some("n > 1 without temperature 0"));
    }
}

#[test]
fn cache_control_shapes_the_decision() {
    let r = req(greedy());
    let d = |cc: &str| {
        decide(
            &on(),
            "small",
            &r,
            &CacheHeaders::parse(Some(cc), None, None).unwrap(),
            "t",
        )
    };
    let nc = d("no-cache");
    assert!(!nc.read && nc.write && !nc.key.is_empty());
    assert_eq!(nc.upstream_status(), CacheStatus::Miss);
    let ns = d("no-store");
    assert!(ns.read && !ns.write);
    let both = d("no-store, no-cache");
    assert!(!both.read && !both.write);
    assert_eq!(both.upstream_status(), CacheStatus::Bypass);
}

#[test]
fn scopes_tenants_namespaces_and_streams() {
    let r = req(greedy());
    let key = |p: &CachePolicy, h: &CacheHeaders, t: &str| decide(p, "small", &r, h, t).key;
    let a = key(&on(), &no_headers(), "acme");
    let b = key(&on(), &no_headers(), "globex");
    assert_ne!(a, b, "tenants never share entries");
    assert!(a.starts_with(&tenant_prefix("acme")) && !b.starts_with(&tenant_prefix("acme")));

    let shared = CachePolicy {
        shared_namespace: Some("docs".into()),
        ..on()
    };
    assert_eq!(
        key(&shared, &no_headers(), "acme"),
        key(&shared, &no_headers(), "globex")
    );
    assert!(key(&shared, &no_headers(), "acme").starts_with("c1:s:docs::"));

    let ns = CacheHeaders::parse(None, None, Some("exp")).unwrap();
    let partitioned = key(&on(), &ns, "acme");
    assert_ne!(partitioned, a);
    assert!(partitioned.starts_with("c1:t:acme:exp:"));
    assert_eq!(
        partitioned.rsplit(':').next(),
        a.rsplit(':').next(),
        "same request hash"
    );

    // A streamed and a plain request share an entry; the TTL header is not part of the key.
    let mut s = greedy();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let ttl = CacheHeaders::parse(None, Some("5"), None).unwrap();
    assert_eq!(decide(&on(), "small", &req(s), &ttl, "acme").key, a);
    // Another route, another entry.
    assert_ne!(decide(&on(), "big", &r, &no_headers(), "acme").key, a);
}

#[test]
fn kv_expiration_covers_ttl_and_stale_window() {
    let mut d = decide(&on(), "small", &req(greedy()), &no_headers(), "acme");
    assert_eq!(d.kv_expiration_ttl(), 3600);
    d.stale_s = 600;
    assert_eq!(d.kv_expiration_ttl(), 4200);
    d.ttl_s = 5;
    d.stale_s = 0;
    assert_eq!(d.kv_expiration_ttl(), KV_MIN_EXPIRATION_TTL_S);
    assert_eq!(CacheStatus::Stale.as_str(), "STALE");
    assert_eq!(CacheStatus::Hit.as_str(), "HIT");
}

// ---------------------------------------------------------------------------------------------
// Storing

fn text_completion(content: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                        "logprobs": null, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
                     "prompt_tokens_details": {"cached_tokens": 0},
                     "completion_tokens_details": {"reasoning_tokens": 0}}})
}

fn tool_completion() -> Value {
    json!({"id": "chatcmpl-2", "object": "chat.completion", "created": 1700000000, "model": "gpt-x",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
               "tool_calls": [
                   {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                   {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
               "logprobs": null, "finish_reason": "tool_calls"}]})
}

#[test]
fn store_and_serve_a_plain_answer() {
    let d = decide(&on(), "small", &req(greedy()), &no_headers(), "acme");
    let bytes = d
        .store(5_000, "oa", "gpt-x", None, text_completion("Hello"))
        .unwrap();
    let e = Entry::decode(&bytes).unwrap();
    assert_eq!((e.provider.as_str(), e.model.as_str()), ("oa", "gpt-x"));
    assert_eq!((e.created_ms, e.ttl_s, e.stale_s), (5_000, 3600, 0));
    assert_eq!(e.usage().total_tokens(), 12, "usage read from the body");
    assert_eq!(e.freshness(5_000 + 3_599_999), Freshness::Fresh);
    let served: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(served, text_completion("Hello"), "id and created kept");
}

#[test]
fn store_fills_usage_from_the_stream() {
    let d = decide(&on(), "small", &req(greedy()), &no_headers(), "acme");
    let mut c = text_completion("Hi");
    c.as_object_mut().unwrap().remove("usage");
    let usage = Usage {
        prompt_tokens: 4,
        completion_tokens: 1,
        ..Default::default()
    };
    let e = Entry::decode(&d.store(0, "oa", "gpt-x", Some(usage), c).unwrap()).unwrap();
    assert_eq!(e.usage().prompt_tokens, 4);
    assert_eq!(e.completion["usage"]["total_tokens"], 5);
}

#[test]
fn what_is_never_stored() {
    let r = req(greedy());
    let d = decide(&on(), "small", &r, &no_headers(), "acme");
    assert!(d.store(0, "oa", "m", None, tool_completion()).is_err());
    let tools_on = CachePolicy {
        cache_tool_calls: true,
        ..on()
    };
    let dt = decide(&tools_on, "small", &r, &no_headers(), "acme");
    assert!(dt.store(0, "oa", "m", None, tool_completion()).is_ok());
    let nostore = decide(
        &on(),
        "small",
        &r,
        &CacheHeaders::parse(Some("no-store"), None, None).unwrap(),
        "acme",
    );
    assert!(nostore
        .store(0, "oa", "m", None, text_completion("x"))
        .is_err());
    let error = json!({"error": {"message": "boom"}});
    assert!(d.store(0, "oa", "m", None, error).is_err());
    let big = text_completion(&"x".repeat(MAX_ENTRY_BYTES));
    assert_eq!(
        d.store(0, "oa", "m", None, big),
        Err("larger than the KV value limit")
    );
}

// ---------------------------------------------------------------------------------------------
// Streams

fn frames(chunks: &[Value]) -> String {
    let mut s = String::new();
    for c in chunks {
        s.push_str(&format!("data: {c}\n\n"));
    }
    s
}

fn chunk(choices: Value) -> Value {
    json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1700000001,
           "model": "gpt-x", "system_fingerprint": "fp_1", "choices": choices})
}

fn delta(index: u64, d: Value, finish: Value) -> Value {
    chunk(json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": finish}]))
}

const USAGE: &str = r#"{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}"#;

fn usage_chunk() -> Value {
    let mut c = chunk(json!([]));
    c["usage"] = serde_json::from_str(USAGE).unwrap();
    c
}

/// An OpenAI-like stream with two choices interleaved, text and tool calls.
fn rich_stream() -> String {
    let mut s = frames(&[
        delta(0, json!({"role": "assistant", "content": ""}), Value::Null),
        delta(
            1,
            json!({"role": "assistant", "content": null}),
            Value::Null,
        ),
        delta(0, json!({"content": "Hello, "}), Value::Null),
        delta(
            1,
            json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                        "function": {"name": "weather", "arguments": ""}}]}),
            Value::Null,
        ),
        delta(0, json!({"content": "wörld!"}), Value::Null),
        delta(
            1,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\""}}]}),
            Value::Null,
        ),
        delta(
            1,
            json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                        "function": {"name": "time", "arguments": "{}"}}]}),
            Value::Null,
        ),
        delta(
            1,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": ":\"Paris\"}"}}]}),
            Value::Null,
        ),
        delta(0, json!({}), json!("stop")),
        delta(1, json!({}), json!("tool_calls")),
        usage_chunk(),
    ]);
    s.push_str("data: [DONE]\n\n");
    s
}

fn accumulate(input: &str, piece: usize) -> Result<Value, &'static str> {
    let mut acc = StreamAccumulator::new();
    for c in input.as_bytes().chunks(piece) {
        acc.feed(c);
    }
    acc.finish()
}

#[test]
fn accumulator_assembles_choices_and_tool_calls() {
    let expected = json!({
        "id": "chatcmpl-s", "object": "chat.completion", "created": 1700000001, "model": "gpt-x",
        "system_fingerprint": "fp_1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello, wörld!", "refusal": null},
             "logprobs": null, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
             "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": serde_json::from_str::<Value>(USAGE).unwrap(),
    });
    let input = rich_stream();
    for piece in [1, 3, 17, 4096] {
        assert_eq!(
            accumulate(&input, piece).unwrap(),
            expected,
            "piece {piece}"
        );
    }
}

#[test]
fn accumulator_keeps_reasoning_refusal_and_logprobs() {
    let lp = |t: &str| json!({"content": [{"token": t, "logprob": -0.1, "bytes": null, "top_logprobs": []}], "refusal": null});
    let mut c1 = delta(0, json!({"role": "assistant", "content": "A"}), Value::Null);
    c1["choices"][0]["logprobs"] = lp("A");
    let mut c2 = delta(0, json!({"content": "B"}), Value::Null);
    c2["choices"][0]["logprobs"] = lp("B");
    let input = frames(&[
        delta(0, json!({"reasoning_content": "think "}), Value::Null),
        delta(0, json!({"reasoning_content": "more"}), Value::Null),
        c1,
        c2,
        delta(0, json!({}), json!("stop")),
    ]);
    let c = accumulate(&input, 7).unwrap();
    let m = &c["choices"][0]["message"];
    assert_eq!(m["content"], "AB");
    assert_eq!(m["reasoning_content"], "think more");
    let tokens: Vec<&str> = c["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["A", "B"]);
    assert!(c.get("usage").is_none(), "no usage chunk, no usage");

    let refusal = frames(&[
        delta(
            0,
            json!({"role": "assistant", "refusal": "I can't "}),
            Value::Null,
        ),
        delta(0, json!({"refusal": "help."}), json!("stop")),
    ]);
    let c = accumulate(&refusal, 64).unwrap();
    assert_eq!(c["choices"][0]["message"]["refusal"], "I can't help.");
    assert!(c["choices"][0]["message"]["content"].is_null());
}

#[test]
fn broken_streams_are_never_complete() {
    let role = delta(0, json!({"role": "assistant", "content": ""}), Value::Null);
    let text = delta(0, json!({"content": "Hel"}), Value::Null);
    let stop = delta(0, json!({}), json!("stop"));
    let cut = frames(&[role.clone(), text.clone()]);
    assert!(accumulate(&cut, 5).is_err(), "no finish_reason");
    // The gateway's in-band error event after a break.
    let err = GatewayError::new(ErrorKind::UpstreamError, "broke");
    let mut with_error = cut.clone();
    with_error.push_str(std::str::from_utf8(&stream_error_event(&err)).unwrap());
    assert_eq!(
        accumulate(&with_error, 5),
        Err("the stream carried an error")
    );
    // Even an error after a finish.
    let mut late = frames(&[role.clone(), text.clone(), stop.clone()]);
    late.push_str(std::str::from_utf8(&stream_error_event(&err)).unwrap());
    assert!(accumulate(&late, 64).is_err());
    // Malformed data, a missing choice, a field that cannot be replayed.
    let malformed = format!(
        "{}data: {{oops\n\n{}",
        frames(std::slice::from_ref(&role)),
        frames(std::slice::from_ref(&stop))
    );
    assert!(accumulate(&malformed, 64).is_err());
    let gap = frames(&[delta(1, json!({"content": "x"}), json!("stop"))]);
    assert_eq!(accumulate(&gap, 64), Err("a choice index is missing"));
    let odd = frames(&[delta(0, json!({"audio": {"id": "a"}}), json!("stop"))]);
    assert!(accumulate(&odd, 64).is_err());
    let one_unfinished = frames(&[
        delta(0, json!({"content": "a"}), json!("stop")),
        delta(1, json!({"content": "b"}), Value::Null),
    ]);
    assert!(accumulate(&one_unfinished, 64).is_err());
    assert_eq!(accumulate("data: [DONE]\n\n", 64), Err("no choices"));
    // Complete without [DONE] (the gateway finalises such streams itself).
    let mut acc = StreamAccumulator::new();
    acc.feed(frames(&[role, text, stop]).as_bytes());
    assert!(!acc.saw_done());
    assert_eq!(
        acc.finish().unwrap()["choices"][0]["message"]["content"],
        "Hel"
    );
}

#[test]
fn oversized_streams_are_not_kept() {
    let piece = "x".repeat(4 * 1024 * 1024 - 1024);
    let mut acc = StreamAccumulator::new();
    for _ in 0..=(MAX_ENTRY_BYTES / piece.len()) {
        acc.feed(frames(&[delta(0, json!({"content": piece}), Value::Null)]).as_bytes());
    }
    acc.feed(frames(&[delta(0, json!({}), json!("stop"))]).as_bytes());
    assert_eq!(
        acc.finish(),
        Err("the answer is larger than the KV value limit")
    );
}

fn events(sse: &[u8]) -> Vec<String> {
    let mut p = crate::sse::SseParser::new();
    let mut out = Vec::new();
    p.push(sse, &mut out).unwrap();
    p.finish(&mut out);
    out.into_iter().map(|e| e.data).collect()
}

#[test]
fn replay_has_the_openai_stream_shape() {
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(5);
    let sse = replay_sse(&text_completion(&long), false);
    let text = String::from_utf8(sse.clone()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(text
        .split("\n\n")
        .all(|f| f.is_empty() || f.starts_with("data: ")));
    let evs = events(&sse);
    assert_eq!(evs.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(
            (c["id"].as_str(), c["model"].as_str()),
            (Some("chatcmpl-1"), Some("gpt-x"))
        );
        assert_eq!(c["created"], 1700000000);
        assert!(c.get("usage").is_none(), "no usage unless asked");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let pieces: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert!(pieces.len() > 3 && pieces.iter().all(|p| p.len() <= PIECE_BYTES));
    assert!(
        pieces[..pieces.len() - 1].iter().all(|p| p.ends_with(' ')),
        "cut at words"
    );
    assert_eq!(pieces.concat(), long);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));

    let with_usage = events(&replay_sse(&text_completion("hi"), true));
    let usage: Value = serde_json::from_str(&with_usage[with_usage.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 12);
    assert_eq!(with_usage.last().unwrap(), "[DONE]");
}

#[test]
fn replay_streams_tool_calls() {
    let evs = events(&replay_sse(&tool_completion(), false));
    let deltas: Vec<Value> = evs[..evs.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(
        deltas[1],
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "weather", "arguments": ""}}]})
    );
    assert_eq!(
        deltas[2],
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]})
    );
    assert_eq!(deltas[3]["tool_calls"][0]["index"], 1);
}

#[test]
fn pieces_respect_characters_and_words() {
    let s = "é".repeat(100);
    let p: Vec<&str> = pieces(&s).collect();
    assert!(p.iter().all(|x| x.len() <= PIECE_BYTES && !x.is_empty()));
    assert_eq!(p.concat(), s);
    assert_eq!(pieces("").count(), 0);
    assert_eq!(pieces("short").collect::<Vec<_>>(), ["short"]);
    let words = format!("{} tail", "a".repeat(70));
    assert_eq!(pieces(&words).collect::<String>(), words);
}

#[test]
fn round_trip_stream_accumulate_replay_accumulate() {
    let first = accumulate(&rich_stream(), 11).unwrap();
    let replayed = replay_sse(&first, true);
    let second = accumulate(std::str::from_utf8(&replayed).unwrap(), 13).unwrap();
    assert_eq!(second, first);
}

#[test]
fn round_trip_with_reasoning_and_logprobs() {
    let mut c = text_completion(&"word ".repeat(40));
    c["choices"][0]["message"]["reasoning_content"] = json!("because");
    c["choices"][0]["logprobs"] =
        json!({"content": [{"token": "w", "logprob": -1.0}], "refusal": null});
    let back = accumulate(std::str::from_utf8(&replay_sse(&c, true)).unwrap(), 64).unwrap();
    assert_eq!(back, c);
}

#[test]
fn a_plain_answer_serves_a_stream_and_a_stream_serves_a_plain_request() {
    let d = decide(&on(), "small", &req(greedy()), &no_headers(), "acme");
    // Stored from a non-streamed answer, served to a streaming caller.
    for stored in [text_completion("Bonjour tout le monde"), tool_completion()] {
        let dt = CacheDecision {
            cache_tool_calls: true,
            ..d.clone()
        };
        let e = Entry::decode(&dt.store(0, "oa", "gpt-x", None, stored.clone()).unwrap()).unwrap();
        let got = accumulate(std::str::from_utf8(&e.replay(true)).unwrap(), 64).unwrap();
        let mut want = stored.clone();
        if want.get("usage").is_none() {
            want["usage"] = Usage::default().to_openai();
        }
        assert_eq!(got, want);
    }
    // Stored from a stream, served to a non-streaming caller.
    let text_only = frames(&[
        delta(0, json!({"role": "assistant", "content": ""}), Value::Null),
        delta(0, json!({"content": "Salut"}), Value::Null),
        delta(0, json!({}), json!("stop")),
        usage_chunk(),
    ]);
    let completion = accumulate(&text_only, 9).unwrap();
    let e = Entry::decode(&d.store(0, "oa", "gpt-x", None, completion.clone()).unwrap()).unwrap();
    let body: Value = serde_json::from_slice(&e.body()).unwrap();
    assert_eq!(body, completion);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Salut");
    assert_eq!(e.usage().total_tokens(), 9);
}

#[test]
fn accumulates_what_the_gateway_relays() {
    // The relay hides the usage chunk from a caller that did not ask; usage comes from the
    // provider stream instead.
    let upstream = rich_stream();
    let mut relay = OpenAiStream::new(false);
    let mut acc = StreamAccumulator::new();
    for piece in upstream.as_bytes().chunks(29) {
        let mut out = Vec::new();
        relay.feed(piece, &mut out).unwrap();
        acc.feed(&out);
    }
    let mut out = Vec::new();
    relay.finish(&mut out).unwrap();
    acc.feed(&out);
    let completion = acc.finish().unwrap();
    assert!(completion.get("usage").is_none());
    let tools_on = CachePolicy {
        cache_tool_calls: true,
        ..on()
    };
    let d = decide(&tools_on, "small", &req(greedy()), &no_headers(), "acme");
    let e = Entry::decode(&d.store(0, "oa", "gpt-x", relay.usage, completion).unwrap()).unwrap();
    assert_eq!(e.usage().total_tokens(), 9);
    assert_eq!(e.completion["usage"]["total_tokens"], 9);
}

#[test]
fn lookup_honours_the_current_stale_window() {
    let stale_on = CachePolicy {
        stale_if_error_s: 600,
        ..on()
    };
    let r = req(greedy());
    let d = decide(&stale_on, "small", &r, &no_headers(), "acme");
    let bytes = d
        .store(0, "oa", "gpt-x", None, text_completion("x"))
        .unwrap();
    let hour = 3_600_000;
    assert!(matches!(d.lookup(Some(&bytes), hour - 1), Lookup::Hit(_)));
    assert!(matches!(d.lookup(Some(&bytes), hour), Lookup::Stale(_)));
    assert_eq!(d.lookup(Some(&bytes), hour + 600_000), Lookup::Miss);
    assert_eq!(d.lookup(None, 0), Lookup::Miss);
    assert_eq!(d.lookup(Some(b"garbage"), 0), Lookup::Miss);
    // The route turned stale-if-error off since: the old entry is not served stale.
    let now_off = decide(&on(), "small", &r, &no_headers(), "acme");
    assert_eq!(now_off.lookup(Some(&bytes), hour), Lookup::Miss);
    assert!(matches!(now_off.lookup(Some(&bytes), 0), Lookup::Hit(_)));
    // no-cache: never read.
    let nc = CacheHeaders::parse(Some("no-cache"), None, None).unwrap();
    let d_nc = decide(&stale_on, "small", &r, &nc, "acme");
    assert_eq!(d_nc.lookup(Some(&bytes), 0), Lookup::Miss);
    if let Lookup::Hit(e) = d.lookup(Some(&bytes), 61_000) {
        assert_eq!(e.age_s(61_000), 61);
    }
}

#[test]
fn accumulates_a_translated_anthropic_stream() {
    use crate::config::Protocol;
    use crate::providers::ChatStream;
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let upstream = [
        ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
            "role": "assistant", "content": [], "usage": {"input_tokens": 7, "output_tokens": 1}}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Let me check. "}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}})),
        ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12}})),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let mut relay = ChatStream::new(Protocol::Anthropic, false).unwrap();
    let mut acc = StreamAccumulator::new();
    let mut out = Vec::new();
    for piece in upstream.as_bytes().chunks(31) {
        relay.feed(piece, &mut out).unwrap();
    }
    relay.finish(&mut out).unwrap();
    acc.feed(&out);
    let c = acc.finish().unwrap();
    let m = &c["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check. ");
    assert_eq!(m["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let tools_on = CachePolicy {
        cache_tool_calls: true,
        ..on()
    };
    let d = decide(&tools_on, "small", &req(greedy()), &no_headers(), "acme");
    let stored = d.store(0, "claude", "claude-x", relay.usage(), c.clone());
    let e = Entry::decode(&stored.unwrap()).unwrap();
    assert_eq!(e.usage().prompt_tokens, 7);
    // And it replays to the same completion.
    let again = {
        let mut a = StreamAccumulator::new();
        a.feed(&e.replay(false));
        a.finish().unwrap()
    };
    assert_eq!(again["choices"], e.completion["choices"]);
}
