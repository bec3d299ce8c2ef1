//! Byte-level helpers of the line-protocol parser: finding unescaped delimiters, unescaping and
//! validating names (measurement, tag keys and values, field keys), and the positioned error
//! type ([`Fail`]) that the parser turns into a `ParseError`.
//!
//! In names a backslash escapes only the element's special characters (`,` and space for
//! measurements; `,`, `=` and space for keys and tag values); before any other byte it is a
//! literal backslash. Since the backslash itself is never escapable there, a delimiter is escaped
//! exactly when the byte before it (inside the token) is a backslash, which lets the scanners
//! jump from candidate to candidate with `memchr`.

use memchr::{memchr, memchr2, memchr3};

pub use crate::text::names::{MAX_DEVICE_ID_LEN, MAX_NAME_LEN, MAX_TAG_VALUE_LEN, is_device_id};

/// A parse failure at an absolute byte offset of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    /// Offset into the whole payload.
    pub(crate) pos: usize,
    /// Human-readable description.
    pub(crate) message: String,
}

impl Fail {
    /// A failure at `pos`.
    pub(crate) fn at(pos: usize, message: impl Into<String>) -> Self {
        Fail {
            pos,
            message: message.into(),
        }
    }
}

/// The kinds of escaped names in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// Measurement (stream) name.
    Measurement,
    /// Tag key.
    TagKey,
    /// Tag value.
    TagValue,
    /// Field key.
    FieldKey,
}

impl NameKind {
    /// How the element is called in error messages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            NameKind::Measurement => "measurement name",
            NameKind::TagKey => "tag key",
            NameKind::TagValue => "tag value",
            NameKind::FieldKey => "field key",
        }
    }

    /// Maximum unescaped length in bytes.
    fn max_len(self) -> usize {
        match self {
            NameKind::TagValue => MAX_TAG_VALUE_LEN,
            _ => MAX_NAME_LEN,
        }
    }

    /// True when a backslash before `b` escapes it in this kind of name.
    fn escapes(self, b: u8) -> bool {
        match self {
            NameKind::Measurement => b == b',' || b == b' ',
            _ => b == b',' || b == b'=' || b == b' ',
        }
    }
}

/// First unescaped match of `find` in `buf[from..end]`, or `end`.
#[inline]
fn next_unescaped(
    buf: &[u8],
    from: usize,
    end: usize,
    find: impl Fn(&[u8]) -> Option<usize>,
) -> usize {
    let mut i = from;
    while let Some(off) = find(&buf[i..end]) {
        let j = i + off;
        if j == from || buf[j - 1] != b'\\' {
            return j;
        }
        i = j + 1;
    }
    end
}

/// End of a measurement name starting at `from`: the first unescaped `,` or space.
#[inline]
pub(crate) fn measurement_end(buf: &[u8], from: usize, end: usize) -> usize {
    next_unescaped(buf, from, end, |h| memchr2(b',', b' ', h))
}

/// End of a tag set starting at `from`: the first unescaped space.
#[inline]
pub(crate) fn tag_set_end(buf: &[u8], from: usize, end: usize) -> usize {
    next_unescaped(buf, from, end, |h| memchr(b' ', h))
}

/// End of a tag key: the first unescaped `=` or `,` (the tag set holds no unescaped space).
pub(crate) fn tag_key_end(buf: &[u8], from: usize, end: usize) -> usize {
    next_unescaped(buf, from, end, |h| memchr2(b'=', b',', h))
}

/// End of a tag value: the first unescaped `,` or `=`.
pub(crate) fn tag_value_end(buf: &[u8], from: usize, end: usize) -> usize {
    next_unescaped(buf, from, end, |h| memchr2(b',', b'=', h))
}

/// End of a field key: the first unescaped `=`, `,` or space.
#[inline]
pub(crate) fn field_key_end(buf: &[u8], from: usize, end: usize) -> usize {
    next_unescaped(buf, from, end, |h| memchr3(b'=', b',', b' ', h))
}

/// End of an unquoted field value: the first `,` or space (no escapes there).
#[inline]
pub(crate) fn plain_end(buf: &[u8], from: usize, end: usize) -> usize {
    buf[from..end]
        .iter()
        .position(|&b| b == b',' || b == b' ')
        .map_or(end, |off| from + off)
}

/// End of a timestamp token: the first space, or `end`.
#[inline]
pub(crate) fn word_end(buf: &[u8], from: usize, end: usize) -> usize {
    buf[from..end]
        .iter()
        .position(|&b| b == b' ')
        .map_or(end, |off| from + off)
}

/// First index at or after `from` that is not a space, or `end`.
#[inline]
pub(crate) fn skip_spaces(buf: &[u8], from: usize, end: usize) -> usize {
    buf[from..end]
        .iter()
        .position(|&b| b != b' ')
        .map_or(end, |off| from + off)
}

