//! The device plane's hook into the MQTT endpoint ([`DeviceChannel`]): messages the server
//! delivers to devices at QoS 1 (cloud-to-device commands, twin documents, method requests), what
//! devices publish on control topics (command acknowledgements, reported twin patches, method
//! responses), and the subscriptions of persistent sessions. The
//! server implements it over the registry; this crate only moves bytes, so it knows nothing of
//! commands or their states.
//!
//! Every method may block (disk I/O); sessions call them on the blocking pool.

/// A message the server owes a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Identifies the message to [`DeviceChannel::delivered`] (e.g. the command id).
    pub key: String,
    /// Topic it is published on.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Nanoseconds since the epoch after which it must not be sent.
    pub expires_ns: Option<i64>,
}

/// Why a control message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The message is wrong (unknown command, bad JSON, late acknowledgement): it is
    /// acknowledged (PUBACK) so the device does not resend it, logged and counted, and the
    /// session goes on.
    #[error("{0}")]
    Refused(String),
    /// It could not be stored now: no PUBACK, the connection closes (the device resends it).
    #[error("{0}")]
    Unavailable(String),
}

/// The device plane as the MQTT endpoint sees it.
pub trait DeviceChannel: std::fmt::Debug + Send + Sync + 'static {
    /// A connection of `device` was authenticated and its session is about to start (state
    /// kept per connection, such as what the device was already sent, starts over).
    fn session_opened(&self, _device: &str) {}

    /// Messages due to `device` now, oldest first, for a session holding `subscriptions`. Called
    /// when its session subscribes, when the server is told something is waiting
    /// ([`MqttServer::notify`](super::MqttServer::notify)), and when a persistent session
    /// resumes. A previous connection's unacknowledged delivery whose key is not returned is
    /// forgotten.
    fn pending(&self, device: &str, subscriptions: &[String]) -> Vec<Outgoing>;

    /// The device acknowledged (PUBACK) the message `key`.
    fn delivered(&self, device: &str, key: &str);

    /// Whether `topic` (already known to be below `devices/{device}/`) is a control topic this
    /// channel takes publishes on.
    fn accepts(&self, device: &str, topic: &str) -> bool;

    /// A publish of `device` on a control topic; a QoS 1 PUBACK leaves only after `Ok`.
    fn inbound(&self, device: &str, topic: &str, payload: &[u8]) -> Result<(), InboundError>;

    /// The subscriptions of `device`'s persistent session, if one is stored.
    fn load_session(&self, device: &str) -> Option<Vec<String>>;

    /// Stores (`Some`) or forgets (`None`) the subscriptions of `device`'s persistent session.
    fn save_session(&self, device: &str, subscriptions: Option<&[String]>);
}

/// Whether MQTT topic filter `filter` matches `topic` (`+` one level, `#` the rest).
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter_matches;

    #[test]
    fn filters() {
        let t = "devices/d1/commands/00ab";
        for ok in [
            "devices/d1/commands/#",
            "devices/d1/#",
            "devices/+/commands/+",
            "#",
            t,
        ] {
            assert!(filter_matches(ok, t), "{ok}");
        }
        for bad in [
            "devices/d1/commands",
            "devices/d2/commands/#",
            "devices/d1/commands/+/x",
            "devices/d1/commands/00a",
        ] {
            assert!(!filter_matches(bad, t), "{bad}");
        }
        assert!(filter_matches(
            "devices/d1/commands/#",
            "devices/d1/commands"
        ));
    }
}
