//! Timestamps of JSON records: RFC 3339 strings (`2023-11-14T22:13:20.5Z`,
//! `2023-11-14T23:13:20+01:00`) and epoch numbers in a configurable unit, both turned into
//! nanoseconds since the Unix epoch within the range line protocol accepts.

use crate::line_protocol::{MAX_TIMESTAMP_NS, MIN_TIMESTAMP_NS, Precision};

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Converts an integer epoch timestamp in `unit` to nanoseconds.
pub(crate) fn from_epoch_int(value: i128, unit: Precision) -> Result<i64, String> {
    i64::try_from(value)
        .ok()
        .and_then(|v| unit.to_nanos(v))
        .ok_or_else(|| out_of_range(&value.to_string(), unit))
}

/// Converts a fractional epoch timestamp in `unit` to nanoseconds (rounded to the nearest).
pub(crate) fn from_epoch_float(value: f64, unit: Precision) -> Result<i64, String> {
    let ns = (value * unit.nanos_per_unit() as f64).round();
    // Both bounds round to ±2^63 as f64; with strict comparisons every value that passes lies
    // inside MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS and converts without saturation.
    if ns.is_finite() && ns > MIN_TIMESTAMP_NS as f64 && ns < MAX_TIMESTAMP_NS as f64 {
        Ok(ns as i64)
    } else {
        Err(out_of_range(&value.to_string(), unit))
    }
}

fn out_of_range(shown: &str, unit: Precision) -> String {
    format!(
        "timestamp {shown} is out of range in unit {unit}: it must be within \
         {MIN_TIMESTAMP_NS}..={MAX_TIMESTAMP_NS} nanoseconds after scaling"
    )
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DD`, `T` (or `t` or a space), `HH:MM:SS`, an optional
/// fraction of up to 9 significant digits (further digits are ignored), then `Z`, `z` or
/// `±HH:MM`. A leap second (`:60`) counts as the first second of the next minute.
pub(crate) fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "invalid timestamp {text:?}: expected an RFC 3339 date-time such as \
             \"2023-11-14T22:13:20.5Z\" or \"2023-11-14T23:13:20+01:00\", or an epoch number"
        )
    };
    let mut p = Cursor {
        b: text.as_bytes(),
        i: 0,
    };
    let year = p.digits(4).ok_or_else(bad)?;
    p.expect(b'-').ok_or_else(bad)?;
    let month = p.digits(2).ok_or_else(bad)?;
    p.expect(b'-').ok_or_else(bad)?;
    let day = p.digits(2).ok_or_else(bad)?;
    p.expect_any(b"Tt ").ok_or_else(bad)?;
    let hour = p.digits(2).ok_or_else(bad)?;
    p.expect(b':').ok_or_else(bad)?;
    let minute = p.digits(2).ok_or_else(bad)?;
    p.expect(b':').ok_or_else(bad)?;
    let second = p.digits(2).ok_or_else(bad)?;
    let nanos = p.fraction().ok_or_else(bad)?;
    let offset = p.offset().ok_or_else(bad)?;
    if p.i != p.b.len() {
        return Err(bad());
    }
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60
        && offset.abs() < 24 * 3600;
    if !valid {
        return Err(format!(
            "invalid timestamp {text:?}: a date or time component is out of range"
        ));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    secs.checked_mul(NANOS_PER_SEC)
        .and_then(|ns| ns.checked_add(nanos))
        .filter(|ns| (MIN_TIMESTAMP_NS..=MAX_TIMESTAMP_NS).contains(ns))
        .ok_or_else(|| {
            format!(
                "timestamp {text:?} is out of range: Strata stores nanoseconds in an i64, \
                 roughly the years 1677 to 2262"
            )
        })
}

/// A position in an ASCII timestamp.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    /// Exactly `n` decimal digits as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let part = self.b.get(self.i..self.i.checked_add(n)?)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.expect_any(&[c])
    }

    fn expect_any(&mut self, set: &[u8]) -> Option<()> {
        let c = *self.b.get(self.i)?;
        set.contains(&c).then(|| self.i += 1)
    }

    /// An optional `.digits` fraction, as nanoseconds.
    fn fraction(&mut self) -> Option<i64> {
        if self.b.get(self.i) != Some(&b'.') {
            return Some(0);
        }
        self.i += 1;
        let start = self.i;
        let mut nanos = 0i64;
        while let Some(d) = self.b.get(self.i).filter(|d| d.is_ascii_digit()) {
            if self.i - start < 9 {
                nanos = nanos * 10 + i64::from(d - b'0');
            }
            self.i += 1;
        }
        let len = self.i - start;
        if len == 0 {
            return None;
        }
        let scale = 9usize.saturating_sub(len);
        Some(nanos * 10i64.pow(scale as u32))
    }

    /// `Z`/`z` or `±HH:MM`, as seconds east of UTC.
    fn offset(&mut self) -> Option<i64> {
        let sign = match *self.b.get(self.i)? {
            b'Z' | b'z' => {
                self.i += 1;
                return Some(0);
            }
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.i += 1;
        let hours = self.digits(2)?;
        self.expect(b':')?;
        let minutes = self.digits(2)?;
        (minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_examples() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000 * NANOS_PER_SEC)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.5+01:00"),
            Ok(1_700_000_000 * NANOS_PER_SEC + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14 22:13:20.123456789123z"),
            Ok(1_700_000_000 * NANOS_PER_SEC + 123_456_789)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.999999999Z"), Ok(-1));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            parse_rfc3339("2017-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00-00:30"),
            Ok((1_709_164_800 + 1800) * NANOS_PER_SEC)
        );
    }

    #[test]
    fn rfc3339_rejects() {
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13Z",
            "2023-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:13:20+01:60",
            "2023-11-14T22:13:20Z ",
            "+2023-11-14T22:13:20Z",
            "1500-01-01T00:00:00Z",
            "2300-01-01T00:00:00Z",
            "２０２3-11-14T22:13:20Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn epoch_numbers() {
        assert_eq!(
            from_epoch_int(1_700_000_000_000, Precision::Milliseconds),
            Ok(1_700_000_000_000_000_000)
        );
        assert!(from_epoch_int(i128::from(u64::MAX), Precision::Nanoseconds).is_err());
        assert!(from_epoch_int(1 << 62, Precision::Seconds).is_err());
        assert_eq!(from_epoch_float(1.5, Precision::Seconds), Ok(1_500_000_000));
        assert!(from_epoch_float(f64::NAN, Precision::Seconds).is_err());
        assert!(from_epoch_float(1e300, Precision::Seconds).is_err());
        assert!(from_epoch_float(9.3e18, Precision::Nanoseconds).is_err());
    }
}
