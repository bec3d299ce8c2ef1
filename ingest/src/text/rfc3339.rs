//! RFC 3339 timestamps, the one parser and formatter of every path (JSON telemetry, the HTTP
//! read API, the command line).
//!
//! Accepted: `YYYY-MM-DD`, `T` (or `t` or a space), `HH:MM:SS`, an optional fraction of one or
//! more digits (digits past the ninth are ignored: Strata keeps nanoseconds), then `Z`, `z` or
//! `±HH:MM`. A leap second (`:60`) counts as the first second of the next minute. The instant must
//! fit in i64 nanoseconds within the range line protocol accepts (roughly the years 1677 to 2262).
//! [`parse_timestamp`] (the HTTP API's form) also takes integer nanoseconds and a bare date
//! (midnight UTC).

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// Earliest instant, in nanoseconds (`i64::MIN` + 2, as line protocol).
const MIN_NS: i128 = i64::MIN as i128 + 2;
/// Latest instant, in nanoseconds (`i64::MAX` - 1, as line protocol).
const MAX_NS: i128 = i64::MAX as i128 - 1;

/// A timestamp that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp {input:?}: {reason} (expected RFC 3339 such as 2024-05-01T12:00:00Z or \
     2024-05-01T14:00:00.5+02:00)"
)]
pub struct TimeError {
    /// The rejected text.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses an RFC 3339 date-time into nanoseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    date_time(text.as_bytes(), false).map_err(|reason| TimeError {
        input: text.to_owned(),
        reason,
    })
}

/// Parses integer nanoseconds since the epoch, an RFC 3339 date-time, or a bare `YYYY-MM-DD`
/// (midnight UTC); surrounding whitespace is ignored.
pub fn parse_timestamp(text: &str) -> Result<i64, TimeError> {
    let s = text.trim();
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    date_time(s.as_bytes(), true).map_err(|reason| TimeError {
        input: text.to_owned(),
        reason,
    })
}

fn date_time(b: &[u8], bare_date: bool) -> Result<i64, &'static str> {
    let (days, rest) = parse_date(b)?;
    if rest.is_empty() && bare_date {
        return to_nanos(days, 0, 0, 0);
    }
    let rest = match rest.split_first() {
        Some((b'T' | b't' | b' ', r)) => r,
        _ => return Err("expected 'T' and a time after the date"),
    };
    let (secs_of_day, frac_ns, rest) = parse_clock(rest)?;
    let offset = parse_offset(rest)?;
    to_nanos(days, secs_of_day, offset, frac_ns)
}

/// Combines the parts in 128-bit arithmetic; fails outside the accepted range.
fn to_nanos(days: i64, secs_of_day: i64, offset: i64, frac_ns: i64) -> Result<i64, &'static str> {
    let secs =
        i128::from(days) * i128::from(SECS_PER_DAY) + i128::from(secs_of_day) - i128::from(offset);
    let ns = secs * i128::from(NANOS_PER_SEC) + i128::from(frac_ns);
    if (MIN_NS..=MAX_NS).contains(&ns) {
        i64::try_from(ns).map_err(|_| "out of range")
    } else {
        Err("out of range: Strata stores i64 nanoseconds, roughly the years 1677 to 2262")
    }
}

/// Parses `YYYY-MM-DD`; returns days since the epoch and the remaining bytes.
fn parse_date(b: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("expected a date YYYY-MM-DD");
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("no such date");
    }
    Ok((days_from_civil(year, month, day), &b[10..]))
}

