//! The rollups an engine maintains and their pending work, kept inside the engine's `State` so
//! that marking dirty windows happens under the same lock as the memtable apply: per (database,
//! stream, interval) the configured spec, the dirty windows per series (touched by writes not yet
//! absorbed) and the back-fill cursor. The configuration and cursors are persisted in
//! `DATA/rollups.json` (checksummed, replaced atomically); dirty windows are not: they come back
//! from the WAL replay (see `absorb.rs` for why that suffices).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::window::window_start;
use crate::error::{Result, StorageError};
use crate::lifecycle::RollupSpec;
use crate::{SeriesId, TableWrite};

/// Tag of the checksummed header of `DATA/rollups.json`.
const FILE_TAG: &str = "strata-rollups";

/// One maintained rollup of a stream.
#[derive(Debug, Clone)]
pub(crate) struct Maintained {
    pub spec: RollupSpec,
    /// Windows touched by writes not yet absorbed, per series.
    pub dirty: HashMap<SeriesId, BTreeSet<i64>>,
    /// Number of (series, window) pairs in `dirty`.
    pub dirty_count: usize,
    /// When the oldest write not yet absorbed was marked.
    pub dirty_since: Option<Instant>,
    /// Data below this time still has to be back-filled (`None`: back-fill done).
    pub backfill_below: Option<i64>,
    /// Wall-clock time of the last absorb or back-fill step that wrote this rollup.
    pub last_run: Option<SystemTime>,
    /// The error of the last failed run, cleared by a successful one.
    pub last_error: Option<String>,
}

impl Maintained {
    fn new(spec: RollupSpec, backfill_below: Option<i64>) -> Maintained {
        Maintained {
            spec,
            dirty: HashMap::new(),
            dirty_count: 0,
            dirty_since: None,
            backfill_below,
            last_run: None,
            last_error: None,
        }
    }

    /// Marks the windows of `times` of series `sid` dirty.
    pub fn mark(&mut self, sid: SeriesId, times: impl Iterator<Item = i64>) {
        let every = self.spec.every;
        let set = self.dirty.entry(sid).or_default();
        let mut last = None;
        for t in times {
            let w = window_start(t, every);
            if last == Some(w) {
                continue;
            }
            last = Some(w);
            if set.insert(w) {
                self.dirty_count += 1;
            }
        }
        if self.dirty_count > 0 && self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }
}

/// The configured rollups (per database, overridable per stream, as the lifecycle policy says)
/// and, per database and stream, the maintained rollups (finest first).
#[derive(Debug, Default)]
pub(crate) struct RollupState {
    pub streams: HashMap<String, HashMap<String, Vec<Maintained>>>,
    /// Rollups of every stream of a database without an override.
    pub defaults: HashMap<String, Vec<RollupSpec>>,
    /// Rollups of one stream (an empty list: none), overriding its database's.
    pub overrides: HashMap<String, HashMap<String, Vec<RollupSpec>>>,
    /// A stream got its rollups on its first write since the last save.
    pub unsaved: bool,
}

/// Dirty windows taken out of the state to be absorbed.
#[derive(Debug, Clone)]
pub(crate) struct Taken {
    pub database: String,
    pub stream: String,
    pub every: i64,
    pub dirty: HashMap<SeriesId, BTreeSet<i64>>,
}

/// The persisted configuration and cursors.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedFile {
    defaults: Vec<(String, Vec<RollupSpec>)>,
    overrides: Vec<(String, String, Vec<RollupSpec>)>,
    rollups: Vec<Persisted>,
}

/// The persisted form of one rollup.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    database: String,
    stream: String,
    every: i64,
    keep: Option<i64>,
    backfill_below: Option<i64>,
}

