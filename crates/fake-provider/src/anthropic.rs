//! Anthropic Messages and models wire format.

use crate::common::{words_in_content, Answer, Reply, Usage, TOOL_ARGUMENTS};
use crate::spec::ErrorKind;
use crate::stream::{named_event, Event, EventKind, StreamPlan, MALFORMED_DATA};
use serde_json::{json, Value};

/// Words in `system` plus `messages[].content` (strings or `text` blocks).
pub fn prompt_words(body: &Value) -> u64 {
    let system = body.get("system").map(words_in_content).unwrap_or(0);
    let messages: u64 = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("content"))
                .map(words_in_content)
                .sum()
        })
        .unwrap_or(0);
    system + messages
}

/// `tools[0].name`
pub fn first_tool(body: &Value) -> Option<String> {
    body.pointer("/tools/0/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Anthropic reports `input_tokens` without the cache reads.
pub fn usage_json(u: &Usage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": u.prompt.saturating_sub(u.cached),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached,
        "output_tokens": output_tokens
    })
}

fn message_id(a: &Answer) -> String {
    format!("msg_fake_{}", a.id)
}

fn tool_use_id(a: &Answer) -> String {
    format!("toolu_fake_{}", a.id)
}

fn stop_reason(a: &Answer) -> &'static str {
    match a.reply {
        Reply::Text(_) => "end_turn",
        Reply::ToolCall { .. } => "tool_use",
    }
}

fn tool_input() -> Value {
    serde_json::from_str(TOOL_ARGUMENTS).unwrap_or_else(|_| json!({}))
}

/// Non-streaming `message` object.
pub fn message_json(a: &Answer) -> Value {
    let block = match &a.reply {
        Reply::Text(t) => json!({"type": "text", "text": t}),
        Reply::ToolCall { name } => json!({
            "type": "tool_use",
            "id": tool_use_id(a),
            "name": name,
            "input": tool_input()
        }),
    };
    json!({
        "id": message_id(a),
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": [block],
        "stop_reason": stop_reason(a),
        "stop_sequence": null,
        "usage": with_thinking(usage_json(&a.usage, a.usage.completion()), &a.usage)
    })
}

/// Final usage carries `output_tokens_details.thinking_tokens` = R when R > 0.
fn with_thinking(mut usage: Value, u: &Usage) -> Value {
    if u.reasoning > 0 {
        usage["output_tokens_details"] = json!({"thinking_tokens": u.reasoning});
    }
    usage
}

/// The real event sequence: `message_start`, `content_block_start`, `ping`,
/// `content_block_delta`…, `content_block_stop`, `message_delta`,
/// `message_stop`.
pub fn stream_plan(a: &Answer) -> StreamPlan {
    let mut events = Vec::new();
    let mut push = |kind, name: &str, v: Value| {
        events.push(Event::new(kind, named_event(name, &v.to_string())));
    };
    push(
        EventKind::Preamble,
        "message_start",
        json!({"type": "message_start", "message": {
            "id": message_id(a),
            "type": "message",
            "role": "assistant",
            "model": a.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage_json(&a.usage, 1)
        }}),
    );
    let (block, delta_type, delta_field) = match &a.reply {
        Reply::Text(_) => (json!({"type": "text", "text": ""}), "text_delta", "text"),
        Reply::ToolCall { name } => (
            json!({"type": "tool_use", "id": tool_use_id(a), "name": name, "input": {}}),
            "input_json_delta",
            "partial_json",
        ),
    };
    push(
        EventKind::Preamble,
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
    );
    push(EventKind::Preamble, "ping", json!({"type": "ping"}));
    for piece in a.pieces() {
        let mut delta = json!({"type": delta_type});
        delta[delta_field] = json!(piece);
        push(
            EventKind::Content,
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        );
    }
    push(
        EventKind::Other,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    push(
        EventKind::Other,
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(a), "stop_sequence": null},
            "usage": with_thinking(json!({"output_tokens": a.usage.completion()}), &a.usage)
        }),
    );
    push(
        EventKind::Terminal,
        "message_stop",
        json!({"type": "message_stop"}),
    );
    StreamPlan {
        events,
        malformed: named_event("content_block_delta", MALFORMED_DATA),
        error_event: named_event(
            "error",
            &error_body("overloaded_error", "Overloaded").to_string(),
        ),
    }
}

pub fn error_body(typ: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": typ, "message": message}})
}

