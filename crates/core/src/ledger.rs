//! The usage ledger's rows, batched per isolate.
//!
//! Every answered request appends its row to the isolate's [`Buffer`]; the after-response task
//! that finds no flush under way claims it, and after a short window takes everything pending
//! and writes it as ONE D1 statement ([`INSERT_SQL`], the rows passed as one JSON parameter, so
//! D1's 100-parameter limit does not cap the batch). Tasks whose rows are pending or in flight
//! wait for that flush to end, so every row is written within the wait_until of the request
//! that produced it; a flush that is cancelled puts its rows back (the insert is idempotent by
//! request id, so writing a row twice is harmless). The edge (`src/tenants/mod.rs`) does the I/O.

use crate::usage::Usage;

/// One answered request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerRow {
    pub request_id: String,
    pub tenant_id: String,
    /// Empty without an end user.
    pub end_user: String,
    pub route: String,
    pub provider: String,
    pub model: String,
    pub usage: Usage,
    /// `None`: unpriced (stored as NULL, never guessed).
    pub cost_nanos: Option<u64>,
    pub cache_hit: bool,
    pub latency_ms: u64,
    pub ts_ms: u64,
}

/// Insert a batch: `?1` is [`encode`]'s JSON array of rows (one array of 14 values each).
/// `INSERT OR IGNORE`: a request id already in the ledger (a replay) is not charged twice, and
/// the `usage_daily` trigger fires for real inserts only.
pub const INSERT_SQL: &str = "INSERT OR IGNORE INTO usage_ledger (request_id,tenant_id,end_user,\
route,provider,model,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,cost_nanos,\
cache_hit,latency_ms,ts_ms) SELECT value->>0,value->>1,value->>2,value->>3,value->>4,value->>5,\
value->>6,value->>7,value->>8,value->>9,value->>10,value->>11,value->>12,value->>13 \
FROM json_each(?1)";

/// Rows per statement at most (the rest wait for the next flush, in the same wait_until).
pub const MAX_BATCH: usize = 200;

fn push_num(out: &mut String, n: u64) {
    // Integers only (no float formatting): the same code as every other integer shown.
    out.push_str(&n.to_string());
}

/// The rows as the JSON text [`INSERT_SQL`] reads: `[[request_id, …, ts_ms], …]`.
pub fn encode(rows: &[LedgerRow]) -> String {
    let mut out = String::from("[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for s in [
            &r.request_id,
            &r.tenant_id,
            &r.end_user,
            &r.route,
            &r.provider,
            &r.model,
        ] {
            out.push_str(&crate::providers::esc(s));
            out.push(',');
        }
        let u = &r.usage;
        for n in [
            u.prompt_tokens,
            u.completion_tokens,
            u.cached_tokens,
            u.reasoning_tokens,
        ] {
            push_num(&mut out, n);
            out.push(',');
        }
        match r.cost_nanos {
            Some(c) => push_num(&mut out, c),
            None => out.push_str("null"),
        }
        for n in [r.cache_hit as u64, r.latency_ms, r.ts_ms] {
            out.push(',');
            push_num(&mut out, n);
        }
        out.push(']');
    }
    out.push(']');
    out
}

/// Where a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    /// Waiting for a flush.
    Pending,
    /// In the statement being written.
    InFlight,
    /// Written, or given up on (and logged).
    Done,
}

/// The isolate's pending rows and its one flush at a time. Rows are numbered in order and
/// flushed oldest first, so the rows in flight and the pending ones are two runs of numbers.
#[derive(Debug, Default)]
pub struct Buffer {
    /// Rows `first..first + in_flight.len()`, then `pending` follows them.
    in_flight: Vec<LedgerRow>,
    pending: Vec<LedgerRow>,
    first: u64,
    claimed: bool,
}

impl Buffer {
    fn pending_from(&self) -> u64 {
        self.first + self.in_flight.len() as u64
    }

    /// Append a row; its number is what [`Buffer::state`] is asked about.
    pub fn push(&mut self, row: LedgerRow) -> u64 {
        self.pending.push(row);
        self.pending_from() + self.pending.len() as u64 - 1
    }

    pub fn state(&self, seq: u64) -> RowState {
        let from = self.pending_from();
        if seq >= from && seq < from + self.pending.len() as u64 {
            RowState::Pending
        } else if seq >= self.first && seq < from {
            RowState::InFlight
        } else {
            RowState::Done
        }
    }

    /// Become the flusher: only when no flush is under way and something is pending.
    pub fn claim(&mut self) -> bool {
        if self.claimed || self.pending.is_empty() {
            return false;
        }
        self.claimed = true;
        true
    }

    /// The flusher takes up to `max` pending rows, oldest first: the JSON for [`INSERT_SQL`]
    /// and how many rows it holds (`None` when nothing is pending).
    pub fn take(&mut self, max: usize) -> Option<(String, usize)> {
        debug_assert!(self.claimed && self.in_flight.is_empty());
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(max.max(1));
        let rest = self.pending.split_off(n);
        self.in_flight = std::mem::replace(&mut self.pending, rest);
        Some((encode(&self.in_flight), n))
    }

