//! Provider-independent pieces: word counting, the default answer, usage,
//! delta splitting, embeddings and base64.

use crate::spec::Spec;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Next value of the process-wide counter used in response ids.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Arguments every fake tool call carries.
pub const TOOL_ARGUMENTS: &str = r#"{"location":"Paris"}"#;

/// Token counts of one answer, provider-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Words in the request text (includes the cached part).
    pub prompt: u64,
    /// Words in the reply (excludes reasoning).
    pub reply: u64,
    pub cached: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Output tokens as OpenAI/Anthropic count them: reply + reasoning.
    pub fn completion(&self) -> u64 {
        self.reply + self.reasoning
    }

    pub fn total(&self) -> u64 {
        self.prompt + self.completion()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Plain text (or the JSON-mode object as text).
    Text(String),
    /// A call to the named tool with [`TOOL_ARGUMENTS`].
    ToolCall { name: String },
}

/// Everything a provider module needs to render one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub id: u64,
    pub created: u64,
    pub model: String,
    pub reply: Reply,
    pub json_mode: bool,
    pub usage: Usage,
}

impl Answer {
    /// Builds the deterministic answer. `tool` is the first declared tool (if
    /// any); a `tool_call` spec without a tool falls back to text.
    pub fn new(
        instance: &str,
        model: &str,
        prompt_words: u64,
        json_mode: bool,
        tool: Option<String>,
        spec: &Spec,
    ) -> Answer {
        let reply = match (spec.tool_call, tool) {
            (true, Some(name)) => Reply::ToolCall { name },
            _ => Reply::Text(reply_text(instance, model, json_mode, spec.words)),
        };
        let reply_words = match &reply {
            Reply::Text(t) => count_words(t),
            Reply::ToolCall { .. } => count_words(TOOL_ARGUMENTS),
        };
        Answer {
            id: next_id(),
            created: unix_secs(),
            model: model.to_string(),
            json_mode,
            reply,
            usage: Usage {
                prompt: prompt_words,
                reply: reply_words,
                cached: spec.cached.unwrap_or(0),
                reasoning: spec.reasoning.unwrap_or(0),
            },
        }
    }

    /// The stream pieces of the reply (text words, or tool argument pieces).
    pub fn pieces(&self) -> Vec<String> {
        match &self.reply {
            Reply::Text(t) => {
                let p = word_deltas(t);
                if self.json_mode {
                    at_least_two(p)
                } else {
                    p
                }
            }
            Reply::ToolCall { .. } => at_least_two(vec![TOOL_ARGUMENTS.to_string()]),
        }
    }
}

/// `Hello from {instance} ({model}).`, or `w1 … wN` with `words=N`, wrapped as
/// `{"answer":"…"}` in JSON mode.
pub fn reply_text(instance: &str, model: &str, json_mode: bool, words: Option<u64>) -> String {
    let text = match words {
        Some(n) => (1..=n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" "),
        None => format!("Hello from {instance} ({model})."),
    };
    if json_mode {
        serde_json::json!({ "answer": text }).to_string()
    } else {
        text
    }
}

/// One piece per whitespace-separated word; every piece but the first keeps
/// the whitespace before it, so the pieces concatenate to `text` (minus any
/// leading whitespace).
pub fn word_deltas(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut current));
                in_word = false;
            }
            if !out.is_empty() {
                current.push(c);
            }
        } else {
            in_word = true;
            current.push(c);
        }
    }
    if in_word {
        out.push(current);
    }
    out
}

/// Makes sure there are at least two pieces by halving the first one.
pub fn at_least_two(mut pieces: Vec<String>) -> Vec<String> {
    if pieces.len() >= 2 {
        return pieces;
    }
    let Some(first) = pieces.first().cloned() else {
        return pieces;
    };
    let chars: Vec<char> = first.chars().collect();
    if chars.len() < 2 {
        return pieces;
    }
    let mid = chars.len() / 2;
    pieces[0] = chars[..mid].iter().collect();
    pieces.insert(1, chars[mid..].iter().collect());
    pieces
}

/// Words in a string, or in the `text` fields of an array of parts/blocks
/// (`{"type":"text","text":…}`; parts of other types are ignored).
pub fn words_in_content(content: &Value) -> u64 {
    match content {
        Value::String(s) => count_words(s),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str).unwrap_or("text") == "text")
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum(),
        _ => 0,
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Default embedding dimension.
pub const DEFAULT_DIM: usize = 8;
/// Largest accepted embedding dimension.
pub const MAX_DIM: usize = 4096;

