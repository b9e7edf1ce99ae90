//! The compatibility matrix in `docs/PROVIDERS.md`, computed from the adapters themselves.
//!
//! Every parameter is built through every adapter, and compared with the same request without
//! it: an error is `400`, a new warning naming it is `dropped (warning)`, the same key and value
//! in the upstream body is `passed`, any other change is `translated`. The ingress tables do the
//! same for the Anthropic Messages and Gemini request fields, through the ingress translators.
//! The doc's tables (between the `matrix:` markers) must equal the computed ones; run with
//! `SWITCHYARD_BLESS=1` to rewrite them.

use serde_json::{json, Map, Value};
use std::path::PathBuf;
use switchyard_core::chat::ChatRequest;
use switchyard_core::config::Config;
use switchyard_core::ingress::Format;
use switchyard_core::providers::{build_chat, Work};

/// (parameter, value, companions the parameter needs).
fn chat_parameters() -> Vec<(&'static str, Value, Value)> {
    let tools = json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]});
    vec![
        ("temperature", json!(0.5), json!({})),
        ("top_p", json!(0.9), json!({})),
        ("max_tokens", json!(100), json!({})),
        ("max_completion_tokens", json!(100), json!({})),
        ("stop", json!(["END"]), json!({})),
        ("n", json!(2), json!({})),
        ("seed", json!(7), json!({})),
        ("presence_penalty", json!(0.5), json!({})),
        ("frequency_penalty", json!(0.5), json!({})),
        ("logit_bias", json!({"50256": -100}), json!({})),
        ("logprobs", json!(true), json!({})),
        ("top_logprobs", json!(2), json!({})),
        ("user", json!("end-user-1"), json!({})),
        ("tools", tools["tools"].clone(), json!({})),
        ("tool_choice", json!("required"), tools.clone()),
        ("parallel_tool_calls", json!(false), tools.clone()),
        ("response_format", json!({"type": "json_object"}), json!({})),
        ("stream", json!(true), json!({})),
        ("reasoning_effort", json!("low"), json!({})),
        ("modalities", json!(["text", "audio"]), json!({})),
        ("top_k", json!(5), json!({})),
        ("metadata", json!({"k": "v"}), json!({})),
        ("store", json!(true), json!({})),
        ("service_tier", json!("auto"), json!({})),
        (
            "prediction",
            json!({"type": "content", "content": "x"}),
            json!({}),
        ),
        (
            "web_search_options",
            json!({"search_context_size": "low"}),
            json!({}),
        ),
    ]
}

fn merge(base: &mut Map<String, Value>, extra: &Value) {
    for (k, v) in extra.as_object().into_iter().flatten() {
        base.insert(k.clone(), v.clone());
    }
}

fn outcome(
    param: &str,
    value: &Value,
    base: Result<(Value, Vec<String>), String>,
    with: Result<(Value, Vec<String>), String>,
    at: impl Fn(&Value) -> Option<Value>,
) -> String {
    let (Ok((body0, warnings0)), with) = (base, with) else {
        return "?".into();
    };
    match with {
        Err(_) => "400".into(),
        Ok((body, warnings)) => {
            if warnings
                .iter()
                .any(|w| w.starts_with(param) && !warnings0.contains(w))
            {
                "dropped (warning)".into()
            } else if body == body0 {
                "ignored".into()
            } else if at(&body).as_ref() == Some(value) {
                "passed".into()
            } else {
                "translated".into()
            }
        }
    }
}

fn egress_table() -> String {
    let config = Config::parse(
        r#"{"providers":[
              {"id":"oa","kind":"openai","api_key_secrets":["K"]},
              {"id":"compat","kind":"together","api_key_secrets":["K"]},
              {"id":"claude","kind":"anthropic","api_key_secrets":["K"]},
              {"id":"gem","kind":"gemini","api_key_secrets":["K"]}],
            "routes":[{"model":"m","targets":[{"provider":"oa","model":"x"}]}]}"#,
    )
    .expect("config");
    let build =
        |provider: &str, body: &Map<String, Value>| -> Result<(Value, Vec<String>), String> {
            let req = ChatRequest::from_object(body.clone()).map_err(|e| e.to_string())?;
            let up = build_chat(
                config.provider(provider).expect("provider"),
                "x",
                &req,
                Some("k"),
            )
            .map_err(|e| e.to_string())?;
            // The URL is part of what is sent (Gemini streams by URL).
            let mut sent: Value = serde_json::from_slice(&up.body).expect("JSON body");
            sent["$url"] = json!(up.url);
            Ok((sent, up.warnings))
        };
    let mut out = String::from(
        "| parameter | OpenAI | OpenAI-compatible | Anthropic | Gemini |\n| --- | --- | --- | --- | --- |\n",
    );
    for (param, value, companions) in chat_parameters() {
        let mut base = Map::new();
        base.insert("model".into(), json!("m"));
        base.insert(
            "messages".into(),
            json!([{"role": "user", "content": "hi"}]),
        );
        merge(&mut base, &companions);
        let mut with = base.clone();
        with.insert(param.into(), value.clone());
        let cells: Vec<String> = ["oa", "compat", "claude", "gem"]
            .iter()
            .map(|p| {
                outcome(param, &value, build(p, &base), build(p, &with), |b| {
                    b.get(param).cloned()
                })
            })
            .collect();
        out.push_str(&format!("| `{param}` | {} |\n", cells.join(" | ")));
    }
    out
}

