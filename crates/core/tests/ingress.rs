//! Golden fixtures for the ingress stream encoders, through the API the relay uses
//! (`Format::encoder`, `StreamEncoder::encode`).
//!
//! `tests/fixtures/ingress/*.openai.sse` are OpenAI chunk streams as the relay writes them (a
//! broken one ends with the relay's error event). Each is re-framed as an Anthropic Messages
//! stream (`*.anthropic.sse`) and a Gemini stream (`*.gemini.sse`), fed whole, in 7-byte and in
//! 1-byte pieces, which must all give the expected bytes. Run with `SWITCHYARD_BLESS=1` to
//! rewrite the expected files from the encoders (then review the diff).
//!
//! Every Anthropic output is also checked against the Messages event grammar, and the chain
//! upstream → OpenAI chunks → caller's format is run on the fake provider's captured streams.

use serde_json::{json, Value};
use std::path::PathBuf;
use switchyard_core::config::Protocol;
use switchyard_core::ingress::Format;
use switchyard_core::providers::ChatStream;
use switchyard_core::sse::{SseEvent, SseParser};

const STREAMS: &[&str] = &["stream_text", "stream_tools", "stream_broken"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn encode(format: Format, input: &[u8], piece: usize) -> String {
    let mut e = format.encoder();
    let mut out = Vec::new();
    for c in input.chunks(piece) {
        out.extend(e.encode(c.to_vec()));
    }
    String::from_utf8(out).expect("UTF-8")
}

fn events(text: &str) -> Vec<SseEvent> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    p.push(text.as_bytes(), &mut out).expect("small events");
    p.finish(&mut out);
    out
}

#[test]
fn stream_fixtures() {
    let bless = std::env::var_os("SWITCHYARD_BLESS").is_some();
    for name in STREAMS {
        let input = read(&format!("ingress/{name}.openai.sse"));
        for (format, ext) in [(Format::Anthropic, "anthropic"), (Format::Gemini, "gemini")] {
            let path = format!("ingress/{name}.{ext}.sse");
            let whole = encode(format, input.as_bytes(), input.len());
            if bless {
                std::fs::write(dir().join(&path), &whole).expect("write fixture");
            }
            let expected = read(&path);
            assert_eq!(whole, expected, "{path}");
            for piece in [7, 1] {
                assert_eq!(
                    encode(format, input.as_bytes(), piece),
                    expected,
                    "{path} in {piece}-byte pieces"
                );
            }
            if format == Format::Anthropic {
                check_messages_grammar(&expected, *name == "stream_broken");
            }
        }
    }
}

/// The Messages stream grammar the Anthropic SDKs rely on: `message_start` first; blocks
/// started, delta'd and stopped in index order, one at a time; a `message_delta` with usage and
/// `message_stop` last — or, for a broken stream, an `error` event last and no `message_stop`.
fn check_messages_grammar(text: &str, broken: bool) {
    let evs = events(text);
    let names: Vec<&str> = evs
        .iter()
        .map(|e| e.event.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(names[0], "message_start", "{names:?}");
    let mut open: Option<u64> = None;
    let mut next = 0;
    for e in &evs {
        let v: Value = serde_json::from_str(&e.data).expect("JSON data");
        let name = e.event.as_deref().unwrap_or("");
        assert_eq!(v["type"], name, "the data's type names the event");
        match name {
            "content_block_start" => {
                assert_eq!(open, None, "one block at a time");
                assert_eq!(v["index"], next);
                open = Some(next);
                next += 1;
            }
            "content_block_delta" => assert_eq!(v["index"].as_u64(), open),
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open);
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None);
                assert!(v["usage"]["output_tokens"].is_u64());
            }
            _ => {}
        }
    }
    if broken {
        assert_eq!(names.last(), Some(&"error"));
        assert!(!names.contains(&"message_stop"));
    } else {
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    }
}

/// Upstream stream → OpenAI chunks (what the relay forwards) → the caller's format.
fn chain(upstream: &str, protocol: Protocol, format: Format) -> String {
    let mut translator = ChatStream::new(protocol, true).expect("translator");
    let mut openai = Vec::new();
    let bytes = read(upstream);
    let mut result = Ok(());
    for c in bytes.as_bytes().chunks(5) {
        result = result.and_then(|()| translator.feed(c, &mut openai));
    }
    let broken = result
        .and_then(|()| translator.finish(&mut openai))
        .is_err();
    if broken {
        // What the relay appends when a stream breaks.
        openai.extend_from_slice(
            b"data: {\"error\":{\"message\":\"broken\",\"code\":\"upstream_error\"}}\n\n",
        );
    }
    encode(format, &openai, 3)
}

#[test]
fn anthropic_upstream_through_anthropic_ingress_keeps_its_shape() {
    let out = chain(
        "anthropic/fake_stream_tool.sse",
        Protocol::Anthropic,
        Format::Anthropic,
    );
    check_messages_grammar(&out, false);
    let evs = events(&out);
    let start = evs
        .iter()
        .find(|e| e.event.as_deref() == Some("content_block_start"))
        .unwrap();
    let block: Value = serde_json::from_str(&start.data).unwrap();
    assert_eq!(block["content_block"]["type"], "tool_use");
    let json: String = evs
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| {
            v.pointer("/delta/partial_json")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"location": "Paris"})
    );
    let delta = evs.iter().rev().nth(1).unwrap();
    let delta: Value = serde_json::from_str(&delta.data).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    let cut = chain(
        "anthropic/fake_stream_cut.sse",
        Protocol::Anthropic,
        Format::Anthropic,
    );
    check_messages_grammar(&cut, true);
}

#[test]
fn gemini_upstream_through_gemini_ingress_keeps_its_shape() {
    let out = chain(
        "gemini/fake_stream_text.sse",
        Protocol::Gemini,
        Format::Gemini,
    );
    let chunks: Vec<Value> = events(&out)
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/candidates/0/content/parts/0/text")
                .and_then(Value::as_str)
        })
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(last["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    assert!(!text.is_empty());
    let tool = chain(
        "gemini/fake_stream_tool.sse",
        Protocol::Gemini,
        Format::Gemini,
    );
    let last: Value = serde_json::from_str(&events(&tool).last().unwrap().data).unwrap();
    let call = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(call["args"], json!({"location": "Paris"}));
    let cut = chain(
        "gemini/fake_stream_cut.sse",
        Protocol::Gemini,
        Format::Gemini,
    );
    let last: Value = serde_json::from_str(&events(&cut).last().unwrap().data).unwrap();
    assert_eq!(last["error"]["code"], 502);
}
