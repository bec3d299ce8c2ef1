//! Field values and timestamps of the line protocol: unquoted values (float, `12i` integer,
//! `12u` unsigned, boolean), double-quoted strings with their `\"` and `\\` escapes, and
//! integer timestamps.

use strata_storage::FieldType;

/// A parsed unquoted field value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar {
    /// Finite 64-bit float.
    Float(f64),
    /// Signed integer (`12i`).
    Integer(i64),
    /// Unsigned integer (`12u`).
    Unsigned(u64),
    /// Boolean.
    Boolean(bool),
}

impl Scalar {
    /// The storage type of the value.
    pub(crate) fn field_type(self) -> FieldType {
        match self {
            Scalar::Float(_) => FieldType::Float,
            Scalar::Integer(_) => FieldType::Integer,
            Scalar::Unsigned(_) => FieldType::Unsigned,
            Scalar::Boolean(_) => FieldType::Boolean,
        }
    }
}

/// Why an unquoted value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadValue {
    /// Not any accepted syntax.
    Syntax,
    /// `…i` outside the i64 range.
    IntegerRange,
    /// `…u` negative or outside the u64 range.
    UnsignedRange,
    /// NaN or infinity, spelled out or overflowing.
    NonFinite,
}

impl BadValue {
    /// Error message for the value `shown` (already quoted) of field `field`.
    pub(crate) fn message(self, shown: &str, field: &str) -> String {
        match self {
            BadValue::Syntax => format!(
                "invalid field value {shown} for field {field:?}: expected a number, \
                 integer (12i), unsigned (12u), boolean or \"string\""
            ),
            BadValue::IntegerRange => format!(
                "integer value {shown} for field {field:?} is out of range: integers must be \
                 within -9223372036854775808i..=9223372036854775807i"
            ),
            BadValue::UnsignedRange => format!(
                "unsigned value {shown} for field {field:?} is out of range: unsigned integers \
                 must be within 0u..=18446744073709551615u"
            ),
            BadValue::NonFinite => format!(
                "float value {shown} for field {field:?} is not finite: NaN and infinity are \
                 not allowed"
            ),
        }
    }
}

/// Parses an unquoted field value token (never empty).
#[inline]
pub(crate) fn scalar(tok: &[u8]) -> Result<Scalar, BadValue> {
    if let Some(v) = plain_decimal(tok) {
        return Ok(Scalar::Float(v));
    }
    typed_scalar(tok)
}

/// A plain decimal (`-?d*.?d*` with one to 15 digits) in one pass, the common case of a
/// telemetry value; `None` for anything else, which [`typed_scalar`] then reads. The value is
/// [`fast_float`]'s: the digits as an integer below 2^53 over an exact power of ten.
#[inline]
fn plain_decimal(tok: &[u8]) -> Option<f64> {
    let (negative, body) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, tok),
    };
    let (mut mantissa, mut digits, mut frac) = (0u64, 0usize, None::<usize>);
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'0'..=b'9' if digits < 15 => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'.' if frac.is_none() => frac = Some(i + 1),
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    let scale = POW10[frac.map_or(0, |start| body.len() - start)];
    let value = mantissa as f64 / scale;
    Some(if negative { -value } else { value })
}

