//! The device topic tree: which PUBLISH topics carry telemetry (and for which stream), and which
//! SUBSCRIBE filters a device may use.
//!
//! ```text
//! devices/{id}/telemetry            telemetry for the default stream
//! devices/{id}/telemetry/{stream}   telemetry for {stream}
//! devices/{id}/commands/#           subscriptions allowed: commands,
//! devices/{id}/twin/desired          the twin's desired document and patches,
//! devices/{id}/methods/#             direct method requests (and filters below these)
//! ```

use crate::line_protocol::MAX_NAME_LEN;

/// Why a PUBLISH topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic belongs to another device.
    #[error("topic {topic:?} belongs to device {owner:?}, not to the connected device")]
    OtherDevice {
        /// The topic.
        topic: String,
        /// The device it names.
        owner: String,
    },
    /// The topic is not a telemetry topic.
    #[error(
        "topic {0:?} is not a telemetry topic: expected devices/{{id}}/telemetry or \
         devices/{{id}}/telemetry/{{stream}}"
    )]
    NotTelemetry(String),
}

/// The stream named by a telemetry topic of `device`: `Ok(None)` for `devices/{id}/telemetry`
/// (the default stream), `Ok(Some(stream))` for `devices/{id}/telemetry/{stream}`.
pub fn telemetry_stream<'t>(topic: &'t str, device: &str) -> Result<Option<&'t str>, TopicError> {
    let not_telemetry = || TopicError::NotTelemetry(topic.to_owned());
    let rest = topic.strip_prefix("devices/").ok_or_else(not_telemetry)?;
    let (owner, rest) = rest.split_once('/').ok_or_else(not_telemetry)?;
    let stream = match rest {
        "telemetry" => None,
        _ => {
            let stream = rest.strip_prefix("telemetry/").ok_or_else(not_telemetry)?;
            if !is_stream_level(stream) {
                return Err(not_telemetry());
            }
            Some(stream)
        }
    };
    if topic.contains(['+', '#']) || owner.is_empty() {
        return Err(not_telemetry());
    }
    if owner != device {
        return Err(TopicError::OtherDevice {
            topic: topic.to_owned(),
            owner: owner.to_owned(),
        });
    }
    Ok(stream)
}

/// Whether `topic` is a concrete topic (no wildcards) below `devices/{device}/`.
pub fn below_device(topic: &str, device: &str) -> bool {
    topic
        .strip_prefix("devices/")
        .and_then(|r| r.strip_prefix(device))
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|rest| !rest.is_empty() && !topic.contains(['+', '#']))
}

/// One topic level usable as a stream name.
fn is_stream_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && !s.contains('/')
        && !s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The subtrees of `devices/{device}/` a device may subscribe to.
const SUBSCRIBABLE: [&str; 3] = ["/commands", "/twin", "/methods"];

/// True when `filter` is a valid filter inside `devices/{device}/commands`,
/// `devices/{device}/twin` or `devices/{device}/methods` (that topic itself, `.../#`, or any
/// filter below it).
pub fn subscription_allowed(filter: &str, device: &str) -> bool {
    let Some(tail) = filter
        .strip_prefix("devices/")
        .and_then(|r| r.strip_prefix(device))
    else {
        return false;
    };
    let Some(rest) = SUBSCRIBABLE.iter().find_map(|root| tail.strip_prefix(root)) else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(below) = rest.strip_prefix('/') else {
        return false;
    };
    valid_filter_levels(below)
}

/// MQTT filter syntax: `+` alone in a level, `#` alone in the last level.
fn valid_filter_levels(levels: &str) -> bool {
    let parts: Vec<&str> = levels.split('/').collect();
    parts.iter().enumerate().all(|(i, level)| match *level {
        "#" => i + 1 == parts.len(),
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_topics() {
        assert_eq!(telemetry_stream("devices/d1/telemetry", "d1"), Ok(None));
        assert_eq!(
            telemetry_stream("devices/d1/telemetry/env", "d1"),
            Ok(Some("env"))
        );
        assert!(matches!(
            telemetry_stream("devices/d2/telemetry", "d1"),
            Err(TopicError::OtherDevice { .. })
        ));
        for bad in [
            "devices/d1/telemetry/",
            "devices/d1/telemetry/a/b",
            "devices/d1/telemetryx",
            "devices/d1/telemetry/+",
            "devices/d1",
            "devices//telemetry",
            "telemetry",
            "/devices/d1/telemetry",
            "",
        ] {
            assert!(
                matches!(
                    telemetry_stream(bad, "d1"),
                    Err(TopicError::NotTelemetry(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn subscriptions() {
        for ok in [
            "devices/d1/commands/#",
            "devices/d1/commands",
            "devices/d1/commands/reboot",
            "devices/d1/commands/+/x",
            "devices/d1/twin/desired",
            "devices/d1/twin/#",
            "devices/d1/methods/#",
            "devices/d1/methods/+/+",
        ] {
            assert!(subscription_allowed(ok, "d1"), "{ok}");
        }
        for bad in [
            "devices/d2/commands/#",
            "devices/d1/#",
            "#",
            "devices/+/commands/#",
            "devices/d1/commandsx",
            "devices/d1/commands/#/x",
            "devices/d1/commands/a#",
            "devices/d1/telemetry",
            "devices/d1/twinx",
            "devices/d2/twin/desired",
            "devices/d1/methodsx/#",
        ] {
            assert!(!subscription_allowed(bad, "d1"), "{bad}");
        }
    }
}
