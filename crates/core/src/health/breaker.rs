//! The circuit breaker of one target: closed → open → half-open → closed (or open again).
//!
//! Pure and deterministic: time (`now`, unix ms) and randomness (`unit` in [0, 1)) are passed
//! in. A Durable Object owns one [`Breaker`] per target, persists it (as part of
//! [`super::TargetHealth::encode`]) and
//! feeds it the outcomes the isolates report. Parameters and guarantees: `docs/ROUTING.md`.
//!
//! * **Opens** on `consecutive_failures` provider-side failures in a row, or when the failure
//!   rate over the sliding window (6 buckets of `window_ms / 6`) reaches `failure_rate_percent`
//!   with at least `min_volume` counted outcomes.
//! * **Cooldown** `min(cap, base·2ⁿ)` ± `jitter_percent`, where n counts the opens since the
//!   breaker last closed; never shorter than the opening failure's `Retry-After` (itself bounded
//!   by `retry_after_max_ms`).
//! * **Half-open** admits one probe at a time ([`Breaker::try_acquire_probe`]); a probe that
//!   never reports back expires after `probe_timeout_ms`. The probe's success closes, its
//!   failure re-opens with the doubled cooldown.
//! * **Epochs.** Every state change (and every probe grant or expiry) increments the epoch.
//!   Attempts carry the epoch they started under; an attempt from an earlier epoch is ignored,
//!   so late reports cannot flip a breaker that has already moved on.

use super::codec::Reader;
use super::window::{advance, BUCKETS};
use crate::policy::FailureClass;

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    /// Traffic flows; failures are counted.
    #[default]
    Closed,
    /// No traffic until the cooldown ends.
    Open,
    /// One probe at a time decides between closed and open.
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 open, 2 half-open (stored and sent; stable).
    pub fn code(self) -> u64 {
        self as u64
    }

    pub fn from_code(code: u64) -> Option<State> {
        [State::Closed, State::Open, State::HalfOpen]
            .get(code as usize)
            .copied()
    }
}

/// How an outcome counts for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// The provider's side failed: 5xx, connection, malformed answer, 429, timeout, 401/403
    /// (our key for this target is bad), 404 (the target's model is gone).
    Failure,
    /// The request was at fault (400 and other 4xx, context length, content policy), or the
    /// target cannot honour one of its parameters (nothing was sent): says nothing about the
    /// target's health. Counts neither way.
    Neutral,
}

/// `None` is a success.
pub fn verdict(class: Option<FailureClass>) -> Verdict {
    match class {
        None => Verdict::Success,
        Some(
            FailureClass::Retryable
            | FailureClass::RateLimited
            | FailureClass::Timeout
            | FailureClass::Auth
            | FailureClass::TargetMissing,
        ) => Verdict::Failure,
        Some(
            FailureClass::Rejected
            | FailureClass::ContextLength
            | FailureClass::ContentPolicy
            | FailureClass::Unsupported,
        ) => Verdict::Neutral,
    }
}

/// Breaker parameters (not persisted with the state; the owner passes them to every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Open after this many provider-side failures in a row.
    pub consecutive_failures: u32,
    /// Open when failures / (failures + successes) over the window reach this percentage…
    pub failure_rate_percent: u32,
    /// …and the window holds at least this many counted outcomes.
    pub min_volume: u32,
    /// The sliding window, kept as 6 buckets of `window_ms / 6`.
    pub window_ms: u64,
    /// The first cooldown; doubled on each re-open until the breaker closes again.
    pub cooldown_base_ms: u64,
    /// The longest cooldown (before a `Retry-After` floor).
    pub cooldown_max_ms: u64,
    /// The cooldown is spread uniformly by ± this percentage.
    pub jitter_percent: u32,
    /// The longest `Retry-After` honoured as a cooldown floor.
    pub retry_after_max_ms: u64,
    /// A probe that has not reported back after this long frees the slot.
    pub probe_timeout_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: 5,
            failure_rate_percent: 50,
            min_volume: 10,
            window_ms: 60_000,
            cooldown_base_ms: 30_000,
            cooldown_max_ms: 300_000,
            jitter_percent: 20,
            retry_after_max_ms: 3_600_000,
            probe_timeout_ms: 60_000,
        }
    }
}