/// First index at or after `from` that is neither a space nor a tab, or `end`.
pub(crate) fn skip_blanks(buf: &[u8], from: usize, end: usize) -> usize {
    buf[from..end]
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map_or(end, |off| from + off)
}

/// Validates and unescapes the name `buf[start..end]`: UTF-8, no control characters, length.
/// Emptiness is the caller's business (its message depends on the context).
pub(crate) fn name(buf: &[u8], start: usize, end: usize, kind: NameKind) -> Result<String, Fail> {
    let raw = &buf[start..end];
    let text = std::str::from_utf8(raw).map_err(|e| {
        Fail::at(
            start + e.valid_up_to(),
            format!("invalid UTF-8 in {}", kind.label()),
        )
    })?;
    if let Some(off) = raw.iter().position(|&b| b < 0x20 || b == 0x7f) {
        return Err(Fail::at(
            start + off,
            format!(
                "control character 0x{:02x} is not allowed in a {}",
                raw[off],
                kind.label()
            ),
        ));
    }
    let out = if raw.contains(&b'\\') {
        unescape(text, kind)
    } else {
        text.to_owned()
    };
    if out.len() > kind.max_len() {
        return Err(Fail::at(
            start,
            format!(
                "{} is {} bytes long; the limit is {} bytes",
                kind.label(),
                out.len(),
                kind.max_len()
            ),
        ));
    }
    Ok(out)
}

/// Removes the backslashes that escape `kind`'s special characters.
fn unescape(text: &str, kind: NameKind) -> String {
    let raw = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < raw.len() {
        if raw[i] == b'\\' && kind.escapes(raw[i + 1]) {
            out.push_str(&text[copied..i]);
            copied = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Best-effort unescaped rendering of a raw name for error messages.
pub(crate) fn lossy_name(raw: &[u8], kind: NameKind) -> String {
    unescape(&String::from_utf8_lossy(raw), kind)
}

/// Quoted, shortened rendering of raw bytes for error messages.
pub(crate) fn show(raw: &[u8]) -> String {
    const LIMIT: usize = 64;
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() <= LIMIT {
        return format!("{text:?}");
    }
    let short: String = text.chars().take(LIMIT).collect();
    format!("{short:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_after_backslash_is_escaped() {
        let b = br"a\,b\ c,d";
        assert_eq!(measurement_end(b, 0, b.len()), 7);
        let b = br"a\\ b";
        assert_eq!(tag_set_end(b, 0, b.len()), b.len());
        let b = br"k\=x=v";
        assert_eq!(tag_key_end(b, 0, b.len()), 4);
        assert_eq!(field_key_end(b"abc", 0, 3), 3);
    }

    #[test]
    fn delimiter_at_token_start_is_not_escaped_by_previous_token() {
        let b = br"\,x";
        assert_eq!(tag_key_end(b, 1, b.len()), 1);
    }

    #[test]
    fn unescape_only_special_characters() {
        assert_eq!(
            unescape(r"a\,b\=c\ d\x\\", NameKind::TagKey),
            r"a,b=c d\x\\"
        );
        assert_eq!(unescape(r"a\=b\,c", NameKind::Measurement), r"a\=b,c");
        assert_eq!(unescape(r"\\,", NameKind::FieldKey), r"\,");
        assert_eq!(unescape("é\\ ü", NameKind::FieldKey), "é ü");
    }

    #[test]
    fn name_rejects_control_characters_and_bad_utf8() {
        let e = name(b"ab\tc", 0, 4, NameKind::TagKey).unwrap_err();
        assert_eq!(e.pos, 2);
        let e = name(b"ab\xffc", 0, 4, NameKind::FieldKey).unwrap_err();
        assert_eq!(e.pos, 2);
        assert!(e.message.contains("invalid UTF-8 in field key"));
    }

    #[test]
    fn name_length_limit_applies_after_unescaping() {
        let raw = "a\\ ".repeat(MAX_NAME_LEN / 2);
        assert!(name(raw.as_bytes(), 0, raw.len(), NameKind::FieldKey).is_ok());
        let raw = "a".repeat(MAX_NAME_LEN + 1);
        assert!(name(raw.as_bytes(), 0, raw.len(), NameKind::FieldKey).is_err());
    }

    #[test]
    fn device_ids() {
        assert!(is_device_id("truck-12.a:b_C"));
        assert!(!is_device_id(""));
        assert!(!is_device_id("a b"));
        assert!(!is_device_id(&"x".repeat(129)));
        assert!(is_device_id(&"x".repeat(128)));
    }

    #[test]
    fn show_truncates() {
        assert_eq!(show(b"12x"), "\"12x\"");
        assert!(show(&[b'a'; 100]).ends_with('…'));
    }
}
