//! The text forms every wire format and API shares, in one place: name limits ([`names`]),
//! RFC 3339 timestamps ([`rfc3339`]) and durations ([`duration`]). Line protocol, JSON, MQTT,
//! Arrow ingest, the HTTP API and the command line all use these, so a name, an instant or a
//! duration means the same thing on every path.

pub mod duration;
pub mod names;
pub mod rfc3339;

pub use duration::{DurationError, parse_duration};
pub use names::{
    MAX_DATABASE_LEN, MAX_DEVICE_ID_LEN, MAX_NAME_LEN, MAX_TAG_VALUE_LEN, NameError,
    check_database, check_name, is_device_id,
};
pub use rfc3339::{TimeError, format_rfc3339, parse_rfc3339, parse_timestamp};
