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
pub mod codec;
pub mod report;
pub mod stats;
mod window;

pub use breaker::{Breaker, BreakerConfig, BreakerView, Forced, State};
pub use report::{Batch, BatchPolicy, Entry, Outcome, TargetReport};
pub use stats::{Stats, StatsConfig};

use crate::config::Config;
use crate::policy::FailureClass;
use codec::{opt, write_ints, Reader};

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

/// How long an isolate routes by a fetched snapshot, unless configured.
pub const DEFAULT_SNAPSHOT_TTL_MS: u64 = 2_000;

/// The config's `health` block with the defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    pub health: HealthConfig,
    pub batch: BatchPolicy,
    pub snapshot_ttl_ms: u64,
    /// Silence after which the cron probes a closed target (`0`: never).
    pub idle_probe_ms: u64,
}

impl HealthSettings {
    /// From the config's `health` block (validated; see `config::HEALTH_KNOBS`).
    pub fn resolve(config: &Config) -> Self {
        let b = BreakerConfig::default();
        let p = BatchPolicy::default();
        let knob = |name: &str, default: u64| config.health_knob(name).unwrap_or(default);
        let small = |name: &str, default: u32| knob(name, default as u64) as u32;
        let window_ms = knob("window_ms", b.window_ms);
        let cooldown_base_ms = knob("cooldown_base_ms", b.cooldown_base_ms);
        HealthSettings {
            health: HealthConfig {
                breaker: BreakerConfig {
                    consecutive_failures: small("consecutive_failures", b.consecutive_failures),
                    failure_rate_percent: small("failure_rate_percent", b.failure_rate_percent),
                    min_volume: small("min_volume", b.min_volume),
                    window_ms,
                    cooldown_base_ms,
                    cooldown_max_ms: knob("cooldown_max_ms", b.cooldown_max_ms)
                        .max(cooldown_base_ms),
                    jitter_percent: small("jitter_percent", b.jitter_percent),
                    retry_after_max_ms: b.retry_after_max_ms,
                    probe_timeout_ms: knob("probe_timeout_ms", b.probe_timeout_ms),
                },
                stats: StatsConfig {
                    window_ms,
                    ..StatsConfig::default()
                },
            },
            batch: BatchPolicy {
                max_entries: p.max_entries,
                max_age_ms: knob("report_max_age_ms", p.max_age_ms),
                failure_max_age_ms: knob("report_failure_max_age_ms", p.failure_max_age_ms),
            },
            snapshot_ttl_ms: knob("snapshot_ttl_ms", DEFAULT_SNAPSHOT_TTL_MS),
            idle_probe_ms: knob("idle_probe_ms", IDLE_PROBE_MS),
        }
    }
}

/// A target's health for operators (`GET /admin/circuits`, [`TargetView::to_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetView {
    pub target: String,
    pub breaker: BreakerView,
    /// Whether ordinary traffic (closed) or a probe (half-open, slot free) may go there now.
    pub admits: bool,
    pub ttfb_samples: u64,
    pub ttfb_ewma_ms: Option<u32>,
    pub ttfb_p95_ms: Option<u32>,
    /// Outcomes over the statistics window: answers, provider-side failures, client faults.
    pub successes: u32,
    pub failures: u32,
    pub neutral: u32,
    pub error_permille: u16,
    /// When the last answer / provider-side failure ended (unix ms; 0: never).
    pub last_success_ms: u64,
    pub last_failure_ms: u64,
}