impl RollupState {
    /// True when no stream has rollups and none is configured (the write path's fast exit).
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty() && self.defaults.is_empty() && self.overrides.is_empty()
    }

    /// Marks the windows a table write touches, for every rollup of its stream.
    pub fn mark(&mut self, database: &str, stream: &str, table: &TableWrite, series: &[SeriesId]) {
        let known = self
            .streams
            .get(database)
            .is_some_and(|m| m.contains_key(stream));
        if !known {
            // A stream written for the first time since its database got rollups: its rows
            // are all marked from here on, nothing older to back-fill.
            let specs = self.effective(database, stream);
            if specs.is_empty() || super::is_reserved_rollup_name(stream) {
                return;
            }
            let rollups = specs.iter().map(|s| Maintained::new(*s, None)).collect();
            self.streams
                .entry(database.to_string())
                .or_default()
                .insert(stream.to_string(), rollups);
            self.unsaved = true;
        }
        let Some(rollups) = self
            .streams
            .get_mut(database)
            .and_then(|m| m.get_mut(stream))
        else {
            return;
        };
        for m in rollups {
            // Rows of one series are often contiguous; mark run by run.
            let mut start = 0;
            while start < table.times.len() {
                let s = table.row_series[start];
                let end = start
                    + table.row_series[start..]
                        .iter()
                        .take_while(|&&x| x == s)
                        .count();
                m.mark(series[s as usize], table.times[start..end].iter().copied());
                start = end;
            }
        }
    }

    /// The rollups configured for a stream: its override, else its database's.
    pub fn effective(&self, database: &str, stream: &str) -> Vec<RollupSpec> {
        if let Some(specs) = self.overrides.get(database).and_then(|m| m.get(stream)) {
            return specs.clone();
        }
        self.defaults.get(database).cloned().unwrap_or_default()
    }

    /// The rollups of a stream.
    pub fn of(&self, database: &str, stream: &str) -> &[Maintained] {
        self.streams
            .get(database)
            .and_then(|m| m.get(stream))
            .map_or(&[], Vec::as_slice)
    }

    /// Replaces the rollups of a stream by `specs`; a new interval starts with a back-fill of
    /// everything (below `i64::MAX`), a kept interval keeps its pending work. Returns the
    /// intervals that are new.
    pub fn configure(&mut self, database: &str, stream: &str, specs: &[RollupSpec]) -> Vec<i64> {
        let old = self
            .streams
            .get_mut(database)
            .and_then(|m| m.remove(stream))
            .unwrap_or_default();
        let mut added = Vec::new();
        let mut next = Vec::new();
        for spec in specs {
            match old.iter().find(|m| m.spec.every == spec.every) {
                Some(m) => next.push(Maintained {
                    spec: *spec,
                    ..m.clone()
                }),
                None => {
                    added.push(spec.every);
                    next.push(Maintained::new(*spec, Some(i64::MAX)));
                }
            }
        }
        next.sort_by_key(|m| m.spec.every);
        if !next.is_empty() {
            self.streams
                .entry(database.to_string())
                .or_default()
                .insert(stream.to_string(), next);
        }
        self.streams.retain(|_, m| !m.is_empty());
        added
    }

    /// Takes the dirty windows of every rollup (of one stream when `only` is given).
    pub fn take(&mut self, only: Option<(&str, &str)>) -> Vec<Taken> {
        let mut out = Vec::new();
        for (db, streams) in &mut self.streams {
            for (stream, rollups) in streams.iter_mut() {
                if only.is_some_and(|(d, s)| d != db || s != stream) {
                    continue;
                }
                for m in rollups.iter_mut().filter(|m| m.dirty_count > 0) {
                    out.push(Taken {
                        database: db.clone(),
                        stream: stream.clone(),
                        every: m.spec.every,
                        dirty: std::mem::take(&mut m.dirty),
                    });
                    m.dirty_count = 0;
                    m.dirty_since = None;
                }
            }
        }
        out
    }

    /// Puts back windows that could not be absorbed.
    pub fn give_back(&mut self, taken: Vec<Taken>) {
        for t in taken {
            let Some(m) = self.find_mut(&t.database, &t.stream, t.every) else {
                continue;
            };
            for (sid, windows) in t.dirty {
                let set = m.dirty.entry(sid).or_default();
                for w in windows {
                    if set.insert(w) {
                        m.dirty_count += 1;
                    }
                }
            }
            if m.dirty_count > 0 && m.dirty_since.is_none() {
                m.dirty_since = Some(Instant::now());
            }
        }
    }

    /// One rollup, for updates.
    pub fn find_mut(
        &mut self,
        database: &str,
        stream: &str,
        every: i64,
    ) -> Option<&mut Maintained> {
        self.streams
            .get_mut(database)?
            .get_mut(stream)?
            .iter_mut()
            .find(|m| m.spec.every == every)
    }

    /// Records the outcome of a run of one rollup.
    pub fn record_run(&mut self, database: &str, stream: &str, every: i64, error: Option<String>) {
        if let Some(m) = self.find_mut(database, stream, every) {
            m.last_run = Some(SystemTime::now());
            m.last_error = error;
        }
    }

    /// Loads the configuration and back-fill cursors (an absent file: no rollups).
    pub fn load(path: &Path) -> Result<RollupState> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RollupState::default()),
            Err(source) => {
                return Err(StorageError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let body = crate::fsutil::check_checksum_header(FILE_TAG, &bytes, path)?;
        let file: PersistedFile =
            serde_json::from_slice(body).map_err(|e| StorageError::Corrupt {
                path: path.to_path_buf(),
                detail: format!("rollup configuration is not valid JSON: {e}"),
            })?;
        let mut state = RollupState::default();
        state.defaults.extend(file.defaults);
        for (db, stream, specs) in file.overrides {
            state.overrides.entry(db).or_default().insert(stream, specs);
        }
        for p in file.rollups {
            let spec = RollupSpec {
                every: p.every,
                keep: p.keep,
            };
            state
                .streams
                .entry(p.database)
                .or_default()
                .entry(p.stream)
                .or_default()
                .push(Maintained::new(spec, p.backfill_below));
        }
        Ok(state)
    }

    /// The persisted form of the configuration and cursors.
    pub fn encode(&self) -> Vec<u8> {
        let mut list: Vec<Persisted> = self
            .streams
            .iter()
            .flat_map(|(db, streams)| {
                streams.iter().flat_map(move |(stream, rollups)| {
                    rollups.iter().map(move |m| Persisted {
                        database: db.clone(),
                        stream: stream.clone(),
                        every: m.spec.every,
                        keep: m.spec.keep,
                        backfill_below: m.backfill_below,
                    })
                })
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.database, &a.stream, a.every).cmp(&(&b.database, &b.stream, b.every))
        });
        let mut defaults: Vec<(String, Vec<RollupSpec>)> = self
            .defaults
            .iter()
            .map(|(d, s)| (d.clone(), s.clone()))
            .collect();
        defaults.sort_by(|a, b| a.0.cmp(&b.0));
        let mut overrides: Vec<(String, String, Vec<RollupSpec>)> = self
            .overrides
            .iter()
            .flat_map(|(d, m)| {
                m.iter()
                    .map(move |(s, r)| (d.clone(), s.clone(), r.clone()))
            })
            .collect();
        overrides.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let file = PersistedFile {
            defaults,
            overrides,
            rollups: list,
        };
        let body = serde_json::to_vec_pretty(&file).unwrap_or_default();
        crate::fsutil::with_checksum_header(FILE_TAG, &body)
    }
}
