//! The rule store, `DATA/rules.redb`: rule definitions, alert instances and the outbox of
//! notifications not yet delivered. An evaluation's alert changes and the notifications they
//! cause are committed in one transaction ([`Store::apply`]), so a crash either loses both or
//! keeps both; the dispatcher deletes an outbox entry only after its delivery succeeded.
//!
//! Tables: `rules` (name → [`RuleSpec`] JSON), `alerts` (`rule` NUL `key JSON` → [`Alert`]),
//! `outbox` (u64 sequence → [`OutboxEntry`]), `meta` (`schema_version`, `next_seq`). Alerts and
//! outbox entries are binary records ([`codec`]; older JSON records are still read).
//!
//! The alert instances are also kept in memory ([`AlertCache`]): read once from the file when
//! it opens, then updated after each commit that changes them (under one writer lock, so the
//! memory follows the commit order). Evaluations read them from memory, never from the file;
//! the file stays the durable copy that a restart reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::alert::{Alert, AlertKey, AlertState};
use crate::codec;
use crate::error::{Result, RulesError};
use crate::outbox::OutboxEntry;
use crate::spec::RuleSpec;

type StrTable = TableDefinition<'static, &'static str, &'static [u8]>;
const RULES: StrTable = TableDefinition::new("rules");
const ALERTS: StrTable = TableDefinition::new("alerts");
const META: StrTable = TableDefinition::new("meta");
const OUTBOX: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("outbox");
/// Version 2: alert and outbox records binary ([`codec`]); version 1 files (JSON records) are
/// read and marked 2 when opened, so that an older build refuses the file instead of failing
/// on its first binary record.
const SCHEMA_VERSION: &[u8] = b"2";
const JSON_SCHEMA_VERSION: &[u8] = b"1";

/// A change to one alert instance.
#[derive(Debug, Clone)]
pub enum Change {
    /// Store the instance.
    Put(Alert),
    /// Forget the instance of this key.
    Delete(AlertKey),
}

/// The rule store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: std::path::PathBuf,
    /// The alert instances, as committed.
    cache: RwLock<AlertCache>,
    /// Held from the start of a transaction changing alerts until the cache follows it.
    writer: Mutex<()>,
}

/// The alert instances of every rule in memory, open ones (pending, firing) apart from resolved
/// ones: a resolved instance only matters to the `alerts` table (an evaluation treats it like no
/// instance: a new observation that holds starts a fresh one, one that does not changes nothing).
#[derive(Debug, Default)]
pub struct AlertCache {
    rules: HashMap<String, RuleAlerts>,
}

/// One rule's instances by key.
#[derive(Debug, Default)]
struct RuleAlerts {
    open: HashMap<AlertKey, Alert>,
    resolved: HashMap<AlertKey, Alert>,
}

impl AlertCache {
    fn put(&mut self, rule: &str, a: Alert) {
        if !self.rules.contains_key(rule) {
            self.rules.insert(rule.to_string(), RuleAlerts::default());
        }
        let Some(r) = self.rules.get_mut(rule) else {
            return;
        };
        r.open.remove(&a.key);
        r.resolved.remove(&a.key);
        let side = if a.state == AlertState::Resolved {
            &mut r.resolved
        } else {
            &mut r.open
        };
        side.insert(a.key.clone(), a);
    }

    fn delete(&mut self, rule: &str, key: &AlertKey) {
        if let Some(r) = self.rules.get_mut(rule) {
            r.open.remove(key);
            r.resolved.remove(key);
        }
    }

    /// Applies committed changes (moved in: the commit no longer needs them).
    fn apply(&mut self, rule: &str, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Put(a) => self.put(rule, a),
                Change::Delete(k) => self.delete(rule, &k),
            }
        }
    }
}

/// Key of an alert in the `alerts` table.
pub fn alert_key(rule: &str, key: &AlertKey) -> String {
    let json = serde_json::to_string(key).unwrap_or_default();
    format!("{rule}\0{json}")
}

