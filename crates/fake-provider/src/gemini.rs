//! Gemini generateContent, embeddings and models wire format. Request fields
//! are accepted in camelCase and snake_case, as the real API does.

use crate::common::{count_words, embedding, Answer, Reply, Usage, TOOL_ARGUMENTS};
use crate::spec::ErrorKind;
use crate::stream::{data_event, Event, EventKind, StreamPlan, MALFORMED_DATA};
use serde_json::{json, Value};

fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn words_in_parts(content: &Value) -> u64 {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(count_words)
                .sum()
        })
        .unwrap_or(0)
}

/// Words in `systemInstruction.parts[].text` plus `contents[].parts[].text`.
pub fn prompt_words(body: &Value) -> u64 {
    let system = field(body, "systemInstruction", "system_instruction")
        .map(words_in_parts)
        .unwrap_or(0);
    let contents: u64 = body
        .get("contents")
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(words_in_parts).sum())
        .unwrap_or(0);
    system + contents
}

/// `tools[0].functionDeclarations[0].name`
pub fn first_tool(body: &Value) -> Option<String> {
    let tool = body.get("tools")?.get(0)?;
    field(tool, "functionDeclarations", "function_declarations")?
        .get(0)?
        .get("name")?
        .as_str()
        .map(str::to_string)
}

/// `generationConfig.responseMimeType == "application/json"`
pub fn json_mode(body: &Value) -> bool {
    field(body, "generationConfig", "generation_config")
        .and_then(|g| field(g, "responseMimeType", "response_mime_type"))
        .and_then(Value::as_str)
        == Some("application/json")
}

pub fn usage_json(u: &Usage) -> Value {
    let mut m = json!({
        "promptTokenCount": u.prompt,
        "candidatesTokenCount": u.reply,
        "totalTokenCount": u.prompt + u.reply + u.reasoning
    });
    if u.cached > 0 {
        m["cachedContentTokenCount"] = json!(u.cached);
    }
    if u.reasoning > 0 {
        m["thoughtsTokenCount"] = json!(u.reasoning);
    }
    m
}

fn response_id(a: &Answer) -> String {
    format!("fake-{}", a.id)
}

fn tool_part(name: &str) -> Value {
    let args: Value = serde_json::from_str(TOOL_ARGUMENTS).unwrap_or_else(|_| json!({}));
    json!({"functionCall": {"name": name, "args": args}})
}

fn response(a: &Answer, parts: Value, last: bool) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    let mut r = json!({});
    if last {
        candidate["finishReason"] = json!("STOP");
    }
    r["candidates"] = json!([candidate]);
    if last {
        r["usageMetadata"] = usage_json(&a.usage);
    }
    r["modelVersion"] = json!(a.model);
    r["responseId"] = json!(response_id(a));
    r
}

/// Non-streaming `GenerateContentResponse`.
pub fn response_json(a: &Answer) -> Value {
    let part = match &a.reply {
        Reply::Text(t) => json!({"text": t}),
        Reply::ToolCall { name } => tool_part(name),
    };
    response(a, json!([part]), true)
}

/// One `GenerateContentResponse` per piece; the last one carries
/// `finishReason` and `usageMetadata`. No `[DONE]`.
pub fn stream_plan(a: &Answer) -> StreamPlan {
    let mut events = Vec::new();
    match &a.reply {
        Reply::Text(_) => {
            let pieces = a.pieces();
            if pieces.is_empty() {
                let r = response(a, json!([{"text": ""}]), true);
                events.push(Event::new(EventKind::Other, data_event(&r.to_string())));
            }
            let n = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                let r = response(a, json!([{ "text": piece }]), i + 1 == n);
                events.push(Event::new(EventKind::Content, data_event(&r.to_string())));
            }
        }
        Reply::ToolCall { name } => {
            let r = response(a, json!([tool_part(name)]), true);
            events.push(Event::new(EventKind::Content, data_event(&r.to_string())));
        }
    }
    StreamPlan {
        events,
        malformed: data_event(MALFORMED_DATA),
        error_event: data_event(&error(ErrorKind::Overloaded).1.to_string()),
    }
}

