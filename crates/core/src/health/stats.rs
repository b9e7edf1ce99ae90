//! Health statistics of one target: time to first byte (EWMA and a p95 estimate), outcomes by
//! class over a sliding window, and the last success and failure.
//!
//! Integers only (microseconds, permille), bounded memory, deterministic. The p95 comes from a
//! fixed histogram with roughly logarithmic buckets whose counts are halved whenever they reach
//! `decay_at`, so it follows the last few hundred samples rather than all time.

use super::breaker::{verdict, Verdict};
use super::codec::Reader;
use super::window::{advance, BUCKETS};
use super::{class_code, CLASSES};
use crate::policy::FailureClass;

/// Upper bounds (inclusive, ms) of the TTFB histogram's buckets. A p95 is reported as the bound
/// of the bucket it falls in; the last bucket means "more than a minute".
pub const TTFB_BOUNDS_MS: [u32; 23] = [
    20, 50, 100, 150, 200, 300, 400, 500, 700, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 7_000,
    10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 600_000,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsConfig {
    /// The EWMA's weight of a new sample, in permille (200 = 0.2).
    pub ewma_alpha_permille: u32,
    /// The sliding window for outcome counts (6 buckets).
    pub window_ms: u64,
    /// Halve the histogram when it holds this many samples.
    pub decay_at: u32,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            ewma_alpha_permille: 200,
            window_ms: 60_000,
            decay_at: 512,
        }
    }
}

/// Outcome counts over the window, indexed by [`class_code`] (0 = success).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassCounts(pub [u32; CLASSES]);

impl ClassCounts {
    pub fn get(&self, class: Option<FailureClass>) -> u32 {
        self.0[class_code(class) as usize]
    }

    pub fn successes(&self) -> u32 {
        self.0[0]
    }

    /// Provider-side failures (the classes the breaker counts).
    pub fn failures(&self) -> u32 {
        self.sum(Verdict::Failure)
    }

    /// Client faults (rejected, context length, content policy).
    pub fn neutral(&self) -> u32 {
        self.sum(Verdict::Neutral)
    }

    fn sum(&self, want: Verdict) -> u32 {
        (1..CLASSES)
            .filter(|&c| verdict(super::class_from_code(c as u8).flatten()) == want)
            .map(|c| self.0[c])
            .fold(0u32, u32::saturating_add)
    }

    /// Provider-side failures / (successes + failures), in permille; 0 without traffic.
    pub fn error_permille(&self) -> u16 {
        let f = self.failures() as u64;
        let total = f + self.successes() as u64;
        (f * 1000).checked_div(total).unwrap_or(0) as u16
    }
}

/// Stored as integers ([`Stats::encode`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// EWMA of TTFB in microseconds (meaningful once `samples > 0`).
    ewma_us: u64,
    /// TTFB samples ever seen.
    samples: u64,
    hist: [u32; 23],
    head: u64,
    window: [[u32; CLASSES]; BUCKETS],
    last_success_ms: u64,
    last_failure_ms: u64,
}

impl Stats {
    pub fn new() -> Self {
        Stats::default()
    }

    /// Append the statistics as 88 integers: EWMA (µs), samples, the 23 histogram counts,
    /// window head, the window's 6 × 10 class counts, last success, last failure.
    pub fn encode(&self, out: &mut Vec<u64>) {
        out.extend_from_slice(&[self.ewma_us, self.samples]);
        out.extend(self.hist.iter().map(|&n| n as u64));
        out.push(self.head);
        out.extend(self.window.iter().flatten().map(|&n| n as u64));
        out.extend_from_slice(&[self.last_success_ms, self.last_failure_ms]);
    }

    /// The inverse of [`Stats::encode`]; `None` if an item is missing or out of range.
    pub fn decode(r: &mut Reader<'_>) -> Option<Stats> {
        let mut s = Stats {
            ewma_us: r.u64()?,
            samples: r.u64()?,
            ..Stats::default()
        };
        for n in s.hist.iter_mut() {
            *n = r.u32()?;
        }
        s.head = r.u64()?;
        for n in s.window.iter_mut().flatten() {
            *n = r.u32()?;
        }
        s.last_success_ms = r.u64()?;
        s.last_failure_ms = r.u64()?;
        Some(s)
    }

