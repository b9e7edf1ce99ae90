//! The sliding window shared by the breaker and the statistics: 6 time buckets, rotated lazily.

/// Buckets per window (a 60 s window is 6 buckets of 10 s).
pub const BUCKETS: usize = 6;

/// Move the window's newest bucket to `slot` (= `now / bucket_ms`), clearing the buckets that
/// fell out. A slot older than the newest (clock skew between isolates) counts into the newest.
pub(crate) fn advance<T: Default>(buckets: &mut [T; BUCKETS], head: &mut u64, slot: u64) {
    if slot <= *head {
        return;
    }
    if slot - *head >= BUCKETS as u64 {
        buckets.iter_mut().for_each(|b| *b = T::default());
    } else {
        for s in *head + 1..=slot {
            buckets[(s % BUCKETS as u64) as usize] = T::default();
        }
    }
    *head = slot;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_clears_only_what_fell_out() {
        let mut w = [1u32; BUCKETS];
        let mut head = 12; // bucket 0
        advance(&mut w, &mut head, 12);
        assert_eq!(w, [1; BUCKETS], "same slot");
        advance(&mut w, &mut head, 5);
        assert_eq!((w, head), ([1; BUCKETS], 12), "older slot: no change");
        advance(&mut w, &mut head, 14);
        assert_eq!(w, [1, 0, 0, 1, 1, 1]);
        advance(&mut w, &mut head, 20);
        assert_eq!((w, head), ([0; BUCKETS], 20));
    }
}
