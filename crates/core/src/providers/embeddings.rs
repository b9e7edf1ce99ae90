//! Embeddings (`POST /v1/embeddings`, OpenAI's shape) for OpenAI-compatible and Gemini targets.
//!
//! | | OpenAI-compatible | Gemini | Anthropic |
//! | --- | --- | --- | --- |
//! | request | the caller's body, `model` replaced | `models/{m}:batchEmbedContents`, one request per input (`content.parts[0].text`; `dimensions` → `outputDimensionality`) | 400 `unsupported_parameter` (no embeddings API): the route's next target is tried |
//! | token-array inputs | passed | 400 `unsupported_parameter` | — |
//! | answer | passed through | `embeddings[].values` → `data[i].embedding` | — |
//! | usage | the upstream's `usage.prompt_tokens` | estimated: ⌈UTF-8 bytes / 4⌉ per input (Gemini reports none) | — |
//!
//! `encoding_format` is `float` (default) or `base64` (little-endian `f32`s, standard base64, as
//! OpenAI sends them); anything else is a 400. An answer with a different number of vectors than
//! inputs is malformed (and retried like any malformed answer).

use super::common::{esc, put};
use super::{UpstreamAnswer, UpstreamRequest};
use crate::config::{Protocol, ProviderConfig};
use crate::error::{ErrorKind, GatewayError};
use crate::policy::AttemptFailure;
use crate::usage::Usage;
use serde_json::{Map, Value};

/// A checked `/v1/embeddings` request. The body is kept for OpenAI-compatible targets.
#[derive(Debug, Clone)]
pub struct EmbeddingsRequest {
    pub body: Map<String, Value>,
    pub model: String,
    /// How many vectors the answer must hold.
    pub count: usize,
    pub base64: bool,
}

fn bad(param: &str, why: &str) -> GatewayError {
    GatewayError::invalid(format!("`{param}` {why}"), param)
}

impl EmbeddingsRequest {
    pub fn parse(bytes: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                "The request body must be a JSON object",
            ));
        };
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err(bad("model", "must be a non-empty string")),
        };
        let count = match body.get("input") {
            Some(Value::String(_)) => 1,
            // One token array, or several inputs (texts or token arrays).
            Some(Value::Array(a)) if a.iter().all(Value::is_u64) => usize::from(!a.is_empty()),
            Some(Value::Array(a)) if a.iter().all(|x| x.is_string() || x.is_array()) => a.len(),
            _ => 0,
        };
        if count == 0 {
            return Err(bad(
                "input",
                "must be a string, a non-empty array of strings, or token arrays",
            ));
        }
        let base64 = match body.get("encoding_format") {
            None | Some(Value::Null) => false,
            Some(f) if f == "float" => false,
            Some(f) if f == "base64" => true,
            _ => return Err(bad("encoding_format", "must be \"float\" or \"base64\"")),
        };
        Ok(EmbeddingsRequest {
            body,
            model,
            count,
            base64,
        })
    }

    /// The inputs as texts; `None` when they are token arrays.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self.body.get("input")? {
            Value::String(t) => Some(vec![t.as_str()]),
            Value::Array(a) => a.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }
}

