//! Pure JSON work of device twins: checking a patch (object, property names, depth), applying it
//! as a JSON merge patch (RFC 7396: `null` deletes, objects merge, anything else replaces) while
//! keeping per-property metadata (`$lastUpdatedNs`, `$lastUpdatedVersion`, nested like the
//! properties), and the desired-vs-reported difference.

use serde_json::{Map, Value, json};

use crate::error::{RegistryError, Result};

/// Longest property name.
pub const MAX_TWIN_KEY: usize = 256;

/// Metadata key: when a property was last written (ns since the epoch).
const UPDATED_NS: &str = "$lastUpdatedNs";
/// Metadata key: the section version that last wrote a property.
const UPDATED_VERSION: &str = "$lastUpdatedVersion";

/// When and by which version a patch writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(crate) now_ns: i64,
    pub(crate) version: u64,
}

impl Stamp {
    fn write(self, meta: &mut Map<String, Value>) {
        meta.insert(UPDATED_NS.into(), json!(self.now_ns));
        meta.insert(UPDATED_VERSION.into(), json!(self.version));
    }
}

/// Nesting depth of a value: a scalar 0, `{"a": 1}` 1, `{"a": {"b": [1]}}` 3.
pub(crate) fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks a patch: a JSON object, no deeper than `max_depth`, whose property names (at every
/// level) are 1 to [`MAX_TWIN_KEY`] bytes, do not start with `$` (reserved for `$version` and
/// `$metadata`) and hold no control characters.
pub(crate) fn check_patch(patch: &Value, max_depth: usize) -> Result<&Map<String, Value>> {
    let Value::Object(map) = patch else {
        return Err(RegistryError::invalid(
            "a twin patch must be a JSON object (a JSON merge patch, RFC 7396)",
        ));
    };
    let d = depth(patch);
    if d > max_depth {
        return Err(RegistryError::invalid(format!(
            "twin patch is nested {d} levels deep, above the limit of {max_depth}"
        )));
    }
    check_keys(map, "")?;
    Ok(map)
}

fn check_keys(map: &Map<String, Value>, path: &str) -> Result<()> {
    for (k, v) in map {
        if k.is_empty() || k.len() > MAX_TWIN_KEY {
            return Err(RegistryError::invalid(format!(
                "twin property name '{path}{k}' must be 1 to {MAX_TWIN_KEY} bytes"
            )));
        }
        if k.starts_with('$') || k.chars().any(char::is_control) {
            return Err(RegistryError::invalid(format!(
                "twin property name '{path}{k}' must not start with '$' or hold control characters"
            )));
        }
        if let Value::Object(child) = v {
            check_keys(child, &format!("{path}{k}."))?;
        }
    }
    Ok(())
}

/// Applies `patch` to `props` (RFC 7396) and records `stamp` in `meta` for every property it
/// writes and each object on the way to one; deleted properties lose their metadata.
pub(crate) fn merge(
    props: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: Stamp,
) {
    for (k, pv) in patch {
        match pv {
            Value::Null => {
                props.remove(k);
                meta.remove(k);
            }
            Value::Object(child_patch) => {
                let target = props
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                let entry = meta
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !target.is_object() {
                    *target = Value::Object(Map::new());
                    *entry = Value::Object(Map::new());
                }
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let (Value::Object(t), Value::Object(m)) = (target, entry) {
                    merge(t, m, child_patch, stamp);
                    stamp.write(m);
                }
            }
            other => {
                props.insert(k.clone(), other.clone());
                let mut m = Map::new();
                stamp.write(&mut m);
                meta.insert(k.clone(), Value::Object(m));
            }
        }
    }
}

/// The desired properties whose value differs from the reported one: objects present on both
/// sides are compared property by property (only differing leaves are kept), anything else by
/// value; a desired property the device never reported is part of the difference.
pub fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, d) in desired {
        match (d, reported.get(k)) {
            (Value::Object(dm), Some(Value::Object(rm))) => {
                let sub = delta(dm, rm);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (d, Some(r)) if d == r => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn stamp(version: u64) -> Stamp {
        Stamp {
            now_ns: 1_000 + version as i64,
            version,
        }
    }

    /// The RFC 7396 appendix A examples.
    #[test]
    fn rfc7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, want) in cases {
            let mut props = obj(target.clone());
            let mut meta = Map::new();
            merge(&mut props, &mut meta, &obj(patch.clone()), stamp(1));
            assert_eq!(Value::Object(props), want, "{target} + {patch}");
        }
    }

    #[test]
    fn metadata_follows_the_properties() {
        let mut props = Map::new();
        let mut meta = Map::new();
        merge(
            &mut props,
            &mut meta,
            &obj(json!({"fan": {"speed": 3, "mode": "auto"}, "led": true})),
            stamp(1),
        );
        merge(
            &mut props,
            &mut meta,
            &obj(json!({"fan": {"speed": 4}, "led": null})),
            stamp(2),
        );
        assert_eq!(
            Value::Object(props),
            json!({"fan": {"speed": 4, "mode": "auto"}})
        );
        assert_eq!(meta["fan"][UPDATED_VERSION], 2);
        assert_eq!(meta["fan"]["speed"][UPDATED_VERSION], 2);
        assert_eq!(meta["fan"]["mode"][UPDATED_VERSION], 1);
        assert_eq!(meta["fan"]["mode"][UPDATED_NS], 1_001);
        assert!(meta.get("led").is_none());
    }

    #[test]
    fn patches_are_checked() {
        assert!(check_patch(&json!([1]), 10).is_err());
        assert!(check_patch(&json!({"$version": 1}), 10).is_err());
        assert!(check_patch(&json!({"a": {"": 1}}), 10).is_err());
        assert!(check_patch(&json!({"a": {"b\n": 1}}), 10).is_err());
        assert!(check_patch(&json!({"a": {"b": {"c": 1}}}), 3).is_ok());
        let err = check_patch(&json!({"a": {"b": {"c": [1]}}}), 3).unwrap_err();
        assert!(err.to_string().contains("4 levels"), "{err}");
    }

    #[test]
    fn delta_keeps_differing_leaves() {
        let desired = obj(json!({"t": 21, "fan": {"speed": 4, "mode": "auto"}, "new": 1}));
        let reported = obj(json!({"t": 21, "fan": {"speed": 3, "mode": "auto"}, "x": 0}));
        assert_eq!(
            Value::Object(delta(&desired, &reported)),
            json!({"fan": {"speed": 4}, "new": 1})
        );
        assert!(delta(&reported, &reported).is_empty());
    }
}
