//! Group commit of rule evaluations: the row worker evaluates every batch waiting in its queue
//! (up to [`MAX_GROUP`]) one after the other, in order, and commits all their alert changes and
//! outbox entries in one `rules.redb` transaction (one fsync), before any of their notifications
//! is counted or dispatched. Between the batches of a group, each rule sees its open instances
//! as the earlier batches left them ([`Pending::open_of`]), so the result is the same as one
//! commit per batch: same transitions, same order of outbox entries, state and notifications
//! still durable together.

use std::collections::HashMap;
use std::sync::Arc;

use crate::alert::{Alert, AlertKey, AlertState};
use crate::error::Result;
use crate::outbox::OutboxEntry;
use crate::store::{Change, Store};

/// Queued batches evaluated together (and committed once) at most.
pub const MAX_GROUP: usize = 64;

/// Alert changes and outbox entries not committed yet, with each touched rule's open instances
/// as they stand after them.
#[derive(Debug)]
pub struct Pending {
    store: Arc<Store>,
    open: HashMap<String, HashMap<AlertKey, Alert>>,
    items: Vec<(String, Vec<Change>, Vec<OutboxEntry>)>,
}

impl Pending {
    /// Nothing pending yet.
    pub fn new(store: Arc<Store>) -> Pending {
        Pending {
            store,
            open: HashMap::new(),
            items: Vec::new(),
        }
    }

    /// The open instances of `rule`: the committed ones with the pending changes applied.
    pub fn open_of(&self, rule: &str) -> Result<Vec<Alert>> {
        match self.open.get(rule) {
            Some(m) => Ok(m.values().cloned().collect()),
            None => self.store.open_alerts_of(rule),
        }
    }

    /// Adds one evaluation's changes and entries of `rule`.
    pub fn push(
        &mut self,
        rule: &str,
        changes: Vec<Change>,
        entries: Vec<OutboxEntry>,
    ) -> Result<()> {
        if changes.is_empty() && entries.is_empty() {
            return Ok(());
        }
        if !self.open.contains_key(rule) {
            let now: HashMap<AlertKey, Alert> = self
                .store
                .open_alerts_of(rule)?
                .into_iter()
                .map(|a| (a.key.clone(), a))
                .collect();
            self.open.insert(rule.to_string(), now);
        }
        if let Some(m) = self.open.get_mut(rule) {
            for c in &changes {
                match c {
                    Change::Put(a) if a.state != AlertState::Resolved => {
                        m.insert(a.key.clone(), a.clone());
                    }
                    Change::Put(a) => {
                        m.remove(&a.key);
                    }
                    Change::Delete(k) => {
                        m.remove(k);
                    }
                }
            }
        }
        self.items.push((rule.to_string(), changes, entries));
        Ok(())
    }

    /// Commits everything in one transaction.
    pub fn commit(self) -> Result<()> {
        self.store.apply_many(self.items)
    }
}
