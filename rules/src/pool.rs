//! The outbox's delivery workers: a bounded set of threads (started on demand, up to
//! [`MAX_WORKERS`], ended after a minute idle) taking one job at a time from a queue. A job is
//! the due entries of one destination ([`crate::lanes`]); a destination is held by at most one
//! job from the moment the dispatcher queues it until its worker has committed every result to
//! the store ([`Pool::finish`]), so one destination's entries are never delivered twice at once
//! and each lane in sequence order. A destination that timed out or refused a connection is paused
//! until its failed entry's retry time ([`Pool::pause`]).
//!
//! This module only keeps that state; the deliveries themselves are the dispatcher's
//! (`dispatch.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::lanes::Avail;

/// Most delivery threads: this many unreachable destinations at once still leave the others
/// waiting, so it is generous (each thread mostly waits on a socket).
pub const MAX_WORKERS: usize = 16;

/// A worker idle this long ends (another starts when needed).
const IDLE: Duration = Duration::from_secs(60);

/// The due entries (by sequence, oldest first) of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// The destination ([`crate::lanes::route`]).
    pub dest: String,
    /// The entries, re-read from the store before each delivery.
    pub seqs: Vec<u64>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Job>,
    /// Destinations of queued or running jobs.
    busy: HashSet<String>,
    /// Destinations not tried before a time (ns).
    paused: HashMap<String, i64>,
    workers: usize,
    idle: usize,
    closed: bool,
}

/// The shared state of the delivery workers.
#[derive(Debug)]
pub struct Pool {
    state: Mutex<State>,
    ready: Condvar,
    max_workers: usize,
    in_flight: AtomicUsize,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new(MAX_WORKERS)
    }
}