/// Build the upstream embeddings request for `target_model` on `provider`.
pub fn build(
    provider: &ProviderConfig,
    target_model: &str,
    req: &EmbeddingsRequest,
    api_key: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let base = provider.base_url();
    let mut headers = vec![("content-type", "application/json".to_string())];
    let (url, body) = match (provider.kind.protocol(), req.texts()) {
        (Protocol::OpenAi, _) => {
            let mut body = req.body.clone();
            put(&mut body, "model", Value::String(target_model.to_string()));
            if let Some(key) = api_key {
                headers.push(("authorization", format!("Bearer {key}")));
            }
            (
                format!("{base}/embeddings"),
                crate::json::to_text(&Value::Object(body)),
            )
        }
        (Protocol::Gemini, Some(texts)) => {
            let model = target_model.strip_prefix("models/").unwrap_or(target_model);
            let dims = req
                .body
                .get("dimensions")
                .filter(|d| !d.is_null())
                .map_or(String::new(), |d| {
                    format!(r#","outputDimensionality":{}"#, crate::json::to_text(d))
                });
            let name = esc(&format!("models/{model}"));
            let mut requests = Vec::with_capacity(texts.len());
            for t in texts {
                requests.push(format!(
                    r#"{{"model":{name},"content":{{"parts":[{{"text":{}}}]}}{dims}}}"#,
                    esc(t)
                ));
            }
            if let Some(key) = api_key {
                headers.push(("x-goog-api-key", key.to_string()));
            }
            (
                format!("{base}/models/{model}:batchEmbedContents"),
                format!(r#"{{"requests":[{}]}}"#, requests.join(",")),
            )
        }
        // Anthropic has no embeddings API; Gemini embeds texts, not token arrays.
        _ => {
            return Err(GatewayError::new(
                ErrorKind::UnsupportedParameter,
                format!("provider {:?} cannot embed this input", provider.id),
            )
            .with_param("input"))
        }
    };
    Ok(UpstreamRequest {
        url,
        headers,
        body: body.into_bytes(),
        warnings: Vec::new(),
    })
}

/// Read a successful (2xx) embeddings answer as OpenAI's list.
pub fn parse_answer(
    protocol: Protocol,
    body: Vec<u8>,
    req: &EmbeddingsRequest,
    target_model: &str,
) -> Result<UpstreamAnswer, AttemptFailure> {
    let wrong = || AttemptFailure::malformed("the answer does not hold one vector per input");
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| AttemptFailure::malformed("the answer is not JSON"))?;
    if protocol != Protocol::Gemini {
        if v.get("data").and_then(Value::as_array).map(Vec::len) != Some(req.count) {
            return Err(wrong());
        }
        let usage = v
            .get("usage")
            .filter(|u| u.is_object())
            .map(Usage::from_openai);
        let model = v.get("model").and_then(Value::as_str).map(str::to_string);
        return Ok(UpstreamAnswer { body, usage, model });
    }
    let list = v.get("embeddings").and_then(Value::as_array);
    let list = list.filter(|l| l.len() == req.count).ok_or_else(wrong)?;
    let mut data = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let Some(values) = e.get("values").and_then(Value::as_array) else {
            return Err(wrong());
        };
        let embedding = if req.base64 {
            esc(&base64_f32(values))
        } else {
            crate::json::to_text(&e["values"])
        };
        data.push(format!(
            r#"{{"object":"embedding","index":{i},"embedding":{embedding}}}"#
        ));
    }
    let tokens: u64 = req
        .texts()
        .unwrap_or_default()
        .iter()
        .map(|t| (t.len() as u64).div_ceil(4))
        .sum();
    let out = format!(
        r#"{{"object":"list","data":[{}],"model":{},"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}"#,
        data.join(","),
        esc(target_model)
    );
    Ok(UpstreamAnswer {
        body: out.into_bytes(),
        usage: Some(Usage {
            prompt_tokens: tokens,
            ..Usage::default()
        }),
        model: Some(target_model.to_string()),
    })
}

