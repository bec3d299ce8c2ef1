//! Decoding of a PUBLISH payload into a [`WriteBatch`]: JSON when the first non-whitespace byte
//! is `{` or `[`, line protocol otherwise. Forcing the rows to the publishing device (and refusing
//! a payload that names another) is the pipeline's confinement step (`crate::pipeline`).

use strata_storage::WriteBatch;

use crate::json::{self, IntegerMode, JsonOptions};
use crate::line_protocol::{self, ParseOptions, Precision};

/// How payloads are decoded.
#[derive(Debug, Clone)]
pub(crate) struct PayloadOptions {
    pub(crate) database: String,
    pub(crate) json_epoch_unit: Precision,
    pub(crate) json_integers: IntegerMode,
    pub(crate) lp_precision: Precision,
    pub(crate) device_tags: Vec<String>,
}

/// True when the payload is JSON (first non-whitespace byte `{` or `[`).
pub fn is_json(payload: &[u8]) -> bool {
    payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[')
}

/// Decodes one message for `stream` (the topic's stream or the default) with
/// `now` (ns) as the time of rows that carry none.
pub(crate) fn decode(
    payload: &[u8],
    stream: &str,
    opts: &PayloadOptions,
    now: i64,
) -> Result<WriteBatch, String> {
    if is_json(payload) {
        let json_opts = JsonOptions {
            epoch_unit: opts.json_epoch_unit,
            integers: opts.json_integers,
            default_time: now,
        };
        // Records may name a device; the pipeline forces rows to the publisher and refuses
        // records naming another one.
        return json::parse(payload, &opts.database, stream, None, &json_opts)
            .map_err(|e| format!("invalid JSON telemetry: {e}"));
    }
    let lp_opts = ParseOptions {
        precision: opts.lp_precision,
        device_tags: opts.device_tags.clone(),
        default_time: now,
    };
    line_protocol::parse(payload, &opts.database, &lp_opts)
        .map_err(|e| format!("invalid line protocol: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PayloadOptions {
        PayloadOptions {
            database: "db".into(),
            json_epoch_unit: Precision::Milliseconds,
            json_integers: IntegerMode::Float,
            lp_precision: Precision::Nanoseconds,
            device_tags: vec!["device".into()],
        }
    }

    #[test]
    fn detects_json_and_decodes_both() {
        assert!(is_json(b"  \n{\"a\":1}"));
        assert!(is_json(b"[]"));
        assert!(!is_json(b"m v=1"));
        assert!(!is_json(b""));
        let b = decode(br#"{"ts": 5, "t": 1}"#, "env", &opts(), 0).unwrap();
        assert_eq!(b.tables[0].stream, "env");
        assert_eq!(b.tables[0].series[0].device, "");
        assert_eq!(b.tables[0].times, vec![5_000_000]);
        let b = decode(
            b"m,device=d1 v=1 1\nm v=2 2\nm,x=1 v=3 3",
            "env",
            &opts(),
            0,
        )
        .unwrap();
        let t = &b.tables[0];
        assert_eq!(t.stream, "m");
        assert_eq!(t.series.len(), 3, "confinement is the pipeline's step");
        let b = decode(br#"{"device": "d2", "v": 1}"#, "env", &opts(), 0).unwrap();
        assert_eq!(
            b.tables[0].series[0].device, "d2",
            "the pipeline refuses it"
        );
        assert!(decode(b"{", "env", &opts(), 0).is_err());
    }

    /// Issue 14, defect 7: line protocol over MQTT honours the configured device tags
    /// (`--device-tag`) like HTTP does.
    #[test]
    fn line_protocol_uses_the_configured_device_tags() {
        let vin = PayloadOptions {
            device_tags: vec!["vin".into()],
            ..opts()
        };
        let b = decode(b"m,vin=d1,x=1 v=1 1", "env", &vin, 0).unwrap();
        let key = &b.tables[0].series[0];
        assert_eq!(key.device, "d1");
        assert_eq!(key.tags, vec![("x".to_string(), "1".to_string())]);
        // The named device is kept, so the pipeline's confinement refuses another device's row.
        let other = decode(b"m,vin=d2 v=1 1", "env", &vin, 0).unwrap();
        assert_eq!(other.tables[0].series[0].device, "d2");
    }
}
