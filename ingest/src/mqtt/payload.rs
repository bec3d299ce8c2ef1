//! Decoding of a PUBLISH payload into a [`WriteBatch`] owned by the publishing device: JSON when
//! the first non-whitespace byte is `{` or `[`, line protocol otherwise. Every row is forced to
//! the authenticated device; a payload naming another device is refused.

use foldhash::HashMap;
use strata_storage::{SeriesKey, TableWrite, WriteBatch};

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

/// Decodes one message of `device` for `stream` (the topic's stream or the default) with
/// `now` (ns) as the time of rows that carry none.
pub(crate) fn decode(
    payload: &[u8],
    device: &str,
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
        return json::parse(payload, &opts.database, stream, Some(device), &json_opts)
            .map_err(|e| format!("invalid JSON telemetry: {e}"));
    }
    let lp_opts = ParseOptions {
        precision: opts.lp_precision,
        device_tags: opts.device_tags.clone(),
        default_time: now,
    };
    let mut batch = line_protocol::parse(payload, &opts.database, &lp_opts)
        .map_err(|e| format!("invalid line protocol: {e}"))?;
    for table in &mut batch.tables {
        force_device(table, device)?;
    }
    Ok(batch)
}

/// Gives every series without a device `device`; refuses a series naming another device.
fn force_device(table: &mut TableWrite, device: &str) -> Result<(), String> {
    if let Some(other) = table
        .series
        .iter()
        .find(|k| !k.device.is_empty() && k.device != device)
    {
        return Err(format!(
            "line protocol for stream {:?} names device {:?}; a device may only write its own \
             data ({device:?})",
            table.stream, other.device
        ));
    }
    if table.series.iter().all(|k| k.device == device) {
        return Ok(());
    }
    // Rows tagged device=<id> and rows without the tag become one series: renumber.
    let mut index: HashMap<SeriesKey, u32> = HashMap::default();
    let mut series = Vec::with_capacity(table.series.len());
    let mut remap = Vec::with_capacity(table.series.len());
    for mut key in std::mem::take(&mut table.series) {
        key.device = device.to_owned();
        let next = u32::try_from(series.len()).unwrap_or(u32::MAX);
        let idx = *index.entry(key.clone()).or_insert_with(|| {
            series.push(key);
            next
        });
        remap.push(idx);
    }
    for s in &mut table.row_series {
        *s = remap.get(*s as usize).copied().unwrap_or(0);
    }
    table.series = series;
    Ok(())
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
    fn detects_and_forces_device() {
        assert!(is_json(b"  \n{\"a\":1}"));
        assert!(is_json(b"[]"));
        assert!(!is_json(b"m v=1"));
        assert!(!is_json(b""));
        let b = decode(br#"{"ts": 5, "t": 1}"#, "d1", "env", &opts(), 0).unwrap();
        assert_eq!(b.tables[0].stream, "env");
        assert_eq!(b.tables[0].series[0].device, "d1");
        assert_eq!(b.tables[0].times, vec![5_000_000]);
        let b = decode(
            b"m,device=d1 v=1 1\nm v=2 2\nm,x=1 v=3 3",
            "d1",
            "env",
            &opts(),
            0,
        )
        .unwrap();
        let t = &b.tables[0];
        assert_eq!(t.stream, "m");
        assert_eq!(t.series.len(), 2);
        assert!(t.series.iter().all(|k| k.device == "d1"));
        assert_eq!(t.row_series, vec![0, 0, 1]);
        assert!(decode(b"m,device=d2 v=1", "d1", "env", &opts(), 0).is_err());
        assert!(decode(br#"{"device": "d2", "v": 1}"#, "d1", "env", &opts(), 0).is_err());
        assert!(decode(b"{", "d1", "env", &opts(), 0).is_err());
    }

    /// Issue 14, defect 7: line protocol over MQTT honours the configured device tags
    /// (`--device-tag`) like HTTP does.
    #[test]
    fn line_protocol_uses_the_configured_device_tags() {
        let vin = PayloadOptions {
            device_tags: vec!["vin".into()],
            ..opts()
        };
        let b = decode(b"m,vin=d1,x=1 v=1 1", "d1", "env", &vin, 0).unwrap();
        let key = &b.tables[0].series[0];
        assert_eq!(key.device, "d1");
        assert_eq!(key.tags, vec![("x".to_string(), "1".to_string())]);
        assert!(decode(b"m,vin=d2 v=1 1", "d1", "env", &vin, 0).is_err());
    }
}