/// Embedding dimension from an optional request field (`dimensions`,
/// `outputDimensionality`): absent or null means [`DEFAULT_DIM`].
pub fn dimension(v: Option<&Value>) -> Result<usize, String> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_DIM),
        Some(v) => v
            .as_u64()
            .filter(|d| (1..=MAX_DIM as u64).contains(d))
            .map(|d| d as usize)
            .ok_or_else(|| format!("embedding dimension must be an integer in 1..={MAX_DIM}")),
    }
}

/// Deterministic unit-length vector of `dim` values derived from an FNV-1a
/// hash of `text`.
pub fn embedding(text: &str, dim: usize) -> Vec<f32> {
    let mut state = fnv1a(text.as_bytes());
    let raw: Vec<f64> = (0..dim)
        .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
    raw.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Little-endian f32 bytes of a vector, base64-encoded (OpenAI
/// `encoding_format: "base64"`).
pub fn embedding_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// Percent-decoding for query values (`+` is a space).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value` pairs of a query string, decoded.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "input {input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn embedding_base64_is_le_f32() {
        assert_eq!(embedding_base64(&[1.0]), "AACAPw==");
    }

    #[test]
    fn counts_words() {
        assert_eq!(count_words(""), 0);
        assert_eq!(count_words("  one\ttwo\nthree  "), 3);
        let parts = serde_json::json!([
            {"type": "text", "text": "a b"},
            {"type": "image_url", "image_url": {"url": "x y z"}},
            {"type": "text", "text": "c"}
        ]);
        assert_eq!(words_in_content(&parts), 3);
        assert_eq!(words_in_content(&serde_json::json!("x y")), 2);
        assert_eq!(words_in_content(&Value::Null), 0);
    }

    #[test]
    fn reply_texts() {
        assert_eq!(reply_text("p", "m", false, None), "Hello from p (m).");
        assert_eq!(reply_text("p", "m", false, Some(3)), "w1 w2 w3");
        assert_eq!(reply_text("p", "m", false, Some(0)), "");
        assert_eq!(
            reply_text("p", "m", true, None),
            r#"{"answer":"Hello from p (m)."}"#
        );
    }

    #[test]
    fn deltas_concatenate_to_the_reply() {
        let text = "Hello from primary (gpt-4o).";
        let d = word_deltas(text);
        assert_eq!(d, vec!["Hello", " from", " primary", " (gpt-4o)."]);
        assert_eq!(d.concat(), text);
        assert!(word_deltas("").is_empty());
        let halves = at_least_two(vec![TOOL_ARGUMENTS.to_string()]);
        assert_eq!(halves.len(), 2);
        assert_eq!(halves.concat(), TOOL_ARGUMENTS);
    }

    #[test]
    fn answer_usage_and_pieces() {
        let spec = Spec::parse("cached=2,reasoning=3,words=1");
        let a = Answer::new("p", "m", 7, true, None, &spec);
        assert_eq!(a.reply, Reply::Text(r#"{"answer":"w1"}"#.to_string()));
        assert_eq!(
            a.usage,
            Usage {
                prompt: 7,
                reply: 1,
                cached: 2,
                reasoning: 3
            }
        );
        assert_eq!(a.usage.completion(), 4);
        assert_eq!(a.usage.total(), 11);
        let p = a.pieces();
        assert!(p.len() >= 2);
        assert_eq!(p.concat(), r#"{"answer":"w1"}"#);

        let tool = Answer::new(
            "p",
            "m",
            1,
            false,
            Some("get_weather".into()),
            &Spec::parse("tool_call"),
        );
        assert_eq!(
            tool.reply,
            Reply::ToolCall {
                name: "get_weather".into()
            }
        );
        assert_eq!(tool.pieces().concat(), TOOL_ARGUMENTS);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 8);
        assert_eq!(a.len(), 8);
        assert_eq!(a, embedding("hello", 8));
        assert_ne!(a, embedding("hello!", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }

    #[test]
    fn decodes_queries() {
        assert_eq!(
            query_pairs("instance=a%20b&id=x+y&flag"),
            vec![
                ("instance".to_string(), "a b".to_string()),
                ("id".to_string(), "x y".to_string()),
                ("flag".to_string(), String::new())
            ]
        );
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
