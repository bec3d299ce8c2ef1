//! The binary records of `rules.redb`'s `alerts` and `outbox` tables (layout in
//! `docs/format.md`, "Rule store"): a version byte ([`VERSION`]) then fixed-width little-endian
//! integers and length-prefixed UTF-8 strings, written without serde. A record whose first byte
//! is `{` is an older JSON record and is still read. A record that is neither, or that ends early,
//! has bad UTF-8, an unknown tag or trailing bytes, is a typed [`DecodeError`], never a panic.

use std::collections::BTreeMap;

use crate::alert::{Alert, AlertState};
pub use crate::error::DecodeError;
use crate::outbox::{Notification, OutboxEntry, Target};

/// Version byte of the binary records (JSON records start with `{`).
pub const VERSION: u8 = 1;
/// Deepest nesting of arrays and objects in a record's values.
const MAX_DEPTH: u32 = crate::error::MAX_RECORD_DEPTH;

/// The stored bytes of an alert instance.
pub fn encode_alert(a: &Alert) -> Vec<u8> {
    let mut w = Vec::with_capacity(96);
    w.push(VERSION);
    put_str(&mut w, &a.rule);
    put_str_map(&mut w, a.key.iter());
    w.push(state_tag(a.state));
    put_i64(&mut w, a.started_ns);
    put_opt_i64(&mut w, a.fired_ns);
    put_opt_i64(&mut w, a.resolved_ns);
    put_i64(&mut w, a.last_active_ns);
    put_object(&mut w, &a.values);
    w
}

/// An alert instance from its stored bytes (binary or older JSON).
pub fn decode_alert(bytes: &[u8]) -> Result<Alert, DecodeError> {
    let mut r = match start(bytes)? {
        Some(r) => r,
        None => return json(bytes),
    };
    let a = Alert {
        rule: r.string()?,
        key: r.str_map()?,
        state: match r.u8()? {
            0 => AlertState::Pending,
            1 => AlertState::Firing,
            2 => AlertState::Resolved,
            tag => return Err(DecodeError::Tag { what: "state", tag }),
        },
        started_ns: r.i64()?,
        fired_ns: r.opt_i64()?,
        resolved_ns: r.opt_i64()?,
        last_active_ns: r.i64()?,
        values: r.object(0)?,
    };
    r.end()?;
    Ok(a)
}

/// The stored bytes of an outbox entry. An action target keeps the action's JSON (actions are
/// few and rich; the history target, one per transition, is binary throughout).
pub fn encode_entry(e: &OutboxEntry) -> Vec<u8> {
    let mut w = Vec::with_capacity(192);
    w.push(VERSION);
    put_u64(&mut w, e.seq);
    put_i64(&mut w, e.time_ns);
    w.extend_from_slice(&e.attempts.to_le_bytes());
    put_i64(&mut w, e.next_at_ns);
    w.push(u8::from(e.dead));
    match &e.last_error {
        None => w.push(0),
        Some(s) => {
            w.push(1);
            put_str(&mut w, s);
        }
    }
    match &e.target {
        Target::History { db } => {
            w.push(0);
            put_str(&mut w, db);
        }
        Target::Action { action, db } => {
            w.push(1);
            put_str(&mut w, db);
            put_str(&mut w, &serde_json::to_string(action).unwrap_or_default());
        }
    }
    let n = &e.notification;
    for s in [&n.id, &n.rule] {
        put_str(&mut w, s);
    }
    put_str_map(&mut w, n.key.iter());
    put_str(&mut w, &n.state);
    put_object(&mut w, &n.values);
    put_str(&mut w, &n.time);
    put_str(&mut w, &n.started);
    put_str_map(&mut w, n.labels.iter());
    put_i64(&mut w, n.time_ns);
    w
}