/// Numbers as little-endian `f32`s in standard, padded base64 (OpenAI's `base64` encoding).
pub fn base64_f32(values: &[Value]) -> String {
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
        .collect();
    let mut out: String = crate::tenancy::b64url(&bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn provider(id: &str) -> ProviderConfig {
        let c = Config::parse(
            r#"{"providers":[{"id":"oa","kind":"openai","api_key_secrets":["K"]},
                             {"id":"gem","kind":"gemini","api_key_secrets":["G"]},
                             {"id":"claude","kind":"anthropic","api_key_secrets":["A"]}],
                "routes":[{"model":"e","targets":[{"provider":"oa","model":"x"}]}]}"#,
        )
        .unwrap();
        c.provider(id).unwrap().clone()
    }

    fn req(body: Value) -> EmbeddingsRequest {
        EmbeddingsRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requests_are_checked() {
        let r = req(
            json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 4}),
        );
        assert_eq!((r.count, r.base64), (2, true));
        assert_eq!(r.texts(), Some(vec!["a", "b"]));
        assert_eq!(req(json!({"model": "e", "input": [1, 2, 3]})).count, 1);
        let tokens = req(json!({"model": "e", "input": [[1, 2], [3]], "encoding_format": null}));
        assert_eq!(
            (tokens.count, tokens.texts().is_none(), tokens.base64),
            (2, true, false)
        );
        let e = |b: Value| EmbeddingsRequest::parse(b.to_string().as_bytes()).unwrap_err();
        assert_eq!(e(json!({"input": "x"})).param.as_deref(), Some("model"));
        assert_eq!(
            e(json!({"model": "e", "input": []})).param.as_deref(),
            Some("input")
        );
        assert_eq!(
            e(json!({"model": "e", "input": 5})).param.as_deref(),
            Some("input")
        );
        assert_eq!(
            e(json!({"model": "e", "input": [{"a": 1}]}))
                .param
                .as_deref(),
            Some("input")
        );
        assert_eq!(
            e(json!({"model": "e", "input": "x", "encoding_format": "int8"}))
                .param
                .as_deref(),
            Some("encoding_format")
        );
        assert_eq!(EmbeddingsRequest::parse(b"[]").unwrap_err().status(), 400);
    }

    #[test]
    fn openai_targets_get_the_body() {
        let r = req(json!({"model": "e", "input": "hi", "user": "u"}));
        let up = build(&provider("oa"), "text-embedding-3-small", &r, Some("k")).unwrap();
        assert_eq!(up.url, "https://api.openai.com/v1/embeddings");
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            b,
            json!({"model": "text-embedding-3-small", "input": "hi", "user": "u"})
        );
        assert!(up.headers.contains(&("authorization", "Bearer k".into())));
    }

    #[test]
    fn gemini_targets_get_batches_and_anthropic_none() {
        let r = req(json!({"model": "e", "input": ["a", "b\"c"], "dimensions": 3}));
        let up = build(&provider("gem"), "models/text-embedding-004", &r, Some("g")).unwrap();
        assert!(
            up.url
                .ends_with("/v1beta/models/text-embedding-004:batchEmbedContents"),
            "{}",
            up.url
        );
        let b: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(
            b["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b\"c"}]}, "outputDimensionality": 3})
        );
        assert!(up.headers.contains(&("x-goog-api-key", "g".into())));
        let e = build(
            &provider("gem"),
            "m",
            &req(json!({"model": "e", "input": [1, 2]})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = build(
            &provider("claude"),
            "c",
            &req(json!({"model": "e", "input": "x"})),
            None,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
        assert!(e.message.contains("\"claude\""), "{e}");
    }

    #[test]
    fn gemini_answers_become_openai_lists() {
        let r = req(json!({"model": "e", "input": ["abcde", "b"]}));
        let body = br#"{"embeddings":[{"values":[0.5,-1]},{"values":[1,0]}]}"#.to_vec();
        let a = parse_answer(Protocol::Gemini, body.clone(), &r, "m").unwrap();
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(
            v["data"][0],
            json!({"object": "embedding", "index": 0, "embedding": [0.5, -1]})
        );
        assert_eq!(v["model"], "m");
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(a.usage.map(|u| u.prompt_tokens), Some(3));
        let r64 = req(json!({"model": "e", "input": ["a", "b"], "encoding_format": "base64"}));
        let v: Value = serde_json::from_slice(
            &parse_answer(Protocol::Gemini, body, &r64, "m")
                .unwrap()
                .body,
        )
        .unwrap();
        assert_eq!(
            v["data"][1]["embedding"], "AACAPwAAAAA=",
            "1.0f32, 0.0f32 little-endian"
        );
        let one = req(json!({"model": "e", "input": "x"}));
        assert!(parse_answer(
            Protocol::Gemini,
            br#"{"embeddings":[{"values":[1]}]}"#.to_vec(),
            &one,
            "m"
        )
        .is_ok());
        assert!(parse_answer(
            Protocol::Gemini,
            br#"{"embeddings":[]}"#.to_vec(),
            &one,
            "m"
        )
        .is_err());
        assert!(parse_answer(
            Protocol::Gemini,
            br#"{"embeddings":[{}]}"#.to_vec(),
            &one,
            "m"
        )
        .is_err());
    }

    #[test]
    fn openai_answers_pass_through() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[1.0]}],"model":"m2","usage":{"prompt_tokens":2,"total_tokens":2}}"#.to_vec();
        let r = req(json!({"model": "e", "input": "x"}));
        let a = parse_answer(Protocol::OpenAi, body.clone(), &r, "m").unwrap();
        assert_eq!(a.body, body, "untouched");
        assert_eq!(a.usage.map(|u| u.prompt_tokens), Some(2));
        assert_eq!(a.model.as_deref(), Some("m2"));
        let two = req(json!({"model": "e", "input": ["a", "b"]}));
        assert!(parse_answer(Protocol::OpenAi, body, &two, "m").is_err());
    }

    #[test]
    fn base64_is_standard_and_padded() {
        assert_eq!(base64_f32(&[json!(1.0)]), "AACAPw==");
        assert_eq!(base64_f32(&[]), "");
    }
}