/// Parses `HH:MM:SS[.fraction]`; returns seconds of the day (a leap second counts as the next
/// one), nanoseconds and the remaining bytes.
fn parse_clock(b: &[u8]) -> Result<(i64, i64, &[u8]), &'static str> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return Err("expected a time HH:MM:SS");
    }
    let (h, m, s) = (digits(&b[0..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if h > 23 || m > 59 || s > 60 {
        return Err("no such time of day");
    }
    let mut rest = &b[8..];
    let mut frac = 0i64;
    if let Some((b'.', r)) = rest.split_first() {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err("the fraction of a second needs at least one digit");
        }
        let kept = n.min(9);
        frac = digits(&r[..kept])? * 10i64.pow(9 - kept as u32);
        rest = &r[n..];
    }
    Ok((h * 3600 + m * 60 + s, frac, rest))
}

/// Parses `Z` or `±HH:MM`; returns the offset from UTC in seconds.
fn parse_offset(b: &[u8]) -> Result<i64, &'static str> {
    match b {
        [b'Z' | b'z'] => Ok(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return Err("bad UTC offset");
            }
            let off = h * 3600 + m * 60;
            Ok(if *sign == b'-' { -off } else { off })
        }
        _ => Err("expected 'Z' or a UTC offset like +02:00"),
    }
}

fn digits(b: &[u8]) -> Result<i64, &'static str> {
    b.iter().try_fold(0i64, |acc, c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + i64::from(c - b'0'))
        } else {
            Err("expected a digit")
        }
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of `days_from_civil`: the proleptic Gregorian (year, month, day) of a day number
/// (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Formats nanoseconds since the epoch as RFC 3339 in UTC, e.g. `2024-05-01T12:00:00.5Z`
/// (trailing zeros of the fraction trimmed, like Go's `RFC3339Nano`).
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let frac = ns.rem_euclid(NANOS_PER_SEC);
    let (y, mo, d) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(parse_timestamp("-5"), Ok(-5));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        let noon = 1_714_564_800_000_000_000;
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Ok(noon));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Ok(noon));
        assert_eq!(parse_rfc3339("2024-05-01t12:00:00z"), Ok(noon));
        assert_eq!(
            parse_rfc3339("2024-05-01 12:00:00.25Z"),
            Ok(noon + 250_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123456789123Z"),
            Ok(noon + 123_456_789)
        );
        assert_eq!(parse_timestamp("2024-05-01"), Ok(1_714_521_600_000_000_000));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999999999Z"), Ok(-1));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00-00:30"),
            Ok((1_709_164_800 + 1800) * NANOS_PER_SEC)
        );
        assert_eq!(
            format_rfc3339(noon + 250_000_000),
            "2024-05-01T12:00:00.25Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "yesterday",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:61Z",
            "2024-05-01T12:00:00.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+01:60",
            "2023-11-14T22:13:20Z ",
            "+2023-11-14T22:13:20Z",
            "1500-01-01T00:00:00Z",
            "2300-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "２０２3-11-14T22:13:20Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
            if bad == bad.trim() {
                assert!(parse_timestamp(bad).is_err(), "{bad:?} accepted");
            }
        }
        assert!(
            parse_rfc3339("2023-11-14").is_err(),
            "a date-time needs a time"
        );
        let e = parse_rfc3339("2300-01-01T00:00:00Z").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(ns in (i64::MIN + 2)..i64::MAX) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns));
            prop_assert_eq!(parse_timestamp(&format_rfc3339(ns)), Ok(ns));
        }

        #[test]
        fn offsets_name_the_same_instant(secs in -5_000_000_000i64..5_000_000_000, off_min in -1439i64..1440) {
            let utc = format_rfc3339(secs * NANOS_PER_SEC);
            let local = secs + off_min * 60;
            let (y, mo, d) = civil_from_days(local.div_euclid(SECS_PER_DAY));
            let sod = local.rem_euclid(SECS_PER_DAY);
            let sign = if off_min < 0 { '-' } else { '+' };
            let text = format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                sod / 3600, sod / 60 % 60, sod % 60, off_min.abs() / 60, off_min.abs() % 60
            );
            prop_assert_eq!(parse_rfc3339(&text), parse_rfc3339(&utc));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = date_time(&b, true);
        }
    }
}