/// An outbox entry from its stored bytes (binary or older JSON).
pub fn decode_entry(bytes: &[u8]) -> Result<OutboxEntry, DecodeError> {
    let mut r = match start(bytes)? {
        Some(r) => r,
        None => return json(bytes),
    };
    let seq = r.u64()?;
    let time_ns = r.i64()?;
    let attempts = u32::from_le_bytes(r.array()?);
    let next_at_ns = r.i64()?;
    let dead = r.bool("dead")?;
    let last_error = if r.bool("last_error")? {
        Some(r.string()?)
    } else {
        None
    };
    let target = match r.u8()? {
        0 => Target::History { db: r.string()? },
        1 => {
            let db = r.string()?;
            let at = r.pos;
            let action = serde_json::from_str(&r.string()?)
                .map_err(|e| DecodeError::Json(format!("action at byte {at}: {e}")))?;
            Target::Action { action, db }
        }
        tag => {
            return Err(DecodeError::Tag {
                what: "target",
                tag,
            });
        }
    };
    let notification = Notification {
        id: r.string()?,
        rule: r.string()?,
        key: r.str_map()?,
        state: r.string()?,
        values: r.object(0)?,
        time: r.string()?,
        started: r.string()?,
        labels: r.str_map()?,
        time_ns: r.i64()?,
    };
    r.end()?;
    Ok(OutboxEntry {
        seq,
        target,
        notification,
        time_ns,
        attempts,
        next_at_ns,
        dead,
        last_error,
    })
}

/// A reader past the version byte, or `None` for a JSON record.
fn start(bytes: &[u8]) -> Result<Option<Reader<'_>>, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Empty),
        Some(b'{') => Ok(None),
        Some(&VERSION) => Ok(Some(Reader { bytes, pos: 1 })),
        Some(&v) => Err(DecodeError::Version(v)),
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))
}

fn state_tag(s: AlertState) -> u8 {
    match s {
        AlertState::Pending => 0,
        AlertState::Firing => 1,
        AlertState::Resolved => 2,
    }
}

fn put_u64(w: &mut Vec<u8>, v: u64) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(w: &mut Vec<u8>, v: i64) {
    w.extend_from_slice(&v.to_le_bytes());
}

fn put_opt_i64(w: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => w.push(0),
        Some(v) => {
            w.push(1);
            put_i64(w, v);
        }
    }
}

fn put_len(w: &mut Vec<u8>, n: usize) {
    w.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_len(w, s.len());
    w.extend_from_slice(s.as_bytes());
}

fn put_str_map<'a>(w: &mut Vec<u8>, m: impl ExactSizeIterator<Item = (&'a String, &'a String)>) {
    put_len(w, m.len());
    for (k, v) in m {
        put_str(w, k);
        put_str(w, v);
    }
}

fn put_object(w: &mut Vec<u8>, m: &serde_json::Map<String, serde_json::Value>) {
    put_len(w, m.len());
    for (k, v) in m {
        put_str(w, k);
        put_value(w, v);
    }
}

/// Value tags: 0 null, 1 false, 2 true, 3 f64, 4 i64, 5 u64, 6 string, 7 array, 8 object.
fn put_value(w: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => w.push(0),
        Value::Bool(b) => w.push(1 + u8::from(*b)),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                w.push(5);
                put_u64(w, u);
            } else if let Some(i) = n.as_i64() {
                w.push(4);
                put_i64(w, i);
            } else {
                w.push(3);
                w.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
            }
        }
        Value::String(s) => {
            w.push(6);
            put_str(w, s);
        }
        Value::Array(a) => {
            w.push(7);
            put_len(w, a.len());
            for x in a {
                put_value(w, x);
            }
        }
        Value::Object(m) => {
            w.push(8);
            put_object(w, m);
        }
    }
}