/// A 200 answer blocked by safety filters: `prompt` blocked (no candidates,
/// `promptFeedback.blockReason`) or response blocked (candidate with
/// `finishReason: SAFETY` and no content).
pub fn blocked_json(a: &Answer, prompt: bool) -> Value {
    let ratings = json!([{
        "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
        "probability": "HIGH",
        "blocked": true
    }]);
    let usage = json!({"promptTokenCount": a.usage.prompt, "totalTokenCount": a.usage.prompt});
    if prompt {
        json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
            "usageMetadata": usage,
            "modelVersion": a.model,
            "responseId": response_id(a)
        })
    } else {
        json!({
            "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}],
            "usageMetadata": usage,
            "modelVersion": a.model,
            "responseId": response_id(a)
        })
    }
}

/// The canonical status name Google APIs use for an HTTP status.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

pub fn error_body(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status_name(code)}})
}

/// Status and `{"error":{code,message,status}}` body for an error kind.
pub fn error(kind: ErrorKind) -> (u16, Value) {
    let (status, message) = match kind {
        ErrorKind::RateLimit => (429, "Resource has been exhausted (e.g. check quota)."),
        ErrorKind::Overloaded => (503, "The model is overloaded. Please try again later."),
        ErrorKind::Server => (500, "An internal error has occurred. Please retry."),
        ErrorKind::InvalidRequest => (400, "Request contains an invalid argument."),
        ErrorKind::Auth => (401, "Request had invalid authentication credentials."),
        ErrorKind::ContextLength => (
            400,
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
        ),
        ErrorKind::ContentPolicy | ErrorKind::PromptBlocked => {
            (400, "The request was blocked by the content policy.")
        }
        ErrorKind::Prefill => (400, "This model does not support assistant message prefill."),
        ErrorKind::Permission => (403, "The caller does not have permission."),
        ErrorKind::NotFound => (404, "Requested entity was not found."),
    };
    (status, error_body(status, message))
}

/// Re-labels an error body with a different HTTP status (`status=C` together
/// with `error=KIND`).
pub fn with_status(mut body: Value, code: u16) -> Value {
    body["error"]["code"] = json!(code);
    body["error"]["status"] = json!(status_name(code));
    body
}

fn embed_one(req: &Value) -> Result<(Value, u64), String> {
    let content = req
        .get("content")
        .ok_or("'content' is required for embedContent")?;
    let texts: Vec<&str> = content
        .get("parts")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let dim =
        crate::common::dimension(field(req, "outputDimensionality", "output_dimensionality"))?;
    let text = texts.join("\n");
    let words = texts.iter().map(|t| count_words(t)).sum();
    Ok((json!({"values": embedding(&text, dim)}), words))
}

/// `{"embedding":{"values":[…]}}`; the text embedded is the parts' texts
/// joined with `\n`.
pub fn embed_content_json(body: &Value) -> Result<Value, String> {
    let (e, _) = embed_one(body)?;
    Ok(json!({ "embedding": e }))
}

/// `{"embeddings":[{"values":[…]},…]}`
pub fn batch_embed_json(body: &Value) -> Result<Value, String> {
    let reqs = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or("'requests' must be an array")?;
    let embeddings = reqs
        .iter()
        .map(|r| embed_one(r).map(|(e, _)| e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "embeddings": embeddings }))
}

/// `countTokens`: `{"totalTokens": N}` for `contents` or a wrapped
/// `generateContentRequest`.
pub fn count_tokens_json(body: &Value) -> Value {
    let inner = field(body, "generateContentRequest", "generate_content_request").unwrap_or(body);
    json!({ "totalTokens": prompt_words(inner) })
}

