//! Failover policy: how an attempt failed, whether to retry, when, and where next.
//!
//! Pure decisions with injected time and randomness; the edge's attempt loop asks [`Planner`]
//! what to do after every failed attempt and obeys. The error classes, defaults and guarantees
//! are documented in `docs/RESILIENCE.md`.

use crate::config::{DeadlineOverrides, RetryOverrides};
use crate::error::{ErrorKind, GatewayError};

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// 408, 500, 502, 503, 504, 529 and other 5xx; connection refused or reset; malformed answer.
    Retryable,
    /// 429: retried after `Retry-After` when it is within the cap, else the next target.
    RateLimited,
    /// No headers / first token / next chunk in time. Never retried on the same target.
    Timeout,
    /// 401/403: our credentials; the next key, else the next target.
    Auth,
    /// 404 from the upstream: the target's model or path is missing; the next target.
    TargetMissing,
    /// 400, 413, 422 and other 4xx: the request itself; not retried, not failed over.
    Rejected,
    /// The prompt does not fit the model: the route's larger-context fallback, if any.
    ContextLength,
    /// The provider refused the content: no retry; failover only where the route allows it.
    ContentPolicy,
    /// The target cannot honour a parameter of the request (nothing was sent): the next target.
    Unsupported,
}

/// One failed attempt, classified, with a message safe to show the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFailure {
    pub class: FailureClass,
    /// The upstream status, if it answered.
    pub status: Option<u16>,
    /// How long the upstream asked us to wait.
    pub retry_after_ms: Option<u64>,
    /// Sanitised; never contains a key or URL.
    pub message: String,
}

impl AttemptFailure {
    pub fn new(class: FailureClass, status: Option<u16>, message: impl Into<String>) -> Self {
        AttemptFailure {
            class,
            status,
            retry_after_ms: None,
            message: message.into(),
        }
    }

    pub fn timeout(what: &str, ms: u64) -> Self {
        Self::new(
            FailureClass::Timeout,
            None,
            format!("no {what} within {ms} ms"),
        )
    }

    pub fn connect(detail: &str) -> Self {
        Self::new(
            FailureClass::Retryable,
            None,
            format!(
                "connection failed: {}",
                crate::providers::sanitize_message(detail)
            ),
        )
    }

    pub fn malformed(detail: &str) -> Self {
        Self::new(
            FailureClass::Retryable,
            None,
            format!("malformed upstream answer: {detail}"),
        )
    }

    /// A short label for logs and `x-switchyard-attempts`.
    pub fn label(&self) -> String {
        match (self.status, self.class) {
            (Some(s), _) => s.to_string(),
            (None, FailureClass::Timeout) => "timeout".into(),
            (None, FailureClass::Auth) => "auth".into(),
            (None, FailureClass::Unsupported) => "unsupported".into(),
            (None, _) => "network".into(),
        }
    }

    /// The error the caller gets if this failure ends the request.
    pub fn to_client_error(&self, provider: &str) -> GatewayError {
        let kind = match self.class {
            FailureClass::Retryable | FailureClass::TargetMissing => ErrorKind::UpstreamError,
            FailureClass::RateLimited => ErrorKind::UpstreamRateLimited,
            FailureClass::Timeout => ErrorKind::UpstreamTimeout,
            FailureClass::Auth => ErrorKind::UpstreamAuth,
            FailureClass::Rejected => ErrorKind::UpstreamInvalidRequest,
            FailureClass::ContextLength => ErrorKind::ContextLengthExceeded,
            FailureClass::ContentPolicy => ErrorKind::ContentPolicy,
            FailureClass::Unsupported => ErrorKind::UnsupportedParameter,
        };
        let message = match self.class {
            FailureClass::Unsupported => self.message.clone(),
            FailureClass::Rejected | FailureClass::ContextLength | FailureClass::ContentPolicy => {
                format!("provider {provider:?} rejected the request: {}", self.message)
            }
            FailureClass::Auth => format!(
                "provider {provider:?} rejected the gateway's credentials (status {}); the operator must check its API key",
                self.status.unwrap_or(0)
            ),
            _ => format!("provider {provider:?} failed: {}", self.message),
        };
        GatewayError::new(kind, message)
            .with_retry_after(self.retry_after_ms.map(|ms| ms.div_ceil(1000)))
    }
}

