//! The device's copy of its twin's desired properties: the first document after a (re)connect or
//! subscribe replaces it, later messages are JSON merge patches (RFC 7396) whose `$version` is the
//! previous one + 1; a jump in `$version` means the server sent the full document again.

use serde_json::{Map, Value};

/// What a desired-properties message did.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredUpdate {
    /// The desired properties after the message (without `$version`).
    pub desired: Value,
    /// The message itself (a full document or a patch, without `$version`).
    pub change: Value,
    /// Whether the message was a full document (replace) rather than a patch.
    pub full: bool,
    /// The desired `$version` after the message.
    pub version: u64,
}

/// The desired state the device knows.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    desired: Value,
    version: u64,
    expect_full: bool,
}

impl DesiredState {
    /// A state expecting the full document first.
    pub fn new() -> DesiredState {
        DesiredState {
            desired: Value::Object(Map::new()),
            version: 0,
            expect_full: true,
        }
    }

    /// The next message is a full document (after a (re)connect).
    pub fn reconnected(&mut self) {
        self.expect_full = true;
    }

    /// The desired properties known so far.
    pub fn desired(&self) -> &Value {
        &self.desired
    }

    /// Applies one message from `devices/{id}/twin/desired`.
    pub fn apply(&mut self, mut msg: Value) -> DesiredUpdate {
        let version = msg
            .as_object_mut()
            .and_then(|m| m.remove("$version"))
            .and_then(|v| v.as_u64())
            .unwrap_or(self.version + 1);
        let full = self.expect_full || version != self.version + 1;
        if full {
            self.desired = msg.clone();
        } else {
            merge_patch(&mut self.desired, &msg);
        }
        self.expect_full = false;
        self.version = version;
        DesiredUpdate {
            desired: self.desired.clone(),
            change: msg,
            full,
            version,
        }
    }
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_then_patches_then_a_jump() {
        let mut s = DesiredState::new();
        let u = s.apply(json!({"temp": 21, "fan": {"speed": 3}, "$version": 3}));
        assert!(u.full);
        let u = s.apply(json!({"fan": {"speed": 4}, "temp": null, "$version": 4}));
        assert!(!u.full);
        assert_eq!(u.desired, json!({"fan": {"speed": 4}}));
        let u = s.apply(json!({"mode": "eco", "$version": 9}));
        assert!(u.full);
        assert_eq!(u.desired, json!({"mode": "eco"}));
        s.reconnected();
        assert!(s.apply(json!({"mode": "eco", "$version": 10})).full);
    }
}