/// Status and `{"type":"error","error":{type,message}}` body for an error kind.
pub fn error(kind: ErrorKind) -> (u16, Value) {
    let (status, typ, message) = match kind {
        ErrorKind::RateLimit => (
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit (fake-provider).",
        ),
        ErrorKind::Overloaded => (529, "overloaded_error", "Overloaded"),
        ErrorKind::Server => (500, "api_error", "Internal server error"),
        ErrorKind::InvalidRequest => (
            400,
            "invalid_request_error",
            "Invalid request (fake-provider).",
        ),
        ErrorKind::Auth => (401, "authentication_error", "invalid x-api-key"),
        ErrorKind::ContextLength => (
            400,
            "invalid_request_error",
            "prompt is too long: 200001 tokens > 200000 maximum",
        ),
        ErrorKind::ContentPolicy | ErrorKind::PromptBlocked => (
            400,
            "invalid_request_error",
            "Output blocked by content filtering policy",
        ),
        ErrorKind::Prefill => (
            400,
            "invalid_request_error",
            "This model does not support assistant message prefill. The conversation must end with a user message.",
        ),
        ErrorKind::Permission => (
            403,
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        ErrorKind::NotFound => (404, "not_found_error", "Not found"),
    };
    (status, error_body(typ, message))
}

pub fn models_json() -> Value {
    let models = [
        ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
        ("claude-haiku-4-5", "Claude Haiku 4.5"),
    ];
    let data: Vec<Value> = models
        .iter()
        .map(|(id, name)| {
            json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"})
        })
        .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": models[0].0,
        "last_id": models[models.len() - 1].0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn answer(spec: &str, tool: Option<&str>) -> Answer {
        Answer::new(
            "backup",
            "claude-x",
            6,
            false,
            tool.map(str::to_string),
            &Spec::parse(spec),
        )
    }

    #[test]
    fn request_inspection() {
        let body = json!({
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "one two"},
                {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "tool_use", "id": "t", "name": "n", "input": {}}]}
            ],
            "tools": [{"name": "get_weather", "input_schema": {}}]
        });
        assert_eq!(prompt_words(&body), 5);
        assert_eq!(first_tool(&body).as_deref(), Some("get_weather"));
        assert_eq!(prompt_words(&json!({"system": "a b c"})), 3);
    }

    #[test]
    fn message_body() {
        let a = answer("cached=2", None);
        let v = message_json(&a);
        assert_eq!(v["type"], "message");
        assert_eq!(v["id"], format!("msg_fake_{}", a.id));
        assert_eq!(v["content"][0]["text"], "Hello from backup (claude-x).");
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["input_tokens"], 4);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 2);
        assert_eq!(v["usage"]["output_tokens"], 4);

        let t = message_json(&answer("tool_call", Some("get_weather")));
        assert_eq!(t["content"][0]["type"], "tool_use");
        assert_eq!(t["content"][0]["name"], "get_weather");
        assert_eq!(t["content"][0]["input"], json!({"location": "Paris"}));
        assert_eq!(t["stop_reason"], "tool_use");
    }

    fn parse(plan: &StreamPlan) -> Vec<(String, Value)> {
        plan.events
            .iter()
            .map(|e| {
                let (head, data) = e.text.split_once('\n').expect("two lines");
                let name = head
                    .strip_prefix("event: ")
                    .expect("event line")
                    .to_string();
                let data = data
                    .strip_prefix("data: ")
                    .and_then(|d| d.strip_suffix("\n\n"))
                    .expect("data line");
                (name, serde_json::from_str(data).expect("json"))
            })
            .collect()
    }

    #[test]
    fn text_stream_sequence() {
        let plan = stream_plan(&answer("", None));
        let ev = parse(&plan);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
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
        for (name, data) in &ev {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 6);
        let text: String = ev
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello from backup (claude-x).");
        assert_eq!(ev[3].1["delta"]["type"], "text_delta");
        assert_eq!(ev[8].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(ev[8].1["usage"]["output_tokens"], 4);
        assert!(plan.error_event.starts_with("event: error\n"));
        assert!(plan.error_event.contains("overloaded_error"));
    }

    #[test]
    fn tool_stream_sequence() {
        let plan = stream_plan(&answer("tool_call", Some("get_weather")));
        let ev = parse(&plan);
        assert_eq!(ev[1].1["content_block"]["type"], "tool_use");
        assert_eq!(ev[1].1["content_block"]["name"], "get_weather");
        let deltas: Vec<&Value> = ev
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, d)| d)
            .collect();
        assert!(deltas.len() >= 2);
        let json: String = deltas
            .iter()
            .map(|d| {
                assert_eq!(d["delta"]["type"], "input_json_delta");
                d["delta"]["partial_json"].as_str().unwrap_or("")
            })
            .collect();
        assert_eq!(json, TOOL_ARGUMENTS);
        let delta = ev
            .iter()
            .find(|(n, _)| n == "message_delta")
            .expect("delta");
        assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn errors() {
        let (s, v) = error(ErrorKind::Overloaded);
        assert_eq!(s, 529);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "overloaded_error");
        let (s, v) = error(ErrorKind::ContextLength);
        assert_eq!(s, 400);
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("prompt is too long:") && m.contains("maximum")));
        assert_eq!(
            error(ErrorKind::RateLimit).1["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(error(ErrorKind::Auth).0, 401);
    }
}
