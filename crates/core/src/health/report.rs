//! Outcome reports: the isolate accumulates finished attempts in a [`Batch`] and flushes it
//! after responses (never on the request path); each flush is one [`TargetReport`] per target,
//! which the target's Durable Object applies in one call ([`super::TargetHealth::apply`]).

use super::codec::{opt, write_ints, Reader};
use super::{class_code, class_from_code};
use crate::policy::FailureClass;

/// One finished attempt, as the edge saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// [`super::target_id`] of the target attempted.
    pub target: String,
    pub started_ms: u64,
    pub ended_ms: u64,
    /// Time to the first byte of the answer (headers), when it came.
    pub ttfb_ms: Option<u64>,
    /// `None` for a success.
    pub class: Option<FailureClass>,
    /// The provider's `Retry-After`, when the failure carried one.
    pub retry_after_ms: Option<u64>,
    /// The breaker epoch the attempt started under: the snapshot's, or the probe token.
    pub epoch: u32,
    /// Whether the attempt was the half-open probe (its token is `epoch`).
    pub probe: bool,
}

impl Outcome {
    /// A streamed attempt's one outcome, settled when its stream ends (`now`): its start, epoch
    /// and time to first byte as the attempt measured them; a success if the stream completed
    /// (or the caller left: nothing the provider did), else the failure that broke it.
    pub fn stream_ended(mut self, broke: Option<FailureClass>, now: u64) -> Outcome {
        self.class = broke;
        self.retry_after_ms = None;
        self.ended_ms = now.max(self.started_ms);
        self
    }
}

/// An [`Outcome`] without its target; sent as 7 integers ([`TargetReport::encode_entries`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub started_ms: u64,
    pub duration_ms: u64,
    pub ttfb_ms: Option<u64>,
    /// [`super::class_code`]: 0 success, 1–8 the failure classes.
    pub class_code: u8,
    pub retry_after_ms: Option<u64>,
    pub epoch: u32,
    pub probe: bool,
}

impl Entry {
    pub fn from_outcome(o: &Outcome) -> Self {
        Entry {
            started_ms: o.started_ms,
            duration_ms: o.ended_ms.saturating_sub(o.started_ms),
            ttfb_ms: o.ttfb_ms,
            class_code: class_code(o.class),
            retry_after_ms: o.retry_after_ms,
            epoch: o.epoch,
            probe: o.probe,
        }
    }

    /// The class (`Some(None)` a success); `None` for a code this build does not know.
    pub fn class(&self) -> Option<Option<FailureClass>> {
        class_from_code(self.class_code)
    }

    pub fn ended_ms(&self) -> u64 {
        self.started_ms.saturating_add(self.duration_ms)
    }

    fn is_failure(&self) -> bool {
        matches!(
            self.class().map(super::breaker::verdict),
            Some(super::breaker::Verdict::Failure)
        )
    }
}

/// Everything one flush says about one target, in the order the isolate saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    pub target: String,
    pub entries: Vec<Entry>,
}

impl TargetReport {
    /// The entries as 7 integers each: started, duration, TTFB + 1 (0: none), class code,
    /// Retry-After + 1 (0: none), epoch, probe (0/1).
    pub fn encode_entries(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            write_ints(
                &mut out,
                &[
                    e.started_ms,
                    e.duration_ms,
                    opt(e.ttfb_ms),
                    e.class_code as u64,
                    opt(e.retry_after_ms),
                    e.epoch as u64,
                    e.probe as u64,
                ],
            );
        }
        out
    }

    /// The inverse of [`TargetReport::encode_entries`]; `None` unless every entry is whole.
    pub fn decode(target: &str, entries: &str) -> Option<TargetReport> {
        let n = if entries.is_empty() {
            0
        } else {
            entries.split(',').count()
        };
        if n % 7 != 0 {
            return None;
        }
        let mut r = Reader::new(entries);
        let mut out = Vec::with_capacity(n / 7);
        for _ in 0..n / 7 {
            out.push(Entry {
                started_ms: r.u64()?,
                duration_ms: r.u64()?,
                ttfb_ms: r.opt()?,
                class_code: u8::try_from(r.u64()?).ok()?,
                retry_after_ms: r.opt()?,
                epoch: r.u32()?,
                probe: r.bool()?,
            });
        }
        Some(TargetReport {
            target: target.to_string(),
            entries: out,
        })
    }
}