    /// Record one finished attempt. `ended_ms` (the isolate's clock) stamps the last
    /// success/failure; `now` (the recorder's clock) places it in the window.
    pub fn record(
        &mut self,
        cfg: &StatsConfig,
        class: Option<FailureClass>,
        ttfb_ms: Option<u64>,
        ended_ms: u64,
        now: u64,
    ) {
        let bucket_ms = (cfg.window_ms / BUCKETS as u64).max(1);
        advance(&mut self.window, &mut self.head, now / bucket_ms);
        let cell = &mut self.window[(self.head % BUCKETS as u64) as usize];
        let c = class_code(class) as usize;
        cell[c] = cell[c].saturating_add(1);
        match verdict(class) {
            Verdict::Success => self.last_success_ms = self.last_success_ms.max(ended_ms),
            Verdict::Failure => self.last_failure_ms = self.last_failure_ms.max(ended_ms),
            Verdict::Neutral => {}
        }
        if let Some(ms) = ttfb_ms {
            self.sample_ttfb(cfg, ms);
        }
    }

    fn sample_ttfb(&mut self, cfg: &StatsConfig, ms: u64) {
        // Capped at a day so the EWMA's arithmetic stays in i64 (no 128-bit division in wasm).
        let us = ms.min(86_400_000) * 1000;
        if self.samples == 0 {
            self.ewma_us = us;
        } else {
            let alpha = cfg.ewma_alpha_permille.min(1000) as i64;
            let ewma = self.ewma_us.min(86_400_000_000) as i64;
            let delta = (us as i64 - ewma) * alpha / 1000;
            self.ewma_us = (ewma + delta).max(0) as u64;
        }
        self.samples = self.samples.saturating_add(1);
        let i = TTFB_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b as u64)
            .unwrap_or(TTFB_BOUNDS_MS.len() - 1);
        self.hist[i] = self.hist[i].saturating_add(1);
        if self.hist.iter().map(|&n| n as u64).sum::<u64>() >= cfg.decay_at.max(2) as u64 {
            self.hist.iter_mut().for_each(|n| *n /= 2);
        }
    }

    /// TTFB samples ever seen (0: no latency data).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The EWMA of TTFB in ms, once there is a sample.
    pub fn ewma_ms(&self) -> Option<u32> {
        (self.samples > 0).then(|| (self.ewma_us / 1000).min(u32::MAX as u64) as u32)
    }

    /// The 95th percentile of recent TTFB (a bucket's upper bound), once there is a sample.
    pub fn p95_ms(&self) -> Option<u32> {
        let total: u64 = self.hist.iter().map(|&n| n as u64).sum();
        if total == 0 {
            return None;
        }
        let rank = (total * 95).div_ceil(100);
        let mut seen = 0u64;
        for (i, &n) in self.hist.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                return Some(TTFB_BOUNDS_MS[i]);
            }
        }
        None
    }

    /// Outcome counts over the window ending at `now`.
    pub fn window_counts(&self, cfg: &StatsConfig, now: u64) -> ClassCounts {
        let mut w = self.window;
        let mut head = self.head;
        advance(
            &mut w,
            &mut head,
            now / (cfg.window_ms / BUCKETS as u64).max(1),
        );
        let mut out = [0u32; CLASSES];
        for cell in &w {
            for (o, n) in out.iter_mut().zip(cell) {
                *o = o.saturating_add(*n);
            }
        }
        ClassCounts(out)
    }

    /// When the last success / provider-side failure ended (0: never).
    pub fn last_success_ms(&self) -> u64 {
        self.last_success_ms
    }

    pub fn last_failure_ms(&self) -> u64 {
        self.last_failure_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn ewma_follows_samples_with_alpha() {
        let cfg = StatsConfig::default();
        let mut s = Stats::new();
        assert_eq!(s.ewma_ms(), None);
        // (sample, ewma after) with alpha 0.2
        for (ms, want) in [(100, 100), (200, 120), (200, 136), (0, 108)] {
            s.record(&cfg, None, Some(ms), T0, T0);
            assert_eq!(s.ewma_ms(), Some(want), "after {ms}");
        }
        // Microsecond state: many small steps still move it.
        let mut s = Stats::new();
        s.record(&cfg, None, Some(100), T0, T0);
        for _ in 0..40 {
            s.record(&cfg, None, Some(101), T0, T0);
        }
        assert_eq!(s.ewma_ms(), Some(100));
        assert!(s.ewma_us > 100_990, "{}", s.ewma_us);
        // Alpha 1: the last sample.
        let one = StatsConfig {
            ewma_alpha_permille: 1000,
            ..cfg
        };
        s.record(&one, None, Some(7), T0, T0);
        assert_eq!(s.ewma_ms(), Some(7));
    }

    #[test]
    fn p95_from_the_histogram() {
        let cfg = StatsConfig::default();
        // (fast samples, slow samples, slow value, expected p95)
        let cases = [
            (100, 0, 0, 100),
            (95, 5, 3_000, 100),
            (94, 6, 3_000, 3_000),
            (0, 10, 90_000, 600_000),
            (1, 0, 0, 100),
        ];
        for (fast, slow, slow_ms, want) in cases {
            let mut s = Stats::new();
            for _ in 0..fast {
                s.record(&cfg, None, Some(80), T0, T0);
            }
            for _ in 0..slow {
                s.record(&cfg, None, Some(slow_ms), T0, T0);
            }
            assert_eq!(s.p95_ms(), Some(want), "{fast} fast, {slow} at {slow_ms}");
        }
        assert_eq!(Stats::new().p95_ms(), None);
    }

    #[test]
    fn the_histogram_forgets_old_samples() {
        let cfg = StatsConfig::default();
        let mut s = Stats::new();
        for _ in 0..2_000 {
            s.record(&cfg, None, Some(4_000), T0, T0);
        }
        assert_eq!(s.p95_ms(), Some(4_000));
        for _ in 0..500 {
            s.record(&cfg, None, Some(90), T0, T0);
        }
        assert_eq!(s.p95_ms(), Some(4_000), "not yet forgotten");
        for _ in 0..1_000 {
            s.record(&cfg, None, Some(90), T0, T0);
        }
        assert_eq!(s.p95_ms(), Some(100), "recovered latency shows");
        assert!(s.hist.iter().sum::<u32>() < cfg.decay_at);
        assert_eq!(s.samples(), 3_500);
    }

    #[test]
    fn counts_by_class_over_the_window() {
        let cfg = StatsConfig::default();
        let mut s = Stats::new();
        let plan = [
            (None, 6),
            (Some(Retryable), 2),
            (Some(Timeout), 1),
            (Some(RateLimited), 1),
            (Some(Rejected), 3),
            (Some(ContentPolicy), 1),
        ];
        for (class, n) in plan {
            for _ in 0..n {
                s.record(&cfg, class, None, T0, T0);
            }
        }
        let c = s.window_counts(&cfg, T0 + 5_000);
        for (class, n) in plan {
            assert_eq!(c.get(class), n, "{class:?}");
        }
        assert_eq!(c.get(Some(Auth)), 0);
        assert_eq!((c.successes(), c.failures(), c.neutral()), (6, 4, 4));
        assert_eq!(c.error_permille(), 400);
        assert_eq!(s.window_counts(&cfg, T0 + 61_000), ClassCounts::default());
        assert_eq!(ClassCounts::default().error_permille(), 0);
    }

    #[test]
    fn last_success_and_failure() {
        let cfg = StatsConfig::default();
        let mut s = Stats::new();
        s.record(&cfg, None, Some(10), T0 + 5, T0 + 9);
        s.record(&cfg, Some(Timeout), None, T0 + 7, T0 + 9);
        s.record(&cfg, None, None, T0 + 3, T0 + 9); // late report: keeps the newest
        s.record(&cfg, Some(Rejected), None, T0 + 20, T0 + 20); // neutral: neither
        assert_eq!((s.last_success_ms(), s.last_failure_ms()), (T0 + 5, T0 + 7));
    }

    #[test]
    fn encoding_round_trip() {
        let cfg = StatsConfig::default();
        let mut s = Stats::new();
        s.record(&cfg, None, Some(321), T0, T0);
        s.record(&cfg, Some(Auth), None, T0, T0);
        let mut ints = Vec::new();
        s.encode(&mut ints);
        assert_eq!(ints.len(), 88);
        let mut text = String::new();
        crate::health::codec::write_ints(&mut text, &ints);
        let back = Stats::decode(&mut Reader::new(&text)).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.p95_ms(), Some(400));
        assert_eq!(Stats::decode(&mut Reader::new("1,2,3")), None);
    }
}
