//! The group-commit pipeline: connections hand their accumulated messages to a small pool of
//! commit threads; a thread takes every job waiting (up to a row cap), merges them into one
//! batch, writes it with one `Engine::write` (so one WAL sync covers messages of many
//! connections) and answers each job. When the merged write is refused because of its content
//! (a schema conflict, invalid input), the jobs are retried message by message so that one bad
//! message fails only its own connection.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use strata_storage::{Engine, StorageError, WriteBatch};
use tokio::sync::oneshot;

use super::merge::Merger;
use super::stats::{Counters, RejectReason, add};

/// Why the messages of a job were not all stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitFailure {
    /// Index of the first message that is not stored; the ones before it are durable.
    pub(crate) index: usize,
    /// Metrics label.
    pub(crate) reason: RejectReason,
    /// The engine's error.
    pub(crate) message: String,
}

/// What a job's sender learns: the indices of messages skipped because of their content (only
/// with [`CommitJob::keep_going`]), or the first failure.
pub(crate) type CommitOutcome = Result<Vec<usize>, CommitFailure>;

/// Messages of one connection, in arrival order.
#[derive(Debug)]
pub(crate) struct CommitJob {
    /// One batch per message (possibly empty).
    pub(crate) batches: Vec<WriteBatch>,
    /// Skip messages refused for their content (schema conflicts) and store the others, instead
    /// of stopping at the first.
    pub(crate) keep_going: bool,
    /// Receives the outcome once every message is durable or one failed.
    pub(crate) reply: oneshot::Sender<CommitOutcome>,
}

/// Handle to the commit threads; dropping it (and every clone of the sender) stops them.
#[derive(Debug)]
pub(crate) struct Committer {
    tx: Sender<CommitJob>,
    _threads: Vec<JoinHandle<()>>,
}

impl Committer {
    /// Starts `threads` commit threads writing to `engine`.
    pub(crate) fn start(
        engine: Arc<Engine>,
        counters: Arc<Counters>,
        threads: usize,
        max_rows: usize,
    ) -> std::io::Result<Self> {
        let (tx, rx) = channel::<CommitJob>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (engine, counters, rx) = (engine.clone(), counters.clone(), rx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("mqtt-commit-{i}"))
                .spawn(move || run(&engine, &counters, &rx, max_rows.max(1)))?;
            handles.push(handle);
        }
        Ok(Committer {
            tx,
            _threads: handles,
        })
    }

    /// Queues a job; false when the commit threads are gone.
    pub(crate) fn submit(&self, job: CommitJob) -> bool {
        self.tx.send(job).is_ok()
    }
}

fn run(engine: &Engine, counters: &Counters, rx: &Mutex<Receiver<CommitJob>>, max_rows: usize) {
    while let Some(group) = next_group(rx, max_rows) {
        commit_group(engine, counters, group);
    }
}

/// Blocks for one job, then takes whatever else is already waiting, up to `max_rows` rows.
fn next_group(rx: &Mutex<Receiver<CommitJob>>, max_rows: usize) -> Option<Vec<CommitJob>> {
    let rx = rx.lock().ok()?;
    let first = rx.recv().ok()?;
    let mut rows = job_rows(&first);
    let mut group = vec![first];
    while rows < max_rows {
        match rx.try_recv() {
            Ok(job) => {
                rows += job_rows(&job);
                group.push(job);
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    Some(group)
}

fn job_rows(job: &CommitJob) -> usize {
    job.batches.iter().map(WriteBatch::rows).sum()
}

fn commit_group(engine: &Engine, counters: &Counters, group: Vec<CommitJob>) {
    let mut merger = Merger::default();
    let mergeable = group
        .iter()
        .flat_map(|j| &j.batches)
        .all(|b| merger.add(b).is_ok());
    if mergeable {
        let merged = merger.finish();
        let rows = merged.rows();
        let result = if rows == 0 {
            Ok(())
        } else {
            engine.write(&merged).map(|_| ())
        };
        match result {
            Ok(()) => {
                if rows > 0 {
                    add(&counters.commits, 1);
                    add(&counters.rows_written, rows as u64);
                }
                for job in group {
                    let _ = job.reply.send(Ok(Vec::new()));
                }
                return;
            }
            Err(e) if !is_content_error(&e) => {
                let failure = failure(0, &e);
                for job in group {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                return;
            }
            Err(_) => {}
        }
    }
    for job in group {
        let outcome = commit_one_by_one(engine, counters, &job.batches, job.keep_going);
        let _ = job.reply.send(outcome);
    }
}

/// Writes the messages of one job separately; stops at the first failure, or with
/// `keep_going` only at the first failure that is not about a message's content.
fn commit_one_by_one(
    engine: &Engine,
    counters: &Counters,
    batches: &[WriteBatch],
    keep_going: bool,
) -> CommitOutcome {
    let mut skipped = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        if batch.rows() == 0 {
            continue;
        }
        match engine.write(batch) {
            Ok(_) => {
                add(&counters.commits, 1);
                add(&counters.rows_written, batch.rows() as u64);
            }
            Err(e) if keep_going && is_content_error(&e) => {
                tracing::warn!(error = %e, "message skipped");
                skipped.push(i);
            }
            Err(e) => return Err(failure(i, &e)),
        }
    }
    Ok(skipped)
}

/// True when the engine refused the batch for what it contains (not for a failure of its own).
fn is_content_error(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::SchemaConflict { .. }
            | StorageError::InvalidInput(_)
            | StorageError::LimitExceeded { .. }
    )
}

fn failure(index: usize, e: &StorageError) -> CommitFailure {
    let reason = match e {
        StorageError::SchemaConflict { .. } => RejectReason::SchemaConflict,
        StorageError::InvalidInput(_) => RejectReason::InvalidPayload,
        _ => RejectReason::Storage,
    };
    CommitFailure {
        index,
        reason,
        message: e.to_string(),
    }
}