/// At most 19 ASCII digits as a number (`Some(0)` for none); `None` unless every byte is a
/// digit. The digits before the last multiple of eight one at a time, the rest eight at a time.
#[inline]
fn digits_swar(digits: &[u8]) -> Option<u64> {
    debug_assert!(digits.len() <= 19);
    let (head, words) = digits.split_at(digits.len() % 8);
    let mut n = 0u64;
    for &d in head {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    for word in words.chunks_exact(8) {
        n = n * 100_000_000 + digits8(word.try_into().ok()?)?;
    }
    Some(n)
}

/// Eight ASCII digits as a number, in a few word operations: the bytes are read as one
/// little-endian word, checked to be digits all at once, then combined pairwise (digit pairs,
/// then pairs of pairs, then the two halves).
#[inline]
fn digits8(bytes: [u8; 8]) -> Option<u64> {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let word = u64::from_le_bytes(bytes);
    // Every byte is 0x30..=0x39: its high nibble is 3, and still 3 after adding 6.
    let nibbles = (word & HIGH) | ((word.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4);
    if nibbles != 0x3333_3333_3333_3333 {
        return None;
    }
    // The first digit is the lowest byte. Bytes become d0*10+d1 pairs, then 4-digit groups,
    // then the 8-digit number.
    let d = word - ZEROS;
    let pairs = (d * 10 + (d >> 8)) & 0x00FF_00FF_00FF_00FF;
    let quads = (pairs * 100 + (pairs >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((quads * 10_000 + (quads >> 32)) & 0xFFFF_FFFF)
}

/// Any unquoted value: integer, unsigned, boolean or float.
fn typed_scalar(tok: &[u8]) -> Result<Scalar, BadValue> {
    match tok.split_last() {
        Some((b'i', digits)) => integer(digits).map(Scalar::Integer),
        Some((b'u', digits)) => unsigned(digits).map(Scalar::Unsigned),
        _ => match boolean(tok) {
            Some(b) => Ok(Scalar::Boolean(b)),
            None => float(tok).map(Scalar::Float),
        },
    }
}

/// The accepted spellings of booleans.
fn boolean(tok: &[u8]) -> Option<bool> {
    match tok {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

/// Decimal digits as a u64: `Err(Syntax)` unless they are one or more ASCII digits, `Ok(None)`
/// when the number does not fit a u64.
fn digits_u64(digits: &[u8]) -> Result<Option<u64>, BadValue> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(BadValue::Syntax);
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
        {
            Some(n) => n,
            None => return Ok(None),
        };
    }
    Ok(Some(n))
}

/// `-?[0-9]+` as an i64; `range` is the error for values that do not fit.
fn signed(s: &[u8], range: BadValue) -> Result<i64, BadValue> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let magnitude = digits_u64(digits)?.ok_or(range)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude).ok_or(range)
    } else {
        i64::try_from(magnitude).map_err(|_| range)
    }
}

/// The digits of a `…i` value.
fn integer(s: &[u8]) -> Result<i64, BadValue> {
    signed(s, BadValue::IntegerRange)
}

/// The digits of a `…u` value.
fn unsigned(s: &[u8]) -> Result<u64, BadValue> {
    if let Some(rest) = s.strip_prefix(b"-") {
        // A negative unsigned is a range error when the rest is a number, a syntax error otherwise.
        digits_u64(rest)?;
        return Err(BadValue::UnsignedRange);
    }
    digits_u64(s)?.ok_or(BadValue::UnsignedRange)
}

/// A float: `-?(d+(.d*)?|.d+)([eE][+-]?d+)?`, finite.
fn float(tok: &[u8]) -> Result<f64, BadValue> {
    if !is_float_syntax(tok) {
        return Err(if is_non_finite_word(tok) {
            BadValue::NonFinite
        } else {
            BadValue::Syntax
        });
    }
    let value = match fast_float(tok) {
        Some(v) => v,
        None => std::str::from_utf8(tok)
            .ok()
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or(BadValue::Syntax)?,
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(BadValue::NonFinite)
    }
}

/// Count of leading ASCII digits of `s`.
fn count_digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// True when `tok` follows the float grammar (checked before handing it to `str::parse`, which
/// would also accept `inf`, `NaN` and a leading `+`).
fn is_float_syntax(tok: &[u8]) -> bool {
    let mut i = usize::from(tok.first() == Some(&b'-'));
    let int_digits = count_digits(&tok[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if tok.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&tok[i..]);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(tok.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(tok.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_digits(&tok[i..]);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == tok.len()
}

/// True for spelled-out NaN or infinity (any case, optional sign).
fn is_non_finite_word(tok: &[u8]) -> bool {
    let body = match tok.first() {
        Some(b'-' | b'+') => &tok[1..],
        _ => tok,
    };
    [&b"nan"[..], b"inf", b"infinity"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
}

/// Exact powers of ten representable in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Clinger's fast path for plain decimals (`-?d*.d*` without exponent): when the digits form an
/// integer below 2^53 and at most 22 of them are fractional, mantissa / 10^k is exactly rounded.
/// Returns `None` when the fast path does not apply; the token's syntax is already checked.
fn fast_float(tok: &[u8]) -> Option<f64> {
    let (negative, body) = match tok.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, tok),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac: Option<usize> = None;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
                if digits > 15 {
                    return None;
                }
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
            }
            b'.' => frac = Some(0),
            _ => return None,
        }
    }
    let scale = POW10.get(frac.unwrap_or(0))?;
    let value = mantissa as f64 / scale;
    Some(if negative { -value } else { value })
}

/// Why a timestamp was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadTime {
    /// Not `-?[0-9]+`.
    Syntax,
    /// Does not fit an i64.
    Range,
}

