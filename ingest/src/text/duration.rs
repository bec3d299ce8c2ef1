//! Durations written as `<integer><unit>`: `250ms`, `90s`, `15m`, `12h`, `7d`, `2w`, `5y` (also
//! `ns`, `us`/`µs`). A day is 86,400 s, a week 7 days and a year 365 days: retention and rollup
//! windows count fixed lengths, not calendar months or leap years.

use std::time::Duration;

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// No leading integer.
    #[error("'{0}' is not a duration (e.g. 500ms, 90s, 15m, 12h, 7d, 5y)")]
    NotANumber(String),
    /// An unknown unit.
    #[error("'{0}' has an unknown unit (use ns, us, ms, s, m, h, d, w or y)")]
    Unit(String),
    /// More than `u64` nanoseconds (about 584 years).
    #[error("duration '{0}' is too large")]
    TooLarge(String),
}

/// Nanoseconds per unit.
fn unit_ns(unit: &str) -> Option<u64> {
    const S: u64 = 1_000_000_000;
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => S,
        "m" => 60 * S,
        "h" => 3_600 * S,
        "d" => 86_400 * S,
        "w" => 7 * 86_400 * S,
        "y" => 365 * 86_400 * S,
        _ => return None,
    })
}

/// Parses `<integer><unit>` (surrounding whitespace ignored).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let split = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::NotANumber(s.to_owned()))?;
    let per = unit_ns(unit).ok_or_else(|| DurationError::Unit(s.to_owned()))?;
    n.checked_mul(per)
        .map(Duration::from_nanos)
        .ok_or_else(|| DurationError::TooLarge(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_units_rules_and_lifecycle_need() {
        let secs = |s| Ok(Duration::from_secs(s));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("15m"), secs(900));
        assert_eq!(parse_duration("12h"), secs(43_200));
        assert_eq!(parse_duration("7d"), secs(604_800));
        assert_eq!(parse_duration("2w"), secs(1_209_600));
        assert_eq!(parse_duration("5y"), secs(5 * 365 * 86_400));
        assert_eq!(parse_duration(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("0s"), secs(0));
        for bad in ["", "s", "10", "1.5h", "-1s", "10 s", "10sec", "1M"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_duration("600y"),
            Err(DurationError::TooLarge("600y".into()))
        );
    }

    proptest! {
        #[test]
        fn every_unit_round_trips(n in 0u64..500, unit in prop::sample::select(
            vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "y"])) {
            let d = parse_duration(&format!("{n}{unit}")).unwrap();
            prop_assert_eq!(d.as_nanos(), u128::from(n) * u128::from(unit_ns(unit).unwrap()));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }
    }
}
