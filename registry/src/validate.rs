//! Validation of ids, names, keys, thumbprints, tags and attribute sizes, plus the limits.

use crate::error::{RegistryError, Result};
use crate::model::Attributes;

/// Longest device/entity/model id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest entity kind or relationship kind, in bytes.
pub const MAX_KIND_LEN: usize = 64;
/// Largest serialized attributes object, in bytes.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;
/// Most tags on one device.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 128;
/// Longest free text (location, names, descriptions), in bytes.
pub const MAX_TEXT_LEN: usize = 1024;
/// Shortest supplied device key, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest supplied device key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// True when `b` is allowed in a device/entity/model id: `[A-Za-z0-9._:-]`.
pub fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Checks a device id against `[A-Za-z0-9._:-]{1,128}`.
pub fn validate_device_id(id: &str) -> Result<()> {
    validate_id("device id", id)
}

/// Checks an id of kind `what` (used in the message) against `[A-Za-z0-9._:-]{1,128}`.
pub fn validate_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(RegistryError::invalid(format!(
            "{what} must be 1..={MAX_ID_LEN} characters, got {}",
            id.len()
        )));
    }
    match id.bytes().position(|b| !is_id_byte(b)) {
        None => Ok(()),
        Some(_) => Err(RegistryError::invalid(format!(
            "{what} '{}' may only contain A-Z a-z 0-9 . _ : -",
            id.escape_debug()
        ))),
    }
}

/// Checks an entity kind or relationship kind: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_kind(what: &str, kind: &str) -> Result<()> {
    let ok = !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::invalid(format!(
            "{what} '{}' must be 1..={MAX_KIND_LEN} characters of A-Z a-z 0-9 _ -",
            kind.escape_debug()
        )))
    }
}

/// Checks free text (no control characters, at most [`MAX_TEXT_LEN`] bytes).
pub fn validate_text(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_LEN {
        return Err(RegistryError::invalid(format!(
            "{what} longer than {MAX_TEXT_LEN} bytes"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(RegistryError::invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

/// Checks a supplied device key: 16..=256 printable ASCII characters, no whitespace.
pub fn validate_key(what: &str, key: &str) -> Result<()> {
    if key.len() < MIN_KEY_LEN || key.len() > MAX_KEY_LEN {
        return Err(RegistryError::invalid(format!(
            "{what} must be {MIN_KEY_LEN}..={MAX_KEY_LEN} characters"
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RegistryError::invalid(format!(
            "{what} may only contain printable ASCII without spaces"
        )));
    }
    Ok(())
}

/// Normalizes a certificate thumbprint: strips ':' separators, lowercases, requires 64 hex digits.
pub fn normalize_thumbprint(raw: &str) -> Result<String> {
    let t: String = raw
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(RegistryError::invalid(
            "thumbprint must be a hex SHA-256 (64 hex digits, ':' separators allowed)",
        ))
    }
}

/// Validates tags and returns them sorted and deduplicated.
pub fn normalize_tags(tags: &[String]) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(RegistryError::invalid(format!(
            "at most {MAX_TAGS} tags allowed"
        )));
    }
    for t in tags {
        if t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control) {
            return Err(RegistryError::invalid(format!(
                "tag '{}' must be 1..={MAX_TAG_LEN} bytes without control characters",
                t.escape_debug()
            )));
        }
    }
    let mut out = tags.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks that attributes serialize to at most [`MAX_ATTRIBUTES_BYTES`].
pub fn validate_attributes(attrs: &Attributes) -> Result<()> {
    let len = serde_json::to_vec(attrs)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len > MAX_ATTRIBUTES_BYTES {
        return Err(RegistryError::invalid(format!(
            "attributes larger than {MAX_ATTRIBUTES_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Turns an empty optional string into `None` (the "clear" convention of updates).
pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}
