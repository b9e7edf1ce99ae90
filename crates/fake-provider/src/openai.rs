//! OpenAI chat completions, embeddings and models wire format.

use crate::common::{
    embedding, embedding_base64, words_in_content, Answer, Reply, Usage, TOOL_ARGUMENTS,
};
use crate::spec::ErrorKind;
use crate::stream::{data_event, Event, EventKind, StreamPlan, MALFORMED_DATA};
use serde_json::{json, Value};

pub const SYSTEM_FINGERPRINT: &str = "fp_fake";

/// Words in `messages[].content` (string, or `text` parts).
pub fn prompt_words(body: &Value) -> u64 {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("content"))
                .map(words_in_content)
                .sum()
        })
        .unwrap_or(0)
}

/// `tools[0].function.name`
pub fn first_tool(body: &Value) -> Option<String> {
    body.pointer("/tools/0/function/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `response_format.type` is `json_object` or `json_schema`.
pub fn json_mode(body: &Value) -> bool {
    matches!(
        body.pointer("/response_format/type")
            .and_then(Value::as_str),
        Some("json_object" | "json_schema")
    )
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion(),
        "total_tokens": u.total(),
        "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn completion_id(a: &Answer) -> String {
    format!("chatcmpl-fake-{}", a.id)
}

fn call_id(a: &Answer) -> String {
    format!("call_fake_{}", a.id)
}

fn finish_reason(a: &Answer) -> &'static str {
    match a.reply {
        Reply::Text(_) => "stop",
        Reply::ToolCall { .. } => "tool_calls",
    }
}

/// Non-streaming `chat.completion` object.
pub fn completion_json(a: &Answer) -> Value {
    let message = match &a.reply {
        Reply::Text(t) => json!({"role": "assistant", "content": t, "refusal": null}),
        Reply::ToolCall { name } => json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "tool_calls": [{
                "id": call_id(a),
                "type": "function",
                "function": {"name": name, "arguments": TOOL_ARGUMENTS}
            }]
        }),
    };
    json!({
        "id": completion_id(a),
        "object": "chat.completion",
        "created": a.created,
        "model": a.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(a)
        }],
        "usage": usage_json(&a.usage)
    })
}

/// `chat.completion.chunk` stream. With `include_usage`, every chunk carries
/// `"usage": null` and a final chunk with `choices: []` carries the usage.
pub fn stream_plan(a: &Answer, include_usage: bool) -> StreamPlan {
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": completion_id(a),
            "object": "chat.completion.chunk",
            "created": a.created,
            "model": a.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events = Vec::new();
    let mut push = |kind, v: Value| events.push(Event::new(kind, data_event(&v.to_string())));

    match &a.reply {
        Reply::Text(_) => {
            push(
                EventKind::Preamble,
                chunk(choice(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    Value::Null,
                )),
            );
            for piece in a.pieces() {
                push(
                    EventKind::Content,
                    chunk(choice(json!({"content": piece}), Value::Null)),
                );
            }
        }
        Reply::ToolCall { name } => {
            push(
                EventKind::Preamble,
                chunk(choice(
                    json!({
                        "role": "assistant",
                        "content": null,
                        "refusal": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": call_id(a),
                            "type": "function",
                            "function": {"name": name, "arguments": ""}
                        }]
                    }),
                    Value::Null,
                )),
            );
            for piece in a.pieces() {
                push(
                    EventKind::Content,
                    chunk(choice(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        Value::Null,
                    )),
                );
            }
        }
    }
    push(
        EventKind::Other,
        chunk(choice(json!({}), json!(finish_reason(a)))),
    );
    if include_usage {
        let mut u = chunk(json!([]));
        u["usage"] = usage_json(&a.usage);
        push(EventKind::Other, u);
    }
    events.push(Event::new(EventKind::Terminal, data_event("[DONE]")));
    StreamPlan {
        events,
        malformed: data_event(MALFORMED_DATA),
        error_event: data_event(
            &json!({"error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": null,
                "code": null
            }})
            .to_string(),
        ),
    }
}

/// Status and `{"error":{message,type,param,code}}` body for an error kind.
pub fn error(kind: ErrorKind) -> (u16, Value) {
    let (status, message, typ, param, code): (u16, &str, &str, Value, Value) = match kind {
        ErrorKind::RateLimit => (
            429,
            "Rate limit reached for requests (fake-provider). Please try again later.",
            "requests",
            Value::Null,
            json!("rate_limit_exceeded"),
        ),
        ErrorKind::Overloaded => (
            503,
            "The server is overloaded or not ready yet.",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        ErrorKind::Server => (
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            Value::Null,
            Value::Null,
        ),
        ErrorKind::InvalidRequest => (
            400,
            "Invalid request (fake-provider).",
            "invalid_request_error",
            Value::Null,
            Value::Null,
        ),
        ErrorKind::Auth => (
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            Value::Null,
            json!("invalid_api_key"),
        ),
        ErrorKind::ContextLength => (
            400,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 128001 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            json!("messages"),
            json!("context_length_exceeded"),
        ),
        ErrorKind::ContentPolicy | ErrorKind::PromptBlocked => (
            400,
            "Your request was rejected as a result of our safety system: it may contain content that is not allowed by our content policy.",
            "invalid_request_error",
            Value::Null,
            json!("content_policy_violation"),
        ),
        ErrorKind::Prefill => (
            400,
            "This model does not support assistant message prefill.",
            "invalid_request_error",
            json!("messages"),
            Value::Null,
        ),
        ErrorKind::Permission => (
            403,
            "You are not allowed to access this resource.",
            "invalid_request_error",
            Value::Null,
            json!("permission_denied"),
        ),
        ErrorKind::NotFound => (
            404,
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Value::Null,
            json!("model_not_found"),
        ),
    };
    (status, error_body(message, typ, param, code))
}

pub fn error_body(message: &str, typ: &str, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": typ, "param": param, "code": code}})
}

/// `{"object":"list","data":[{"object":"embedding","index","embedding"}],…}`,
/// or `Err(message)` for an input that is neither a string nor strings.
pub fn embeddings_json(body: &Value, default_model: &str) -> Result<Value, String> {
    let inputs: Vec<&str> = match body.get("input") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or("'input' must be a string or an array of strings")
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("'input' must be a string or an array of strings".to_string()),
    };
    let dim = crate::common::dimension(body.get("dimensions"))?;
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = embedding(text, dim);
            let emb = if base64 {
                json!(embedding_base64(&v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    let words: u64 = inputs.iter().map(|t| crate::common::count_words(t)).sum();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(default_model);
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": words, "total_tokens": words}
    }))
}