fn rule_prefix_range(rule: &str) -> (String, String) {
    (format!("{rule}\0"), format!("{rule}\u{1}"))
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path)
            .map_err(|e| RulesError::Store(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(RulesError::db)?;
        {
            txn.open_table(RULES).map_err(RulesError::db)?;
            txn.open_table(ALERTS).map_err(RulesError::db)?;
            txn.open_table(OUTBOX).map_err(RulesError::db)?;
            let mut meta = txn.open_table(META).map_err(RulesError::db)?;
            let version = meta
                .get("schema_version")
                .map_err(RulesError::db)?
                .map(|v| v.value().to_vec());
            match version {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(RulesError::db)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(v) if v == JSON_SCHEMA_VERSION => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(RulesError::db)?;
                }
                Some(v) => {
                    return Err(RulesError::Store(format!(
                        "unsupported rules.redb schema version {:?}",
                        String::from_utf8_lossy(&v)
                    )));
                }
            }
        }
        txn.commit().map_err(RulesError::db)?;
        let mut cache = AlertCache::default();
        for a in read_alerts(&db)? {
            let rule = a.rule.clone();
            cache.put(&rule, a);
        }
        Ok(Store {
            db,
            path: path.to_path_buf(),
            cache: RwLock::new(cache),
            writer: Mutex::new(()),
        })
    }

    fn cache_read(&self) -> Result<std::sync::RwLockReadGuard<'_, AlertCache>> {
        self.cache
            .read()
            .map_err(|_| RulesError::Store("alert cache poisoned".into()))
    }

    fn cache_write(&self) -> Result<std::sync::RwLockWriteGuard<'_, AlertCache>> {
        self.cache
            .write()
            .map_err(|_| RulesError::Store("alert cache poisoned".into()))
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.writer
            .lock()
            .map_err(|_| RulesError::Store("rule store writer poisoned".into()))
    }

    /// A consistent copy of the store file for a backup: read while a write transaction is held
    /// (no other change can be under way), then the transaction is dropped unchanged.
    pub fn backup_bytes(&self) -> Result<Vec<u8>> {
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        let bytes = std::fs::read(&self.path)
            .map_err(|e| RulesError::Store(format!("read {}: {e}", self.path.display())));
        drop(txn); // nothing was changed: an abort
        bytes
    }

    /// Stores `spec`; `create` refuses an existing name, otherwise the name must exist.
    pub fn put_rule(&self, spec: &RuleSpec, create: bool) -> Result<()> {
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        {
            let mut t = txn.open_table(RULES).map_err(RulesError::db)?;
            let exists = t.get(spec.name.as_str()).map_err(RulesError::db)?.is_some();
            match (create, exists) {
                (true, true) => return Err(RulesError::Exists(spec.name.clone())),
                (false, false) => return Err(RulesError::NotFound(spec.name.clone())),
                _ => {}
            }
            let bytes = serde_json::to_vec(spec)?;
            t.insert(spec.name.as_str(), bytes.as_slice())
                .map_err(RulesError::db)?;
        }
        txn.commit().map_err(RulesError::db)
    }

    /// The rule `name`.
    pub fn get_rule(&self, name: &str) -> Result<RuleSpec> {
        let txn = self.db.begin_read().map_err(RulesError::db)?;
        let t = txn.open_table(RULES).map_err(RulesError::db)?;
        match t.get(name).map_err(RulesError::db)? {
            Some(v) => Ok(serde_json::from_slice(v.value())?),
            None => Err(RulesError::NotFound(name.to_string())),
        }
    }

    /// Every rule, by name.
    pub fn list_rules(&self) -> Result<Vec<RuleSpec>> {
        let txn = self.db.begin_read().map_err(RulesError::db)?;
        let t = txn.open_table(RULES).map_err(RulesError::db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(RulesError::db)? {
            let (_, v) = item.map_err(RulesError::db)?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Deletes the rule and its alert instances (undelivered notifications stay in the outbox).
    pub fn delete_rule(&self, name: &str) -> Result<RuleSpec> {
        let _writer = self.writer()?;
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        let spec = {
            let mut t = txn.open_table(RULES).map_err(RulesError::db)?;
            let old = t.remove(name).map_err(RulesError::db)?;
            match old {
                Some(v) => serde_json::from_slice::<RuleSpec>(v.value())?,
                None => return Err(RulesError::NotFound(name.to_string())),
            }
        };
        {
            let mut a = txn.open_table(ALERTS).map_err(RulesError::db)?;
            let (lo, hi) = rule_prefix_range(name);
            a.retain_in::<&str, _>(lo.as_str()..hi.as_str(), |_, _| false)
                .map_err(RulesError::db)?;
        }
        txn.commit().map_err(RulesError::db)?;
        self.cache_write()?.rules.remove(name);
        Ok(spec)
    }

    /// The alert instances of `rule` (from memory).
    pub fn alerts_of(&self, rule: &str) -> Result<Vec<Alert>> {
        let c = self.cache_read()?;
        Ok(c.rules
            .get(rule)
            .map(|r| {
                r.open
                    .values()
                    .chain(r.resolved.values())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The open (pending or firing) alert instances of `rule` (from memory): all an evaluation
    /// needs (see [`AlertCache`]).
    pub fn open_alerts_of(&self, rule: &str) -> Result<Vec<Alert>> {
        let c = self.cache_read()?;
        Ok(c.rules
            .get(rule)
            .map(|r| r.open.values().cloned().collect())
            .unwrap_or_default())
    }

    /// The open alert instances of each of `rules` (from memory), in the same order.
    pub fn open_alerts_of_many<'a>(
        &self,
        rules: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<Vec<Alert>>> {
        let c = self.cache_read()?;
        Ok(rules
            .map(|name| {
                c.rules
                    .get(name)
                    .map(|r| r.open.values().cloned().collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Every alert instance (from memory), by rule and key.
    pub fn all_alerts(&self) -> Result<Vec<Alert>> {
        let c = self.cache_read()?;
        let mut out: Vec<Alert> = c
            .rules
            .values()
            .flat_map(|r| r.open.values().chain(r.resolved.values()).cloned())
            .collect();
        // The file's order (by its key).
        out.sort_by_cached_key(|a| alert_key(&a.rule, &a.key));
        Ok(out)
    }

    /// Every alert instance as stored in the file (what a restart loads).
    pub fn stored_alerts(&self) -> Result<Vec<Alert>> {
        read_alerts(&self.db)
    }

    /// Applies alert changes of `rule` and queues `entries` (their `seq` is assigned here), in
    /// one transaction. Nothing happens when the rule was deleted meanwhile.
    pub fn apply(&self, rule: &str, changes: &[Change], entries: Vec<OutboxEntry>) -> Result<()> {
        self.apply_many(vec![(rule.to_string(), changes.to_vec(), entries)])
    }

    /// [`Store::apply`] for several rules in one transaction (one fsync for a whole batch of
    /// row rules); rules deleted meanwhile are skipped.
    pub fn apply_many(&self, items: Vec<(String, Vec<Change>, Vec<OutboxEntry>)>) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let _writer = self.writer()?;
        let mut applied = Vec::with_capacity(items.len());
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        {
            let rules = txn.open_table(RULES).map_err(RulesError::db)?;
            let mut t = txn.open_table(ALERTS).map_err(RulesError::db)?;
            let mut meta = txn.open_table(META).map_err(RulesError::db)?;
            let mut out = txn.open_table(OUTBOX).map_err(RulesError::db)?;
            let mut seq = meta
                .get("next_seq")
                .map_err(RulesError::db)?
                .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
                .unwrap_or(1);
            for (rule, changes, entries) in items {
                if rules.get(rule.as_str()).map_err(RulesError::db)?.is_none() {
                    continue;
                }
                for c in &changes {
                    match c {
                        Change::Put(a) => {
                            let bytes = codec::encode_alert(a);
                            t.insert(alert_key(&rule, &a.key).as_str(), bytes.as_slice())
                                .map_err(RulesError::db)?;
                        }
                        Change::Delete(k) => {
                            t.remove(alert_key(&rule, k).as_str())
                                .map_err(RulesError::db)?;
                        }
                    }
                }
                for mut e in entries {
                    e.seq = seq;
                    let bytes = codec::encode_entry(&e);
                    out.insert(seq, bytes.as_slice()).map_err(RulesError::db)?;
                    seq += 1;
                }
                applied.push((rule, changes));
            }
            meta.insert("next_seq", seq.to_le_bytes().as_slice())
                .map_err(RulesError::db)?;
        }
        txn.commit().map_err(RulesError::db)?;
        let mut cache = self.cache_write()?;
        for (rule, changes) in applied {
            cache.apply(&rule, changes);
        }
        Ok(())
    }

    /// Every outbox entry (pending and dead), oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let txn = self.db.begin_read().map_err(RulesError::db)?;
        let t = txn.open_table(OUTBOX).map_err(RulesError::db)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(RulesError::db)? {
            let (_, v) = item.map_err(RulesError::db)?;
            out.push(codec::decode_entry(v.value())?);
        }
        Ok(out)
    }

    /// Up to `limit` outbox entries (pending and dead) with a sequence above `after`, oldest first.
    pub fn outbox_page(&self, after: u64, limit: usize) -> Result<Vec<OutboxEntry>> {
        let txn = self.db.begin_read().map_err(RulesError::db)?;
        let t = txn.open_table(OUTBOX).map_err(RulesError::db)?;
        let mut out = Vec::new();
        for item in t.range(after.saturating_add(1)..).map_err(RulesError::db)? {
            let (_, v) = item.map_err(RulesError::db)?;
            out.push(codec::decode_entry(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The outbox entry `seq` as committed now (none once delivered or removed).
    pub fn entry(&self, seq: u64) -> Result<Option<OutboxEntry>> {
        let txn = self.db.begin_read().map_err(RulesError::db)?;
        let t = txn.open_table(OUTBOX).map_err(RulesError::db)?;
        match t.get(seq).map_err(RulesError::db)? {
            Some(v) => Ok(Some(codec::decode_entry(v.value())?)),
            None => Ok(None),
        }
    }

    /// Removes delivered entries, in one transaction.
    pub fn delivered_many(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        {
            let mut t = txn.open_table(OUTBOX).map_err(RulesError::db)?;
            for s in seqs {
                t.remove(*s).map_err(RulesError::db)?;
            }
        }
        txn.commit().map_err(RulesError::db)
    }

    /// Removes a delivered entry.
    pub fn delivered(&self, seq: u64) -> Result<()> {
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        txn.open_table(OUTBOX)
            .map_err(RulesError::db)?
            .remove(seq)
            .map_err(RulesError::db)?;
        txn.commit().map_err(RulesError::db)
    }

    /// Stores an entry's new attempt count, next time or dead state.
    pub fn update_entry(&self, entry: &OutboxEntry) -> Result<()> {
        let txn = self.db.begin_write().map_err(RulesError::db)?;
        {
            let mut t = txn.open_table(OUTBOX).map_err(RulesError::db)?;
            if t.get(entry.seq).map_err(RulesError::db)?.is_some() {
                let bytes = codec::encode_entry(entry);
                t.insert(entry.seq, bytes.as_slice())
                    .map_err(RulesError::db)?;
            }
        }
        txn.commit().map_err(RulesError::db)
    }
}

/// Every alert instance in the file.
fn read_alerts(db: &Database) -> Result<Vec<Alert>> {
    let txn = db.begin_read().map_err(RulesError::db)?;
    let t = txn.open_table(ALERTS).map_err(RulesError::db)?;
    let mut out = Vec::new();
    for item in t.iter().map_err(RulesError::db)? {
        let (_, v) = item.map_err(RulesError::db)?;
        out.push(codec::decode_alert(v.value())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{observe_active, observe_inactive};
    use crate::spec::Timing;

    fn spec(name: &str) -> RuleSpec {
        serde_json::from_value(
            serde_json::json!({"name": name, "kind": "row", "stream": "env",
            "condition": "t > 1", "actions": []}),
        )
        .unwrap()
    }

    fn key(d: &str) -> AlertKey {
        [("device".to_string(), d.to_string())].into()
    }

    /// The instances in memory are those in the file, after changes, a delete and a reopen.
    #[test]
    fn alerts_in_memory_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let store = Store::open(&path).unwrap();
        store.put_rule(&spec("a"), true).unwrap();
        store.put_rule(&spec("b"), true).unwrap();
        let t = Timing::default();
        let (fa, _) = observe_active(None, "a", &key("d1"), Default::default(), 1, t);
        let (fb, _) = observe_active(None, "a", &key("d2"), Default::default(), 1, t);
        let (rb, _) = observe_inactive(&fb, 2, t);
        let (gb, _) = observe_active(None, "b", &key("d1"), Default::default(), 1, t);
        store
            .apply_many(vec![
                (
                    "a".into(),
                    vec![Change::Put(fa.clone()), Change::Put(fb)],
                    vec![],
                ),
                ("b".into(), vec![Change::Put(gb)], vec![]),
                ("gone".into(), vec![Change::Put(fa.clone())], vec![]),
            ])
            .unwrap();
        store
            .apply("a", &[Change::Put(rb.unwrap())], vec![])
            .unwrap();
        assert_eq!(store.all_alerts().unwrap(), store.stored_alerts().unwrap());
        assert_eq!(store.all_alerts().unwrap().len(), 3);
        assert_eq!(store.open_alerts_of("a").unwrap(), vec![fa]);
        assert_eq!(store.alerts_of("a").unwrap().len(), 2);
        store.delete_rule("b").unwrap();
        store
            .apply("a", &[Change::Delete(key("d1"))], vec![])
            .unwrap();
        let now = store.all_alerts().unwrap();
        assert_eq!(now, store.stored_alerts().unwrap());
        drop(store);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.all_alerts().unwrap(), now);
        assert!(again.open_alerts_of("a").unwrap().is_empty());
    }

    /// A store written by the JSON versions (alerts and outbox entries as JSON) opens with the
    /// same instances and entries; new writes are binary and both kinds read back together.
    #[test]
    fn older_json_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        let t = Timing::default();
        let (fa, n) = observe_active(None, "a", &key("d1"), Default::default(), 1, t);
        let mut old_entry = OutboxEntry::for_transition(&spec("a"), &fa, n.unwrap()).remove(0);
        old_entry.seq = 1;
        {
            let store = Store::open(&path).unwrap();
            store.put_rule(&spec("a"), true).unwrap();
            drop(store);
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut a = txn.open_table(ALERTS).unwrap();
                let json = serde_json::to_vec(&fa).unwrap();
                a.insert(alert_key("a", &fa.key).as_str(), json.as_slice())
                    .unwrap();
                let mut o = txn.open_table(OUTBOX).unwrap();
                let json = serde_json::to_vec(&old_entry).unwrap();
                o.insert(1, json.as_slice()).unwrap();
                let mut m = txn.open_table(META).unwrap();
                m.insert("next_seq", 2u64.to_le_bytes().as_slice()).unwrap();
                m.insert("schema_version", JSON_SCHEMA_VERSION).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.open_alerts_of("a").unwrap(), vec![fa.clone()]);
        let (fb, n) = observe_active(None, "a", &key("d2"), Default::default(), 2, t);
        let new = OutboxEntry::for_transition(&spec("a"), &fb, n.unwrap());
        store.apply("a", &[Change::Put(fb)], new).unwrap();
        let outbox = store.outbox().unwrap();
        assert_eq!(outbox.len(), 2);
        assert_eq!(
            outbox[0].notification,
            serde_json::from_slice::<OutboxEntry>(&serde_json::to_vec(&old_entry).unwrap())
                .unwrap()
                .notification
        );
        assert_eq!(outbox[1].seq, 2);
        assert_eq!(store.stored_alerts().unwrap(), store.all_alerts().unwrap());
        assert_eq!(store.all_alerts().unwrap().len(), 2);
    }

    /// A damaged record is a typed error when the store reads it, not a panic.
    #[test]
    fn a_damaged_record_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        drop(Store::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(OUTBOX)
                .unwrap()
                .insert(1, [codec::VERSION, 1, 2].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(matches!(store.outbox(), Err(RulesError::Record(_))));
    }
}