/// Resolved retry policy for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts_per_target: u32,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub retry_after_cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_per_target: 2,
            max_attempts: 4,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            retry_after_cap_ms: 5_000,
        }
    }
}

impl RetryPolicy {
    /// Defaults, then the global overrides, then the route's.
    pub fn resolve(global: &RetryOverrides, route: &RetryOverrides) -> Self {
        let d = RetryPolicy::default();
        let pick = |r: Option<u32>, g: Option<u32>, d: u32| r.or(g).unwrap_or(d);
        let pick64 = |r: Option<u64>, g: Option<u64>, d: u64| r.or(g).unwrap_or(d);
        RetryPolicy {
            attempts_per_target: pick(
                route.attempts_per_target,
                global.attempts_per_target,
                d.attempts_per_target,
            ),
            max_attempts: pick(route.max_attempts, global.max_attempts, d.max_attempts),
            backoff_base_ms: pick64(
                route.backoff_base_ms,
                global.backoff_base_ms,
                d.backoff_base_ms,
            ),
            backoff_max_ms: pick64(
                route.backoff_max_ms,
                global.backoff_max_ms,
                d.backoff_max_ms,
            ),
            retry_after_cap_ms: pick64(
                route.retry_after_cap_ms,
                global.retry_after_cap_ms,
                d.retry_after_cap_ms,
            ),
        }
    }

    /// Exponential backoff with full jitter: uniform in [0, min(max, base·2^retry)].
    /// `retry` counts from 0 for the first retry; `unit` is a random number in [0, 1).
    pub fn backoff_ms(&self, retry: u32, unit: f64) -> u64 {
        let ceiling = self
            .backoff_base_ms
            .saturating_mul(1u64 << retry.min(20))
            .min(self.backoff_max_ms);
        (ceiling as f64 * unit.clamp(0.0, 1.0)) as u64
    }
}

/// Resolved deadlines for one route, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Streams: until the upstream's response headers.
    pub headers_ms: u64,
    /// Non-streamed requests: until the complete answer.
    pub response_ms: u64,
    /// Streams: from the headers until the first content token.
    pub first_token_ms: u64,
    /// Streams: the longest silence between two chunks.
    pub idle_ms: u64,
    /// The whole request, every attempt and wait included.
    pub total_ms: u64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            headers_ms: 30_000,
            response_ms: 120_000,
            first_token_ms: 30_000,
            idle_ms: 30_000,
            total_ms: 300_000,
        }
    }
}

impl Deadlines {
    pub fn resolve(global: &DeadlineOverrides, route: &DeadlineOverrides) -> Self {
        let d = Deadlines::default();
        let pick = |r: Option<u64>, g: Option<u64>, d: u64| r.or(g).unwrap_or(d);
        Deadlines {
            headers_ms: pick(route.headers_ms, global.headers_ms, d.headers_ms),
            response_ms: pick(route.response_ms, global.response_ms, d.response_ms),
            first_token_ms: pick(
                route.first_token_ms,
                global.first_token_ms,
                d.first_token_ms,
            ),
            idle_ms: pick(route.idle_ms, global.idle_ms, d.idle_ms),
            total_ms: pick(route.total_ms, global.total_ms, d.total_ms),
        }
    }
}

/// Parse `Retry-After`: delay-seconds or an IMF-fixdate (`Wed, 21 Oct 2015 07:28:00 GMT`).
/// Returns milliseconds from `now_ms`; a date in the past is 0.
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<u64> {
    let v = value.trim();
    if let Some(ms) = parse_seconds_ms(v) {
        return Some(ms);
    }
    let at = parse_http_date(v)?;
    Some(at.saturating_sub(now_ms))
}

/// `digits[.digits]` seconds (either side may be empty, not both) as milliseconds, truncated
/// below the millisecond and saturating. Written by hand: `str::parse::<f64>` costs the worker
/// a float parser and its tables.
fn parse_seconds_ms(v: &str) -> Option<u64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let mut secs: u64 = 0;
    for b in int.bytes() {
        secs = secs.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    let mut ms = secs.saturating_mul(1000);
    for (b, scale) in frac.bytes().zip([100, 10, 1]) {
        ms = ms.saturating_add(u64::from(b - b'0') * scale);
    }
    Some(ms)
}

