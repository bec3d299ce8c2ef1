//! What each connected device is owed of its twin's desired section over MQTT: once per
//! connection (and again after it re-subscribes), the full desired document with its
//! `$version`; after that, each desired patch with its `$version`, in version order, on
//! `devices/{id}/twin/desired`.
//!
//! Per device a [`Cursor`] (reset when a connection opens) holds the version the current
//! connection was last sent and the patches committed since (at most [`MAX_LOGGED_PATCHES`]; a
//! device further behind gets the full document again, whose `$version` then jumps by more than
//! one). Nothing here is durable: after a restart every device reconnects and gets the full
//! document from the registry, so what changed while it was offline is never lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{Value, json};
use strata_ingest::mqtt::{Outgoing, filter_matches};

/// Most desired patches kept per device between two fetches of its session.
pub const MAX_LOGGED_PATCHES: usize = 64;

/// The topic a device receives its desired document and patches on.
pub fn desired_topic(device: &str) -> String {
    format!("devices/{device}/twin/desired")
}

/// Where one device's current connection stands.
#[derive(Debug, Default)]
struct Cursor {
    /// The desired version the connection was last sent (`None`: owed the full document).
    sent: Option<u64>,
    /// Desired patches by version, each as the message sent (`$version` included).
    patches: BTreeMap<u64, Vec<u8>>,
    /// Highest version dropped from `patches` to keep it bounded.
    dropped_upto: u64,
}

/// The twin feeds of all devices that connected since the server started.
#[derive(Debug, Default)]
pub struct TwinFeed {
    cursors: Mutex<HashMap<String, Cursor>>,
}

/// What a fetch owes a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Owed {
    /// Nothing (not subscribed, or up to date).
    Nothing,
    /// The full desired document.
    Full,
    /// These patches, in order.
    Patches(Vec<Outgoing>),
}

impl TwinFeed {
    /// A connection of `device` opened: it is owed the full document once it subscribes.
    pub fn opened(&self, device: &str) {
        lock(&self.cursors).insert(device.to_owned(), Cursor::default());
    }

    /// A desired patch was committed as `version` (kept for connected devices only).
    pub fn record(&self, device: &str, version: u64, patch: &Value) {
        let mut cursors = lock(&self.cursors);
        let Some(c) = cursors.get_mut(device) else {
            return;
        };
        let mut message = patch.clone();
        if let Value::Object(m) = &mut message {
            m.insert("$version".into(), json!(version));
        }
        c.patches.insert(version, message.to_string().into_bytes());
        while c.patches.len() > MAX_LOGGED_PATCHES {
            if let Some((v, _)) = c.patches.pop_first() {
                c.dropped_upto = c.dropped_upto.max(v);
            }
        }
    }

    /// What `device`'s session holding `subscriptions` is owed now. Patches returned count as
    /// sent.
    pub fn owed(&self, device: &str, subscriptions: &[String]) -> Owed {
        let topic = desired_topic(device);
        let subscribed = subscriptions.iter().any(|f| filter_matches(f, &topic));
        let mut cursors = lock(&self.cursors);
        let c = cursors.entry(device.to_owned()).or_default();
        let Some(mut sent) = c.sent.filter(|_| subscribed) else {
            c.sent = None;
            return if subscribed {
                Owed::Full
            } else {
                Owed::Nothing
            };
        };
        if c.dropped_upto > sent {
            return Owed::Full;
        }
        let mut out = Vec::new();
        while let Some(payload) = c.patches.get(&(sent + 1)) {
            sent += 1;
            out.push(Outgoing {
                key: format!("twin:{sent}"),
                topic: topic.clone(),
                payload: payload.clone(),
                expires_ns: None,
            });
        }
        c.sent = Some(sent);
        c.patches.retain(|v, _| *v > sent);
        if out.is_empty() {
            Owed::Nothing
        } else {
            Owed::Patches(out)
        }
    }

    /// The full document at `version` is being sent to `device`: patches up to it are not owed.
    pub fn sent_full(&self, device: &str, version: u64) {
        let mut cursors = lock(&self.cursors);
        let c = cursors.entry(device.to_owned()).or_default();
        c.sent = Some(version);
        c.patches.retain(|v, _| *v > version);
    }
}

/// The message carrying the full desired document `doc` (which holds its `$version`).
pub fn full_message(device: &str, version: u64, doc: &Value) -> Outgoing {
    Outgoing {
        key: format!("twin:full:{version}"),
        topic: desired_topic(device),
        payload: doc.to_string().into_bytes(),
        expires_ns: None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs() -> Vec<String> {
        vec!["devices/d1/twin/desired".to_owned()]
    }

    fn versions(owed: Owed) -> Vec<String> {
        match owed {
            Owed::Patches(p) => p.into_iter().map(|m| m.key).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_document_then_patches_in_order() {
        let feed = TwinFeed::default();
        feed.opened("d1");
        assert_eq!(feed.owed("d1", &[]), Owed::Nothing);
        // A patch committed while the full document is read is still owed after it.
        feed.record("d1", 3, &json!({"a": 1}));
        assert_eq!(feed.owed("d1", &subs()), Owed::Full);
        feed.sent_full("d1", 2);
        feed.record("d1", 5, &json!({"c": 3}));
        assert_eq!(versions(feed.owed("d1", &subs())), ["twin:3"]);
        assert_eq!(
            feed.owed("d1", &subs()),
            Owed::Nothing,
            "4 not committed yet"
        );
        feed.record("d1", 4, &json!({"b": null}));
        let owed = feed.owed("d1", &subs());
        let Owed::Patches(p) = owed else {
            panic!("{owed:?}")
        };
        let first: Value = serde_json::from_slice(&p[0].payload).unwrap();
        assert_eq!(first, json!({"b": null, "$version": 4}));
        assert_eq!(p[1].key, "twin:5");
        // A new connection starts over with the full document.
        feed.opened("d1");
        assert_eq!(feed.owed("d1", &subs()), Owed::Full);
    }

    #[test]
    fn a_device_too_far_behind_gets_the_full_document_again() {
        let feed = TwinFeed::default();
        feed.opened("d1");
        assert_eq!(feed.owed("d1", &subs()), Owed::Full);
        feed.sent_full("d1", 0);
        for v in 1..=(MAX_LOGGED_PATCHES as u64 + 1) {
            feed.record("d1", v, &json!({"v": v}));
        }
        assert_eq!(feed.owed("d1", &subs()), Owed::Full);
        feed.sent_full("d1", MAX_LOGGED_PATCHES as u64 + 1);
        feed.record("d1", MAX_LOGGED_PATCHES as u64 + 2, &json!({}));
        assert_eq!(versions(feed.owed("d1", &subs())).len(), 1);
    }
}
