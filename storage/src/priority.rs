//! CPU priorities of the engine's own threads, below the threads that parse, apply and answer
//! requests: [`Nice::Maintenance`] for the background thread that flushes and compacts, for
//! requested lifecycle runs and for the cold tier's writes, [`Nice::Bulk`] for the encoders of
//! cold moves. Linux sets a thread's own nice value; elsewhere
//! it would set the whole process's, so nothing is done there.

/// A nice value the engine gives one of its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nice {
    /// 10 (CFS weight 110 against a request thread's 1024), for the background thread that
    /// flushes, compacts and maintains rollups, the lifecycle runs it starts, a run asked for
    /// through `Engine::run_lifecycle`, and the cold tier's write threads: while a burst
    /// of writes keeps the cores busy, it gets 110 / (110 + 1024 · n) of a core shared with n
    /// busy request threads, plus any idle time, and the flush the burst needs runs when it ends
    /// or while writers wait for their fsync (`benches/compare/RESULTS.md`, session 21). Not
    /// starved: writers that reach the memory bound sleep and leave it the CPU, and a picked
    /// compaction stops between jobs once a flush is due (`compaction::compact`).
    Maintenance,
    /// 19, the lowest (weight 15): deferrable bulk work, such as Parquet encoding of cold moves.
    /// Under contention a request thread gets about 68× an encoder's share and the maintenance
    /// thread about 7×. At nice 10 the two encoders still took 30 % of the server's CPU while a
    /// load ran (`benches/cold/RESULTS.md`).
    Bulk,
}

impl Nice {
    fn value(self) -> i32 {
        match self {
            Nice::Maintenance => 10,
            Nice::Bulk => 19,
        }
    }
}

/// Lowers the calling thread's CPU priority to `nice`; never raises it (a process started under
/// `nice -n 15` keeps 15 here, even where privilege would allow going back to 10). Failure only
/// costs priority: logged.
#[allow(unsafe_code)]
pub(crate) fn lower(nice: Nice) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's id; no memory is shared. errno is
        // cleared first because -1 is also a valid nice value for getpriority to return.
        let done = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            *libc::__errno_location() = 0;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            if *libc::__errno_location() == 0 && now >= nice.value() {
                return;
            }
            libc::setpriority(libc::PRIO_PROCESS, tid, nice.value())
        };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), ?nice, "cannot lower an engine thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{Nice, lower};

    /// The nice value of thread `tid` of this process, from `/proc` (field 19 of `stat`).
    fn nice_of(tid: &str) -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 1..];
        after_name.split_whitespace().nth(16)?.parse().ok()
    }

    fn own_tid() -> String {
        std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default()
    }

    #[test]
    fn lowering_changes_only_the_calling_thread() {
        let before = nice_of(&own_tid()).expect("own nice");
        let seen = std::thread::spawn(|| {
            let tid = own_tid();
            lower(Nice::Maintenance);
            let maintenance = nice_of(&tid);
            lower(Nice::Bulk);
            (maintenance, nice_of(&tid))
        })
        .join()
        .expect("thread");
        // Unprivileged, a thread cannot go below a nice value it already has.
        assert_eq!(seen.0, Some(before.max(10)));
        assert_eq!(seen.1, Some(before.max(19)));
        assert_eq!(nice_of(&own_tid()), Some(before));
    }

    #[test]
    fn the_background_thread_runs_at_maintenance_priority() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::Engine::open(crate::EngineConfig::new(dir.path())).expect("open");
        let maintenance = || {
            std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let tid = e.file_name().to_string_lossy().into_owned();
                    let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
                    (comm.trim() == "strata-maintena").then(|| nice_of(&tid))?
                })
                .collect::<Vec<_>>()
        };
        // Unprivileged, a thread cannot go below a nice value the process already has.
        let expected = nice_of(&own_tid()).expect("own nice").max(10);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !maintenance().contains(&expected) {
            assert!(
                std::time::Instant::now() < deadline,
                "no background thread at nice {expected}: {:?}",
                maintenance()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(engine);
    }
}