/// An operator's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forced {
    #[default]
    No,
    /// Held open (until `until_ms`, or until reset when that is `u64::MAX`).
    Open,
    /// Held closed until reset: failures are counted but never open it.
    Closed,
}

impl Forced {
    pub fn as_str(self) -> &'static str {
        match self {
            Forced::No => "no",
            Forced::Open => "open",
            Forced::Closed => "closed",
        }
    }
}

/// What the breaker needs to know about one finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The epoch the attempt started under (from the snapshot, or the probe token).
    pub epoch: u32,
    /// Whether this attempt was the half-open probe.
    pub probe: bool,
    /// `None` for a success.
    pub class: Option<FailureClass>,
    /// The provider's `Retry-After`, if the failure carried one.
    pub retry_after_ms: Option<u64>,
}

/// One target's breaker. Stored as integers ([`Breaker::encode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    state: State,
    epoch: u32,
    /// When the current state began.
    since_ms: u64,
    /// Open: the cooldown's end (`u64::MAX`: held open until reset). Half-open with a probe
    /// out: the probe's expiry.
    until_ms: u64,
    /// Opens since the breaker last closed (the cooldown's exponent).
    opens: u32,
    consecutive: u32,
    probing: bool,
    forced: Forced,
    /// The window's newest bucket, as `now / bucket_ms`.
    head: u64,
    /// Per bucket: [successes, failures].
    window: [[u32; 2]; BUCKETS],
}

/// A read-only view for operators and snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerView {
    pub state: State,
    pub epoch: u32,
    pub since_ms: u64,
    /// Open: when the cooldown ends (`u64::MAX`: until reset).
    pub cooldown_until_ms: Option<u64>,
    /// Half-open: whether a probe is out, and until when it holds the slot.
    pub probe_out_until_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub window_successes: u32,
    pub window_failures: u32,
    pub opens: u32,
    pub forced: Forced,
}

impl BreakerView {
    /// Whether ordinary traffic may go there now (closed), or a probe may (half-open, slot free).
    pub fn admits(&self) -> bool {
        match self.state {
            State::Closed => true,
            State::HalfOpen => self.probe_out_until_ms.is_none(),
            State::Open => false,
        }
    }

    /// When it next admits, if it does not now.
    pub fn admits_at(&self) -> Option<u64> {
        match self.state {
            State::Closed => None,
            State::Open => self.cooldown_until_ms,
            State::HalfOpen => self.probe_out_until_ms,
        }
    }
}

