//! The one write pipeline every transport shares: decode (the wire formats of this crate) →
//! **confine** (a device writes only its own rows, only into the device database; an API token
//! only the streams it is limited to; an endpoint only its stream) → **validate** against the
//! model of each device whose rows the batch holds → **engine write** (`Engine::write`, group
//! commit) → acknowledge. HTTP (`/api/v1/write`, `/write`, `/api/v2/write`, the device telemetry
//! endpoint), Flight `DoPut` and ADBC ingest call [`Pipeline::write`]; the MQTT endpoint and the
//! broker bridge call [`Admission::admit`] and then merge many messages into one engine write.
//!
//! What the registry knows (which streams a token may write, each device's model) comes in
//! through traits the server implements: [`StreamAccess`] and [`SchemaSource`].

use std::sync::Arc;

use strata_storage::{Engine, SeriesKey, StorageError, TableWrite, WriteBatch, WriteReceipt};

use crate::validate::{self, Outcome, SchemaSource, Violation};

/// What an API token may write (the server implements it with the token's stream limits).
pub trait StreamAccess: Send + Sync {
    /// `Err` with a message naming the caller when it may not write `stream` of `database`.
    fn check(&self, database: &str, stream: &str) -> Result<(), String>;
}

/// Who sends a batch, and what the endpoint confines it to.
#[derive(Clone, Copy, Default)]
pub struct Writer<'a> {
    /// Every row is forced to this device; a row naming another device is refused.
    pub device: Option<&'a str>,
    /// The authenticated identity is `device` itself (device key or certificate): the batch must
    /// go to the device database.
    pub device_credentials: bool,
    /// The limits of an API token, if the caller is one.
    pub access: Option<&'a dyn StreamAccess>,
    /// The only stream this endpoint writes, if it has one.
    pub stream: Option<&'a str>,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("device", &self.device)
            .field("device_credentials", &self.device_credentials)
            .field("access", &self.access.is_some())
            .field("stream", &self.stream)
            .finish()
    }
}

impl<'a> Writer<'a> {
    /// An authenticated device: its own rows, in the device database.
    pub fn device(id: &'a str) -> Self {
        Writer {
            device: Some(id),
            device_credentials: true,
            ..Writer::default()
        }
    }

    /// A client (API token) within `access`.
    pub fn client(access: &'a dyn StreamAccess) -> Self {
        Writer {
            access: Some(access),
            ..Writer::default()
        }
    }

    /// A trusted source that writes for `device` (the broker bridge: the topic names it).
    pub fn for_device(id: &'a str) -> Self {
        Writer {
            device: Some(id),
            ..Writer::default()
        }
    }

    /// The same writer, with every row forced to `device` (a token writing on a device's behalf).
    pub fn on_behalf_of(mut self, device: &'a str) -> Self {
        self.device = Some(device);
        self
    }

    /// The same writer, confined to `stream`.
    pub fn only_stream(mut self, stream: &'a str) -> Self {
        self.stream = Some(stream);
        self
    }
}

/// Why the pipeline refused or failed a batch.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A device's batch names another device.
    #[error(
        "device '{device}' may only write its own telemetry, but the payload names device '{other}'"
    )]
    ForeignDevice {
        /// The writing device.
        device: String,
        /// The device the payload names.
        other: String,
    },
    /// A device writes outside the device database.
    #[error(
        "device '{device}' may only write to database '{allowed}' (the device database), not '{requested}'"
    )]
    Database {
        /// The writing device.
        device: String,
        /// The device database.
        allowed: String,
        /// The database of the write.
        requested: String,
    },
    /// A token writes outside its limits (the message names it).
    #[error("{0}")]
    Access(String),
    /// The payload names a stream other than the endpoint's.
    #[error(
        "this endpoint writes stream '{expected}', but the payload names measurement '{found}'"
    )]
    WrongStream {
        /// The endpoint's stream.
        expected: String,
        /// The stream the payload names.
        found: String,
    },
    /// The batch violates a device model whose policy is `reject`.
    #[error(transparent)]
    Validation(#[from] Violation),
    /// The engine refused or failed the write.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PipelineError {
    /// True when the caller's credentials do not allow the write (HTTP 403, MQTT refusal).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            PipelineError::ForeignDevice { .. }
                | PipelineError::Database { .. }
                | PipelineError::Access(_)
        )
    }
}

