//! The audit log: every administrative mutation (actor, action, target, time, result) is
//! appended to the `audit` table, in the same transaction as the change when it succeeds.

use redb::{ReadableTable, WriteTransaction};

use crate::error::{RegistryError, Result};
use crate::model::{AuditRecord, Page, PageRequest};
use crate::registry::Registry;
use crate::store::AUDIT;
use crate::sync::{now_ns, page_limit};

/// Longest actor/target stored in the audit log; longer values are truncated.
const MAX_AUDIT_FIELD: usize = 256;

/// Appends one audit record inside `txn`.
pub(crate) fn append(
    txn: &WriteTransaction,
    actor: &str,
    action: &str,
    target: &str,
    outcome: std::result::Result<Option<String>, String>,
) -> Result<()> {
    let mut table = txn.open_table(AUDIT)?;
    append_to(&mut table, actor, action, target, outcome)
}

/// The audit table of a write transaction.
pub(crate) type AuditTable<'t> = redb::Table<'t, u64, &'static [u8]>;

/// [`append`] with the table already open (a batch appends many records to one handle).
pub(crate) fn append_to(
    table: &mut AuditTable<'_>,
    actor: &str,
    action: &str,
    target: &str,
    outcome: std::result::Result<Option<String>, String>,
) -> Result<()> {
    let seq = match table.last()? {
        Some((k, _)) => k.value().saturating_add(1),
        None => 1,
    };
    let (ok, detail) = match outcome {
        Ok(d) => (true, d),
        Err(e) => (false, Some(e)),
    };
    let rec = AuditRecord {
        seq,
        time_ns: now_ns(),
        actor: truncate(actor),
        action: action.to_string(),
        target: truncate(target),
        ok,
        detail,
    };
    let bytes = serde_json::to_vec(&rec)?;
    table.insert(seq, bytes.as_slice())?;
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_AUDIT_FIELD {
        return s.to_string();
    }
    let mut end = MAX_AUDIT_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl Registry {
    /// Runs `f` in one write transaction and audits it: on success the audit record is
    /// committed with the change; on failure the change is rolled back and the failure is
    /// audited in a separate transaction.
    pub(crate) fn audited<T>(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        self.audited_detail(actor, action, target, |txn| f(txn).map(|v| (v, None)))
    }

    /// Like [`Registry::audited`], with a detail string recorded on success.
    pub(crate) fn audited_detail<T>(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<(T, Option<String>)>,
    ) -> Result<T> {
        let txn = self.inner.write_txn()?;
        match f(&txn) {
            Ok((value, detail)) => {
                append(&txn, actor, action, target, Ok(detail))?;
                txn.commit()?;
                Ok(value)
            }
            Err(err) => {
                drop(txn);
                self.audit_failure(actor, action, target, &err);
                Err(err)
            }
        }
    }

    fn audit_failure(&self, actor: &str, action: &str, target: &str, err: &RegistryError) {
        let res = self.inner.write_txn().and_then(|txn| {
            append(&txn, actor, action, target, Err(err.to_string()))?;
            txn.commit()?;
            Ok(())
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, action, "registry: could not audit a failed action");
        }
    }

    /// Records an administrative action done outside the registry (an erase of telemetry, a
    /// backup): `Ok(detail)` when it succeeded, `Err(message)` when it failed.
    pub fn audit_action(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: std::result::Result<Option<String>, String>,
    ) -> Result<()> {
        let txn = self.inner.write_txn()?;
        append(&txn, actor, action, target, outcome)?;
        txn.commit()?;
        Ok(())
    }

    /// Lists audit records in sequence order; `page.after` is a sequence number.
    pub fn list_audit(&self, page: &PageRequest) -> Result<Page<AuditRecord>> {
        let after = match page.after.as_deref() {
            None | Some("") => 0,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| RegistryError::invalid("audit cursor must be a sequence number"))?,
        };
        let limit = page_limit(page.limit);
        let txn = self.inner.read_txn()?;
        let table = txn.open_table(AUDIT)?;
        let mut items = Vec::new();
        let mut more = false;
        let Some(start) = after.checked_add(1) else {
            return Ok(Page {
                items: Vec::new(),
                next_after: None,
            });
        };
        for item in table.range(start..)? {
            let (_, v) = item?;
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(serde_json::from_slice::<AuditRecord>(v.value())?);
        }
        let next_after = if more {
            items.last().map(|r: &AuditRecord| r.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next_after })
    }
}
