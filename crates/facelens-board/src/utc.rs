//! UTC calendar formatting from Unix seconds, without a date-time dependency.
//!
//! Run directories and `meta.json` only need "seconds since epoch → UTC civil
//! time"; Howard Hinnant's `civil_from_days` does that exactly for the
//! proleptic Gregorian calendar in a dozen lines.

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Year, e.g. 2024.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
}

impl UtcDateTime {
    /// Converts seconds since 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> Self {
        // u64 seconds / 86400 always fits i64.
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        UtcDateTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `YYYYMMDD-HHMMSS`, sortable and safe in file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Parses the [`compact`](Self::compact) form at the start of `s` (as in
    /// a run id `20240229-130509-1a2b3c4d`); `None` if `s` does not start
    /// with a plausible one.
    pub fn parse_compact_prefix(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        // ASCII only, so the slices below stay on character boundaries.
        if b.len() < 15 || !b[..15].is_ascii() || b[8] != b'-' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            let digits = &s[range];
            digits
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| digits.parse().ok())?
        };
        let t = UtcDateTime {
            year: i64::from(num(0..4)?),
            month: num(4..6)?,
            day: num(6..8)?,
            hour: num(9..11)?,
            minute: num(11..13)?,
            second: num(13..15)?,
        };
        let plausible = (1..=12).contains(&t.month)
            && (1..=31).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        plausible.then_some(t)
    }

    /// RFC 3339 / ISO 8601, e.g. `2024-02-29T13:05:09Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days since 1970-01-01 → (year, month, day). Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(UtcDateTime::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        // `date -u -d @951782400` → 2000-02-29 00:00:00 (leap day of a /400 year).
        assert_eq!(
            UtcDateTime::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        // 2024-12-31T23:59:59Z.
        assert_eq!(
            UtcDateTime::from_unix(1_735_689_599).compact(),
            "20241231-235959"
        );
        // 2100 is not a leap year: 2100-03-01T00:00:00Z.
        assert_eq!(
            UtcDateTime::from_unix(4_107_542_400).rfc3339(),
            "2100-03-01T00:00:00Z"
        );
    }

    #[test]
    fn compact_round_trips() {
        let t = UtcDateTime::from_unix(1_709_211_909);
        assert_eq!(UtcDateTime::parse_compact_prefix(&t.compact()), Some(t));
        let id = "20240229-130509-1a2b3c4d-2";
        let parsed = UtcDateTime::parse_compact_prefix(id).map(|t| t.rfc3339());
        assert_eq!(parsed.as_deref(), Some("2024-02-29T13:05:09Z"));
        for bad in [
            "",
            "2024",
            "20240229_130509",
            "20241329-130509",
            "2024022é-130509",
        ] {
            assert_eq!(UtcDateTime::parse_compact_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn day_boundaries_are_continuous() {
        // Every day for ~30 years advances the date by exactly one day.
        let mut prev = UtcDateTime::from_unix(0);
        for day in 1..11_000u64 {
            let cur = UtcDateTime::from_unix(day * 86_400);
            let same_month = cur.year == prev.year && cur.month == prev.month;
            if same_month {
                assert_eq!(cur.day, prev.day + 1);
            } else {
                assert_eq!(cur.day, 1);
                assert!(prev.day >= 28);
            }
            prev = cur;
        }
    }
}
