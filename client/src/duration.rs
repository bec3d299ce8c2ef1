//! Human-friendly durations on the command line (`10s`, `5m`, `2h`, `7d`, `250ms`).

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits_end = t.bytes().take_while(u8::is_ascii_digit).count();
    let value: u64 = t[..digits_end]
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let millis_per_unit: u64 = match &t[digits_end..] {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        unit => {
            return Err(format!(
                "unknown unit '{unit}' in '{text}' (use ms, s, m, h or d)"
            ));
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("s").is_err());
        assert!(parse("5 weeks").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
