//! The wire and storage form of health state: comma-separated unsigned integers.
//!
//! A target's Durable Object stores its [`super::TargetHealth`] and answers with
//! [`super::TargetSnapshot`]s; isolates send it [`super::TargetReport`]s. All are flat lists
//! of integers rather than serde JSON: a hand-written codec costs the worker a few hundred bytes
//! of wasm, serde's derived (de)serialisers of these nested structs some fifteen kilobytes.
//! Each form is documented on its `encode` function; decoding is strict (a missing or
//! non-numeric item is `None`), so an unreadable value is noticed, never half-read.

/// Write `ints` comma-separated, appending to `out` (a comma first if `out` is not empty).
pub fn write_ints(out: &mut String, ints: &[u64]) {
    for n in ints {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&n.to_string());
    }
}

/// Reads comma-separated integers one at a time.
pub struct Reader<'a> {
    parts: std::str::Split<'a, char>,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Reader {
            parts: text.split(','),
        }
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.parts.next()?.trim().parse().ok()
    }

    pub fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    pub fn bool(&mut self) -> Option<bool> {
        match self.u64()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// An optional value written as `v + 1` (0: none).
    pub fn opt(&mut self) -> Option<Option<u64>> {
        Some(self.u64()?.checked_sub(1))
    }

    /// Whether every item has been read.
    pub fn done(&mut self) -> bool {
        self.parts.next().is_none()
    }
}

/// `v + 1`, or 0 for none (values are far below `u64::MAX`).
pub fn opt(v: Option<u64>) -> u64 {
    v.map_or(0, |v| v.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_and_bad_input_is_none() {
        let mut s = String::new();
        write_ints(&mut s, &[0, 7, u64::MAX]);
        write_ints(&mut s, &[opt(None), opt(Some(4)), 1]);
        assert_eq!(s, "0,7,18446744073709551615,0,5,1");
        let mut r = Reader::new(&s);
        assert_eq!(
            (r.u64(), r.u32(), r.u64()),
            (Some(0), Some(7), Some(u64::MAX))
        );
        assert_eq!(
            (r.opt(), r.opt(), r.bool()),
            (Some(None), Some(Some(4)), Some(true))
        );
        assert!(r.done());
        assert_eq!(Reader::new("").u64(), None);
        assert_eq!(Reader::new("1,x").nth_ok(), None);
        assert_eq!(Reader::new("4294967296").u32(), None);
        assert_eq!(Reader::new("2").bool(), None);
    }

    impl Reader<'_> {
        fn nth_ok(&mut self) -> Option<u64> {
            self.u64()?;
            self.u64()
        }
    }
}
