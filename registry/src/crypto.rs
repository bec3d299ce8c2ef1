//! Secrets: random key generation, salted HMAC-SHA256 hashing, constant-time verification, hex.
//!
//! A secret `s` is stored as `(salt, HMAC-SHA256(key = salt, message = s))` with a fresh random
//! 16-byte salt per secret. Verification recomputes the MAC and compares it in constant time
//! (`hmac::Mac::verify_slice`).

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Salt length in bytes.
pub(crate) const SALT_LEN: usize = 16;
/// Hash length in bytes.
pub(crate) const HASH_LEN: usize = 32;

/// A salted hash of one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SecretHash {
    pub salt: [u8; SALT_LEN],
    pub hash: [u8; HASH_LEN],
}

impl SecretHash {
    /// Hashes `secret` with a fresh random salt.
    pub fn new(secret: &[u8]) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::with_salt(salt, secret)
    }

    /// Hashes `secret` with the given salt.
    pub fn with_salt(salt: [u8; SALT_LEN], secret: &[u8]) -> Self {
        let mut mac = mac_for(&salt);
        mac.update(secret);
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&mac.finalize().into_bytes());
        Self { salt, hash }
    }

    /// Constant-time check that `secret` hashes to this value.
    pub fn verify(&self, secret: &[u8]) -> bool {
        let mut mac = mac_for(&self.salt);
        mac.update(secret);
        mac.verify_slice(&self.hash).is_ok()
    }

    /// Hex form `salt:hash` for storage.
    pub fn encode(&self) -> String {
        format!("{}:{}", to_hex(&self.salt), to_hex(&self.hash))
    }

    /// Parses the hex form written by [`SecretHash::encode`].
    pub fn decode(s: &str) -> Option<Self> {
        let (salt_hex, hash_hex) = s.split_once(':')?;
        let salt = from_hex(salt_hex)?.try_into().ok()?;
        let hash = from_hex(hash_hex)?.try_into().ok()?;
        Some(Self { salt, hash })
    }
}

fn mac_for(salt: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-key MAC
    // rather than panicking should that ever change.
    HmacSha256::new_from_slice(salt).unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

/// Constant-time equality of two byte strings of equal length (false on length mismatch).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    to_hex(&buf)
}

/// A new 256-bit device key: 64 lowercase hex chars.
pub(crate) fn generate_key() -> String {
    random_hex(32)
}

/// Lowercase hex encoding.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Hex decoding (either case); `None` on odd length or a non-hex digit.
pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_secret() {
        let h = SecretHash::new(b"correct horse battery staple");
        assert!(h.verify(b"correct horse battery staple"));
        assert!(!h.verify(b"correct horse battery stapl"));
        assert!(!h.verify(b""));
    }

    #[test]
    fn salts_differ_per_hash() {
        let a = SecretHash::new(b"same");
        let b = SecretHash::new(b"same");
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn encode_round_trips() {
        let h = SecretHash::new(b"k");
        assert_eq!(SecretHash::decode(&h.encode()), Some(h));
        assert_eq!(SecretHash::decode("zz:00"), None);
        assert_eq!(SecretHash::decode("nocolon"), None);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("gg"), None);
        assert_eq!(generate_key().len(), 64);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
