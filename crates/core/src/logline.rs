//! The one JSON log line per request, as `wrangler tail --format json` shows it.

use crate::json::JsonWriter;
use crate::usage::Usage;

/// One attempt at one target.
#[derive(Debug, Clone, PartialEq)]
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

/// Written by [`LogLine::to_json`]: the fields in this order, optional ones omitted when absent
/// (`attempt_log` when empty, `malformed_chunks` when 0, the two flags when false).
#[derive(Debug, Clone, Default)]
pub struct LogLine {
    /// Always `"switchyard.request"`, so the line is easy to filter among others.
    pub msg: &'static str,
    /// RFC 3339 UTC.
    pub ts: String,
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub tenant: Option<String>,
    pub end_user: Option<String>,
    /// The public model name (the route) the caller asked for.
    pub route: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    /// The response cache: `HIT`, `MISS`, `BYPASS` or `STALE` (absent before a route is known).
    pub cache: Option<&'static str>,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub attempts: usize,
    pub attempt_log: Vec<AttemptRecord>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// What the answer cost (USD, exact decimal); absent when unpriced or unanswered.
    pub cost_usd: Option<String>,
    pub error_code: Option<&'static str>,
    /// Malformed upstream chunks that were skipped.
    pub malformed_chunks: u32,
    /// The stream broke after bytes reached the caller and ended with an in-band error.
    pub stream_broken: bool,
    /// The caller disconnected before the stream ended.
    pub client_closed: bool,
    /// Streams: the isolate's wasm memory when the stream ended, in bytes. It never shrinks, so
    /// it bounds what any stream so far held at once (the relay holds one chunk at a time).
    pub wasm_memory_bytes: Option<u64>,
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
        let mut w = JsonWriter::new();
        w.open()
            .key("msg")
            .str(self.msg)
            .key("ts")
            .str(&self.ts)
            .key("request_id")
            .str(&self.request_id)
            .key("method")
            .str(&self.method)
            .key("path")
            .str(&self.path)
            .key("status")
            .u64(self.status.into())
            .opt_str("tenant", self.tenant.as_deref())
            .opt_str("end_user", self.end_user.as_deref())
            .opt_str("route", self.route.as_deref())
            .opt_str("provider", self.provider.as_deref())
            .opt_str("upstream_model", self.upstream_model.as_deref())
            .key("stream")
            .bool(self.stream)
            .opt_str("cache", self.cache)
            .key("latency_ms")
            .u64(self.latency_ms)
            .opt_u64("ttfb_ms", self.ttfb_ms)
            .key("attempts")
            .u64(self.attempts as u64);
        if !self.attempt_log.is_empty() {
            w.key("attempt_log").open_list();
            for a in &self.attempt_log {
                w.open()
                    .key("provider")
                    .str(&a.provider)
                    .key("model")
                    .str(&a.model)
                    .key("outcome")
                    .str(&a.outcome)
                    .key("ms")
                    .u64(a.ms)
                    .close();
            }
            w.close_list();
        }
        w.opt_u64("prompt_tokens", self.prompt_tokens)
            .opt_u64("completion_tokens", self.completion_tokens)
            .opt_u64("cached_tokens", self.cached_tokens)
            .opt_u64("reasoning_tokens", self.reasoning_tokens)
            .opt_str("cost_usd", self.cost_usd.as_deref())
            .opt_str("error_code", self.error_code);
        if self.malformed_chunks != 0 {
            w.key("malformed_chunks").u64(self.malformed_chunks.into());
        }
        if self.stream_broken {
            w.key("stream_broken").bool(true);
        }
        if self.client_closed {
            w.key("client_closed").bool(true);
        }
        w.opt_u64("wasm_memory_bytes", self.wasm_memory_bytes)
            .close();
        w.finish()
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

    /// Byte for byte what serde's derive wrote (captured before the hand writer).
    #[test]
    fn line_is_what_the_derive_wrote() {
        let mut l = LogLine::new("r\"1".into(), "POST".into(), "/v1/x".into(), rfc3339(0));
        assert_eq!(
            l.to_json(),
            r#"{"msg":"switchyard.request","ts":"1970-01-01T00:00:00.000Z","request_id":"r\"1","method":"POST","path":"/v1/x","status":0,"stream":false,"latency_ms":0,"attempts":0}"#
        );
        l.status = 502;
        l.tenant = Some("acme".into());
        l.end_user = Some("u\n1".into());
        l.route = Some("demo".into());
        l.provider = Some("p".into());
        l.upstream_model = Some("m".into());
        l.stream = true;
        l.cache = Some("MISS");
        l.latency_ms = 12;
        l.ttfb_ms = Some(3);
        l.attempts = 2;
        l.attempt_log = vec![
            AttemptRecord {
                provider: "p".into(),
                model: "m".into(),
                outcome: "503".into(),
                ms: 4,
            },
            AttemptRecord {
                provider: "q".into(),
                model: "n".into(),
                outcome: "ok".into(),
                ms: 5,
            },
        ];
        l.set_usage(&Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 3,
            reasoning_tokens: 4,
            ..Default::default()
        });
        l.cost_usd = Some("0.000018".into());
        l.error_code = Some("upstream_error");
        l.malformed_chunks = 7;
        l.stream_broken = true;
        l.client_closed = true;
        l.wasm_memory_bytes = Some(1 << 20);
        assert_eq!(
            l.to_json(),
            r#"{"msg":"switchyard.request","ts":"1970-01-01T00:00:00.000Z","request_id":"r\"1","method":"POST","path":"/v1/x","status":502,"tenant":"acme","end_user":"u\n1","route":"demo","provider":"p","upstream_model":"m","stream":true,"cache":"MISS","latency_ms":12,"ttfb_ms":3,"attempts":2,"attempt_log":[{"provider":"p","model":"m","outcome":"503","ms":4},{"provider":"q","model":"n","outcome":"ok","ms":5}],"prompt_tokens":1,"completion_tokens":2,"cached_tokens":3,"reasoning_tokens":4,"cost_usd":"0.000018","error_code":"upstream_error","malformed_chunks":7,"stream_broken":true,"client_closed":true,"wasm_memory_bytes":1048576}"#
        );
    }
}