/// Ingress fields: translated into the canonical request, dropped with a warning, or a 400.
fn ingress_table(format: Format, path: &str, base: Value, fields: Vec<(&str, Value)>) -> String {
    let parse = |body: &Value| -> Result<(Value, Vec<String>), String> {
        let (work, warnings) = format
            .parse(path, "alt=sse", body.to_string().as_bytes())
            .map_err(|e| e.to_string())?;
        let Work::Chat(chat) = work else {
            unreachable!("chat paths")
        };
        Ok((Value::Object(chat.body), warnings))
    };
    let mut out = String::from("| field | canonical request |\n| --- | --- |\n");
    for (field, value) in fields {
        let mut with = base.clone();
        // Dotted fields live in an object (`generationConfig.topK`).
        match field.split_once('.') {
            Some((outer, inner)) => {
                with[outer][inner] = value.clone();
            }
            None => with[field] = value.clone(),
        }
        let cell = outcome(field, &value, parse(&base), parse(&with), |_| None);
        out.push_str(&format!("| `{field}` | {cell} |\n"));
    }
    out
}

fn anthropic_table() -> String {
    let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
    let base = json!({"model": "m", "max_tokens": 50, "tools": tools, "messages": [{"role": "user", "content": "hi"}]});
    ingress_table(
        Format::Anthropic,
        "/v1/messages",
        base,
        vec![
            ("system", json!("be brief")),
            ("temperature", json!(0.5)),
            ("top_p", json!(0.9)),
            ("top_k", json!(5)),
            ("stop_sequences", json!(["END"])),
            ("stream", json!(true)),
            ("metadata", json!({"user_id": "u1"})),
            (
                "tool_choice",
                json!({"type": "any", "disable_parallel_tool_use": true}),
            ),
            (
                "thinking",
                json!({"type": "enabled", "budget_tokens": 2048}),
            ),
            (
                "output_config",
                json!({"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}),
            ),
            ("service_tier", json!("auto")),
            ("container", json!("c1")),
            (
                "mcp_servers",
                json!([{"type": "url", "url": "https://x", "name": "x"}]),
            ),
            (
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}]),
            ),
        ],
    )
}

fn gemini_table() -> String {
    let base = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f"}]}], "generationConfig": {"temperature": 1}});
    ingress_table(
        Format::Gemini,
        "/v1beta/models/m:streamGenerateContent",
        base,
        vec![
            (
                "systemInstruction",
                json!({"parts": [{"text": "be brief"}]}),
            ),
            ("generationConfig.topP", json!(0.9)),
            ("generationConfig.topK", json!(5)),
            ("generationConfig.maxOutputTokens", json!(100)),
            ("generationConfig.stopSequences", json!(["END"])),
            ("generationConfig.candidateCount", json!(2)),
            ("generationConfig.seed", json!(7)),
            ("generationConfig.presencePenalty", json!(0.5)),
            ("generationConfig.frequencyPenalty", json!(0.5)),
            (
                "generationConfig.responseMimeType",
                json!("application/json"),
            ),
            (
                "generationConfig.thinkingConfig",
                json!({"thinkingBudget": 1024}),
            ),
            ("generationConfig.responseLogprobs", json!(true)),
            ("generationConfig.speechConfig", json!({"voiceConfig": {}})),
            (
                "toolConfig",
                json!({"functionCallingConfig": {"mode": "ANY"}}),
            ),
            (
                "safetySettings",
                json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
            ),
            ("cachedContent", json!("cachedContents/x")),
            ("tools", json!([{"googleSearch": {}}])),
        ],
    )
}

#[test]
fn providers_doc_matrix_is_true() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/PROVIDERS.md");
    let mut doc = std::fs::read_to_string(&path).expect("docs/PROVIDERS.md");
    let bless = std::env::var_os("SWITCHYARD_BLESS").is_some();
    for (name, table) in [
        ("egress", egress_table()),
        ("anthropic", anthropic_table()),
        ("gemini", gemini_table()),
    ] {
        let begin = format!("<!-- matrix:{name}:begin -->\n");
        let end = format!("<!-- matrix:{name}:end -->");
        let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) else {
            panic!("docs/PROVIDERS.md lacks the {name} markers");
        };
        let current = &doc[b + begin.len()..e];
        if bless {
            doc.replace_range(b + begin.len()..e, &table);
        } else {
            assert_eq!(
                current, table,
                "the {name} table in docs/PROVIDERS.md is out of date; expected:\n{table}"
            );
        }
    }
    if bless {
        std::fs::write(&path, doc).expect("write docs/PROVIDERS.md");
    }
}
