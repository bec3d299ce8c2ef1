//! Open prepared statements of the Flight SQL server: the SQL text, the principal that created
//! the statement (only it may use or close the handle), and the parameter values last bound with
//! `DoPut`. Handles are opaque strings; at most [`MAX_PER_OWNER`] statements holding at most
//! [`MAX_BYTES_PER_OWNER`] of SQL text and bound values may be open per principal, so a client
//! that never closes its statements cannot exhaust memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_query::arrow::array::RecordBatch;
use strata_query::datafusion::scalar::ScalarValue;
use tonic::Status;

/// Most prepared statements one principal may hold open at once.
pub const MAX_PER_OWNER: usize = 256;

/// Most bytes of SQL text and bound parameter values one principal's open statements may hold.
pub const MAX_BYTES_PER_OWNER: usize = 16 << 20;

/// One open prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The SQL text as the client sent it.
    pub sql: String,
    /// The audit actor of the principal that created it (`token:<id>`).
    pub owner: String,
    /// Values for `$1`, `$2`, ... (or `?` in order) from the last bind; empty when none.
    pub params: Vec<ScalarValue>,
}

/// The open prepared statements, by handle.
#[derive(Debug, Default)]
pub struct Statements {
    open: Mutex<HashMap<String, Prepared>>,
    next: AtomicU64,
    seed: RandomState,
}

impl Statements {
    /// Registers a statement for `owner` and returns its handle.
    pub fn create(&self, owner: &str, sql: &str) -> Result<String, Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.values().filter(|p| p.owner == owner).count();
        if held >= MAX_PER_OWNER {
            return Err(Status::resource_exhausted(format!(
                "too many open prepared statements ({MAX_PER_OWNER}): close some first"
            )));
        }
        check_bytes(&open, owner, None, sql.len())?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let handle = format!("ps-{n}-{:016x}", self.seed.hash_one(n));
        open.insert(
            handle.clone(),
            Prepared {
                sql: sql.to_owned(),
                owner: owner.to_owned(),
                params: Vec::new(),
            },
        );
        Ok(handle)
    }

    /// The statement behind `handle`, if `owner` created it.
    pub fn get(&self, handle: &[u8], owner: &str) -> Result<Prepared, Status> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        lookup(&open, handle, owner).cloned()
    }

    /// Replaces the bound parameter values of `handle`.
    pub fn bind(&self, handle: &[u8], owner: &str, params: Vec<ScalarValue>) -> Result<(), Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let sql_len = lookup(&open, handle, owner)?.sql.len();
        let added = sql_len.saturating_add(params_size(&params));
        check_bytes(&open, owner, Some(key(handle)?), added)?;
        if let Some(p) = open.get_mut(key(handle)?) {
            p.params = params;
        }
        Ok(())
    }

    /// Closes `handle`.
    pub fn close(&self, handle: &[u8], owner: &str) -> Result<(), Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        lookup(&open, handle, owner)?;
        open.remove(key(handle)?);
        Ok(())
    }
}

/// Bytes a statement holds: its SQL text and its bound values.
fn held_bytes(p: &Prepared) -> usize {
    p.sql.len().saturating_add(params_size(&p.params))
}

fn params_size(params: &[ScalarValue]) -> usize {
    params.iter().map(ScalarValue::size).sum()
}

/// Refuses `added` more bytes for `owner` (replacing statement `replacing`, if any) past
/// [`MAX_BYTES_PER_OWNER`].
fn check_bytes(
    open: &HashMap<String, Prepared>,
    owner: &str,
    replacing: Option<&str>,
    added: usize,
) -> Result<(), Status> {
    let held: usize = open
        .iter()
        .filter(|(h, p)| p.owner == owner && Some(h.as_str()) != replacing)
        .map(|(_, p)| held_bytes(p))
        .sum();
    if held.saturating_add(added) > MAX_BYTES_PER_OWNER {
        return Err(Status::resource_exhausted(format!(
            "open prepared statements would hold more than {} MiB of SQL text and parameter \
             values: close some, or bind smaller values",
            MAX_BYTES_PER_OWNER >> 20
        )));
    }
    Ok(())
}