impl TargetView {
    /// `{"target":…,"state":…,"admits":…,"breaker":{…},"ttfb_samples":…,…}`; absent values are
    /// `null`, a cooldown held until reset is `18446744073709551615` (`u64::MAX`).
    pub fn to_json(&self) -> String {
        let b = &self.breaker;
        let o = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        format!(
            "{{\"target\":{},\"state\":\"{}\",\"admits\":{},\"breaker\":{{\"state\":\"{}\",\"epoch\":{},\"since_ms\":{},\"cooldown_until_ms\":{},\"probe_out_until_ms\":{},\"consecutive_failures\":{},\"window_successes\":{},\"window_failures\":{},\"opens\":{},\"forced\":\"{}\"}},\"ttfb_samples\":{},\"ttfb_ewma_ms\":{},\"ttfb_p95_ms\":{},\"successes\":{},\"failures\":{},\"neutral\":{},\"error_permille\":{},\"last_success_ms\":{},\"last_failure_ms\":{}}}",
            crate::json::to_text(self.target.as_str()),
            b.state.as_str(),
            self.admits,
            b.state.as_str(),
            b.epoch,
            b.since_ms,
            o(b.cooldown_until_ms),
            o(b.probe_out_until_ms),
            b.consecutive_failures,
            b.window_successes,
            b.window_failures,
            b.opens,
            b.forced.as_str(),
            self.ttfb_samples,
            o(self.ttfb_ewma_ms.map(u64::from)),
            o(self.ttfb_p95_ms.map(u64::from)),
            self.successes,
            self.failures,
            self.neutral,
            self.error_permille,
            self.last_success_ms,
            self.last_failure_ms,
        )
    }
}

/// What a target's Durable Object persists ([`TargetHealth::encode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHealth {
    pub breaker: Breaker,
    pub stats: Stats,
}

/// A closed target with no outcome for this long is due an idle probe from the cron (the
/// `health.idle_probe_ms` knob; `0` turns idle probes off).
pub const IDLE_PROBE_MS: u64 = 5 * 60 * 1000;

impl TargetHealth {
    /// Whether the cron should probe this target although no probe slot is due: its breaker is
    /// closed and nothing was heard from it for `idle_ms` (or ever). Keeps an unused fallback's
    /// statistics true and finds a silently broken one before traffic does. Open targets are
    /// probed through the half-open slot as soon as their cooldown ends.
    pub fn idle_probe_due(&self, now: u64, idle_ms: u64) -> bool {
        if idle_ms == 0 {
            return false;
        }
        let last = self
            .stats
            .last_success_ms()
            .max(self.stats.last_failure_ms());
        self.breaker.stored_state() == State::Closed
            && (last == 0 || last.saturating_add(idle_ms) <= now)
    }
}

/// The version tag that starts [`TargetHealth::encode`]'s output.
const HEALTH_FORMAT: u64 = 1;

impl TargetHealth {
    /// Integers: the format version (1), the breaker's 21 ([`Breaker::encode`]) and the
    /// statistics' 88 ([`Stats::encode`]).
    pub fn encode(&self) -> String {
        let mut ints = vec![HEALTH_FORMAT];
        self.breaker.encode(&mut ints);
        self.stats.encode(&mut ints);
        let mut out = String::with_capacity(ints.len() * 3);
        write_ints(&mut out, &ints);
        out
    }

    /// The inverse of [`TargetHealth::encode`]; `None` for another version or a damaged value
    /// (the owner then starts fresh: state is late, never wrong).
    pub fn decode(text: &str) -> Option<TargetHealth> {
        let mut r = Reader::new(text);
        if r.u64()? != HEALTH_FORMAT {
            return None;
        }
        let h = TargetHealth {
            breaker: Breaker::decode(&mut r)?,
            stats: Stats::decode(&mut r)?,
        };
        r.done().then_some(h)
    }

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

