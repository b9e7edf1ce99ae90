//! Behaviour specs: `key` / `key=value` items separated by commas, and the
//! `[[fake@INSTANCE:spec]]` / `[[fake:spec]]` markers that carry them in bodies.

/// Upper bound for `words=N`, so a typo cannot make the server build a huge reply.
pub const MAX_WORDS: u64 = 1_000_000;

/// `error=KIND` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    RateLimit,
    Overloaded,
    Server,
    InvalidRequest,
    Auth,
    ContextLength,
    ContentPolicy,
    /// Gemini: 200 with `promptFeedback.blockReason`; elsewhere the same as `ContentPolicy`.
    PromptBlocked,
    Prefill,
    /// Not settable by name: chosen from a bare `status=C`.
    Permission,
    /// Not settable by name: chosen from a bare `status=C`.
    NotFound,
}

impl ErrorKind {
    pub fn parse(s: &str) -> Option<ErrorKind> {
        Some(match s {
            "rate_limit" => ErrorKind::RateLimit,
            "overloaded" => ErrorKind::Overloaded,
            "server" => ErrorKind::Server,
            "invalid_request" => ErrorKind::InvalidRequest,
            "auth" => ErrorKind::Auth,
            "context_length" => ErrorKind::ContextLength,
            "content_policy" => ErrorKind::ContentPolicy,
            "prompt_blocked" => ErrorKind::PromptBlocked,
            "prefill" => ErrorKind::Prefill,
            _ => return None,
        })
    }

    /// The error kind whose body best fits a bare `status=C`.
    pub fn for_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Auth,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            _ => ErrorKind::Server,
        }
    }
}

/// A parsed behaviour spec. Content keys (`words`, `cached`, `reasoning`,
/// `tool_call`) always apply; every other key is a misbehaviour, which `times`
/// limits and `ok` cancels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub id: Option<String>,
    pub times: Option<u64>,
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub error: Option<ErrorKind>,
    pub reset: bool,
    pub hang: bool,
    pub header_delay_ms: Option<u64>,
    pub first_token_delay_ms: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    pub stall_after: Option<u64>,
    pub cut_after: Option<u64>,
    pub malformed_at: Option<u64>,
    pub no_done: bool,
    pub error_event_after: Option<u64>,
    pub ok: bool,
    pub words: Option<u64>,
    pub cached: Option<u64>,
    pub reasoning: Option<u64>,
    pub tool_call: bool,
    /// Answer 401 when the request's credentials (Authorization, x-api-key, x-goog-api-key)
    /// contain this string: one bad key among several.
    pub reject_key: Option<String>,
    /// Misbehave only when the request's credentials contain this string (every other key is
    /// answered normally): one failing key among several.
    pub only_key: Option<String>,
    /// Items that were not understood (unknown key or bad value), verbatim.
    pub unknown: Vec<String>,
}

const KEYS: &[&str] = &[
    "id",
    "times",
    "status",
    "retry_after",
    "error",
    "reset",
    "hang",
    "header_delay_ms",
    "first_token_delay_ms",
    "chunk_delay_ms",
    "stall_after",
    "cut_after",
    "malformed_at",
    "no_done",
    "error_event_after",
    "ok",
    "words",
    "cached",
    "reasoning",
    "tool_call",
    "reject_key",
    "only_key",
];

fn key_of(item: &str) -> &str {
    let item = item.trim();
    match item.split_once('=') {
        Some((k, _)) => k.trim(),
        None => item,
    }
}

/// Splits on commas, but glues an item that looks like the rest of an HTTP
/// date (whitespace, then a digit) back onto a preceding `retry_after=` item,
/// so `retry_after=Wed, 21 Oct 2015 07:28:00 GMT` survives.
fn split_items(spec: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for raw in spec.split(',') {
        let date_tail = raw.starts_with(char::is_whitespace)
            && raw.trim_start().starts_with(|c: char| c.is_ascii_digit());
        let continues_date = date_tail
            && !KEYS.contains(&key_of(raw))
            && items
                .last()
                .is_some_and(|prev| key_of(prev) == "retry_after");
        match items.last_mut() {
            Some(prev) if continues_date => {
                prev.push(',');
                prev.push_str(raw);
            }
            _ => items.push(raw.to_string()),
        }
    }
    items
}