pub fn models_json(created: u64) -> Value {
    let data: Vec<Value> = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "fake-provider"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn answer(spec: &str, tool: Option<&str>, json_mode: bool) -> Answer {
        Answer::new(
            "primary",
            "gpt-4o",
            3,
            json_mode,
            tool.map(str::to_string),
            &Spec::parse(spec),
        )
    }

    #[test]
    fn request_inspection() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi there you"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            "response_format": {"type": "json_schema", "json_schema": {}}
        });
        assert_eq!(prompt_words(&body), 5);
        assert_eq!(first_tool(&body).as_deref(), Some("get_weather"));
        assert!(json_mode(&body));
        assert!(!json_mode(&json!({"response_format": {"type": "text"}})));
    }

    #[test]
    fn completion_body() {
        let a = answer("cached=1,reasoning=2", None, false);
        let v = completion_json(&a);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["id"], format!("chatcmpl-fake-{}", a.id));
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from primary (gpt-4o)."
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["usage"]["completion_tokens"], 6);
        assert_eq!(v["usage"]["total_tokens"], 9);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            2
        );
    }

    #[test]
    fn tool_call_body() {
        let v = completion_json(&answer("tool_call", Some("get_weather"), false));
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], TOOL_ARGUMENTS);
        assert_eq!(call["type"], "function");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
    }

    fn datas(plan: &StreamPlan) -> Vec<String> {
        plan.events
            .iter()
            .map(|e| {
                e.text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix("\n\n"))
                    .unwrap_or("?")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn text_stream() {
        let plan = stream_plan(&answer("", None, false), true);
        let d = datas(&plan);
        assert_eq!(d.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = d[..d.len() - 1]
            .iter()
            .map(|s| serde_json::from_str(s).expect("chunk json"))
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello from primary (gpt-4o).");
        assert_eq!(plan.content_count(), 4);
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["usage"], Value::Null);
        let usage = &chunks[chunks.len() - 1];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 4);
        assert_eq!(usage["object"], "chat.completion.chunk");

        let no_usage = stream_plan(&answer("", None, false), false);
        assert!(!no_usage.body().contains("\"usage\""));
        assert!(no_usage.body().ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn tool_call_and_json_streams() {
        let plan = stream_plan(&answer("tool_call", Some("lookup"), false), false);
        assert!(plan.content_count() >= 2);
        let d = datas(&plan);
        let first: Value = serde_json::from_str(&d[0]).expect("json");
        assert_eq!(
            first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        let args: String = d
            .iter()
            .filter_map(|s| serde_json::from_str::<Value>(s).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(args, TOOL_ARGUMENTS);
        assert!(plan.body().contains(r#""finish_reason":"tool_calls""#));

        let json_plan = stream_plan(&answer("words=1", None, true), false);
        assert!(json_plan.content_count() >= 2);
        assert!(json_plan.error_event.starts_with("data: {\"error\""));
    }

    #[test]
    fn errors() {
        let (s, v) = error(ErrorKind::ContextLength);
        assert_eq!(s, 400);
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        let (s, v) = error(ErrorKind::ContentPolicy);
        assert_eq!(s, 400);
        assert_eq!(v["error"]["code"], "content_policy_violation");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("policy")));
        assert_eq!(error(ErrorKind::RateLimit).0, 429);
        assert_eq!(error(ErrorKind::Overloaded).0, 503);
        let (_, v) = error(ErrorKind::Prefill);
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not support assistant message prefill")));
        for key in ["message", "type", "param", "code"] {
            assert!(v["error"].get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn embeddings() {
        let v = embeddings_json(&json!({"input": ["a b", "c"], "model": "e"}), "x").expect("ok");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["data"][1]["index"], 1);
        assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(8));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        assert_eq!(v["model"], "e");
        let b = embeddings_json(
            &json!({"input": "a", "dimensions": 4, "encoding_format": "base64"}),
            "x",
        )
        .expect("ok");
        let s = b["data"][0]["embedding"].as_str().expect("base64 string");
        assert_eq!(s, embedding_base64(&embedding("a", 4)));
        assert_eq!(s.len(), 24); // 16 bytes
        assert!(embeddings_json(&json!({"input": [1, 2]}), "x").is_err());
        assert!(embeddings_json(&json!({}), "x").is_err());
        assert!(embeddings_json(&json!({"input": "a", "dimensions": 0}), "x").is_err());
    }
}