/// When a batch is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Flush once this many outcomes are pending.
    pub max_entries: usize,
    /// Flush once the oldest pending outcome is this old.
    pub max_age_ms: u64,
    /// Flush once the oldest pending provider-side failure is this old (failures are the
    /// signal breakers need; a short delay still coalesces a burst).
    pub failure_max_age_ms: u64,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_entries: 64,
            max_age_ms: 1_000,
            failure_max_age_ms: 250,
        }
    }
}

/// The isolate's pending outcomes, grouped by target. A probe's outcome makes the batch due at
/// once (the breaker is waiting for it). When flushes keep failing, at most
/// `4 × max_entries` outcomes are held; later ones are dropped and counted.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    policy: BatchPolicy,
    reports: Vec<TargetReport>,
    len: usize,
    first_ms: Option<u64>,
    first_failure_ms: Option<u64>,
    probe: bool,
    dropped: u64,
}

impl Batch {
    pub fn new(policy: BatchPolicy) -> Self {
        Batch {
            policy,
            ..Batch::default()
        }
    }

    /// Add an outcome (`now`: the isolate's clock).
    pub fn push(&mut self, o: &Outcome, now: u64) {
        if self.len >= self.policy.max_entries.max(1).saturating_mul(4) {
            self.dropped += 1;
            return;
        }
        let entry = Entry::from_outcome(o);
        self.first_ms.get_or_insert(now);
        if entry.is_failure() {
            self.first_failure_ms.get_or_insert(now);
        }
        self.probe |= o.probe;
        self.len += 1;
        match self.reports.iter_mut().find(|r| r.target == o.target) {
            Some(r) => r.entries.push(entry),
            None => self.reports.push(TargetReport {
                target: o.target.clone(),
                entries: vec![entry],
            }),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Outcomes dropped because the batch was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// When the batch becomes due (`None`: empty). The edge flushes then at the latest, from a
    /// response's `wait_until` (a delayed flush when no later request comes).
    pub fn due_at(&self) -> Option<u64> {
        let first = self.first_ms?;
        if self.probe || self.len >= self.policy.max_entries {
            return Some(first);
        }
        let mut due = first.saturating_add(self.policy.max_age_ms);
        if let Some(f) = self.first_failure_ms {
            due = due.min(f.saturating_add(self.policy.failure_max_age_ms));
        }
        Some(due)
    }

    pub fn should_flush(&self, now: u64) -> bool {
        self.due_at().is_some_and(|due| now >= due)
    }

    /// Take everything pending: one report per target. (If sending fails, the edge may
    /// [`Batch::restore`] them.)
    pub fn take(&mut self) -> Vec<TargetReport> {
        self.len = 0;
        self.first_ms = None;
        self.first_failure_ms = None;
        self.probe = false;
        std::mem::take(&mut self.reports)
    }

    /// Put back reports whose flush failed (`now`: the isolate's clock); they are due again
    /// after the usual ages.
    pub fn restore(&mut self, reports: Vec<TargetReport>, now: u64) {
        for r in reports {
            for e in &r.entries {
                let o = Outcome {
                    target: r.target.clone(),
                    started_ms: e.started_ms,
                    ended_ms: e.ended_ms(),
                    ttfb_ms: e.ttfb_ms,
                    class: e.class().unwrap_or(Some(FailureClass::Retryable)),
                    retry_after_ms: e.retry_after_ms,
                    epoch: e.epoch,
                    probe: e.probe,
                };
                self.push(&o, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::*;

    const T0: u64 = 1_700_000_000_000;

    fn outcome(target: &str, class: Option<FailureClass>) -> Outcome {
        Outcome {
            target: target.into(),
            started_ms: T0,
            ended_ms: T0 + 120,
            ttfb_ms: Some(80),
            class,
            retry_after_ms: None,
            epoch: 3,
            probe: false,
        }
    }

    #[test]
    fn groups_by_target_in_order() {
        let mut b = Batch::new(BatchPolicy::default());
        b.push(&outcome("a/m", None), T0);
        b.push(&outcome("b/m", Some(Timeout)), T0);
        b.push(&outcome("a/m", Some(Retryable)), T0);
        assert_eq!(b.len(), 3);
        let reports = b.take();
        assert!(b.is_empty() && b.due_at().is_none());
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].target, "a/m");
        let classes: Vec<_> = reports[0].entries.iter().map(|e| e.class()).collect();
        assert_eq!(classes, [Some(None), Some(Some(Retryable))]);
        assert_eq!(reports[1].entries[0].ended_ms(), T0 + 120);
    }

    #[test]
    fn due_times() {
        let p = BatchPolicy::default();
        // (outcomes pushed at T0 with these classes / probe flags, expected due offset)
        type Pushes<'a> = &'a [(Option<FailureClass>, bool)];
        let cases: [(Pushes, Option<u64>); 5] = [
            (&[], None),
            (&[(None, false)], Some(1_000)),
            (&[(None, false), (Some(Timeout), false)], Some(250)),
            (&[(Some(Rejected), false)], Some(1_000)),
            (&[(None, true)], Some(0)),
        ];
        for (i, (pushes, want)) in cases.iter().enumerate() {
            let mut b = Batch::new(p);
            for (class, probe) in pushes.iter() {
                let mut o = outcome("a/m", *class);
                o.probe = *probe;
                b.push(&o, T0);
            }
            assert_eq!(b.due_at(), want.map(|d| T0 + d), "case {i}");
            if let Some(d) = *want {
                assert!(b.should_flush(T0 + d));
                assert_eq!(b.should_flush(T0 + d - d.min(1)), d == 0, "case {i}");
            }
        }
        let mut b = Batch::new(p);
        for _ in 0..64 {
            b.push(&outcome("a/m", None), T0);
        }
        assert!(b.should_flush(T0), "full");
    }

    #[test]
    fn a_full_batch_drops_and_counts() {
        let mut b = Batch::new(BatchPolicy {
            max_entries: 2,
            ..BatchPolicy::default()
        });
        for _ in 0..10 {
            b.push(&outcome("a/m", None), T0);
        }
        assert_eq!((b.len(), b.dropped()), (8, 2));
    }

    #[test]
    fn restore_after_a_failed_flush() {
        let mut b = Batch::new(BatchPolicy::default());
        b.push(&outcome("a/m", Some(RateLimited)), T0);
        let taken = b.take();
        b.restore(taken.clone(), T0 + 5);
        assert_eq!(b.due_at(), Some(T0 + 255));
        assert_eq!(b.take(), taken);
    }

    #[test]
    fn reports_encode_compactly_and_round_trip() {
        let mut b = Batch::new(BatchPolicy::default());
        let mut o = outcome("oa/gpt-4o-mini", Some(RateLimited));
        o.retry_after_ms = Some(2_000);
        b.push(&o, T0);
        o.probe = true;
        o.retry_after_ms = None;
        o.ttfb_ms = None;
        o.class = None;
        b.push(&o, T0);
        let reports = b.take();
        let text = reports[0].encode_entries();
        assert_eq!(
            text,
            "1700000000000,120,81,2,2001,3,0,1700000000000,120,0,0,0,3,1"
        );
        let back = TargetReport::decode("oa/gpt-4o-mini", &text).expect("decodes");
        assert_eq!(back, reports[0]);
        assert_eq!(
            TargetReport::decode("t", "").map(|r| r.entries.len()),
            Some(0)
        );
        for bad in [
            "1,2,3",
            "1,2,0,0,0,0,0,9",
            "1,2,0,300,0,0,0",
            "1,2,0,0,0,0,2",
        ] {
            assert_eq!(TargetReport::decode("t", bad), None, "{bad}");
        }
    }
}