fn num(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| v.parse::<u64>().ok())
}

impl Spec {
    pub fn parse(spec: &str) -> Spec {
        let mut s = Spec::default();
        for item in split_items(spec) {
            let trimmed = item.trim();
            if trimmed.is_empty() {
                continue;
            }
            let (key, value) = match trimmed.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (trimmed, None),
            };
            let ok = match key {
                "id" => value
                    .filter(|v| !v.is_empty())
                    .map(|v| s.id = Some(v.to_string())),
                "times" => num(value).map(|n| s.times = Some(n)),
                "status" => value
                    .and_then(|v| v.parse::<u16>().ok())
                    .filter(|c| (100..=999).contains(c))
                    .map(|c| s.status = Some(c)),
                "retry_after" => value.map(|v| s.retry_after = Some(v.to_string())),
                "error" => value.and_then(ErrorKind::parse).map(|k| s.error = Some(k)),
                "reset" => value.is_none().then(|| s.reset = true),
                "hang" => value.is_none().then(|| s.hang = true),
                "no_done" => value.is_none().then(|| s.no_done = true),
                "ok" => value.is_none().then(|| s.ok = true),
                "tool_call" => value.is_none().then(|| s.tool_call = true),
                "header_delay_ms" => num(value).map(|n| s.header_delay_ms = Some(n)),
                "first_token_delay_ms" => num(value).map(|n| s.first_token_delay_ms = Some(n)),
                "chunk_delay_ms" => num(value).map(|n| s.chunk_delay_ms = Some(n)),
                "stall_after" => num(value).map(|n| s.stall_after = Some(n)),
                "cut_after" => num(value).map(|n| s.cut_after = Some(n)),
                "malformed_at" => num(value).map(|n| s.malformed_at = Some(n)),
                "error_event_after" => num(value).map(|n| s.error_event_after = Some(n)),
                "words" => num(value).map(|n| s.words = Some(n.min(MAX_WORDS))),
                "cached" => num(value).map(|n| s.cached = Some(n)),
                "reasoning" => num(value).map(|n| s.reasoning = Some(n)),
                "reject_key" => value
                    .filter(|v| !v.is_empty())
                    .map(|v| s.reject_key = Some(v.to_string())),
                "only_key" => value
                    .filter(|v| !v.is_empty())
                    .map(|v| s.only_key = Some(v.to_string())),
                _ => None,
            };
            if ok.is_none() {
                s.unknown.push(trimmed.to_string());
            }
        }
        if s.ok {
            s = s.without_misbehaviour();
        }
        s
    }

    /// The same spec with every misbehaviour key cleared (content keys, `id`
    /// and `unknown` stay).
    pub fn without_misbehaviour(&self) -> Spec {
        Spec {
            id: self.id.clone(),
            ok: self.ok,
            words: self.words,
            cached: self.cached,
            reasoning: self.reasoning,
            tool_call: self.tool_call,
            unknown: self.unknown.clone(),
            ..Spec::default()
        }
    }

    /// The error kind to answer with, if the spec asks for an error response.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match (self.error, self.status) {
            (Some(k), _) => Some(k),
            (None, Some(c)) if c >= 400 => Some(ErrorKind::for_status(c)),
            _ => None,
        }
    }
}