/// IMF-fixdate to unix milliseconds.
fn parse_http_date(s: &str) -> Option<u64> {
    // "Wed, 21 Oct 2015 07:28:00 GMT"
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(year, month, day);
    if days < 0 {
        return None;
    }
    Some(((days as u64) * 86_400 + h * 3600 + m * 60 + sec) * 1000)
}

/// What the attempt loop does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Try target `target` after waiting `wait_ms`.
    Attempt { target: usize, wait_ms: u64 },
    /// Try the route's larger-context fallback route.
    ContextFallback,
    /// Stop and answer the caller with this error.
    Fail(GatewayError),
}

/// Decides, attempt after attempt, where to go next for one request.
#[derive(Debug, Clone)]
pub struct Planner {
    policy: RetryPolicy,
    targets: usize,
    current: usize,
    attempts_total: u32,
    attempts_here: u32,
    retries_here: u32,
    has_context_fallback: bool,
    failover_on_content_policy: bool,
    /// The first provider-side failure, reported instead of a later fallback's rejection.
    first_provider_failure: Option<(String, AttemptFailure)>,
    last: Option<(String, AttemptFailure)>,
}

impl Planner {
    pub fn new(
        policy: RetryPolicy,
        targets: usize,
        has_context_fallback: bool,
        failover_on_content_policy: bool,
    ) -> Self {
        Planner {
            policy,
            targets,
            current: 0,
            attempts_total: 0,
            attempts_here: 0,
            retries_here: 0,
            has_context_fallback,
            failover_on_content_policy,
            first_provider_failure: None,
            last: None,
        }
    }