    /// The operator's view at `now`.
    pub fn view(&self, cfg: &HealthConfig, target: &str, now: u64) -> TargetView {
        let b = self.breaker.view(&cfg.breaker, now);
        let counts = self.stats.window_counts(&cfg.stats, now);
        TargetView {
            target: target.to_string(),
            admits: b.admits(),
            breaker: b,
            ttfb_samples: self.stats.samples(),
            ttfb_ewma_ms: self.stats.ewma_ms(),
            ttfb_p95_ms: self.stats.p95_ms(),
            successes: counts.successes(),
            failures: counts.failures(),
            neutral: counts.neutral(),
            error_permille: counts.error_permille(),
            last_success_ms: self.stats.last_success_ms(),
            last_failure_ms: self.stats.last_failure_ms(),
        }
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

/// One target's health as the router sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSnapshot {
    pub state: State,
    /// Closed, or half-open with the probe slot free, when the snapshot was taken.
    pub admit: bool,
    /// When it does not admit: when it may next (cooldown end, probe expiry; `u64::MAX`: held
    /// open until reset).
    pub until_ms: u64,
    /// The breaker epoch to stamp on outcomes of ordinary (non-probe) attempts.
    pub epoch: u32,
    pub ewma_ms: Option<u32>,
    pub p95_ms: Option<u32>,
    /// Provider-side failures over the window, in permille of counted outcomes.
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

    /// 7 integers: state code, admit (0/1), until, epoch, EWMA + 1, p95 + 1 (0: none), error
    /// permille — e.g. a fresh target is `0,1,0,0,0,0,0`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        write_ints(
            &mut out,
            &[
                self.state.code(),
                self.admit as u64,
                self.until_ms,
                self.epoch as u64,
                opt(self.ewma_ms.map(u64::from)),
                opt(self.p95_ms.map(u64::from)),
                self.error_permille as u64,
            ],
        );
        out
    }

    /// The inverse of [`TargetSnapshot::encode`].
    pub fn decode(text: &str) -> Option<TargetSnapshot> {
        let mut r = Reader::new(text);
        let small = |v: Option<u64>| v.map(u32::try_from).transpose().ok();
        let s = TargetSnapshot {
            state: State::from_code(r.u64()?)?,
            admit: r.bool()?,
            until_ms: r.u64()?,
            epoch: r.u32()?,
            ewma_ms: small(r.opt()?)?,
            p95_ms: small(r.opt()?)?,
            error_permille: u16::try_from(r.u64()?).ok()?,
        };
        r.done().then_some(s)
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub taken_ms: u64,
    /// A route's few targets: a list, not a map.
    pub targets: Vec<(String, TargetSnapshot)>,
}

impl Snapshot {
    pub fn new(taken_ms: u64) -> Self {
        Snapshot {
            taken_ms,
            targets: Vec::new(),
        }
    }

    pub fn insert(&mut self, target: String, s: TargetSnapshot) {
        match self.targets.iter_mut().find(|(t, _)| *t == target) {
            Some(e) => e.1 = s,
            None => self.targets.push((target, s)),
        }
    }

