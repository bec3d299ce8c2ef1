//! Direct methods in flight: an application's call waits (in memory, never stored) until the
//! connected device answers or the call times out. The request goes out on
//! `devices/{id}/methods/{name}/{rid}` (JSON body = the call's body); the device answers on
//! `devices/{id}/methods/res/{rid}` with `{"status": <int>, "payload": ...}`. Request ids are
//! 128 random bits (32 hex digits), so a device cannot answer a call it was not sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_ingest::mqtt::Outgoing;
use tokio::sync::oneshot;

/// Longest method name.
pub const MAX_METHOD_NAME: usize = 128;

/// A device's answer to a method call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodReply {
    /// The device's status code (any integer; HTTP-like codes by convention).
    pub status: i64,
    /// The device's result (any JSON).
    #[serde(default)]
    pub payload: Value,
}

/// One call waiting for its answer.
#[derive(Debug)]
struct Call {
    message: Outgoing,
    /// The device acknowledged the request (PUBACK): it is not sent again.
    sent: bool,
    reply: oneshot::Sender<MethodReply>,
}

/// Every call in flight, by device and request id.
#[derive(Debug, Default)]
pub struct Methods {
    calls: Mutex<HashMap<String, HashMap<String, Call>>>,
}

/// Checks a method name: 1 to [`MAX_METHOD_NAME`] bytes, one topic level (no `/`, `+`, `#`, no
/// control characters), not `res` (the response subtree).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_METHOD_NAME {
        return Err(format!("method name must be 1 to {MAX_METHOD_NAME} bytes"));
    }
    if name.contains(['/', '+', '#']) || name.chars().any(char::is_control) || name == "res" {
        return Err(format!(
            "method name {name:?} must not contain '/', '+', '#' or control characters, nor be 'res'"
        ));
    }
    Ok(())
}

/// The request id of a response topic `devices/{device}/methods/res/{rid}`.
pub fn response_rid<'t>(device: &str, topic: &'t str) -> Option<&'t str> {
    topic
        .strip_prefix("devices/")?
        .strip_prefix(device)?
        .strip_prefix("/methods/res/")
        .filter(|rid| !rid.is_empty() && !rid.contains('/'))
}

fn new_rid() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Methods {
    /// Registers a call of `name` on `device` with `body`, due within `timeout`; returns its
    /// request id and where its answer arrives.
    pub fn start(
        &self,
        device: &str,
        name: &str,
        body: &Value,
        timeout: Duration,
    ) -> (String, oneshot::Receiver<MethodReply>) {
        let rid = new_rid();
        let timeout_ns = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
        let message = Outgoing {
            key: format!("method:{rid}"),
            topic: format!("devices/{device}/methods/{name}/{rid}"),
            payload: body.to_string().into_bytes(),
            expires_ns: Some(strata_ingest::line_protocol::now_nanos().saturating_add(timeout_ns)),
        };
        let (tx, rx) = oneshot::channel();
        let call = Call {
            message,
            sent: false,
            reply: tx,
        };
        lock(&self.calls)
            .entry(device.to_owned())
            .or_default()
            .insert(rid.clone(), call);
        (rid, rx)
    }

    /// The requests `device` has not acknowledged yet.
    pub fn due(&self, device: &str) -> Vec<Outgoing> {
        lock(&self.calls)
            .get(device)
            .map(|calls| {
                calls
                    .values()
                    .filter(|c| !c.sent)
                    .map(|c| c.message.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The device acknowledged the request with key `key` (`method:{rid}`).
    pub fn sent(&self, device: &str, key: &str) {
        let Some(rid) = key.strip_prefix("method:") else {
            return;
        };
        if let Some(call) = lock(&self.calls)
            .get_mut(device)
            .and_then(|calls| calls.get_mut(rid))
        {
            call.sent = true;
        }
    }

    /// Hands the device's answer to the waiting call; false when no call of `device` has this
    /// request id (answered already, timed out, or never made).
    pub fn respond(&self, device: &str, rid: &str, reply: MethodReply) -> bool {
        match self.take(device, rid) {
            Some(call) => call.reply.send(reply).is_ok(),
            None => false,
        }
    }

    /// Forgets a call (timed out, or its caller went away).
    pub fn forget(&self, device: &str, rid: &str) {
        self.take(device, rid);
    }

    fn take(&self, device: &str, rid: &str) -> Option<Call> {
        let mut calls = lock(&self.calls);
        let of_device = calls.get_mut(device)?;
        let call = of_device.remove(rid);
        if of_device.is_empty() {
            calls.remove(device);
        }
        call
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_is_sent_until_acknowledged_and_answered_once() {
        let m = Methods::default();
        let (rid, mut rx) = m.start("d1", "reboot", &json!({"delay": 1}), Duration::from_secs(5));
        assert_eq!(rid.len(), 32);
        let due = m.due("d1");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].topic, format!("devices/d1/methods/reboot/{rid}"));
        assert!(m.due("d2").is_empty());
        m.sent("d1", &due[0].key);
        assert!(m.due("d1").is_empty());
        let reply = MethodReply {
            status: 200,
            payload: json!("ok"),
        };
        assert!(
            !m.respond("d2", &rid, reply.clone()),
            "another device's call"
        );
        assert!(m.respond("d1", &rid, reply.clone()));
        assert_eq!(rx.try_recv().unwrap(), reply);
        assert!(!m.respond("d1", &rid, reply), "answered once");
    }

    #[test]
    fn names_and_topics() {
        assert!(check_name("reboot").is_ok());
        for bad in ["", "a/b", "res", "a+", "#", "x\n"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(response_rid("d1", "devices/d1/methods/res/ab"), Some("ab"));
        assert_eq!(response_rid("d1", "devices/d2/methods/res/ab"), None);
        assert_eq!(response_rid("d1", "devices/d1/methods/res/"), None);
        assert_eq!(response_rid("d1", "devices/d1/methods/x/ab"), None);
    }
}