pub fn models_json() -> Value {
    let models = [
        (
            "gemini-2.0-flash",
            "Gemini 2.0 Flash",
            vec!["generateContent", "countTokens"],
        ),
        (
            "gemini-2.5-pro",
            "Gemini 2.5 Pro",
            vec!["generateContent", "countTokens"],
        ),
        (
            "text-embedding-004",
            "Text Embedding 004",
            vec!["embedContent"],
        ),
    ];
    let list: Vec<Value> = models
        .iter()
        .map(|(id, name, methods)| {
            json!({
                "name": format!("models/{id}"),
                "version": "001",
                "displayName": name,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": methods
            })
        })
        .collect();
    json!({ "models": list })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;

    fn answer(spec: &str, tool: Option<&str>, json_mode: bool) -> Answer {
        Answer::new(
            "g",
            "gemini-2.0-flash",
            5,
            json_mode,
            tool.map(str::to_string),
            &Spec::parse(spec),
        )
    }

    #[test]
    fn request_inspection() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [{"role": "user", "parts": [{"text": "a b c"}, {"inlineData": {}}]}],
            "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
            "generationConfig": {"responseMimeType": "application/json"}
        });
        assert_eq!(prompt_words(&body), 5);
        assert_eq!(first_tool(&body).as_deref(), Some("get_weather"));
        assert!(json_mode(&body));
        let snake = json!({"system_instruction": {"parts": [{"text": "x"}]},
            "generation_config": {"response_mime_type": "application/json"}});
        assert_eq!(prompt_words(&snake), 1);
        assert!(json_mode(&snake));
        assert_eq!(count_tokens_json(&body)["totalTokens"], 5);
    }

    #[test]
    fn response_body() {
        let v = response_json(&answer("cached=2,reasoning=3", None, false));
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert_eq!(
            c["content"]["parts"][0]["text"],
            "Hello from g (gemini-2.0-flash)."
        );
        assert_eq!(c["finishReason"], "STOP");
        let u = &v["usageMetadata"];
        assert_eq!(u["promptTokenCount"], 5);
        assert_eq!(u["candidatesTokenCount"], 4);
        assert_eq!(u["totalTokenCount"], 12);
        assert_eq!(u["cachedContentTokenCount"], 2);
        assert_eq!(u["thoughtsTokenCount"], 3);
        assert_eq!(v["modelVersion"], "gemini-2.0-flash");

        let plain = response_json(&answer("", None, false));
        assert!(plain["usageMetadata"]
            .get("cachedContentTokenCount")
            .is_none());
        assert!(plain["usageMetadata"].get("thoughtsTokenCount").is_none());

        let t = response_json(&answer("tool_call", Some("get_weather"), false));
        let call = &t["candidates"][0]["content"]["parts"][0]["functionCall"];
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["args"], json!({"location": "Paris"}));
        assert_eq!(t["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn stream_chunks() {
        let plan = stream_plan(&answer("", None, false));
        assert!(!plan.body().contains("[DONE]"));
        let chunks: Vec<Value> = plan
            .events
            .iter()
            .map(|e| {
                let d = e
                    .text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix("\n\n"))
                    .expect("data event");
                serde_json::from_str(d).expect("json")
            })
            .collect();
        assert_eq!(chunks.len(), 4);
        let text: String = chunks
            .iter()
            .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
            .collect();
        assert_eq!(text, "Hello from g (gemini-2.0-flash).");
        assert!(chunks[0].get("usageMetadata").is_none());
        assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
        let last = &chunks[3];
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 4);
        assert_eq!(last["modelVersion"], "gemini-2.0-flash");

        let json_plan = stream_plan(&answer("", None, true));
        assert!(json_plan.content_count() >= 2);
        let empty = stream_plan(&answer("words=0", None, false));
        assert_eq!(empty.events.len(), 1);
        assert!(empty.body().contains("\"finishReason\":\"STOP\""));
    }

    #[test]
    fn blocked_and_errors() {
        let a = answer("", None, false);
        let b = blocked_json(&a, false);
        assert_eq!(b["candidates"][0]["finishReason"], "SAFETY");
        assert!(b["candidates"][0].get("content").is_none());
        let p = blocked_json(&a, true);
        assert_eq!(p["promptFeedback"]["blockReason"], "SAFETY");
        assert!(p.get("candidates").is_none());

        let (s, v) = error(ErrorKind::RateLimit);
        assert_eq!(s, 429);
        assert_eq!(v["error"]["code"], 429);
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        let (_, v) = error(ErrorKind::ContextLength);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("exceeds the maximum number of tokens allowed")));
        assert_eq!(error(ErrorKind::Overloaded).0, 503);
        let relabelled = with_status(error(ErrorKind::Server).1, 503);
        assert_eq!(relabelled["error"]["status"], "UNAVAILABLE");
    }

    #[test]
    fn embeddings() {
        let one = embed_content_json(
            &json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 3}),
        )
        .expect("ok");
        assert_eq!(one["embedding"]["values"].as_array().map(Vec::len), Some(3));
        let batch = batch_embed_json(&json!({"requests": [
            {"model": "models/e", "content": {"parts": [{"text": "hi"}]}},
            {"model": "models/e", "content": {"parts": [{"text": "yo"}]}}
        ]}))
        .expect("ok");
        assert_eq!(batch["embeddings"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            batch["embeddings"][0]["values"].as_array().map(Vec::len),
            Some(8)
        );
        assert!(embed_content_json(&json!({})).is_err());
        assert!(batch_embed_json(&json!({"requests": 1})).is_err());
    }
}
