//! A length of time as an operator writes it: `3d`, `12h`, `30m`, `90s`, `500ms`, or a whole
//! number of seconds. For settings whose sensible values span seconds to days (the retry
//! window), where a `_MS` or `_SECS` number would be unreadable at one end.
//!
//! Owns only the notation; it must never hold a default or a range check: those belong to the
//! subsystem whose setting it is.

use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// What a [`Span`] looks like, for error messages.
pub(super) const SPAN_EXPECTED: &str =
    "a duration above zero such as 3d, 12h, 30m, 90s or 500ms (a bare number is seconds)";

/// A duration parsed from `<number><unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Span(pub Duration);

impl FromStr for Span {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| ())?;
        let unit_ms: u64 = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(()),
        };
        n.checked_mul(unit_ms)
            .map(|ms| Span(Duration::from_millis(ms)))
            .ok_or(())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(n) => Ok(Span(Duration::from_secs(n))),
            Raw::Text(t) => t
                .parse()
                .map_err(|()| serde::de::Error::custom(SPAN_EXPECTED)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        let d = |s: &str| s.parse::<Span>().map(|s| s.0);
        assert_eq!(d("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(d("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(d("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("90"), Ok(Duration::from_secs(90)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            "d",
            "3 days",
            "-1s",
            "1.5h",
            "3w",
            "99999999999999999999d",
        ] {
            assert_eq!(d(bad), Err(()), "{bad}");
        }
    }
}