/// Parses a timestamp token as an integer in the payload's precision.
#[inline]
pub(crate) fn timestamp(tok: &[u8]) -> Result<i64, BadTime> {
    // Up to 19 digits (every nanosecond time of this era) fit a u64: one pass, no checked
    // arithmetic, and one range check at the end.
    if (1..=19).contains(&tok.len()) && tok[0] != b'-' {
        let n = digits_swar(tok).ok_or(BadTime::Syntax)?;
        return i64::try_from(n).map_err(|_| BadTime::Range);
    }
    signed(tok, BadValue::IntegerRange).map_err(|e| match e {
        BadValue::Syntax => BadTime::Syntax,
        _ => BadTime::Range,
    })
}

/// Result of scanning a quoted string value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuotedString {
    /// Index of the closing quote.
    pub(crate) close: usize,
    /// True when the contents hold `\"` or `\\` escapes to remove.
    pub(crate) escaped: bool,
}

/// Scans a string value whose contents start at `from` (just after the opening quote) and must
/// end with an unescaped `"` before `end`. `None` when it is unterminated.
pub(crate) fn quoted_string(buf: &[u8], from: usize, end: usize) -> Option<QuotedString> {
    let mut i = from;
    let mut escaped = false;
    loop {
        let j = i + memchr::memchr2(b'"', b'\\', &buf[i..end])?;
        if buf[j] == b'"' {
            return Some(QuotedString { close: j, escaped });
        }
        match buf.get(j + 1) {
            Some(b'"' | b'\\') if j + 1 < end => {
                escaped = true;
                i = j + 2;
            }
            _ => i = j + 1,
        }
    }
}

