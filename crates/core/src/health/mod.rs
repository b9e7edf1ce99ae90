//! Circuit breakers and health statistics per target. Pure state machines with injected time
//! and randomness; the Durable Objects that own them and the isolate cache that reads their
//! snapshots live in the edge. See `docs/ROUTING.md`.
//!
//! Per request, the edge: reads a cached [`Snapshot`] (refreshed every 1–5 s) →
//! [`crate::routing::plan`] → acquires a probe where the plan says so → runs the attempts →
//! pushes one [`Outcome`] per attempt into the isolate's [`Batch`] → flushes the batch after
//! the response when it is due. The Durable Object of a target keeps a [`TargetHealth`],
//! [`TargetHealth::apply`]s each [`TargetReport`] and serves [`TargetHealth::snapshot`].

pub mod breaker;
pub mod report;
pub mod stats;
mod window;

pub use breaker::{Breaker, BreakerConfig, BreakerView, State};
pub use report::{Batch, BatchPolicy, Entry, Outcome, TargetReport};
pub use stats::{Stats, StatsConfig};

use crate::policy::FailureClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A target's identity: `provider/model`, or `provider/model#key` for a breaker per API key
/// (the key's secret *name*, never its value). Provider ids contain no `/` and secret names no
/// `#`, so the parts are unambiguous.
pub fn target_id(provider: &str, model: &str, key: Option<&str>) -> String {
    let mut s = String::with_capacity(provider.len() + model.len() + 1);
    s.push_str(provider);
    s.push('/');
    s.push_str(model);
    if let Some(k) = key {
        s.push('#');
        s.push_str(k);
    }
    s
}

/// Outcome classes in reports and counts: success plus the nine failure classes.
pub const CLASSES: usize = 10;

/// 0 success; 1 retryable, 2 rate limited, 3 timeout, 4 auth, 5 target missing, 6 rejected,
/// 7 context length, 8 content policy, 9 unsupported. Stable: it is stored and sent between
/// isolates (new classes get new codes; an unknown code is skipped).
pub fn class_code(class: Option<FailureClass>) -> u8 {
    match class {
        None => 0,
        Some(FailureClass::Retryable) => 1,
        Some(FailureClass::RateLimited) => 2,
        Some(FailureClass::Timeout) => 3,
        Some(FailureClass::Auth) => 4,
        Some(FailureClass::TargetMissing) => 5,
        Some(FailureClass::Rejected) => 6,
        Some(FailureClass::ContextLength) => 7,
        Some(FailureClass::ContentPolicy) => 8,
        Some(FailureClass::Unsupported) => 9,
    }
}

/// The inverse of [`class_code`]; `None` for an unknown code.
pub fn class_from_code(code: u8) -> Option<Option<FailureClass>> {
    Some(match code {
        0 => None,
        1 => Some(FailureClass::Retryable),
        2 => Some(FailureClass::RateLimited),
        3 => Some(FailureClass::Timeout),
        4 => Some(FailureClass::Auth),
        5 => Some(FailureClass::TargetMissing),
        6 => Some(FailureClass::Rejected),
        7 => Some(FailureClass::ContextLength),
        8 => Some(FailureClass::ContentPolicy),
        9 => Some(FailureClass::Unsupported),
        _ => return None,
    })
}

/// Parameters of a target's breaker and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthConfig {
    pub breaker: BreakerConfig,
    pub stats: StatsConfig,
}

/// What a target's Durable Object persists (compact JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    #[serde(rename = "b", default)]
    pub breaker: Breaker,
    #[serde(rename = "x", default)]
    pub stats: Stats,
}

impl TargetHealth {
    /// Apply one flushed report, entry by entry in order. `unit` in [0, 1) jitters a cooldown
    /// if the breaker opens. Returns whether the breaker's epoch moved (a state change).
    pub fn apply(
        &mut self,
        cfg: &HealthConfig,
        report: &TargetReport,
        now: u64,
        unit: f64,
    ) -> bool {
        let before = self.breaker.epoch();
        for e in &report.entries {
            let Some(class) = e.class() else { continue };
            self.stats
                .record(&cfg.stats, class, e.ttfb_ms, e.ended_ms(), now);
            let attempt = breaker::Attempt {
                epoch: e.epoch,
                probe: e.probe,
                class,
                retry_after_ms: e.retry_after_ms,
            };
            self.breaker.record(&cfg.breaker, &attempt, now, unit);
        }
        self.breaker.epoch() != before
    }

