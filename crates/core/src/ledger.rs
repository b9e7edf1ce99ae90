//! The usage ledger's rows, batched per isolate.
//!
//! Every answered request appends its row to the isolate's [`Buffer`]; after a short window its
//! after-response task takes everything pending (its own row and others') and writes it as ONE
//! D1 statement ([`INSERT_SQL`], the rows passed as one JSON parameter, so D1's 100-parameter
//! limit does not cap the batch); a task whose row another task's write already took does
//! nothing. No task waits on another (a task is polled in its own request's context). A write
//! that is cancelled puts its rows back (the insert is idempotent by request id, so writing a
//! row twice is harmless). The edge (`src/tenants/mod.rs`) does the I/O.

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

/// The isolate's pending rows, numbered in order: the pending ones are one run of numbers.
#[derive(Debug, Default)]
pub struct Buffer {
    pending: Vec<LedgerRow>,
    /// The number of `pending[0]`.
    first: u64,
}

impl Buffer {
    /// Append a row; its number is what [`Buffer::is_pending`] is asked about.
    pub fn push(&mut self, row: LedgerRow) -> u64 {
        self.pending.push(row);
        self.first + self.pending.len() as u64 - 1
    }

    /// Whether the row still waits for a write (else a write took it).
    pub fn is_pending(&self, seq: u64) -> bool {
        seq >= self.first && seq < self.first + self.pending.len() as u64
    }

    /// Take up to `max` pending rows, oldest first, for one write.
    pub fn take(&mut self, max: usize) -> Vec<LedgerRow> {
        let n = self.pending.len().min(max.max(1));
        let rest = self.pending.split_off(n);
        self.first += n as u64;
        std::mem::replace(&mut self.pending, rest)
    }

    /// Rows whose write was cancelled: pending again (under new numbers) for the next write.
    pub fn put_back(&mut self, rows: Vec<LedgerRow>) {
        self.pending.extend(rows);
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
    fn a_write_takes_everything_pending_and_cancelled_rows_come_back() {
        let mut b = Buffer::default();
        assert!(b.take(MAX_BATCH).is_empty());
        let a = b.push(row("a"));
        let c = b.push(row("c"));
        assert!(b.is_pending(a) && b.is_pending(c));
        let taken = b.take(MAX_BATCH);
        assert_eq!(
            taken
                .iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert!(!b.is_pending(a) && !b.is_pending(c), "taken by a write");
        let d = b.push(row("d"));
        assert!(b.is_pending(d));
        // The write of a and c is cancelled: they are pending again, after d.
        b.put_back(taken);
        assert!(!b.is_pending(a), "its owner does not wait for it again");
        let again = b.take(MAX_BATCH);
        assert_eq!(
            again
                .iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
            ["d", "a", "c"]
        );
        assert!(!b.is_pending(d));
        assert!(b.take(MAX_BATCH).is_empty());
    }

    #[test]
    fn a_write_is_capped() {
        let mut b = Buffer::default();
        let seqs: Vec<u64> = (0..(MAX_BATCH + 3))
            .map(|i| b.push(row(&i.to_string())))
            .collect();
        assert_eq!(b.take(MAX_BATCH).len(), MAX_BATCH);
        assert!(!b.is_pending(seqs[MAX_BATCH - 1]));
        assert!(b.is_pending(seqs[MAX_BATCH]));
        assert_eq!(b.take(MAX_BATCH).len(), 3);
    }
}