/// The checks before the engine write: confinement and model validation.
#[derive(Clone)]
pub struct Admission {
    device_database: String,
    schemas: Option<Arc<dyn SchemaSource>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("device_database", &self.device_database)
            .field("schemas", &self.schemas.is_some())
            .finish()
    }
}

impl Admission {
    /// Devices write only into `device_database`; rows are validated against the models
    /// `schemas` names (`None`: no validation).
    pub fn new(device_database: impl Into<String>, schemas: Option<Arc<dyn SchemaSource>>) -> Self {
        Admission {
            device_database: device_database.into(),
            schemas,
        }
    }

    /// The database device credentials write into.
    pub fn device_database(&self) -> &str {
        &self.device_database
    }

    /// Confines `batch` to what `writer` may write (rows forced to its device) and validates it
    /// against the devices' models: `Ok` with the number of flagged rows, or why it is refused.
    /// Nothing of a refused batch may be written.
    pub fn admit(
        &self,
        batch: &mut WriteBatch,
        writer: &Writer<'_>,
    ) -> Result<Outcome, PipelineError> {
        self.confine(batch, writer)?;
        match &self.schemas {
            Some(source) => Ok(validate::apply_by_device(source.as_ref(), batch)?),
            None => Ok(Outcome::default()),
        }
    }

    fn confine(&self, batch: &mut WriteBatch, writer: &Writer<'_>) -> Result<(), PipelineError> {
        if writer.device_credentials && batch.database != self.device_database {
            return Err(PipelineError::Database {
                device: writer.device.unwrap_or_default().to_owned(),
                allowed: self.device_database.clone(),
                requested: batch.database.clone(),
            });
        }
        for table in &mut batch.tables {
            if let Some(stream) = writer.stream.filter(|s| *s != table.stream) {
                return Err(PipelineError::WrongStream {
                    expected: stream.to_owned(),
                    found: table.stream.clone(),
                });
            }
            if let Some(access) = writer.access {
                access
                    .check(&batch.database, &table.stream)
                    .map_err(PipelineError::Access)?;
            }
            if let Some(device) = writer.device {
                force_device(table, device)?;
            }
        }
        Ok(())
    }
}

/// Sets every series of `table` to `device`: series without a device get it, series naming
/// another device are refused; series that become equal are merged.
pub fn force_device(table: &mut TableWrite, device: &str) -> Result<(), PipelineError> {
    if let Some(other) = table
        .series
        .iter()
        .find(|k| !k.device.is_empty() && k.device != device)
    {
        return Err(PipelineError::ForeignDevice {
            device: device.to_owned(),
            other: other.device.clone(),
        });
    }
    if table.series.iter().all(|k| k.device == device) {
        return Ok(());
    }
    let mut index: foldhash::HashMap<SeriesKey, u32> = foldhash::HashMap::default();
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

/// An accepted batch: the engine's receipt and the rows flagged by validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// What the engine reported (default when the batch had no rows).
    pub receipt: WriteReceipt,
    /// Rows marked with the validation flag field.
    pub flagged_rows: usize,
}

/// [`Admission`] followed by the engine write: the whole pipeline after decoding.
#[derive(Debug, Clone)]
pub struct Pipeline {
    engine: Arc<Engine>,
    admission: Admission,
}

impl Pipeline {
    /// A pipeline writing to `engine` after `admission`.
    pub fn new(engine: Arc<Engine>, admission: Admission) -> Self {
        Pipeline { engine, admission }
    }

