//! The one JSON log line per request, as `wrangler tail --format json` shows it.

use crate::usage::Usage;
use serde::Serialize;

/// One attempt at one target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    /// Upstream status, `timeout`, `network`, or `ok`.
    pub outcome: String,
    pub ms: u64,
}

impl AttemptRecord {
    /// `provider/model:outcome:ms`, the element of `x-switchyard-attempts`.
    pub fn header_item(&self) -> String {
        format!(
            "{}/{}:{}:{}",
            self.provider, self.model, self.outcome, self.ms
        )
    }
}

/// Render attempts for the `x-switchyard-attempts` header.
pub fn attempts_header(attempts: &[AttemptRecord]) -> String {
    attempts
        .iter()
        .map(AttemptRecord::header_item)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct LogLine {
    /// Always `"switchyard.request"`, so the line is easy to filter among others.
    pub msg: &'static str,
    /// RFC 3339 UTC.
    pub ts: String,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_user: Option<String>,
    /// The public model name (the route) the caller asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_model: Option<String>,
    pub stream: bool,
    /// The response cache: `HIT`, `MISS`, `BYPASS` or `STALE` (absent before a route is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    pub attempts: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<AttemptRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// What the answer cost (USD, exact decimal); absent when unpriced or unanswered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// Malformed upstream chunks that were skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub malformed_chunks: u32,
    /// The stream broke after bytes reached the caller and ended with an in-band error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream_broken: bool,
    /// The caller disconnected before the stream ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_closed: bool,
    /// Streams: the isolate's wasm memory when the stream ended, in bytes. It never shrinks, so
    /// it bounds what any stream so far held at once (the relay holds one chunk at a time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_memory_bytes: Option<u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl LogLine {
    pub fn new(request_id: String, method: String, path: String, ts: String) -> Self {
        LogLine {
            msg: "switchyard.request",
            ts,
            request_id,
            method,
            path,
            ..Default::default()
        }
    }

    pub fn set_usage(&mut self, u: &Usage) {
        self.prompt_tokens = Some(u.prompt_tokens);
        self.completion_tokens = Some(u.completion_tokens);
        self.cached_tokens = Some(u.cached_tokens);
        self.reasoning_tokens = Some(u.reasoning_tokens);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Unix milliseconds to RFC 3339 (`2026-11-21T07:35:00.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::time::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_445_412_480_123), "2015-10-21T07:28:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn line_is_one_json_object_with_the_fields() {
        let mut l = LogLine::new(
            "r1".into(),
            "POST".into(),
            "/v1/chat/completions".into(),
            rfc3339(0),
        );
        l.status = 200;
        l.route = Some("demo".into());
        l.attempts = 1;
        l.attempt_log.push(AttemptRecord {
            provider: "p".into(),
            model: "m".into(),
            outcome: "ok".into(),
            ms: 5,
        });
        let s = l.to_json();
        assert!(!s.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        for k in [
            "ts",
            "request_id",
            "status",
            "stream",
            "latency_ms",
            "attempts",
            "route",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(attempts_header(&l.attempt_log), "p/m:ok:5");
    }
}