impl Breaker {
    pub fn new() -> Self {
        Breaker::default()
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Append the breaker as 21 integers: state code, epoch, since, until, opens, consecutive
    /// failures, probing (0/1), forced (0 no, 1 open, 2 closed), window head, then the
    /// window's 6 × [successes, failures].
    pub fn encode(&self, out: &mut Vec<u64>) {
        out.extend_from_slice(&[
            self.state.code(),
            self.epoch as u64,
            self.since_ms,
            self.until_ms,
            self.opens as u64,
            self.consecutive as u64,
            self.probing as u64,
            self.forced as u64,
            self.head,
        ]);
        out.extend(self.window.iter().flatten().map(|&n| n as u64));
    }

    /// The inverse of [`Breaker::encode`]; `None` if an item is missing or out of range.
    pub fn decode(r: &mut Reader<'_>) -> Option<Breaker> {
        let mut b = Breaker {
            state: State::from_code(r.u64()?)?,
            epoch: r.u32()?,
            since_ms: r.u64()?,
            until_ms: r.u64()?,
            opens: r.u32()?,
            consecutive: r.u32()?,
            probing: r.bool()?,
            forced: [Forced::No, Forced::Open, Forced::Closed]
                .get(r.u64()? as usize)
                .copied()?,
            head: r.u64()?,
            window: Default::default(),
        };
        for cell in b.window.iter_mut().flatten() {
            *cell = r.u32()?;
        }
        Some(b)
    }

    /// The state as stored, before any time-driven transition [`Breaker::tick`] would apply
    /// (the owner compares it before and after an operation to log state changes).
    pub fn stored_state(&self) -> State {
        self.state
    }

    /// The state at `now`, time-driven transitions applied (open → half-open at the cooldown's
    /// end; an unanswered probe expiring).
    pub fn state(&self, now: u64) -> State {
        let mut b = self.clone();
        b.tick(now);
        b.state
    }

    fn set(&mut self, state: State, now: u64) {
        self.state = state;
        self.epoch = self.epoch.wrapping_add(1);
        self.since_ms = now;
        self.until_ms = 0;
        self.probing = false;
        if state == State::Closed {
            self.consecutive = 0;
            self.window = Default::default();
        }
    }

    /// Apply the transitions that only need time to pass.
    pub fn tick(&mut self, now: u64) {
        if self.state == State::Open && self.until_ms != u64::MAX && now >= self.until_ms {
            self.set(State::HalfOpen, now);
            if self.forced == Forced::Open {
                self.forced = Forced::No;
            }
        }
        if self.state == State::HalfOpen && self.probing && now >= self.until_ms {
            // The probe never reported: free the slot; its late report is now stale.
            self.probing = false;
            self.until_ms = 0;
            self.epoch = self.epoch.wrapping_add(1);
        }
    }

    /// The cooldown for the next open.
    pub fn cooldown_ms(&self, cfg: &BreakerConfig, unit: f64, retry_after_ms: Option<u64>) -> u64 {
        let raw = cfg
            .cooldown_base_ms
            .saturating_mul(1u64 << self.opens.min(20))
            .min(cfg.cooldown_max_ms);
        let j = cfg.jitter_percent.min(100) as f64 / 100.0;
        let factor = 1.0 + j * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = ((raw as f64 * factor) as u64).min(cfg.cooldown_max_ms);
        let floor = retry_after_ms.unwrap_or(0).min(cfg.retry_after_max_ms);
        jittered.max(floor)
    }

    fn open(&mut self, cfg: &BreakerConfig, now: u64, unit: f64, retry_after_ms: Option<u64>) {
        let cooldown = self.cooldown_ms(cfg, unit, retry_after_ms);
        self.set(State::Open, now);
        self.until_ms = now.saturating_add(cooldown).min(u64::MAX - 1);
        self.opens = self.opens.saturating_add(1);
    }

    fn close(&mut self, now: u64) {
        self.set(State::Closed, now);
        self.opens = 0;
    }

    /// Record a finished attempt. Returns whether the epoch changed (a state change, or a
    /// probe released).
    pub fn record(&mut self, cfg: &BreakerConfig, a: &Attempt, now: u64, unit: f64) -> bool {
        let before = self.epoch;
        self.tick(now);
        match self.state {
            State::Open => {}
            State::HalfOpen => {
                if a.probe && self.probing && a.epoch == self.epoch {
                    match verdict(a.class) {
                        Verdict::Success => self.close(now),
                        Verdict::Failure => self.open(cfg, now, unit, a.retry_after_ms),
                        Verdict::Neutral => {
                            // The provider answered, but the request was at fault: no verdict.
                            // Free the slot for another probe.
                            self.probing = false;
                            self.until_ms = 0;
                            self.epoch = self.epoch.wrapping_add(1);
                        }
                    }
                }
            }
            State::Closed => {
                if a.epoch >= self.epoch {
                    let v = verdict(a.class);
                    if v != Verdict::Neutral {
                        let bucket_ms = (cfg.window_ms / BUCKETS as u64).max(1);
                        advance(&mut self.window, &mut self.head, now / bucket_ms);
                        let cell = &mut self.window[(self.head % BUCKETS as u64) as usize];
                        if v == Verdict::Success {
                            self.consecutive = 0;
                            cell[0] = cell[0].saturating_add(1);
                        } else {
                            self.consecutive = self.consecutive.saturating_add(1);
                            cell[1] = cell[1].saturating_add(1);
                            if self.forced != Forced::Closed && self.should_open(cfg) {
                                self.open(cfg, now, unit, a.retry_after_ms);
                            }
                        }
                    }
                }
            }
        }
        self.epoch != before
    }

    fn totals(&self) -> (u32, u32) {
        self.window.iter().fold((0u32, 0u32), |(s, f), c| {
            (s.saturating_add(c[0]), f.saturating_add(c[1]))
        })
    }

    fn should_open(&self, cfg: &BreakerConfig) -> bool {
        if self.consecutive >= cfg.consecutive_failures.max(1) {
            return true;
        }
        let (ok, failed) = self.totals();
        let volume = ok as u64 + failed as u64;
        volume >= cfg.min_volume.max(1) as u64
            && failed as u64 * 100 >= cfg.failure_rate_percent as u64 * volume
    }

    /// Half-open: take the single probe slot. Returns the probe's token (the epoch its outcome
    /// must carry, with `probe: true`), or `None` when the breaker is not half-open or a probe
    /// is already out.
    pub fn try_acquire_probe(&mut self, cfg: &BreakerConfig, now: u64) -> Option<u32> {
        self.tick(now);
        if self.state != State::HalfOpen || self.probing {
            return None;
        }
        self.probing = true;
        self.until_ms = now.saturating_add(cfg.probe_timeout_ms.max(1));
        self.epoch = self.epoch.wrapping_add(1);
        Some(self.epoch)
    }

    /// Operator: hold it open until `until_ms` (then half-open, as after a cooldown), or until
    /// reset when `None`.
    pub fn force_open(&mut self, until_ms: Option<u64>, now: u64) {
        self.set(State::Open, now);
        self.until_ms = until_ms.unwrap_or(u64::MAX);
        self.forced = Forced::Open;
    }

    /// Operator: hold it closed until reset (outcomes are still counted, but never open it).
    pub fn force_close(&mut self, now: u64) {
        self.close(now);
        self.forced = Forced::Closed;
    }

    /// Operator: back to a fresh closed breaker (the epoch still moves on).
    pub fn reset(&mut self, now: u64) {
        let epoch = self.epoch;
        *self = Breaker::default();
        self.epoch = epoch;
        self.set(State::Closed, now);
    }

    /// A read-only view at `now`.
    pub fn view(&self, cfg: &BreakerConfig, now: u64) -> BreakerView {
        let mut b = self.clone();
        b.tick(now);
        let bucket_ms = (cfg.window_ms / BUCKETS as u64).max(1);
        advance(&mut b.window, &mut b.head, now / bucket_ms);
        let (ok, failed) = b.totals();
        BreakerView {
            state: b.state,
            epoch: b.epoch,
            since_ms: b.since_ms,
            cooldown_until_ms: (b.state == State::Open).then_some(b.until_ms),
            probe_out_until_ms: (b.state == State::HalfOpen && b.probing).then_some(b.until_ms),
            consecutive_failures: b.consecutive,
            window_successes: ok,
            window_failures: failed,
            opens: b.opens,
            forced: b.forced,
        }
    }
}

/// When every target of a route is open: the index of the one that admits soonest (the
/// earliest `admits_at`; the first on ties), so the request tries it rather than failing
/// without trying.
pub fn select_when_all_open(admits_at: &[u64]) -> Option<usize> {
    admits_at
        .iter()
        .enumerate()
        .min_by_key(|&(i, &t)| (t, i))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    const T0: u64 = 1_700_000_000_000;

    fn cfg() -> BreakerConfig {
        BreakerConfig::default()
    }

    fn at(epoch: u32, class: Option<FailureClass>) -> Attempt {
        Attempt {
            epoch,
            probe: false,
            class,
            retry_after_ms: None,
        }
    }

    /// Fail `n` times at `now` under the current epoch.
    fn fail_n(b: &mut Breaker, n: u32, now: u64) {
        for _ in 0..n {
            let e = b.epoch();
            b.record(&cfg(), &at(e, Some(Retryable)), now, 0.5);
        }
    }

    fn opened(now: u64) -> Breaker {
        let mut b = Breaker::new();
        fail_n(&mut b, 5, now);
        assert_eq!(b.state(now), State::Open);
        b
    }

    #[test]
    fn verdicts_by_class() {
        let cases = [
            (None, Verdict::Success),
            (Some(Retryable), Verdict::Failure),
            (Some(RateLimited), Verdict::Failure),
            (Some(Timeout), Verdict::Failure),
            (Some(Auth), Verdict::Failure),
            (Some(TargetMissing), Verdict::Failure),
            (Some(Rejected), Verdict::Neutral),
            (Some(ContextLength), Verdict::Neutral),
            (Some(ContentPolicy), Verdict::Neutral),
            (Some(Unsupported), Verdict::Neutral),
        ];
        for (class, want) in cases {
            assert_eq!(verdict(class), want, "{class:?}");
        }
    }

    #[test]
    fn consecutive_failures_open_at_the_threshold() {
        // (failures, then a success?, more failures, open?)
        let cases: [(u32, bool, u32, bool); 5] = [
            (4, false, 0, false),
            (5, false, 0, true),
            (4, true, 4, false), // a success resets the run (8 failures in 9 < volume 10)
            (4, true, 1, false),
            (3, true, 5, true),
        ];
        for (i, (first, success, then, want_open)) in cases.into_iter().enumerate() {
            let mut b = Breaker::new();
            fail_n(&mut b, first, T0);
            if success {
                b.record(&cfg(), &at(0, None), T0, 0.5);
            }
            fail_n(&mut b, then, T0);
            assert_eq!(b.state(T0) == State::Open, want_open, "case {i}");
        }
    }

    #[test]
    fn failure_rate_opens_only_with_volume() {
        let c = BreakerConfig {
            consecutive_failures: 100,
            ..cfg()
        };
        // (successes, failures) interleaved s,f,s,f…; open?
        let cases = [
            (5, 4, false), // 9 outcomes: below min volume
            (5, 5, true),  // 10 outcomes at 50 %
            (6, 4, false), // 40 %
            (3, 7, true),
            (20, 4, false),
        ];
        for (ok, failed, want) in cases {
            let mut b = Breaker::new();
            let (mut s, mut f) = (ok, failed);
            while s + f > 0 {
                if s > 0 {
                    b.record(&c, &at(0, None), T0, 0.5);
                    s -= 1;
                }
                if f > 0 {
                    b.record(&c, &at(0, Some(Timeout)), T0, 0.5);
                    f -= 1;
                }
            }
            assert_eq!(
                b.state(T0) == State::Open,
                want,
                "{ok} ok / {failed} failed"
            );
        }
    }

    #[test]
    fn the_window_slides() {
        let c = BreakerConfig {
            consecutive_failures: 100,
            min_volume: 1_000,
            ..cfg()
        };
        let mut b = Breaker::new();
        for _ in 0..9 {
            b.record(&c, &at(0, Some(Retryable)), T0, 0.5);
            b.record(&c, &at(0, None), T0, 0.5);
        }
        let v = b.view(&c, T0);
        assert_eq!((v.window_successes, v.window_failures), (9, 9));
        // 61 s later the old buckets are gone.
        b.record(&c, &at(0, Some(Retryable)), T0 + 61_000, 0.5);
        let v = b.view(&c, T0 + 61_000);
        assert_eq!((v.window_successes, v.window_failures), (0, 1));
        // Half the window later the first buckets are still counted.
        let c = BreakerConfig {
            consecutive_failures: 100,
            ..cfg()
        };
        let mut b = Breaker::new();
        for _ in 0..5 {
            b.record(&c, &at(0, None), T0, 0.5);
        }
        for _ in 0..5 {
            b.record(&c, &at(0, Some(Retryable)), T0 + 30_000, 0.5);
        }
        assert_eq!(b.state(T0 + 30_000), State::Open);
    }

    #[test]
    fn client_faults_do_not_count() {
        let mut b = Breaker::new();
        for _ in 0..50 {
            for class in [Rejected, ContextLength, ContentPolicy] {
                b.record(&cfg(), &at(0, Some(class)), T0, 0.5);
            }
        }
        let v = b.view(&cfg(), T0);
        assert_eq!(v.state, State::Closed);
        assert_eq!((v.window_successes, v.window_failures), (0, 0));
        // …and do not break a run of failures either.
        fail_n(&mut b, 4, T0);
        b.record(&cfg(), &at(0, Some(Rejected)), T0, 0.5);
        fail_n(&mut b, 1, T0);
        assert_eq!(b.state(T0), State::Open);
    }

    #[test]
    fn cooldown_jitter_growth_cap_and_retry_after_floor() {
        let c = cfg();
        let mut b = Breaker::new();
        // (opens so far, unit, retry_after, expected)
        let cases = [
            (0, 0.5, None, 30_000),
            (0, 0.0, None, 24_000),
            (0, 1.0, None, 36_000),
            (1, 0.5, None, 60_000),
            (2, 0.5, None, 120_000),
            (3, 0.5, None, 240_000),
            (4, 0.5, None, 300_000),
            (4, 1.0, None, 300_000), // jitter never passes the cap
            (9, 0.0, None, 240_000),
            (0, 0.5, Some(90_000), 90_000),
            (0, 0.5, Some(1_000), 30_000),
            (0, 0.5, Some(99_000_000), 3_600_000),
        ];
        for (opens, unit, ra, want) in cases {
            b.opens = opens;
            assert_eq!(b.cooldown_ms(&c, unit, ra), want, "{opens} {unit} {ra:?}");
        }
    }

    #[test]
    fn the_opening_failures_retry_after_sets_the_cooldown_floor() {
        let mut b = Breaker::new();
        fail_n(&mut b, 4, T0);
        let a = Attempt {
            retry_after_ms: Some(120_000),
            ..at(0, Some(RateLimited))
        };
        b.record(&cfg(), &a, T0, 0.5);
        let v = b.view(&cfg(), T0);
        assert_eq!(v.cooldown_until_ms, Some(T0 + 120_000));
        assert_eq!(b.state(T0 + 119_999), State::Open);
        assert_eq!(b.state(T0 + 120_000), State::HalfOpen);
    }

    #[test]
    fn full_cycle_open_half_open_probe_close() {
        let c = cfg();
        let mut b = opened(T0);
        let e_open = b.epoch();
        assert_eq!(b.try_acquire_probe(&c, T0 + 29_999), None, "still cooling");
        assert_eq!(b.state(T0 + 30_000), State::HalfOpen);
        let token = b.try_acquire_probe(&c, T0 + 30_000).expect("probe");
        assert!(token > e_open);
        assert_eq!(
            b.try_acquire_probe(&c, T0 + 30_001),
            None,
            "one probe at a time"
        );
        let v = b.view(&c, T0 + 30_001);
        assert_eq!(v.probe_out_until_ms, Some(T0 + 90_000));
        assert!(!v.admits());
        // A non-probe outcome in half-open changes nothing.
        assert!(!b.record(&c, &at(token, None), T0 + 30_002, 0.5));
        assert_eq!(b.state(T0 + 30_002), State::HalfOpen);
        // The probe's success closes and resets the cooldown growth.
        let probe_ok = Attempt {
            probe: true,
            ..at(token, None)
        };
        assert!(b.record(&c, &probe_ok, T0 + 31_000, 0.5));
        let v = b.view(&c, T0 + 31_000);
        assert_eq!(v.state, State::Closed);
        assert_eq!(
            (v.opens, v.consecutive_failures, v.window_failures),
            (0, 0, 0)
        );
    }

    #[test]
    fn probe_failure_reopens_with_a_doubled_cooldown() {
        let c = cfg();
        let mut b = opened(T0);
        let mut now = T0;
        for want in [60_000, 120_000, 240_000, 300_000, 300_000] {
            now = b.view(&c, now).cooldown_until_ms.unwrap();
            let token = b.try_acquire_probe(&c, now).unwrap();
            let failed = Attempt {
                probe: true,
                ..at(token, Some(Retryable))
            };
            assert!(b.record(&c, &failed, now, 0.5));
            let v = b.view(&c, now);
            assert_eq!(v.state, State::Open);
            assert_eq!(v.cooldown_until_ms, Some(now + want));
        }
        // A success closes; the next open starts from the base again.
        now = b.view(&c, now).cooldown_until_ms.unwrap();
        let token = b.try_acquire_probe(&c, now).unwrap();
        b.record(
            &c,
            &Attempt {
                probe: true,
                ..at(token, None)
            },
            now,
            0.5,
        );
        fail_n(&mut b, 5, now);
        assert_eq!(b.view(&c, now).cooldown_until_ms, Some(now + 30_000));
    }

    #[test]
    fn an_unanswered_probe_expires_and_its_late_report_is_ignored() {
        let c = cfg();
        let mut b = opened(T0);
        let t = T0 + 30_000;
        let first = b.try_acquire_probe(&c, t).unwrap();
        assert_eq!(b.try_acquire_probe(&c, t + 59_999), None);
        let second = b
            .try_acquire_probe(&c, t + 60_000)
            .expect("slot freed on expiry");
        assert!(second > first);
        // The first probe's late success does not close the breaker…
        let late = Attempt {
            probe: true,
            ..at(first, None)
        };
        assert!(!b.record(&c, &late, t + 60_001, 0.5));
        assert_eq!(b.state(t + 60_001), State::HalfOpen);
        // …the current probe's does.
        let now_ok = Attempt {
            probe: true,
            ..at(second, None)
        };
        assert!(b.record(&c, &now_ok, t + 60_002, 0.5));
        assert_eq!(b.state(t + 60_002), State::Closed);
    }

    #[test]
    fn a_neutral_probe_frees_the_slot_without_a_verdict() {
        let c = cfg();
        let mut b = opened(T0);
        let t = T0 + 30_000;
        let token = b.try_acquire_probe(&c, t).unwrap();
        let neutral = Attempt {
            probe: true,
            ..at(token, Some(Rejected))
        };
        assert!(b.record(&c, &neutral, t + 1, 0.5));
        assert_eq!(b.state(t + 1), State::HalfOpen);
        assert!(b.try_acquire_probe(&c, t + 2).is_some());
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let c = cfg();
        // Failures from before a reset do not count against the fresh breaker.
        let mut b = Breaker::new();
        fail_n(&mut b, 4, T0);
        b.reset(T0 + 1);
        for _ in 0..10 {
            b.record(&c, &at(0, Some(Retryable)), T0 + 2, 0.5);
        }
        assert_eq!(b.state(T0 + 2), State::Closed);
        assert_eq!(b.view(&c, T0 + 2).consecutive_failures, 0);
        // After a probe closed it, failures that started while it was open are ignored,
        // and so are late successes that would otherwise close a re-opened breaker.
        let mut b = opened(T0);
        let e_open = b.epoch();
        let t = T0 + 30_000;
        let token = b.try_acquire_probe(&c, t).unwrap();
        b.record(
            &c,
            &Attempt {
                probe: true,
                ..at(token, None)
            },
            t,
            0.5,
        );
        for _ in 0..10 {
            b.record(&c, &at(e_open, Some(Timeout)), t + 1, 0.5);
        }
        assert_eq!(b.state(t + 1), State::Closed);
        // Outcomes of the current epoch do count.
        let e = b.epoch();
        for _ in 0..5 {
            b.record(&c, &at(e, Some(Timeout)), t + 2, 0.5);
        }
        assert_eq!(b.state(t + 2), State::Open);
        let reopened = b.epoch();
        b.record(&c, &at(e, None), t + 3, 0.5);
        b.record(
            &c,
            &Attempt {
                probe: true,
                ..at(e, None)
            },
            t + 3,
            0.5,
        );
        assert_eq!((b.state(t + 3), b.epoch()), (State::Open, reopened));
    }

    #[test]
    fn operator_controls() {
        let c = cfg();
        // Force open until a time: open, no probe before it, half-open after it.
        let mut b = Breaker::new();
        b.force_open(Some(T0 + 10_000), T0);
        assert_eq!(b.view(&c, T0).forced, Forced::Open);
        assert_eq!(b.try_acquire_probe(&c, T0 + 9_999), None);
        assert_eq!(b.state(T0 + 10_000), State::HalfOpen);
        assert!(b.try_acquire_probe(&c, T0 + 10_000).is_some());
        assert_eq!(b.view(&c, T0 + 10_000).forced, Forced::No);
        // Force open until reset: open for ever, successes ignored.
        let mut b = Breaker::new();
        b.force_open(None, T0);
        let e = b.epoch();
        b.record(&c, &at(e, None), T0 + 1, 0.5);
        assert_eq!(b.state(T0 + 365 * 86_400_000), State::Open);
        b.reset(T0 + 2);
        assert_eq!(b.view(&c, T0 + 2).forced, Forced::No);
        assert_eq!(b.state(T0 + 2), State::Closed);
        // Force close: even from open, and failures no longer open it.
        let mut b = opened(T0);
        b.force_close(T0 + 1);
        fail_n(&mut b, 20, T0 + 2);
        let v = b.view(&c, T0 + 2);
        assert_eq!((v.state, v.forced), (State::Closed, Forced::Closed));
        assert_eq!(v.consecutive_failures, 20);
        b.reset(T0 + 3);
        fail_n(&mut b, 5, T0 + 4);
        assert_eq!(b.state(T0 + 4), State::Open);
    }

    #[test]
    fn every_state_change_moves_the_epoch() {
        let c = cfg();
        let mut b = Breaker::new();
        let mut last = b.epoch();
        let mut check = |b: &Breaker, what: &str| {
            assert!(b.epoch() > last, "{what}");
            last = b.epoch();
        };
        fail_n(&mut b, 5, T0);
        check(&b, "closed → open");
        b.tick(T0 + 30_000);
        check(&b, "open → half-open");
        b.try_acquire_probe(&c, T0 + 30_000);
        check(&b, "probe granted");
        b.tick(T0 + 90_000);
        check(&b, "probe expired");
        let token = b.try_acquire_probe(&c, T0 + 90_000).unwrap();
        check(&b, "probe granted");
        b.record(
            &c,
            &Attempt {
                probe: true,
                ..at(token, None)
            },
            T0 + 90_001,
            0.5,
        );
        check(&b, "half-open → closed");
        b.force_open(None, T0 + 90_002);
        check(&b, "forced open");
        b.force_close(T0 + 90_003);
        check(&b, "forced closed");
        b.reset(T0 + 90_004);
        check(&b, "reset");
    }

    #[test]
    fn encoding_round_trips_every_state() {
        let c = cfg();
        let round_trip = |b: &Breaker| {
            let mut ints = Vec::new();
            b.encode(&mut ints);
            assert_eq!(ints.len(), 21);
            let mut text = String::new();
            crate::health::codec::write_ints(&mut text, &ints);
            let back = Breaker::decode(&mut Reader::new(&text)).expect("decodes");
            assert_eq!(&back, b);
            text
        };
        assert_eq!(
            round_trip(&Breaker::new()),
            "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
        );
        let mut b = opened(T0);
        round_trip(&b);
        let t = T0 + 30_000;
        b.try_acquire_probe(&c, t).unwrap();
        assert_eq!(round_trip(&b).split(',').next(), Some("2"), "half-open");
        let mut held = Breaker::new();
        held.force_open(None, T0);
        round_trip(&held);
        held.force_close(T0 + 1);
        round_trip(&held);
        // Truncated or out-of-range input is refused, not half-read.
        assert_eq!(Breaker::decode(&mut Reader::new("0,1,2")), None);
        assert_eq!(
            Breaker::decode(&mut Reader::new(
                "3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
            )),
            None
        );
    }

    #[test]
    fn all_open_picks_the_soonest() {
        assert_eq!(select_when_all_open(&[]), None);
        assert_eq!(select_when_all_open(&[50, 20, 30]), Some(1));
        assert_eq!(
            select_when_all_open(&[20, 50, 20]),
            Some(0),
            "first on ties"
        );
        assert_eq!(select_when_all_open(&[u64::MAX, 7]), Some(1));
    }
}