    /// The checks before the engine write.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The engine written to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Confines, validates and durably writes `batch` (blocking: call it off the async runtime).
    /// Returns once the rows are durable under the engine's durability mode.
    pub fn write(
        &self,
        mut batch: WriteBatch,
        writer: &Writer<'_>,
    ) -> Result<Written, PipelineError> {
        let outcome = self.admission.admit(&mut batch, writer)?;
        let receipt = if batch.rows() == 0 {
            WriteReceipt::default()
        } else {
            self.engine.write(&batch)?
        };
        Ok(Written {
            receipt,
            flagged_rows: outcome.flagged_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::{ParseOptions, parse};
    use crate::validate::{FieldKind, FieldRule, Policy, Schema};

    fn batch(db: &str, body: &str) -> WriteBatch {
        parse(body.as_bytes(), db, &ParseOptions::default()).unwrap()
    }

    #[derive(Debug)]
    struct Models;

    impl SchemaSource for Models {
        fn schema(&self, device: &str) -> Option<Arc<Schema>> {
            let policy = match device {
                "strict" => Policy::Reject,
                "lenient" => Policy::Flag,
                _ => return None,
            };
            let rule = FieldRule {
                name: "t".into(),
                kind: FieldKind::Float,
                min: None,
                max: Some(10.0),
                required: true,
            };
            Some(Arc::new(Schema::new("m", policy, vec![rule])))
        }
    }

    struct OnlyStream(&'static str);

    impl StreamAccess for OnlyStream {
        fn check(&self, database: &str, stream: &str) -> Result<(), String> {
            (stream == self.0)
                .then_some(())
                .ok_or_else(|| format!("token limited: not {database}/{stream}"))
        }
    }

    fn admission() -> Admission {
        Admission::new("iot", Some(Arc::new(Models)))
    }

    #[test]
    fn devices_are_confined_to_their_rows_and_database() {
        let a = admission();
        let mut b = batch("iot", "m,site=a t=1 1\nm,device=d1,site=a t=2 2\nm t=3 3\n");
        a.admit(&mut b, &Writer::device("d1")).unwrap();
        let t = &b.tables[0];
        assert!(t.series.iter().all(|k| k.device == "d1"));
        assert_eq!(t.series.len(), 2, "{:?}", t.series);
        assert_eq!(
            t.series[t.row_series[0] as usize],
            t.series[t.row_series[1] as usize]
        );

        let e = a
            .admit(
                &mut batch("iot", "m,device=d2 t=1 1\n"),
                &Writer::device("d1"),
            )
            .unwrap_err();
        assert!(e.is_forbidden());
        assert!(
            e.to_string().contains("own telemetry") && e.to_string().contains("d2"),
            "{e}"
        );
        let e = a
            .admit(&mut batch("other", "m t=1 1\n"), &Writer::device("d1"))
            .unwrap_err();
        assert!(e.is_forbidden());
        assert!(
            e.to_string().contains("'iot'") && e.to_string().contains("'other'"),
            "{e}"
        );
        // The bridge and tokens writing on a device's behalf are not held to the device database.
        a.admit(&mut batch("other", "m t=1 1\n"), &Writer::for_device("d1"))
            .unwrap();
    }

    #[test]
    fn streams_and_token_limits() {
        let a = admission();
        let w = Writer::device("d1").only_stream("temp");
        assert!(a.admit(&mut batch("iot", "temp t=1 1\n"), &w).is_ok());
        let e = a.admit(&mut batch("iot", "hum t=1 1\n"), &w).unwrap_err();
        assert!(matches!(e, PipelineError::WrongStream { .. }), "{e}");
        assert!(!e.is_forbidden());
        let token = OnlyStream("temp");
        let w = Writer::client(&token);
        assert!(
            a.admit(&mut batch("any", "temp,device=x t=1 1\n"), &w)
                .is_ok()
        );
        let e = a.admit(&mut batch("any", "hum t=1 1\n"), &w).unwrap_err();
        assert!(
            e.is_forbidden() && e.to_string().contains("token limited"),
            "{e}"
        );
    }

    #[test]
    fn every_device_of_a_batch_is_validated_against_its_model() {
        let a = admission();
        let token = OnlyStream("m");
        let w = Writer::client(&token);
        let mut ok = batch("db", "m,device=strict t=1 1\nm,device=free x=1 2\n");
        assert_eq!(a.admit(&mut ok, &w).unwrap().flagged_rows, 0);
        let mut bad = batch("db", "m,device=free t=99 1\nm,device=strict t=99 2\n");
        let e = a.admit(&mut bad, &w).unwrap_err();
        assert!(
            matches!(e, PipelineError::Validation(ref v) if v.row == 1),
            "{e}"
        );
        let mut flag = batch(
            "db",
            "m,device=lenient t=99 1\nm,device=free t=99,_invalid=\"own\" 2\nm,device=lenient t=1 3\n",
        );
        assert_eq!(a.admit(&mut flag, &w).unwrap().flagged_rows, 1);
        let t = &flag.tables[0];
        let col = t
            .columns
            .iter()
            .find(|c| c.name == validate::FLAG_FIELD)
            .unwrap();
        assert_eq!(col.valid, vec![true, true, false]);
        assert_eq!(
            col.get(1),
            Some(strata_storage::Value::String("own".into()))
        );
    }
}
