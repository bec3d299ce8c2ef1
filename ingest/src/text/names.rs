//! Name limits: databases, streams/fields/tag keys, tag values and device ids.

/// Longest measurement (stream) name, tag key or field key, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE_LEN: usize = 1024;
/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 128;
/// Longest database name, in bytes.
pub const MAX_DATABASE_LEN: usize = 64;

/// A name that breaks its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("empty {what} name")]
    Empty {
        /// What the name names (`stream`, `field`, ...).
        what: &'static str,
    },
    /// Too long.
    #[error("{what} name is {len} bytes long; the limit is {limit} bytes")]
    TooLong {
        /// What the name names.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Holds a control character.
    #[error("control character 0x{byte:02x} is not allowed in a {what} name")]
    Control {
        /// What the name names.
        what: &'static str,
        /// The offending byte.
        byte: u8,
    },
    /// A database name outside `[A-Za-z0-9_-]{1,64}`.
    #[error("invalid database name '{0}' (allowed: [A-Za-z0-9_-]{{1,64}})")]
    Database(String),
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Checks a stream, field, column or tag name: 1 to [`MAX_NAME_LEN`] bytes, no control
/// characters. `what` names the kind of name in the error.
pub fn check_name(name: &str, what: &'static str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
            limit: MAX_NAME_LEN,
        });
    }
    match name.bytes().find(|&b| is_control(b)) {
        Some(byte) => Err(NameError::Control { what, byte }),
        None => Ok(()),
    }
}

/// Checks a database name: `[A-Za-z0-9_-]{1,64}`.
pub fn check_database(name: &str) -> Result<(), NameError> {
    let ok = (1..=MAX_DATABASE_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::Database(name.to_owned()))
    }
}

/// True when `id` matches `[A-Za-z0-9._:-]{1,128}`.
pub fn is_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn database_names() {
        assert!(check_database("default").is_ok());
        assert!(check_database("fleet_2-a").is_ok());
        assert!(check_database(&"a".repeat(64)).is_ok());
        assert!(check_database(&"a".repeat(65)).is_err());
        assert!(check_database("").is_err());
        assert!(check_database("a/b").is_err());
        assert!(check_database("ünïcode").is_err());
    }

    #[test]
    fn names_and_devices() {
        assert_eq!(
            check_name("", "stream"),
            Err(NameError::Empty { what: "stream" })
        );
        assert!(check_name(&"x".repeat(MAX_NAME_LEN), "field").is_ok());
        let e = check_name(&"x".repeat(MAX_NAME_LEN + 1), "field").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field name is 257 bytes long; the limit is 256 bytes"
        );
        let e = check_name("a\tb", "tag").unwrap_err();
        assert!(e.to_string().contains("0x09"), "{e}");
        assert!(is_device_id("truck-1:a.b_c"));
        assert!(!is_device_id(""));
        assert!(!is_device_id("a b"));
        assert!(!is_device_id(&"d".repeat(MAX_DEVICE_ID_LEN + 1)));
    }

    proptest! {
        #[test]
        fn accepted_names_keep_their_limits(s in "\\PC{0,300}") {
            if check_name(&s, "stream").is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN);
                prop_assert!(!s.bytes().any(is_control));
            }
            if check_database(&s).is_ok() {
                prop_assert!(s.len() <= MAX_DATABASE_LEN && s.is_ascii());
            }
            if is_device_id(&s) {
                prop_assert!(s.len() <= MAX_DEVICE_ID_LEN && s.is_ascii());
            }
        }
    }
}