    /// What isolates cache and route by.
    pub fn snapshot(&self, cfg: &HealthConfig, now: u64) -> TargetSnapshot {
        let v = self.breaker.view(&cfg.breaker, now);
        TargetSnapshot {
            state: v.state,
            admit: v.admits(),
            until_ms: v.admits_at().unwrap_or(0),
            epoch: v.epoch,
            ewma_ms: self.stats.ewma_ms(),
            p95_ms: self.stats.p95_ms(),
            error_permille: self.stats.window_counts(&cfg.stats, now).error_permille(),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One target's health as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    #[serde(rename = "s")]
    pub state: State,
    /// Closed, or half-open with the probe slot free, when the snapshot was taken.
    #[serde(rename = "a")]
    pub admit: bool,
    /// When it does not admit: when it may next (cooldown end, probe expiry; `u64::MAX`: held
    /// open until reset).
    #[serde(rename = "u", default, skip_serializing_if = "is_zero")]
    pub until_ms: u64,
    /// The breaker epoch to stamp on outcomes of ordinary (non-probe) attempts.
    #[serde(rename = "e", default)]
    pub epoch: u32,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub ewma_ms: Option<u32>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub p95_ms: Option<u32>,
    /// Provider-side failures over the window, in permille of counted outcomes.
    #[serde(rename = "r", default)]
    pub error_permille: u16,
}

impl TargetSnapshot {
    /// A target nothing is known about: closed, no statistics.
    pub fn unknown() -> Self {
        TargetSnapshot {
            state: State::Closed,
            admit: true,
            until_ms: 0,
            epoch: 0,
            ewma_ms: None,
            p95_ms: None,
            error_permille: 0,
        }
    }
}

/// The isolate's cached health of the targets it routes to.
///
/// Staleness: a snapshot fetched at `taken_ms` and used until `taken_ms + ttl` shows every
/// outcome that reached the Durable Objects before it was taken. An outcome reaches them within
/// the batch's due age (`failure_max_age_ms` for failures, `max_age_ms` otherwise) plus one
/// round trip, so routing reflects an outcome at most `ttl + failure_max_age_ms + rtt` after
/// it (1–5 s + 250 ms with the defaults). Breakers themselves change only on the Durable
/// Object, so staleness can delay but never fake a transition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(rename = "at", default)]
    pub taken_ms: u64,
    #[serde(rename = "t", default)]
    pub targets: BTreeMap<String, TargetSnapshot>,
}

impl Snapshot {
    pub fn new(taken_ms: u64) -> Self {
        Snapshot {
            taken_ms,
            targets: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, target: String, s: TargetSnapshot) {
        self.targets.insert(target, s);
    }

    pub fn get(&self, target: &str) -> Option<&TargetSnapshot> {
        self.targets.get(target)
    }

    /// Whether it may still be used at `now` with a cache TTL of `ttl_ms`.
    pub fn is_fresh(&self, now: u64, ttl_ms: u64) -> bool {
        now >= self.taken_ms && now - self.taken_ms < ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn target_ids() {
        assert_eq!(target_id("oa", "gpt-4o", None), "oa/gpt-4o");
        assert_eq!(
            target_id("or", "meta/llama:70b", Some("OR_KEY_2")),
            "or/meta/llama:70b#OR_KEY_2"
        );
    }

    #[test]
    fn class_codes_round_trip() {
        for code in 0..CLASSES as u8 {
            let class = class_from_code(code).expect("known");
            assert_eq!(class_code(class), code);
        }
        assert_eq!(class_from_code(CLASSES as u8), None);
    }

    fn report(entries: &[(Option<FailureClass>, u32, bool)]) -> TargetReport {
        TargetReport {
            target: "oa/m".into(),
            entries: entries
                .iter()
                .map(|&(class, epoch, probe)| {
                    Entry::from_outcome(&Outcome {
                        target: "oa/m".into(),
                        started_ms: T0,
                        ended_ms: T0 + 50,
                        ttfb_ms: class.is_none().then_some(40),
                        class,
                        retry_after_ms: None,
                        epoch,
                        probe,
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn a_report_drives_stats_and_breaker_and_the_snapshot_shows_it() {
        let cfg = HealthConfig::default();
        let mut h = TargetHealth::default();
        assert_eq!(h.snapshot(&cfg, T0), TargetSnapshot::unknown());
        let r = report(&[
            (None, 0, false),
            (Some(Timeout), 0, false),
            (None, 0, false),
        ]);
        assert!(!h.apply(&cfg, &r, T0, 0.5));
        let s = h.snapshot(&cfg, T0);
        assert_eq!((s.state, s.admit, s.epoch), (State::Closed, true, 0));
        assert_eq!(
            (s.ewma_ms, s.p95_ms, s.error_permille),
            (Some(40), Some(50), 333)
        );
        // Five failures in one report open it.
        let r = report(&[(Some(Retryable), 0, false); 5]);
        assert!(h.apply(&cfg, &r, T0 + 1, 0.5));
        let s = h.snapshot(&cfg, T0 + 1);
        assert_eq!(
            (s.state, s.admit, s.until_ms),
            (State::Open, false, T0 + 30_001)
        );
        // Cooldown over: half-open, the probe slot free.
        let s = h.snapshot(&cfg, T0 + 30_001);
        assert_eq!((s.state, s.admit), (State::HalfOpen, true));
        let token = h
            .breaker
            .try_acquire_probe(&cfg.breaker, T0 + 30_001)
            .unwrap();
        let s = h.snapshot(&cfg, T0 + 30_002);
        assert_eq!((s.admit, s.until_ms), (false, T0 + 90_001));
        assert!(h.apply(&cfg, &report(&[(None, token, true)]), T0 + 30_100, 0.5));
        assert_eq!(h.snapshot(&cfg, T0 + 30_100).state, State::Closed);
        // Stats still count stale outcomes; the breaker does not.
        let before = h.stats.window_counts(&cfg.stats, T0 + 30_200).failures();
        h.apply(
            &cfg,
            &report(&[(Some(Timeout), 0, false); 5]),
            T0 + 30_200,
            0.5,
        );
        assert_eq!(h.snapshot(&cfg, T0 + 30_200).state, State::Closed);
        let after = h.stats.window_counts(&cfg.stats, T0 + 30_200).failures();
        assert_eq!(after, before + 5);
    }

    #[test]
    fn unknown_class_codes_are_skipped() {
        let cfg = HealthConfig::default();
        let mut h = TargetHealth::default();
        let mut r = report(&[(None, 0, false)]);
        r.entries[0].class_code = 42;
        h.apply(&cfg, &r, T0, 0.5);
        assert_eq!(h, TargetHealth::default());
    }

    #[test]
    fn snapshot_freshness_and_json() {
        let mut snap = Snapshot::new(T0);
        snap.insert("oa/m".into(), TargetSnapshot::unknown());
        assert!(snap.is_fresh(T0, 1_000));
        assert!(snap.is_fresh(T0 + 999, 1_000));
        assert!(!snap.is_fresh(T0 + 1_000, 1_000));
        assert!(!snap.is_fresh(T0 - 1, 1_000), "from the future: refetch");
        let text = serde_json::to_string(&snap).unwrap();
        assert_eq!(
            text,
            r#"{"at":1700000000000,"t":{"oa/m":{"s":"closed","a":true,"e":0,"r":0}}}"#
        );
        assert_eq!(serde_json::from_str::<Snapshot>(&text).unwrap(), snap);
        let h = TargetHealth::default();
        let back: TargetHealth = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(back, h);
    }
}