fn key(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle)
        .map_err(|_| Status::invalid_argument("the prepared statement handle is not valid UTF-8"))
}

fn lookup<'a>(
    open: &'a HashMap<String, Prepared>,
    handle: &[u8],
    owner: &str,
) -> Result<&'a Prepared, Status> {
    let unknown = || {
        Status::not_found("unknown prepared statement handle (closed, or created by another token)")
    };
    let p = open.get(key(handle)?).ok_or_else(unknown)?;
    if p.owner != owner {
        return Err(unknown());
    }
    Ok(p)
}

/// The parameter values of a bind: the single row of `batches` (columns in placeholder order).
/// No batch, or batches with no columns, bind nothing; more than one row is refused.
pub fn params_from_batches(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>, Status> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "bind exactly one row of parameters per execution (got {rows} rows)"
        )));
    }
    batch
        .columns()
        .iter()
        .map(|col| {
            ScalarValue::try_from_array(col, 0)
                .map_err(|e| Status::invalid_argument(format!("unsupported parameter value: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_query::arrow::array::{Float64Array, StringArray};

    #[test]
    fn handles_belong_to_their_owner() {
        let s = Statements::default();
        let h = s.create("token:a", "SELECT 1").unwrap();
        assert_eq!(s.get(h.as_bytes(), "token:a").unwrap().sql, "SELECT 1");
        assert_eq!(
            s.get(h.as_bytes(), "token:b").unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert!(s.close(h.as_bytes(), "token:b").is_err());
        s.bind(h.as_bytes(), "token:a", vec![ScalarValue::Int64(Some(3))])
            .unwrap();
        assert_eq!(s.get(h.as_bytes(), "token:a").unwrap().params.len(), 1);
        s.close(h.as_bytes(), "token:a").unwrap();
        assert!(s.get(h.as_bytes(), "token:a").is_err());
        let h2 = s.create("token:a", "SELECT 2").unwrap();
        assert_ne!(h, h2);
    }

    #[test]
    fn the_bytes_of_open_statements_are_limited_per_owner() {
        let s = Statements::default();
        let big = format!("SELECT '{}'", "x".repeat(MAX_BYTES_PER_OWNER / 2));
        let h = s.create("token:a", &big).unwrap();
        let e = s.create("token:a", &big).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("MiB"), "{}", e.message());
        assert!(s.create("token:b", &big).is_ok(), "another owner's budget");
        let value = ScalarValue::Utf8(Some("y".repeat(MAX_BYTES_PER_OWNER / 2)));
        let e = s.bind(h.as_bytes(), "token:a", vec![value]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        let small = ScalarValue::Utf8(Some("y".into()));
        s.bind(h.as_bytes(), "token:a", vec![small.clone()])
            .unwrap();
        s.bind(h.as_bytes(), "token:a", vec![small]).unwrap();
        s.close(h.as_bytes(), "token:a").unwrap();
        assert!(
            s.create("token:a", &big).is_ok(),
            "closing gave the bytes back"
        );
    }

    #[test]
    fn open_statements_are_limited_per_owner() {
        let s = Statements::default();
        for _ in 0..MAX_PER_OWNER {
            s.create("token:a", "SELECT 1").unwrap();
        }
        let e = s.create("token:a", "SELECT 1").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(s.create("token:b", "SELECT 1").is_ok());
    }

    #[test]
    fn one_parameter_row() {
        let batch = RecordBatch::try_from_iter([
            ("0", Arc::new(StringArray::from(vec!["t1"])) as _),
            ("1", Arc::new(Float64Array::from(vec![2.5])) as _),
        ])
        .unwrap();
        let p = params_from_batches(std::slice::from_ref(&batch)).unwrap();
        assert_eq!(
            p,
            vec![
                ScalarValue::Utf8(Some("t1".into())),
                ScalarValue::Float64(Some(2.5))
            ]
        );
        assert!(params_from_batches(&[]).unwrap().is_empty());
        let e = params_from_batches(&[batch.clone(), batch]).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}