fn valid_instance(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Finds the spec carried by the body markers for `instance`:
/// the first `[[fake@INSTANCE:spec]]` naming this instance, else the first
/// `[[fake:spec]]`, else `None`.
pub fn spec_from_body(body: &str, instance: &str) -> Option<String> {
    const OPEN: &str = "[[fake";
    let mut generic: Option<String> = None;
    let mut rest = body;
    while let Some(pos) = rest.find(OPEN) {
        let after = &rest[pos + OPEN.len()..];
        if let Some(tail) = after.strip_prefix('@') {
            if let Some((inst, spec_and_more)) = tail.split_once(':') {
                if valid_instance(inst) {
                    if let Some(end) = spec_and_more.find("]]") {
                        if inst == instance {
                            return Some(spec_and_more[..end].to_string());
                        }
                        rest = &spec_and_more[end + 2..];
                        continue;
                    }
                }
            }
        } else if let Some(tail) = after.strip_prefix(':') {
            if let Some(end) = tail.find("]]") {
                if generic.is_none() {
                    generic = Some(tail[..end].to_string());
                }
                rest = &tail[end + 2..];
                continue;
            }
        }
        rest = after;
    }
    generic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_values() {
        let s = Spec::parse("status=429, retry_after=2,id=a1,times=3,words=4,tool_call,no_done");
        assert_eq!(s.status, Some(429));
        assert_eq!(s.retry_after.as_deref(), Some("2"));
        assert_eq!(s.id.as_deref(), Some("a1"));
        assert_eq!(s.times, Some(3));
        assert_eq!(s.words, Some(4));
        assert!(s.tool_call);
        assert!(s.no_done);
        assert!(s.unknown.is_empty());
        assert_eq!(s.error_kind(), Some(ErrorKind::RateLimit));
    }

    #[test]
    fn retry_after_http_date_keeps_its_comma() {
        let s = Spec::parse("status=503,retry_after=Wed, 21 Oct 2015 07:28:00 GMT,times=1");
        assert_eq!(
            s.retry_after.as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(s.times, Some(1));
        assert_eq!(s.status, Some(503));
        let s = Spec::parse("retry_after=Wed, 21 Oct 2015 07:28:00 GMT,bogus");
        assert_eq!(
            s.retry_after.as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(s.unknown, vec!["bogus"]);
    }

    #[test]
    fn unknown_and_bad_values_are_reported() {
        let s = Spec::parse("stauts=500,words=many,reset=1,error=nope,cut_after=2");
        assert_eq!(
            s.unknown,
            vec!["stauts=500", "words=many", "reset=1", "error=nope"]
        );
        assert_eq!(s.cut_after, Some(2));
        assert_eq!(s.words, None);
    }

    #[test]
    fn ok_cancels_misbehaviour_but_keeps_content_keys() {
        let s = Spec::parse("status=500,ok,words=2,id=x");
        assert_eq!(s.status, None);
        assert_eq!(s.words, Some(2));
        assert_eq!(s.id.as_deref(), Some("x"));
        assert_eq!(s.error_kind(), None);
    }

    #[test]
    fn error_kind_precedence() {
        assert_eq!(
            Spec::parse("error=overloaded").error_kind(),
            Some(ErrorKind::Overloaded)
        );
        assert_eq!(
            Spec::parse("status=404").error_kind(),
            Some(ErrorKind::NotFound)
        );
        assert_eq!(Spec::parse("status=200").error_kind(), None);
        assert_eq!(Spec::parse("").error_kind(), None);
        assert_eq!(Spec::parse("words=999999999").words, Some(MAX_WORDS));
    }

    #[test]
    fn body_markers_pick_instance_then_generic() {
        let body = r#"{"messages":[{"content":"x [[fake:status=500]] [[fake@primary:status=503]] [[fake@backup:ok]]"}]}"#;
        assert_eq!(
            spec_from_body(body, "primary").as_deref(),
            Some("status=503")
        );
        assert_eq!(spec_from_body(body, "backup").as_deref(), Some("ok"));
        assert_eq!(spec_from_body(body, "other").as_deref(), Some("status=500"));
        assert_eq!(spec_from_body("no markers", "primary"), None);
        assert_eq!(
            spec_from_body("[[fake@primary:unterminated", "primary"),
            None
        );
        assert_eq!(
            spec_from_body("[[fake@bad name:x]] [[fake@p:y]]", "p").as_deref(),
            Some("y")
        );
    }
}