/// A cursor over a binary record.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let at = self.pos;
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError::Truncated(at))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::Tag { what, tag }),
        }
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, DecodeError> {
        Ok(if self.bool("option")? {
            Some(self.i64()?)
        } else {
            None
        })
    }

    /// A length, never more than the bytes left (so a corrupt one cannot allocate much).
    fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > self.bytes.len() - self.pos {
            return Err(DecodeError::Truncated(at));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let at = self.pos;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_string)
            .map_err(|_| DecodeError::Utf8(at))
    }

    fn str_map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.len()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            m.insert(k, self.string()?);
        }
        Ok(m)
    }

    fn object(
        &mut self,
        depth: u32,
    ) -> Result<serde_json::Map<String, serde_json::Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::Depth);
        }
        let n = self.len()?;
        let mut m = serde_json::Map::new();
        for _ in 0..n {
            let k = self.string()?;
            m.insert(k, self.value(depth)?);
        }
        Ok(m)
    }

    fn value(&mut self, depth: u32) -> Result<serde_json::Value, DecodeError> {
        use serde_json::Value;
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => serde_json::Number::from_f64(f64::from_le_bytes(self.array()?))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            4 => Value::from(self.i64()?),
            5 => Value::from(self.u64()?),
            6 => Value::String(self.string()?),
            7 => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError::Depth);
                }
                let n = self.len()?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            8 => Value::Object(self.object(depth + 1)?),
            tag => return Err(DecodeError::Tag { what: "value", tag }),
        })
    }

    fn end(&self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertKey, Notify, observe_active};
    use crate::spec::{RuleSpec, Timing};
    use serde_json::json;

    fn spec() -> RuleSpec {
        serde_json::from_value(json!({"name": "hot", "kind": "row", "stream": "env",
            "condition": "temperature > 90", "labels": {"team": "cold-chain"},
            "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "s"}]}))
        .unwrap()
    }

    fn alert() -> Alert {
        let key: AlertKey = [("device".to_string(), "d1".to_string())].into();
        let values = json!({"temperature": 99.5, "n": 3, "neg": -4, "ok": true, "none": null,
            "s": "x\u{e9}", "list": [1, "a", {"b": [false]}], "obj": {"k": 1.5}});
        let values = values.as_object().cloned().unwrap();
        observe_active(None, "hot", &key, values, 7, Timing::default()).0
    }

    fn entries() -> Vec<OutboxEntry> {
        let mut e = OutboxEntry::for_transition(&spec(), &alert(), Notify::Firing);
        e[0].seq = 41;
        e[0].attempts = 3;
        e[0].dead = true;
        e[0].last_error = Some("refused".into());
        e[1].seq = 42;
        e
    }

    #[test]
    fn alerts_and_entries_round_trip() {
        let mut a = alert();
        assert_eq!(decode_alert(&encode_alert(&a)).unwrap(), a);
        a.state = AlertState::Resolved;
        a.resolved_ns = Some(-9);
        assert_eq!(decode_alert(&encode_alert(&a)).unwrap(), a);
        for e in entries() {
            let bytes = encode_entry(&e);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode_entry(&bytes).unwrap(), e);
        }
    }

    /// Records written by the JSON versions still read, the same as before.
    #[test]
    fn older_json_records_are_read() {
        let a = alert();
        let old = serde_json::to_vec(&a).unwrap();
        assert_eq!(decode_alert(&old).unwrap(), a);
        for e in entries() {
            let old = serde_json::to_vec(&e).unwrap();
            assert_eq!(
                decode_entry(&old).unwrap(),
                serde_json::from_slice::<OutboxEntry>(&old).unwrap()
            );
        }
    }

    /// Every truncation and every single-byte change of a record is an error or a record,
    /// never a panic; specific damage gives specific errors.
    #[test]
    fn corrupt_records_are_typed_errors() {
        let a = encode_alert(&alert());
        let e = encode_entry(&entries()[0]);
        for bytes in [&a, &e] {
            for cut in 0..bytes.len() {
                assert!(decode_alert(&bytes[..cut]).is_err());
                assert!(decode_entry(&bytes[..cut]).is_err());
            }
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0xA5;
                let _ = decode_alert(&b);
                let _ = decode_entry(&b);
            }
        }
        assert_eq!(decode_alert(&[]), Err(DecodeError::Empty));
        assert_eq!(decode_alert(&[7, 0]), Err(DecodeError::Version(7)));
        let mut long = a.clone();
        long.push(0);
        assert_eq!(decode_alert(&long), Err(DecodeError::Trailing(1)));
        assert!(matches!(
            decode_alert(b"{not json"),
            Err(DecodeError::Json(_))
        ));
        // A huge length does not allocate: it is checked against the bytes left.
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_alert(&huge), Err(DecodeError::Truncated(1)));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut w = vec![VERSION];
        put_str(&mut w, "r");
        put_len(&mut w, 0);
        w.push(0);
        put_i64(&mut w, 1);
        w.extend_from_slice(&[0, 0]);
        put_i64(&mut w, 1);
        put_len(&mut w, 1);
        put_str(&mut w, "v");
        for _ in 0..100 {
            w.push(7);
            put_len(&mut w, 1);
        }
        w.push(0);
        assert_eq!(decode_alert(&w), Err(DecodeError::Depth));
    }
}