/// Appends the contents of a string value with `\"` and `\\` unescaped; other backslashes are
/// kept literally.
pub(crate) fn unescape_string(raw: &str, out: &mut String) {
    let bytes = raw.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\\' && matches!(bytes[i + 1], b'"' | b'\\') {
            out.push_str(&raw[copied..i]);
            copied = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(scalar(b"1"), Ok(Scalar::Float(1.0)));
        assert_eq!(scalar(b"-1.5e3"), Ok(Scalar::Float(-1500.0)));
        assert_eq!(scalar(b".5"), Ok(Scalar::Float(0.5)));
        assert_eq!(scalar(b"1."), Ok(Scalar::Float(1.0)));
        assert_eq!(scalar(b"12i"), Ok(Scalar::Integer(12)));
        assert_eq!(
            scalar(b"-9223372036854775808i"),
            Ok(Scalar::Integer(i64::MIN))
        );
        assert_eq!(scalar(b"9223372036854775808i"), Err(BadValue::IntegerRange));
        assert_eq!(
            scalar(b"18446744073709551615u"),
            Ok(Scalar::Unsigned(u64::MAX))
        );
        assert_eq!(
            scalar(b"18446744073709551616u"),
            Err(BadValue::UnsignedRange)
        );
        assert_eq!(scalar(b"-1u"), Err(BadValue::UnsignedRange));
        assert_eq!(scalar(b"-u"), Err(BadValue::Syntax));
        assert_eq!(scalar(b"i"), Err(BadValue::Syntax));
        assert_eq!(scalar(b"+1"), Err(BadValue::Syntax));
        assert_eq!(scalar(b"1e"), Err(BadValue::Syntax));
        assert_eq!(scalar(b"."), Err(BadValue::Syntax));
        assert_eq!(scalar(b"-"), Err(BadValue::Syntax));
        assert_eq!(scalar(b"NaN"), Err(BadValue::NonFinite));
        assert_eq!(scalar(b"-Inf"), Err(BadValue::NonFinite));
        assert_eq!(scalar(b"1e999"), Err(BadValue::NonFinite));
        assert_eq!(scalar(b"TRUE"), Ok(Scalar::Boolean(true)));
        assert_eq!(scalar(b"tRUE"), Err(BadValue::Syntax));
    }

    #[test]
    fn fast_float_agrees_with_std() {
        for s in [
            "0.1",
            "52.31",
            "-4.92",
            "123456789012345",
            "0.00000000001",
            "1.7976",
            "9.",
            "-.0",
        ] {
            let fast = fast_float(s.as_bytes()).expect(s);
            assert_eq!(fast.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
        }
        assert_eq!(fast_float(b"1234567890123456"), None);
        assert_eq!(fast_float(b"1e5"), None);
    }

    proptest::proptest! {
        #[test]
        fn fast_float_is_exact(
            negative: bool,
            digits in "[0-9]{1,15}",
            point in 0usize..16,
        ) {
            let point = point.min(digits.len());
            let sign = if negative { "-" } else { "" };
            let text = format!("{sign}{}.{}", &digits[..point], &digits[point..]);
            let fast = fast_float(text.as_bytes()).expect("fast path applies");
            proptest::prop_assert_eq!(fast.to_bits(), text.parse::<f64>().unwrap().to_bits());
        }
    }

    proptest::proptest! {
        /// The one-pass decimal path answers exactly as the general parser, on tokens made of
        /// the characters that matter (digits, points, signs, exponents, suffixes, letters).
        #[test]
        fn plain_decimal_path_equals_general_path(tok in "[-+0-9.eEiuTtrf]{1,24}") {
            let b = tok.as_bytes();
            match (scalar(b), typed_scalar(b)) {
                (Ok(Scalar::Float(x)), Ok(Scalar::Float(y))) => {
                    proptest::prop_assert_eq!(x.to_bits(), y.to_bits())
                }
                (x, y) => proptest::prop_assert_eq!(x, y),
            }
        }

        /// Eight digits at a time read what one digit at a time reads, and refuse the same
        /// bytes (the neighbours of '0' and '9', and any byte at all, included).
        #[test]
        fn swar_digits_equal_a_digit_loop(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => b'0'..=b'9',
                    1 => proptest::strategy::Just(b'/'),
                    1 => proptest::strategy::Just(b':'),
                    1 => proptest::arbitrary::any::<u8>(),
                ],
                0..=19,
            )
        ) {
            let naive = bytes.iter().try_fold(0u64, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
            });
            proptest::prop_assert_eq!(digits_swar(&bytes), naive);
        }

        /// The one-pass timestamp path answers exactly as the checked parser.
        #[test]
        fn timestamp_path_equals_checked_path(tok in "-?([0-9a]{1,21}|9[0-9]{18}|92233720368547758[0-9]{2})") {
            let checked = signed(tok.as_bytes(), BadValue::IntegerRange).map_err(|e| match e {
                BadValue::Syntax => BadTime::Syntax,
                _ => BadTime::Range,
            });
            proptest::prop_assert_eq!(timestamp(tok.as_bytes()), checked);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(b"-12"), Ok(-12));
        assert_eq!(timestamp(b"12a"), Err(BadTime::Syntax));
        assert_eq!(timestamp(b"99999999999999999999"), Err(BadTime::Range));
    }

    #[test]
    fn quoted_strings() {
        let b = br#""a\"b\\" x"#;
        assert_eq!(
            quoted_string(b, 1, b.len()),
            Some(QuotedString {
                close: 7,
                escaped: true
            })
        );
        let b = br#""a\b" x"#;
        assert_eq!(
            quoted_string(b, 1, b.len()),
            Some(QuotedString {
                close: 4,
                escaped: false
            })
        );
        let b = br#""abc\""#;
        assert_eq!(quoted_string(b, 1, b.len()), None);
        let mut out = String::new();
        unescape_string(r#"a\"b\\c\d\"#, &mut out);
        assert_eq!(out, r#"a"b\c\d\"#);
    }
}