    /// The flush ended. `written`: its rows are done (written, or given up on — the caller
    /// logged them, see [`Buffer::in_flight`]); otherwise (cancelled) they go back in front of
    /// the pending rows for the next flush. Either way another task may claim now.
    pub fn end(&mut self, written: bool) {
        let mut rows = std::mem::take(&mut self.in_flight);
        if written {
            self.first += rows.len() as u64;
        } else {
            rows.append(&mut self.pending);
            self.pending = rows;
        }
        self.claimed = false;
    }

    /// The rows of the flush under way (to log them when it fails).
    pub fn in_flight(&self) -> &[LedgerRow] {
        &self.in_flight
    }

    pub fn is_claimed(&self) -> bool {
        self.claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn row(id: &str) -> LedgerRow {
        LedgerRow {
            request_id: id.into(),
            tenant_id: "t".into(),
            route: "r".into(),
            provider: "p".into(),
            model: "m".into(),
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cached_tokens: 2,
                reasoning_tokens: 1,
                cache_write_tokens: 9,
            },
            cost_nanos: Some(1_234),
            latency_ms: 7,
            ts_ms: 1_763_700_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn encodes_rows_as_arrays_in_column_order() {
        let mut odd = row("req \"quoted\" \\ back\nline\u{1}é☃");
        odd.end_user = "u".into();
        odd.cost_nanos = None;
        odd.cache_hit = true;
        odd.usage.prompt_tokens = u64::MAX;
        let text = encode(&[row("a"), odd]);
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            v[0],
            serde_json::json!([
                "a",
                "t",
                "",
                "r",
                "p",
                "m",
                10,
                5,
                2,
                1,
                1234,
                0,
                7,
                1_763_700_000_000u64
            ])
        );
        assert_eq!(v[1][0], "req \"quoted\" \\ back\nline\u{1}é☃");
        assert_eq!(v[1][2], "u");
        assert_eq!(v[1][6], u64::MAX);
        assert!(v[1][10].is_null(), "unpriced stays NULL");
        assert_eq!(v[1][11], 1);
        assert_eq!(encode(&[]), "[]");
        // As many placeholders in the SQL as values in a row.
        assert_eq!(
            INSERT_SQL.matches("value->>").count(),
            v[0].as_array().unwrap().len()
        );
        assert_eq!(push_num_str(0), "0");
    }

    fn push_num_str(n: u64) -> String {
        let mut s = String::new();
        push_num(&mut s, n);
        s
    }

    #[test]
    fn one_flush_at_a_time_takes_everything_pending() {
        let mut b = Buffer::default();
        assert!(!b.claim(), "nothing pending");
        let a = b.push(row("a"));
        assert!(b.claim());
        assert!(!b.claim(), "one flusher");
        let c = b.push(row("c"));
        let (json, n) = b.take(MAX_BATCH).expect("rows");
        assert_eq!(n, 2);
        assert!(json.starts_with("[[\"a\"") && json.contains("[\"c\""));
        assert_eq!(b.state(a), RowState::InFlight);
        let d = b.push(row("d"));
        assert_eq!(b.state(d), RowState::Pending);
        assert!(!b.claim(), "still flushing");
        b.end(true);
        assert_eq!((b.state(a), b.state(c)), (RowState::Done, RowState::Done));
        assert!(b.claim(), "the next task flushes what came meanwhile");
        assert_eq!(b.take(MAX_BATCH).map(|(_, n)| n), Some(1));
        b.end(true);
        assert_eq!(b.state(d), RowState::Done);
        assert!(!b.is_claimed());
    }

    #[test]
    fn a_cancelled_flush_puts_its_rows_back_in_order() {
        let mut b = Buffer::default();
        let mut ids: Vec<u64> = (0..4).map(|i| b.push(row(&i.to_string()))).collect();
        assert!(b.claim());
        assert_eq!(b.take(3).map(|(_, n)| n), Some(3));
        assert_eq!(b.in_flight().len(), 3);
        ids.push(b.push(row("4")));
        assert_eq!(b.state(ids[2]), RowState::InFlight);
        assert_eq!(
            (b.state(ids[3]), b.state(ids[4])),
            (RowState::Pending, RowState::Pending)
        );
        b.end(false);
        assert!(ids.iter().all(|s| b.state(*s) == RowState::Pending));
        assert!(b.claim());
        let (json, n) = b.take(MAX_BATCH).expect("rows");
        assert_eq!(n, 5);
        let v: Value = serde_json::from_str(&json).unwrap();
        let order: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_str().unwrap())
            .collect();
        assert_eq!(order, ["0", "1", "2", "3", "4"]);
        b.end(true);
        assert!(ids.iter().all(|s| b.state(*s) == RowState::Done));
    }

    #[test]
    fn a_batch_is_capped() {
        let mut b = Buffer::default();
        for i in 0..(MAX_BATCH + 3) {
            b.push(row(&i.to_string()));
        }
        assert!(b.claim());
        assert_eq!(b.take(MAX_BATCH).map(|(_, n)| n), Some(MAX_BATCH));
        b.end(true);
        assert!(b.claim());
        assert_eq!(b.take(MAX_BATCH).map(|(_, n)| n), Some(3));
    }
}