    pub fn get(&self, target: &str) -> Option<&TargetSnapshot> {
        self.targets
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, s)| s)
    }

    /// Whether it may still be used at `now` with a cache TTL of `ttl_ms`.
    pub fn is_fresh(&self, now: u64, ttl_ms: u64) -> bool {
        now >= self.taken_ms && now - self.taken_ms < ttl_ms
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[test]
    fn closed_and_silent_targets_are_due_an_idle_probe() {
        let h = TargetHealth::default();
        assert!(h.idle_probe_due(1_000, IDLE_PROBE_MS), "never heard from");
        let now = 10 * IDLE_PROBE_MS;
        let mut heard = TargetHealth::default();
        let report = TargetReport {
            target: "p/m".into(),
            entries: vec![Entry::from_outcome(&Outcome {
                target: "p/m".into(),
                started_ms: now - 10,
                ended_ms: now,
                ttfb_ms: Some(5),
                class: None,
                retry_after_ms: None,
                epoch: heard.breaker.epoch(),
                probe: false,
            })],
        };
        heard.apply(&HealthConfig::default(), &report, now, 0.5);
        assert!(!heard.idle_probe_due(now + 1_000, IDLE_PROBE_MS));
        assert!(heard.idle_probe_due(now + IDLE_PROBE_MS, IDLE_PROBE_MS));
        let mut open = TargetHealth::default();
        open.breaker.force_open(None, now);
        assert!(
            !open.idle_probe_due(now + 2 * IDLE_PROBE_MS, IDLE_PROBE_MS),
            "open: not idle-probed"
        );
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
    fn streams_that_break_after_their_first_token_open_by_consecutive_failures() {
        let cfg = HealthConfig::default();
        let n = cfg.breaker.consecutive_failures as usize;
        let mut h = TargetHealth::default();
        // Each streamed attempt: first byte after 40 ms, settled once when its stream ends.
        let streamed = |k: u64, broke: Option<FailureClass>| {
            let started = T0 + k * 1_000;
            let at_first_token = Outcome {
                target: "oa/m".into(),
                started_ms: started,
                ended_ms: started + 40,
                ttfb_ms: Some(40),
                class: None,
                retry_after_ms: None,
                epoch: 0,
                probe: false,
            };
            Entry::from_outcome(&at_first_token.stream_ended(broke, started + 900))
        };
        let entries: Vec<Entry> = (0..n as u64)
            .map(|k| streamed(k, Some(Retryable)))
            .collect();
        let mut r = report(&[]);
        r.entries = entries[..n - 1].to_vec();
        assert!(
            !h.apply(&cfg, &r, T0 + 10_000, 0.5),
            "one short: still closed"
        );
        r.entries = entries[n - 1..].to_vec();
        assert!(
            h.apply(&cfg, &r, T0 + 10_001, 0.5),
            "the n-th broken stream opens it"
        );
        let v = h.view(&cfg, "oa/m", T0 + 10_001);
        assert_eq!(v.breaker.state, State::Open);
        assert_eq!(
            (v.successes, v.failures),
            (0, n as u32),
            "one outcome per attempt"
        );
        // Time to first byte still comes from the first token, not from the stream's end.
        assert_eq!((v.ttfb_samples, v.ttfb_ewma_ms), (n as u64, Some(40)));
        assert_eq!(v.last_failure_ms, T0 + (n as u64 - 1) * 1_000 + 900);
        // A completed stream is one success.
        let done = streamed(0, None);
        assert_eq!(
            (done.class_code, done.duration_ms, done.ttfb_ms),
            (0, 900, Some(40))
        );
    }

    #[test]
    fn settings_fill_defaults_and_take_overrides() {
        let config = |health: &str| {
            Config::parse(&format!(
                r#"{{"providers":[{{"id":"p","kind":"ollama"}}],
                    "routes":[{{"model":"m","targets":[{{"provider":"p","model":"x"}}]}}],
                    "health":{health}}}"#
            ))
            .expect("valid")
        };
        let d = HealthSettings::resolve(&config("{}"));
        assert_eq!(d.health, HealthConfig::default());
        assert_eq!(d.batch, BatchPolicy::default());
        assert_eq!(d.snapshot_ttl_ms, DEFAULT_SNAPSHOT_TTL_MS);
        let s = HealthSettings::resolve(&config(
            r#"{"consecutive_failures": 3, "window_ms": 6000, "cooldown_base_ms": 400000,
                "jitter_percent": 0, "snapshot_ttl_ms": 500, "report_failure_max_age_ms": 50}"#,
        ));
        assert_eq!(s.health.breaker.consecutive_failures, 3);
        assert_eq!(
            (s.health.breaker.window_ms, s.health.stats.window_ms),
            (6_000, 6_000)
        );
        // A base above the default cap raises the cap rather than being cut by it.
        assert_eq!(s.health.breaker.cooldown_max_ms, 400_000);
        assert_eq!(s.health.breaker.jitter_percent, 0);
        assert_eq!((s.snapshot_ttl_ms, s.batch.failure_max_age_ms), (500, 50));
        assert_eq!(s.batch.max_age_ms, 1_000);
    }

    #[test]
    fn the_operator_view_shows_breaker_and_stats() {
        let cfg = HealthConfig::default();
        let mut h = TargetHealth::default();
        h.apply(
            &cfg,
            &report(&[
                (None, 0, false),
                (Some(Rejected), 0, false),
                (Some(Timeout), 0, false),
            ]),
            T0,
            0.5,
        );
        let v = h.view(&cfg, "oa/m", T0);
        assert_eq!(v.target, "oa/m");
        assert_eq!((v.breaker.state, v.admits), (State::Closed, true));
        assert_eq!((v.successes, v.failures, v.neutral), (1, 1, 1));
        assert_eq!(
            (v.error_permille, v.ttfb_samples, v.ttfb_ewma_ms),
            (500, 1, Some(40))
        );
        assert_eq!((v.last_success_ms, v.last_failure_ms), (T0 + 50, T0 + 50));
        let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(json["target"], "oa/m");
        assert_eq!(json["breaker"]["state"], "closed");
        assert_eq!(
            json["breaker"]["cooldown_until_ms"],
            serde_json::Value::Null
        );
        assert_eq!(
            (json["successes"].as_u64(), json["ttfb_ewma_ms"].as_u64()),
            (Some(1), Some(40))
        );
        assert_eq!(json["ttfb_p95_ms"].as_u64(), Some(50));
        h.breaker.force_open(None, T0);
        let v = h.view(&cfg, "oa/m", T0 + 1);
        assert_eq!((v.breaker.state, v.admits), (State::Open, false));
        let json: serde_json::Value = serde_json::from_str(&v.to_json()).unwrap();
        assert_eq!(
            json["breaker"]["cooldown_until_ms"].as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(
            (json["state"].as_str(), json["breaker"]["forced"].as_str()),
            (Some("open"), Some("open"))
        );
        assert_eq!(h.breaker.stored_state().as_str(), "open");
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
    fn snapshot_freshness_and_encodings() {
        let mut snap = Snapshot::new(T0);
        snap.insert("oa/m".into(), TargetSnapshot::unknown());
        assert!(snap.is_fresh(T0, 1_000));
        assert!(snap.is_fresh(T0 + 999, 1_000));
        assert!(!snap.is_fresh(T0 + 1_000, 1_000));
        assert!(!snap.is_fresh(T0 - 1, 1_000), "from the future: refetch");
        let open = TargetSnapshot {
            state: State::Open,
            admit: false,
            until_ms: u64::MAX,
            ..TargetSnapshot::unknown()
        };
        snap.insert("oa/m".into(), open);
        assert_eq!((snap.targets.len(), snap.get("oa/m")), (1, Some(&open)));
        assert_eq!(TargetSnapshot::unknown().encode(), "0,1,0,0,0,0,0");
        let measured = TargetSnapshot {
            state: State::HalfOpen,
            epoch: 7,
            ewma_ms: Some(0),
            p95_ms: Some(400),
            error_permille: 1000,
            ..TargetSnapshot::unknown()
        };
        for s in [TargetSnapshot::unknown(), open, measured] {
            assert_eq!(TargetSnapshot::decode(&s.encode()), Some(s));
        }
        for bad in [
            "",
            "0,1,0,0,0,0",
            "0,1,0,0,0,0,0,0",
            "3,1,0,0,0,0,0",
            "0,1,0,0,0,0,70000",
        ] {
            assert_eq!(TargetSnapshot::decode(bad), None, "{bad:?}");
        }

        let cfg = HealthConfig::default();
        let mut h = TargetHealth::default();
        assert_eq!(TargetHealth::decode(&h.encode()), Some(h.clone()));
        h.apply(
            &cfg,
            &report(&[(None, 0, false), (Some(Timeout), 0, false)]),
            T0,
            0.5,
        );
        h.breaker.force_open(None, T0);
        let text = h.encode();
        assert_eq!(text.split(',').count(), 1 + 21 + 88);
        assert_eq!(TargetHealth::decode(&text), Some(h));
        assert_eq!(
            TargetHealth::decode(&text.replacen('1', "2", 1)),
            None,
            "another version"
        );
        assert_eq!(
            TargetHealth::decode(&format!("{text},0")),
            None,
            "trailing items"
        );
        assert_eq!(TargetHealth::decode("{}"), None);
    }
}
