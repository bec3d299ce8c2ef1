//! Work spread over a few low-priority threads and handed back in order: [`in_order`] runs an
//! item's work on whichever thread is free, at most a few items ahead of the one the calling
//! thread is consuming, and answers every item it took (a panic and a stop included), so the
//! consumer's wait for the next item always ends. Cold moves encode with it
//! (`cold_move::move_cold`), at `priority::Nice::Bulk`.

use crate::error::{Result, StorageError};
use crate::priority::{self, Nice};

/// Groups handed out per encoder ahead of the one being stored (with their series keys): with 2
/// encoders, at most 4 encoded or being encoded while one is stored.
const AHEAD: usize = 2;

/// What a worker of [`in_order`] answers for one item, and how long its work took.
pub(super) type Encoded<R> = (Result<R>, std::time::Duration);

/// Runs `work` over `items` on up to `threads` threads at [`Nice::Bulk`], each taking the next
/// item from one shared queue as soon as it is free (so a small item never waits behind another
/// thread's large one), with its input from `input` (called here, in order, at most [`AHEAD`] ·
/// threads items ahead of the one being stored); hands each result to `store` here, strictly in
/// item order. Stops when `store` returns false (it reported why), or with an error when
/// `input` fails or `stopped` says the engine closes. Every item a thread takes is answered (a
/// panic in `work` becomes an error, and once `stopped` an item is answered with
/// [`StorageError::ShutDown`] instead of being worked on), so the wait for the next item in order
/// always ends; returning drops both queues, which ends the threads.
pub(super) fn in_order<T: Sync, K: Send, R: Send>(
    items: &[T],
    threads: usize,
    mut input: impl FnMut(usize) -> Result<K>,
    work: impl Fn(&T, K) -> Result<R> + Sync,
    stopped: impl Fn() -> bool + Sync,
    mut store: impl FnMut(usize, Encoded<R>) -> bool,
) -> std::result::Result<(), String> {
    let threads = threads.min(items.len());
    if threads == 0 {
        return Ok(());
    }
    let ahead = AHEAD * threads;
    // Work in: (position, its input), shared by the threads.
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<(usize, K)>(ahead);
    let work_rx = std::sync::Mutex::new(work_rx);
    let (work, stopped) = (&work, &stopped);
    std::thread::scope(|scope| {
        // Results out, with their position; dropping the receiver ends the threads.
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<(usize, Encoded<R>)>(ahead);
        for _ in 0..threads {
            let (work_rx, done_tx) = (&work_rx, done_tx.clone());
            scope.spawn(move || {
                // Bulk work yields the CPU to writers, flush and queries.
                priority::lower(Nice::Bulk);
                while let Some((i, input)) = next_work(work_rx) {
                    let started = std::time::Instant::now();
                    let result = match stopped() {
                        true => Err(StorageError::ShutDown),
                        false => caught(|| work(&items[i], input)),
                    };
                    if done_tx.send((i, (result, started.elapsed()))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let work_tx = work_tx;
        let mut feed = |j: usize| -> Result<()> {
            let k = input(j)?;
            // The queue's receiver outlives this scope: the send only waits for room.
            let _ = work_tx.send((j, k));
            Ok(())
        };
        for j in 0..items.len().min(ahead) {
            feed(j).map_err(|e| e.to_string())?;
        }
        // Results that arrived ahead of their turn, by position.
        let mut ready = std::collections::BTreeMap::new();
        for i in 0..items.len() {
            if stopped() {
                return Err("the engine is closing; the rest stays hot".into());
            }
            let result = loop {
                if let Some(result) = ready.remove(&i) {
                    break result;
                }
                let (j, result) = done_rx
                    .recv()
                    .map_err(|_| "the encoder threads stopped; the rest stays hot".to_string())?;
                ready.insert(j, result);
            };
            if i + ahead < items.len() {
                feed(i + ahead).map_err(|e| e.to_string())?;
            }
            if !store(i, result) {
                return Ok(());
            }
        }
        Ok(())
    })
}

/// `work()`, with a panic turned into an error (the run stops there and reports it).
fn caught<R>(work: impl FnOnce() -> Result<R>) -> Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(StorageError::Internal(
            "a cold encoder panicked; its group stays hot (see the log)".into(),
        ))
    })
}

/// The next item for a thread from the shared queue; `None` once the queue is closed.
fn next_work<K>(
    work: &std::sync::Mutex<std::sync::mpsc::Receiver<(usize, K)>>,
) -> Option<(usize, K)> {
    work.lock().ok()?.recv().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// What a run ended with, and each position `store` saw with its result.
    type Seen = (std::result::Result<(), String>, Vec<(usize, Result<usize>)>);

    /// Runs `in_order` over `n` items on a thread of its own; its outcome and the positions
    /// `store` saw with their results, or a failure if it has not returned after a minute.
    fn run(
        n: usize,
        work: impl Fn(&usize, usize) -> Result<usize> + Sync + Send + 'static,
        stop_after: Option<usize>,
    ) -> Seen {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let items: Vec<usize> = (0..n).collect();
            let stopped = AtomicBool::new(false);
            let mut seen = Vec::new();
            let outcome = in_order(
                &items,
                2,
                |j| Ok(j * 10),
                work,
                || stopped.load(Ordering::Acquire),
                |i, (result, _)| {
                    let ok = result.is_ok();
                    seen.push((i, result));
                    if stop_after == Some(i) {
                        stopped.store(true, Ordering::Release);
                    }
                    ok
                },
            );
            let _ = tx.send((outcome, seen));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("in_order did not return within a minute")
    }

    #[test]
    fn results_reach_store_in_item_order_whatever_finishes_first() {
        // Even items take longer: the other thread finishes later items first.
        let (outcome, seen) = run(
            12,
            |item, input| {
                if item % 2 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(item + input)
            },
            None,
        );
        assert_eq!(outcome, Ok(()));
        let got: Vec<(usize, usize)> = seen.into_iter().map(|(i, r)| (i, r.unwrap())).collect();
        let want: Vec<(usize, usize)> = (0..12).map(|i| (i, i * 11)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_panicking_item_ends_the_run_with_its_error_instead_of_hanging() {
        // The first item panics while the other thread finishes the rest and waits on an empty
        // queue: the run must still get an answer for the first item.
        let (outcome, seen) = run(
            3,
            |item, input| match item {
                0 => panic!("encoder bug"),
                _ => Ok(item + input),
            },
            None,
        );
        assert_eq!(outcome, Ok(()));
        assert_eq!(seen.len(), 1, "store stops at the failed item");
        assert_eq!(seen[0].0, 0);
        let err = seen[0].1.as_ref().unwrap_err().to_string();
        assert!(err.contains("panicked"), "{err}");
    }

    #[test]
    fn a_stop_ends_the_run_with_an_error_and_stores_nothing_more() {
        let (outcome, seen) = run(8, |item, input| Ok(item + input), Some(2));
        assert_eq!(
            outcome,
            Err("the engine is closing; the rest stays hot".into())
        );
        let stored: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        assert_eq!(stored, vec![0, 1, 2]);
    }
}