    /// The first attempt.
    pub fn start(&mut self) -> Decision {
        if self.targets == 0 {
            return Decision::Fail(GatewayError::internal("route has no targets"));
        }
        self.attempts_total = 1;
        self.attempts_here = 1;
        Decision::Attempt {
            target: 0,
            wait_ms: 0,
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempts_total
    }

    /// After a failed attempt on the current target. `remaining_ms` is what is left of the total
    /// deadline; `unit` a random number in [0, 1) for jitter.
    pub fn after_failure(
        &mut self,
        provider: &str,
        failure: AttemptFailure,
        remaining_ms: u64,
        unit: f64,
    ) -> Decision {
        let provider_side = matches!(
            failure.class,
            FailureClass::Retryable
                | FailureClass::RateLimited
                | FailureClass::Timeout
                | FailureClass::Auth
                | FailureClass::TargetMissing
        );
        if provider_side && self.first_provider_failure.is_none() {
            self.first_provider_failure = Some((provider.to_string(), failure.clone()));
        }
        self.last = Some((provider.to_string(), failure.clone()));

        match failure.class {
            FailureClass::Rejected => {
                return Decision::Fail(self.rejection_error(provider, &failure))
            }
            FailureClass::ContextLength => {
                if self.has_context_fallback {
                    return Decision::ContextFallback;
                }
                return Decision::Fail(failure.to_client_error(provider));
            }
            FailureClass::ContentPolicy if !self.failover_on_content_policy => {
                return Decision::Fail(failure.to_client_error(provider));
            }
            _ => {}
        }

        if self.attempts_total >= self.policy.max_attempts {
            return Decision::Fail(self.exhausted_error());
        }

        // Retry the same target?
        let same_target_wait = match failure.class {
            FailureClass::Retryable => Some(self.policy.backoff_ms(self.retries_here, unit)),
            FailureClass::RateLimited => match failure.retry_after_ms {
                Some(ms) if ms <= self.policy.retry_after_cap_ms => Some(ms),
                Some(_) => None,
                None => Some(self.policy.backoff_ms(self.retries_here, unit)),
            },
            _ => None,
        };
        if let Some(wait) = same_target_wait {
            if self.attempts_here < self.policy.attempts_per_target && wait < remaining_ms {
                self.attempts_here += 1;
                self.retries_here += 1;
                self.attempts_total += 1;
                return Decision::Attempt {
                    target: self.current,
                    wait_ms: wait,
                };
            }
        }

        // Fail over.
        if self.current + 1 < self.targets {
            self.current += 1;
            self.attempts_here = 1;
            self.retries_here = 0;
            self.attempts_total += 1;
            return Decision::Attempt {
                target: self.current,
                wait_ms: 0,
            };
        }
        Decision::Fail(self.exhausted_error())
    }

    /// The upstream rejected one of several keys of the current target: try it again at once
    /// with the next key. Counts against the total attempt budget; `None` when that is spent.
    pub fn retry_with_another_key(
        &mut self,
        provider: &str,
        failure: &AttemptFailure,
    ) -> Option<Decision> {
        self.last = Some((provider.to_string(), failure.clone()));
        if self.attempts_total >= self.policy.max_attempts {
            return None;
        }
        self.attempts_total += 1;
        Some(Decision::Attempt {
            target: self.current,
            wait_ms: 0,
        })
    }

    /// The total deadline passed while waiting or attempting.
    pub fn out_of_time(&self) -> GatewayError {
        let base = match &self.last {
            Some((p, f)) => format!("; last failure: provider {p:?}: {}", f.message),
            None => String::new(),
        };
        GatewayError::new(
            ErrorKind::UpstreamTimeout,
            format!(
                "no answer within the request's total deadline after {} attempt(s){base}",
                self.attempts_total
            ),
        )
    }

    fn exhausted_error(&self) -> GatewayError {
        let Some((provider, last)) = &self.last else {
            return GatewayError::internal("no attempt was made");
        };
        let mut e = last.to_client_error(provider);
        if self.attempts_total > 1 {
            e.message = format!(
                "all {} attempt(s) failed; last: {}",
                self.attempts_total, e.message
            );
        }
        e
    }

    /// A later target rejected the request after an earlier target failed on its own side: the
    /// caller hears about the real failure, with the rejection as detail — not a bare 400.
    fn rejection_error(&self, provider: &str, failure: &AttemptFailure) -> GatewayError {
        match &self.first_provider_failure {
            Some((first_provider, first)) => {
                let mut e = first.to_client_error(first_provider);
                e.message = format!(
                    "{}; fallback provider {provider:?} then rejected the request: {}",
                    e.message, failure.message
                );
                e
            }
            None => failure.to_client_error(provider),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(class: FailureClass, status: u16) -> AttemptFailure {
        AttemptFailure::new(class, Some(status), format!("status {status}"))
    }

    fn planner(targets: usize) -> Planner {
        Planner::new(RetryPolicy::default(), targets, false, false)
    }

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ms(0, 0.0), 0);
        assert_eq!(p.backoff_ms(0, 0.5), 100);
        assert_eq!(p.backoff_ms(1, 0.999_999), 399);
        assert_eq!(p.backoff_ms(10, 1.0), 2_000, "capped at backoff_max_ms");
        assert_eq!(p.backoff_ms(63, 1.0), 2_000, "no overflow");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2", 0), Some(2_000));
        assert_eq!(parse_retry_after(" 0.5 ", 0), Some(500));
        // 2015-10-21T07:28:00Z = 1445412480 s.
        let at = 1_445_412_480_000;
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at - 3_000),
            Some(3_000)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", at + 9_000),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-3", 0), None);
        assert_eq!(parse_retry_after("1.5", 0), Some(1_500));
        assert_eq!(parse_retry_after("0.001", 0), Some(1));
        assert_eq!(
            parse_retry_after("0.0019", 0),
            Some(1),
            "truncated below 1 ms"
        );
        assert_eq!(parse_retry_after(".5", 0), Some(500));
        assert_eq!(parse_retry_after("1.", 0), Some(1_000));
        assert_eq!(parse_retry_after("0.29", 0), Some(290));
        for bad in [
            "1e3", "+1", ".", "", "1.2.3", "1,5", "inf", "NaN", "0x10", "1 2",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad}");
        }
        let huge = "9".repeat(40);
        assert_eq!(parse_retry_after(&huge, 0), Some(u64::MAX));
        assert_eq!(parse_retry_after(&format!("{huge}.5"), 0), Some(u64::MAX));
        assert_eq!(
            parse_retry_after("18446744073709551.615", 0),
            Some(u64::MAX),
            "the largest value in range"
        );
        assert_eq!(parse_retry_after("18446744073709552", 0), Some(u64::MAX));
    }

    #[test]
    fn retryable_retries_same_target_then_fails_over() {
        let mut p = planner(2);
        assert_eq!(
            p.start(),
            Decision::Attempt {
                target: 0,
                wait_ms: 0
            }
        );
        let d = p.after_failure("a", fail(FailureClass::Retryable, 500), 60_000, 0.5);
        assert_eq!(
            d,
            Decision::Attempt {
                target: 0,
                wait_ms: 100
            }
        );
        let d = p.after_failure("a", fail(FailureClass::Retryable, 503), 60_000, 0.5);
        assert_eq!(
            d,
            Decision::Attempt {
                target: 1,
                wait_ms: 0
            }
        );
        let d = p.after_failure("b", fail(FailureClass::Retryable, 503), 60_000, 0.5);
        assert_eq!(
            d,
            Decision::Attempt {
                target: 1,
                wait_ms: 100
            }
        );
        match p.after_failure("b", fail(FailureClass::Retryable, 503), 60_000, 0.5) {
            Decision::Fail(e) => {
                assert_eq!(e.status(), 502);
                assert!(
                    e.message.starts_with("all 4 attempt(s) failed"),
                    "{}",
                    e.message
                );
            }
            d => panic!("expected Fail, got {d:?}"),
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let mut p = planner(2);
        p.start();
        let mut f = fail(FailureClass::RateLimited, 429);
        f.retry_after_ms = Some(2_000);
        assert_eq!(
            p.after_failure("a", f.clone(), 60_000, 0.9),
            Decision::Attempt {
                target: 0,
                wait_ms: 2_000
            }
        );
        // Beyond the cap: fail over instead of waiting.
        let mut p = planner(2);
        p.start();
        f.retry_after_ms = Some(60_000);
        assert_eq!(
            p.after_failure("a", f, 120_000, 0.9),
            Decision::Attempt {
                target: 1,
                wait_ms: 0
            }
        );
    }

    #[test]
    fn a_wait_longer_than_the_time_left_fails_over() {
        let mut p = planner(2);
        p.start();
        let mut f = fail(FailureClass::RateLimited, 429);
        f.retry_after_ms = Some(3_000);
        assert_eq!(
            p.after_failure("a", f, 2_000, 0.9),
            Decision::Attempt {
                target: 1,
                wait_ms: 0
            }
        );
    }

    #[test]
    fn timeouts_and_auth_fail_over_without_same_target_retry() {
        for class in [
            FailureClass::Timeout,
            FailureClass::Auth,
            FailureClass::TargetMissing,
        ] {
            let mut p = planner(2);
            p.start();
            let d = p.after_failure("a", AttemptFailure::new(class, None, "x"), 60_000, 0.1);
            assert_eq!(
                d,
                Decision::Attempt {
                    target: 1,
                    wait_ms: 0
                },
                "{class:?}"
            );
        }
        let mut p = planner(1);
        p.start();
        match p.after_failure("a", AttemptFailure::timeout("headers", 500), 60_000, 0.1) {
            Decision::Fail(e) => assert_eq!(e.status(), 504),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn rejections_stop_at_once() {
        let mut p = planner(3);
        p.start();
        match p.after_failure("a", fail(FailureClass::Rejected, 400), 60_000, 0.1) {
            Decision::Fail(e) => {
                assert_eq!(e.status(), 400);
                assert_eq!(e.kind, ErrorKind::UpstreamInvalidRequest);
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(p.attempts(), 1);
    }

    #[test]
    fn a_fallbacks_rejection_does_not_mask_the_real_failure() {
        let mut p = planner(2);
        p.start();
        p.after_failure("primary", fail(FailureClass::Retryable, 503), 60_000, 0.1);
        p.after_failure("primary", fail(FailureClass::Retryable, 503), 60_000, 0.1);
        let prefill = AttemptFailure::new(
            FailureClass::Rejected,
            Some(400),
            "This model does not support assistant message prefill",
        );
        match p.after_failure("backup", prefill, 60_000, 0.1) {
            Decision::Fail(e) => {
                assert_eq!(e.status(), 502, "the primary's failure, not the 400");
                assert!(
                    e.message.contains("\"primary\" failed: status 503"),
                    "{}",
                    e.message
                );
                assert!(e.message.contains("prefill"), "{}", e.message);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn context_length_goes_to_the_fallback_route_if_any() {
        let f = AttemptFailure::new(FailureClass::ContextLength, Some(400), "too long");
        let mut p = Planner::new(RetryPolicy::default(), 2, true, false);
        p.start();
        assert_eq!(
            p.after_failure("a", f.clone(), 60_000, 0.1),
            Decision::ContextFallback
        );
        let mut p = planner(2);
        p.start();
        match p.after_failure("a", f, 60_000, 0.1) {
            Decision::Fail(e) => assert_eq!(e.kind, ErrorKind::ContextLengthExceeded),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn content_policy_fails_over_only_when_allowed() {
        let f = AttemptFailure::new(FailureClass::ContentPolicy, Some(400), "flagged: violence");
        let mut p = planner(2);
        p.start();
        match p.after_failure("a", f.clone(), 60_000, 0.1) {
            Decision::Fail(e) => {
                assert_eq!(e.kind, ErrorKind::ContentPolicy);
                assert!(e.message.contains("flagged: violence"));
            }
            d => panic!("{d:?}"),
        }
        let mut p = Planner::new(RetryPolicy::default(), 2, false, true);
        p.start();
        assert_eq!(
            p.after_failure("a", f, 60_000, 0.1),
            Decision::Attempt {
                target: 1,
                wait_ms: 0
            }
        );
    }

    #[test]
    fn total_attempt_budget_bounds_everything() {
        let policy = RetryPolicy {
            attempts_per_target: 10,
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut p = Planner::new(policy, 5, false, false);
        p.start();
        let mut n = 1;
        while let Decision::Attempt { .. } =
            p.after_failure("a", fail(FailureClass::Retryable, 500), 60_000, 0.0)
        {
            n += 1;
            assert!(n <= 3);
        }
        assert_eq!(n, 3);
        assert_eq!(p.attempts(), 3);
    }

    #[test]
    fn another_key_is_tried_at_once_within_the_budget() {
        let policy = RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        };
        let mut p = Planner::new(policy, 2, false, false);
        p.start();
        let f = fail(FailureClass::Auth, 401);
        assert_eq!(
            p.retry_with_another_key("a", &f),
            Some(Decision::Attempt {
                target: 0,
                wait_ms: 0
            })
        );
        assert_eq!(p.retry_with_another_key("a", &f), None, "budget spent");
        assert_eq!(p.attempts(), 2);
    }

    #[test]
    fn unsupported_moves_to_the_next_target_and_is_a_400_at_the_end() {
        let f = AttemptFailure::new(
            FailureClass::Unsupported,
            None,
            "`n` > 1 is not supported by provider \"a\"",
        );
        let mut p = planner(2);
        p.start();
        assert_eq!(
            p.after_failure("a", f.clone(), 60_000, 0.1),
            Decision::Attempt {
                target: 1,
                wait_ms: 0
            }
        );
        let mut p = planner(1);
        p.start();
        match p.after_failure("a", f, 60_000, 0.1) {
            Decision::Fail(e) => {
                assert_eq!(e.status(), 400);
                assert_eq!(e.kind, ErrorKind::UnsupportedParameter);
                assert!(e.message.starts_with("`n` > 1"), "{}", e.message);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn resolve_layers_overrides() {
        let g = RetryOverrides {
            max_attempts: Some(6),
            backoff_base_ms: Some(50),
            ..Default::default()
        };
        let r = RetryOverrides {
            max_attempts: Some(2),
            ..Default::default()
        };
        let p = RetryPolicy::resolve(&g, &r);
        assert_eq!(
            (p.max_attempts, p.backoff_base_ms, p.attempts_per_target),
            (2, 50, 2)
        );
        let d = Deadlines::resolve(
            &DeadlineOverrides {
                idle_ms: Some(500),
                ..Default::default()
            },
            &DeadlineOverrides::default(),
        );
        assert_eq!(d.idle_ms, 500);
        assert_eq!(d.total_ms, Deadlines::default().total_ms);
    }
}