impl Pool {
    /// A pool of at most `max_workers` threads (at least one).
    pub fn new(max_workers: usize) -> Pool {
        Pool {
            state: Mutex::default(),
            ready: Condvar::new(),
            max_workers: max_workers.max(1),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The state; a panic elsewhere while holding it leaves it consistent (every change is a
    /// single step), so a poisoned lock is used as is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `dest` can take a job at `now` (an expired pause is forgotten).
    pub(crate) fn avail(&self, dest: &str, now: i64) -> Avail {
        let mut s = self.state();
        if s.busy.contains(dest) {
            return Avail::Busy;
        }
        match s.paused.get(dest).copied() {
            Some(until) if until > now => Avail::PausedUntil(until),
            Some(_) => {
                s.paused.remove(dest);
                Avail::Free
            }
            None => Avail::Free,
        }
    }

    /// Queues a job; its destination is busy until [`Pool::finish`].
    pub(crate) fn submit(&self, job: Job) {
        let mut s = self.state();
        s.busy.insert(job.dest.clone());
        s.queue.push_back(job);
        drop(s);
        self.ready.notify_one();
    }

    /// Reserves a worker slot when queued jobs outnumber idle workers and the pool may grow:
    /// the caller starts that worker (or gives the slot back with [`Pool::worker_gone`]).
    pub(crate) fn wants_worker(&self) -> bool {
        let mut s = self.state();
        if s.closed || s.queue.len() <= s.idle || s.workers >= self.max_workers {
            return false;
        }
        s.workers += 1;
        true
    }

    /// A worker ended (or could not start).
    pub(crate) fn worker_gone(&self) {
        let mut s = self.state();
        s.workers = s.workers.saturating_sub(1);
    }

    /// The next job for a worker; `None` when the pool is closed or the worker idled for
    /// [`IDLE`] (its slot is given back then).
    pub(crate) fn next_job(&self) -> Option<Job> {
        let mut s = self.state();
        loop {
            if s.closed {
                break;
            }
            if let Some(job) = s.queue.pop_front() {
                return Some(job);
            }
            s.idle += 1;
            let (guard, waited) = self
                .ready
                .wait_timeout(s, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            s = guard;
            s.idle -= 1;
            if waited.timed_out() && s.queue.is_empty() {
                break;
            }
        }
        s.workers = s.workers.saturating_sub(1);
        None
    }

    /// The job of `dest` ended and every result of it is committed: the destination is free.
    pub(crate) fn finish(&self, dest: &str) {
        self.state().busy.remove(dest);
    }

    /// `dest` timed out or refused a connection: not tried again before `until` (ns).
    pub(crate) fn pause(&self, dest: &str, until: i64) {
        let mut s = self.state();
        let now = crate::now_ns();
        // Forget pauses that ended (hosts never seen again), keep the later of two pauses.
        s.paused.retain(|_, t| *t > now);
        let t = s.paused.entry(dest.to_string()).or_insert(until);
        *t = (*t).max(until);
    }

    /// `dest` answered: any pause is over.
    pub(crate) fn resume(&self, dest: &str) {
        let mut s = self.state();
        if !s.paused.is_empty() {
            s.paused.remove(dest);
        }
    }

    /// Ends the workers once their current job is done (queued jobs stay undone: their entries
    /// are still in the outbox).
    pub fn close(&self) {
        self.state().closed = true;
        self.ready.notify_all();
    }

    /// Counts one delivery in progress until the guard drops.
    pub(crate) fn delivering(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Prometheus text: deliveries in progress, paused destinations, worker threads.
    pub fn render(&self, out: &mut String, now: i64) {
        let (paused, workers) = {
            let s = self.state();
            (s.paused.values().filter(|u| **u > now).count(), s.workers)
        };
        let gauges = [
            (
                "strata_rule_outbox_in_flight",
                "Webhook and MQTT deliveries in progress.",
                self.in_flight.load(Ordering::Relaxed),
            ),
            (
                "strata_rule_outbox_destinations_paused",
                "Webhook hosts (or the MQTT broker) paused after a timeout or a refused connection.",
                paused,
            ),
            (
                "strata_rule_outbox_workers",
                "Outbox delivery threads.",
                workers,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
}

/// One delivery in progress (see [`Pool::delivering`]).
pub(crate) struct InFlight<'a>(&'a Pool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dest: &str, seqs: &[u64]) -> Job {
        Job {
            dest: dest.into(),
            seqs: seqs.to_vec(),
        }
    }

    #[test]
    fn a_destination_is_busy_from_submit_to_finish() {
        let pool = Pool::new(2);
        assert_eq!(pool.avail("a", 0), Avail::Free);
        pool.submit(job("a", &[1, 2]));
        assert_eq!(pool.avail("a", 0), Avail::Busy);
        assert_eq!(pool.avail("b", 0), Avail::Free);
        assert!(pool.wants_worker());
        assert_eq!(pool.next_job(), Some(job("a", &[1, 2])));
        assert_eq!(pool.avail("a", 0), Avail::Busy, "running is still busy");
        pool.finish("a");
        assert_eq!(pool.avail("a", 0), Avail::Free);
    }

    #[test]
    fn a_paused_destination_is_free_again_at_its_time_or_when_it_answers() {
        let pool = Pool::new(2);
        pool.pause("a", 100);
        assert_eq!(pool.avail("a", 99), Avail::PausedUntil(100));
        assert_eq!(pool.avail("a", 100), Avail::Free);
        pool.pause("a", 100);
        pool.resume("a");
        assert_eq!(pool.avail("a", 0), Avail::Free);
    }

    #[test]
    fn workers_grow_with_the_queue_up_to_the_bound() {
        let pool = Pool::new(2);
        assert!(!pool.wants_worker(), "nothing queued");
        for d in ["a", "b", "c"] {
            pool.submit(job(d, &[1]));
        }
        assert!(pool.wants_worker());
        assert!(pool.wants_worker());
        assert!(!pool.wants_worker(), "bounded");
        pool.worker_gone();
        assert!(pool.wants_worker(), "a slot given back can be taken again");
    }

    #[test]
    fn closing_ends_waiting_workers_and_metrics_show_the_gauges() {
        let pool = std::sync::Arc::new(Pool::new(1));
        assert!(!pool.wants_worker());
        pool.submit(job("a", &[1]));
        assert!(pool.wants_worker());
        let p = pool.clone();
        let worker = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(j) = p.next_job() {
                got.push(j.dest.clone());
                p.finish(&j.dest);
            }
            got
        });
        pool.pause("h", 50);
        let guard = pool.delivering();
        let mut out = String::new();
        pool.render(&mut out, 10);
        drop(guard);
        assert!(out.contains("strata_rule_outbox_in_flight 1\n"), "{out}");
        assert!(
            out.contains("strata_rule_outbox_destinations_paused 1\n"),
            "{out}"
        );
        // Wait until the worker took the job (it then waits for the next one).
        while pool.avail("a", 0) == Avail::Busy {
            std::thread::yield_now();
        }
        pool.close();
        assert_eq!(worker.join().ok(), Some(vec!["a".to_string()]));
        let mut out = String::new();
        pool.render(&mut out, 10);
        assert!(out.contains("strata_rule_outbox_workers 0\n"), "{out}");
        assert!(out.contains("strata_rule_outbox_in_flight 0\n"), "{out}");
    }
}
