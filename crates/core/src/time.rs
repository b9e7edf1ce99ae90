//! Calendar arithmetic on Unix time (UTC), without a date-time crate.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's inverse of days-from-civil.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Unix ms of 00:00 UTC of the day containing `ms`.
pub fn day_start_ms(ms: u64) -> u64 {
    ms - ms % DAY_MS
}

/// Unix ms of 00:00 UTC on the first day of the month containing `ms`.
pub fn month_start_ms(ms: u64) -> u64 {
    let (y, m, _) = civil_from_days((ms / DAY_MS) as i64);
    days_from_civil(y, m, 1).max(0) as u64 * DAY_MS
}

/// Unix ms of 00:00 UTC on the first day of the next month.
pub fn next_month_start_ms(ms: u64) -> u64 {
    let (y, m, _) = civil_from_days((ms / DAY_MS) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1).max(0) as u64 * DAY_MS
}

/// `YYYY-MM-DD` of the UTC day containing `ms`.
pub fn ymd(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [0i64, 59, 60, 11_016, 11_017, 20_000, 20_778] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn period_boundaries() {
        // 2026-11-21T07:35:00Z
        let now = 1_795_246_500_000;
        assert_eq!(ymd(now), "2026-11-21");
        assert_eq!(ymd(day_start_ms(now)), "2026-11-21");
        assert_eq!(day_start_ms(now) % DAY_MS, 0);
        assert_eq!(ymd(month_start_ms(now)), "2026-11-01");
        assert_eq!(ymd(next_month_start_ms(now)), "2026-12-01");
        let dec = 1_797_800_000_000; // 2026-12-20
        assert_eq!(ymd(next_month_start_ms(dec)), "2027-01-01");
    }
}
