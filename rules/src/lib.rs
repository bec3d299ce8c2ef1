//! Strata's rules layer: rules defined over the SQL catalog whose results become alerts (as data:
//! the `alerts` and `rules` SQL tables and the `alert_history` stream) and durable actions.
//!
//! - [`spec`]: the rule definition (JSON of `POST /api/v1/rules`) and its checks.
//! - [`alert`]: the alert state machine (pending → firing → resolved, `for`, `keep_firing_for`).
//! - [`store`]: `DATA/rules.redb` (rules, alert instances, outbox), one transaction per change.
//! - [`codec`]: the binary records of its alert instances and outbox entries.
//! - [`outbox`]: notifications and outbox entries (idempotency key, HMAC signature, backoff).
//! - [`dispatch`]: the delivery thread (webhook, MQTT, command, stream writes, history), retries
//!   with exponential backoff and dead letters.
//! - [`lanes`]: how a pass splits due entries: lanes (in order), destinations, one job each.
//! - [`pool`]: the delivery workers of webhooks and MQTT publishes, one job per destination.
//! - [`mqtt`]: the QoS 1 publisher of `mqtt` actions.
//! - [`registry_join`]: `devices` (attributes as a typed struct) joined into conditions.
//! - [`row`]: row rules: the after-durable-write observer, its bounded queue, the condition
//!   evaluated with DataFusion over each batch.
//! - [`window`]: window rules: open windows per rule, watermark, lateness, closing.
//! - [`window_eval`]: window shapes, the aggregation SQL and its DataFusion run.
//! - [`window_keyed`]: sliding and session windows (per group).
//! - [`window_fast`], [`window_fast_keyed`]: the incremental path of window rules whose select is
//!   plain float aggregates (accumulators, interned groups, condition compiled once).
//! - [`window_share`]: window rules with the same window, `group_by` and select sharing one
//!   state (each its own condition).
//! - [`pending`]: group commit of the row worker's queued batches.
//! - [`eval`]: query rules (SQL every interval through [`QueryEngine`]) → alert transitions.
//! - [`query_share`]: one scan for query rules that differ only in `HAVING`.
//! - [`dryrun`]: `dry-run` over stored history, without acting, and `replay`, acting.
//! - [`tables`]: the `alerts` and `rules` SQL tables ([`strata_query::SnapshotSource`]).
//! - [`stats`]: per-rule counters for `/metrics` and the `rules` table.
//!
//! Dependencies point down: the server wires this crate in; it uses `query` and `storage` (and
//! `ingest::text` for durations and RFC 3339).

pub mod alert;
pub mod codec;
pub mod dispatch;
pub mod dryrun;
pub mod error;
pub mod eval;
pub mod lanes;
pub mod mqtt;
pub mod outbox;
pub mod pending;
pub mod pool;
pub mod query_share;
pub mod registry_join;
pub mod row;
pub mod spec;
pub mod stats;
pub mod store;
pub mod tables;
pub mod window;
pub mod window_eval;
pub mod window_fast;
pub mod window_fast_keyed;
pub mod window_keyed;
pub mod window_share;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use strata_query::QueryEngine;
use strata_storage::Engine;

pub use error::{Result, RulesError};
pub use spec::{ActionSpec, RuleKind, RuleSpec};
pub use stats::RuleStats;

use crate::outbox::OutboxEntry;
use crate::spec::Timing;
use crate::store::Store;

/// File name of the rule store inside the data directory.
pub const STORE_FILE: &str = "rules.redb";

/// Nanoseconds since the Unix epoch now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A rule as the API shows it: the definition (secrets redacted) and its counters.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    /// The definition.
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// Counters since the server started.
    pub status: RuleStats,
}

/// A rule loaded for evaluation.
#[derive(Debug, Clone)]
struct Loaded {
    spec: RuleSpec,
    timing: Timing,
    next_due_ns: i64,
    running: bool,
    /// Query rules: what they share a scan by (their `every` and SQL without `HAVING`), or their
    /// own name when they share nothing; also what their phase within `every` derives from.
    unit: String,
}

/// Query rules evaluated together (one scan when more than one): rule, timing, due time.
type QueryJob = Vec<(RuleSpec, Timing, i64)>;

/// The rules service: the store, the loaded rules, the evaluator and the dispatcher.
pub struct Rules {
    store: Arc<Store>,
    engine: Arc<Engine>,
    query: Arc<QueryEngine>,
    loaded: RwLock<BTreeMap<String, Loaded>>,
    stats: Arc<stats::Stats>,
    /// The outbox's delivery workers (their gauges are in `/metrics`).
    delivery: Arc<pool::Pool>,
    wake: SyncSender<()>,
    wake_rx: Mutex<Option<Receiver<()>>>,
    stop: Arc<AtomicBool>,
    feed: Arc<row::RowFeed>,
    feed_rx: Mutex<Option<tokio::sync::mpsc::Receiver<row::Arrived>>>,
    windows: Mutex<BTreeMap<String, window::WindowState>>,
    /// Window states shared by rules with the same share key ([`window_share::share_key`]).
    shared: Mutex<BTreeMap<String, window_share::Unit>>,
    /// Group-key interners shared by the incremental window rules of this instance.
    interners: window_fast::GroupInterners,
    /// Late rows dropped per window rule (kept apart: a state is out of `windows` while a batch
    /// is being evaluated).
    late: Mutex<BTreeMap<String, u64>>,
    devices: registry_join::DevicesCache,
    /// Compiled row rule conditions.
    compiled: Arc<row::Compiled>,
    commands: std::sync::OnceLock<Arc<dyn outbox::CommandSink>>,
    broker: std::sync::OnceLock<mqtt::Broker>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Rules {
    /// Opens `DATA/rules.redb` and loads the rules; nothing runs until [`Rules::start`].
    pub fn open(
        data_dir: &Path,
        engine: Arc<Engine>,
        query: Arc<QueryEngine>,
    ) -> Result<Arc<Rules>> {
        let store = Arc::new(Store::open(&data_dir.join(STORE_FILE))?);
        let mut loaded = BTreeMap::new();
        for spec in store.list_rules()? {
            let timing = match spec.check() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(rule = %spec.name, error = %e, "stored rule no longer valid; not evaluated");
                    continue;
                }
            };
            loaded.insert(spec.name.clone(), Loaded::new(spec, timing));
        }
        let (wake, rx) = sync_channel(1);
        let (feed, feed_rx) = row::RowFeed::new();
        if !engine.set_write_observer(feed.clone()) {
            tracing::warn!("the engine already has a write observer; row rules will not run");
        }
        let rules = Arc::new(Rules {
            store,
            engine,
            query,
            loaded: RwLock::new(loaded),
            stats: Arc::default(),
            delivery: Arc::default(),
            wake,
            wake_rx: Mutex::new(Some(rx)),
            stop: Arc::default(),
            feed,
            feed_rx: Mutex::new(Some(feed_rx)),
            windows: Mutex::default(),
            shared: Mutex::default(),
            interners: window_fast::GroupInterners::default(),
            late: Mutex::default(),
            devices: registry_join::DevicesCache::default(),
            compiled: Arc::default(),
            commands: std::sync::OnceLock::new(),
            broker: std::sync::OnceLock::new(),
        });
        rules.refresh_watch();
        Ok(rules)
    }

    /// A consistent copy of `DATA/rules.redb` (rules, alert instances, outbox) for a backup.
    pub fn backup_bytes(&self) -> Result<Vec<u8>> {
        self.store.backup_bytes()
    }

    /// Checks a definition completely (fields, durations, SQL planned against the catalog).
    pub async fn validate(&self, spec: &RuleSpec) -> Result<Timing> {
        let timing = spec.check()?;
        match spec.kind {
            RuleKind::Query => {
                let sql = spec.sql.as_deref().unwrap_or_default();
                self.query
                    .logical_plan(sql)
                    .await
                    .map_err(|e| RulesError::Invalid(format!("sql: {e}")))?;
            }
            RuleKind::Row | RuleKind::Window if self.joins_devices(spec) => {
                self.validate_with_devices(spec).await?;
            }
            RuleKind::Row => {
                let (db, stream) = (&spec.db, spec.stream.as_deref().unwrap_or_default());
                self.check_stream(db, stream)?;
                let cond = spec.condition.as_deref().unwrap_or_default();
                let sql = format!("SELECT * FROM \"{db}\".\"{stream}\" WHERE ({cond})");
                self.query
                    .logical_plan(&sql)
                    .await
                    .map_err(|e| RulesError::Invalid(format!("condition: {e}")))?;
            }
            RuleKind::Window => {
                let (db, stream) = (&spec.db, spec.stream.as_deref().unwrap_or_default());
                self.check_stream(db, stream)?;
                window::Shape::of(spec)?;
                let sql = window::window_sql(spec, &format!("\"{db}\".\"{stream}\""));
                self.query
                    .logical_plan(&sql)
                    .await
                    .map_err(|e| RulesError::Invalid(format!("select/condition/group_by: {e}")))?;
            }
        }
        self.check_cycles(spec)?;
        self.check_broker(spec)?;
        Ok(timing)
    }

    /// Whether the rule's condition joins the registry's devices.
    fn joins_devices(&self, spec: &RuleSpec) -> bool {
        spec.kind != RuleKind::Query
            && registry_join::mentions_devices(spec.condition.as_deref().unwrap_or_default())
    }

    /// The devices table for `spec`'s evaluation, if its condition joins it.
    async fn devices_for(
        &self,
        spec: &RuleSpec,
    ) -> Result<Option<strata_query::arrow::array::RecordBatch>> {
        if !self.joins_devices(spec) {
            return Ok(None);
        }
        self.devices.table(&self.query).await.map(Some)
    }

    /// Plans a condition joining `devices` over an empty batch of the stream's layout (the SQL
    /// catalog's `devices.attributes` is JSON text; rules see it as a struct).
    async fn validate_with_devices(&self, spec: &RuleSpec) -> Result<()> {
        let (db, stream) = (&spec.db, spec.stream.as_deref().unwrap_or_default());
        self.check_stream(db, stream)?;
        if spec.kind == RuleKind::Window {
            window::Shape::of(spec)?;
        }
        if spec.kind == RuleKind::Window && !spec.group_by.iter().any(|g| g == "device") {
            return Err(RulesError::Invalid(
                "condition: joining devices needs \"device\" in group_by".into(),
            ));
        }
        let devices = self.devices.table(&self.query).await?;
        let layout = row::layout(&self.engine, db, stream);
        let empty = strata_query::arrow::array::RecordBatch::new_empty(layout.schema.clone());
        let planned = match spec.kind {
            RuleKind::Window => window::aggregate(spec, empty, None, Some(&devices))
                .await
                .map(|_| ()),
            _ => {
                let cond = spec.condition.as_deref().unwrap_or_default();
                row::evaluate(stream, cond, empty, Some(devices.clone()))
                    .await
                    .map(|_| ())
            }
        };
        planned.map_err(|e| {
            let keys = attribute_keys(&devices);
            RulesError::Invalid(format!("{e} (devices.attributes keys now: {keys})"))
        })
    }

    fn check_broker(&self, spec: &RuleSpec) -> Result<()> {
        let wants = spec
            .actions
            .iter()
            .position(|a| matches!(a, ActionSpec::Mqtt { .. }));
        match (wants, self.broker.get()) {
            (Some(i), None) => Err(RulesError::Invalid(format!(
                "actions[{i}]: mqtt actions need a broker; start the server with --rules-mqtt-broker HOST:PORT"
            ))),
            _ => Ok(()),
        }
    }

    fn check_stream(&self, db: &str, stream: &str) -> Result<()> {
        if self.engine.streams(db).iter().any(|s| s == stream) {
            return Ok(());
        }
        Err(RulesError::Invalid(format!(
            "stream: '{db}.{stream}' does not exist (write to it first)"
        )))
    }

    /// Rebuilds the open windows of every window rule from its stream (call once after
    /// [`Rules::open`], before writes arrive): the watermark from the stream's newest row, the
    /// rows of the windows it has not closed.
    pub async fn rebuild_windows(&self) {
        let specs: Vec<RuleSpec> = match self.loaded.read() {
            Ok(l) => l
                .values()
                .filter(|r| r.spec.kind == RuleKind::Window)
                .map(|r| r.spec.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for spec in specs {
            match self.rebuild_window(&spec).await {
                Ok(state) => {
                    if let Ok(mut w) = self.windows.lock() {
                        w.insert(spec.name.clone(), state);
                    }
                }
                Err(e) => {
                    tracing::warn!(rule = %spec.name, error = %e, "cannot rebuild open windows")
                }
            }
        }
    }

    /// An empty window state whose incremental path shares this instance's group interners.
    fn window_state(&self) -> window::WindowState {
        let mut state = window::WindowState::default();
        state.interners = self.interners.clone();
        state
    }

    async fn rebuild_window(&self, spec: &RuleSpec) -> Result<window::WindowState> {
        let shape = window::Shape::of(spec)?;
        let table = format!(
            "\"{}\".\"{}\"",
            spec.db,
            spec.stream.as_deref().unwrap_or_default()
        );
        let q = |e: strata_query::QueryError| RulesError::Invalid(format!("rebuild: {e}"));
        let newest = self
            .query
            .query(&format!(
                "SELECT CAST(max(time) AS BIGINT) AS m FROM {table}"
            ))
            .await
            .map_err(q)?;
        let max = eval::instances(&newest.batches)?
            .into_values()
            .next()
            .and_then(|v| v.get("m").and_then(|m| m.as_f64()));
        let mut state = self.window_state();
        let Some(max) = max else { return Ok(state) };
        let wm = (max as i64).saturating_sub(shape.lateness_ns);
        state.watermark = Some(wm);
        let from = window_keyed::rebuild_from(shape, wm);
        let rows = self
            .query
            .query(&format!(
                "SELECT * FROM {table} WHERE time > to_timestamp_nanos({from}) ORDER BY time"
            ))
            .await
            .map_err(q)?;
        if shape.kind != window::Kind::Fixed {
            state.seed_keyed(spec, shape, wm, &rows.batches);
            return Ok(state);
        }
        // Rows of windows that closed before the restart are replayed only to be left out: with
        // `late_policy: adjust` they would move to the watermark and count a second time.
        let replay = window::Shape {
            adjust_late: false,
            ..shape
        };
        for b in &rows.batches {
            state.add(spec, replay, b).await?;
        }
        state.late_dropped = 0;
        Ok(state)
    }

    /// Refuses a rule whose stream actions would feed back into the stream it (or a rule it
    /// feeds) watches: derived streams may feed other rules, but not in a cycle.
    fn check_cycles(&self, spec: &RuleSpec) -> Result<()> {
        let mut specs: Vec<RuleSpec> = match self.loaded.read() {
            Ok(l) => l
                .values()
                .filter(|r| r.spec.name != spec.name)
                .map(|r| r.spec.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        specs.push(spec.clone());
        match spec::find_cycle(&specs) {
            Some(path) => Err(RulesError::Invalid(format!(
                "actions: derived streams form a cycle: {}",
                path.join(" -> ")
            ))),
            None => Ok(()),
        }
    }

    /// Tells the write observer which streams the row rules watch.
    fn refresh_watch(&self) {
        let pairs: Vec<(String, String)> = match self.loaded.read() {
            Ok(l) => l
                .values()
                .filter(|r| r.spec.enabled && r.spec.kind != RuleKind::Query)
                .filter_map(|r| Some((r.spec.db.clone(), r.spec.stream.clone()?)))
                .collect(),
            Err(_) => Vec::new(),
        };
        self.feed.watch(pairs);
        if let Ok(l) = self.loaded.read() {
            let keep: std::collections::HashSet<&str> = l
                .values()
                .filter_map(|r| r.spec.condition.as_deref())
                .collect();
            self.compiled.retain(&keep);
        }
    }

    /// Creates a rule (`Exists` when the name is taken).
    pub async fn create(&self, spec: RuleSpec) -> Result<RuleView> {
        let timing = self.validate(&spec).await?;
        let store = self.store.clone();
        let s = spec.clone();
        blocking(move || store.put_rule(&s, true)).await?;
        self.load(spec.clone(), timing);
        Ok(self.view(spec))
    }

    /// Replaces rule `name` (its alert instances stay; keys no longer produced resolve).
    pub async fn replace(&self, name: &str, mut spec: RuleSpec) -> Result<RuleView> {
        if spec.name.is_empty() {
            spec.name = name.to_string();
        }
        if spec.name != name {
            return Err(RulesError::Invalid(format!(
                "name: the body names '{}' but the URL '{name}'; a rule cannot be renamed",
                spec.name
            )));
        }
        let timing = self.validate(&spec).await?;
        let store = self.store.clone();
        let s = spec.clone();
        blocking(move || store.put_rule(&s, false)).await?;
        // A new window, select or grouping (or a rule disabled, or enabled again: rows were
        // missed) starts from empty windows, its own state and its part of a shared one gone;
        // a new condition alone is recompiled in place (open windows and the watermark stay).
        let old = match self.loaded.read() {
            Ok(l) => l.get(name).map(|o| o.spec.clone()),
            Err(_) => None,
        };
        let keeps = old.is_some_and(|o| {
            window_share::same_windows(&o, &spec)
                && !self.joins_devices(&spec)
                && o.enabled
                && spec.enabled
        });
        if !keeps {
            self.forget_windows(name);
        }
        self.load(spec.clone(), timing);
        Ok(self.view(spec))
    }

    /// Adds a batch to a window rule's open windows and acts on the windows it closed; returns
    /// (groups that matched, transitions queued).
    async fn run_window(
        self: &Arc<Self>,
        spec: &RuleSpec,
        timing: Timing,
        batch: strata_query::arrow::array::RecordBatch,
        run: &Run,
    ) -> Result<(u64, u64)> {
        let shape = window::Shape::of(spec)?;
        let mut state = self
            .windows
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&spec.name))
            .unwrap_or_else(|| self.window_state());
        let open = run.open_keys(&spec.name);
        let closed = match (self.devices_for(spec).await, open) {
            (Ok(d), Ok(open)) => {
                state.devices = d;
                state.may_be_open = Some(open);
                state.add(spec, shape, &batch).await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Ok(mut l) = self.late.lock() {
            l.insert(spec.name.clone(), state.late_dropped);
        }
        if let Ok(mut w) = self.windows.lock() {
            w.insert(spec.name.clone(), state);
        }
        let mut matches = 0;
        let mut queued = 0;
        for (end, groups) in closed? {
            matches += groups.values().filter(|(m, _)| *m).count() as u64;
            queued += run.step(spec, timing, groups, end)?;
        }
        Ok((matches, queued))
    }

    /// Rows a window rule dropped because they came after their windows closed.
    pub fn late_dropped(&self, name: &str) -> u64 {
        self.late
            .lock()
            .ok()
            .and_then(|l| l.get(name).copied())
            .unwrap_or(0)
    }

    /// Enables or disables rule `name`.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<RuleView> {
        let store = self.store.clone();
        let n = name.to_string();
        let spec = blocking(move || {
            let mut spec = store.get_rule(&n)?;
            spec.enabled = enabled;
            store.put_rule(&spec, false)?;
            Ok(spec)
        })
        .await?;
        if let Ok(timing) = spec.check() {
            self.load(spec.clone(), timing);
        }
        Ok(self.view(spec))
    }

    /// Deletes rule `name` and its alert instances.
    pub async fn delete(&self, name: &str) -> Result<RuleView> {
        let store = self.store.clone();
        let n = name.to_string();
        let spec = blocking(move || store.delete_rule(&n)).await?;
        if let Ok(mut l) = self.loaded.write() {
            l.remove(name);
        }
        self.refresh_watch();
        self.forget_windows(name);
        if let Ok(mut l) = self.late.lock() {
            l.remove(name);
        }
        let view = self.view(spec);
        self.stats.remove(name);
        Ok(view)
    }

    /// Rule `name`.
    pub async fn get(&self, name: &str) -> Result<RuleView> {
        let store = self.store.clone();
        let n = name.to_string();
        Ok(self.view(blocking(move || store.get_rule(&n)).await?))
    }

    /// Every rule.
    pub async fn list(&self) -> Result<Vec<RuleView>> {
        let store = self.store.clone();
        let specs = blocking(move || store.list_rules()).await?;
        Ok(specs.into_iter().map(|s| self.view(s)).collect())
    }

    /// The outbox entries (pending and dead) of rule `name`.
    pub async fn outbox(&self, name: &str) -> Result<Vec<OutboxEntry>> {
        let store = self.store.clone();
        let n = name.to_string();
        blocking(move || {
            let mut entries = store.outbox()?;
            entries.retain(|e| e.rule() == n);
            for e in &mut entries {
                if let outbox::Target::Action { action, .. } = &mut e.target {
                    redact(action);
                }
            }
            Ok(entries)
        })
        .await
    }

    /// Prometheus text of the per-rule counters.
    pub fn render_metrics(&self, out: &mut String) {
        self.stats.render(out);
        self.delivery.render(out, now_ns());
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP strata_rule_dropped_rows_total Rows not evaluated by row rules because their queue was full.\n\
             # TYPE strata_rule_dropped_rows_total counter\nstrata_rule_dropped_rows_total {}\n\
             # HELP strata_rule_queue_batches Durable batches waiting for the row rules worker.\n\
             # TYPE strata_rule_queue_batches gauge\nstrata_rule_queue_batches {}",
            self.feed.dropped_rows(),
            self.feed.queued()
        );
        let _ = writeln!(
            out,
            "# HELP strata_rule_late_rows_dropped_total Rows a window rule dropped: all their windows had closed.\n\
             # TYPE strata_rule_late_rows_dropped_total counter"
        );
        if let Ok(l) = self.late.lock() {
            for (rule, n) in l.iter() {
                let _ = writeln!(
                    out,
                    "strata_rule_late_rows_dropped_total{{rule=\"{rule}\"}} {n}"
                );
            }
        }
    }

    /// Registers the `alerts` and `rules` SQL tables in `query`.
    pub fn register_tables(self: &Arc<Self>, query: &QueryEngine) {
        tables::register(self, query);
    }

    /// Starts the evaluator (a Tokio task; call inside the runtime) and the outbox dispatcher
    /// (a thread). [`Rules::shutdown`] stops both.
    pub fn start(self: &Arc<Self>) {
        let Some(rx) = self.wake_rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let dispatcher = Arc::new(dispatch::Dispatcher {
            commands: self.commands.get().cloned(),
            mqtt: std::sync::Mutex::new(self.broker.get().cloned().map(mqtt::Publisher::new)),
            store: self.store.clone(),
            engine: self.engine.clone(),
            agent: dispatch::agent(),
            stop: self.stop.clone(),
            stats: self.stats.clone(),
            pool: self.delivery.clone(),
            wake: self.wake.clone(),
        });
        let spawned = std::thread::Builder::new()
            .name("rules-outbox".into())
            .spawn(move || dispatcher.run(rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the rules outbox thread");
        }
        let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
        self.start_query_thread(rx);
        let me = self.clone();
        tokio::spawn(async move { me.schedule(jobs).await });
        if let Some(rx) = self.feed_rx.lock().ok().and_then(|mut r| r.take()) {
            let me = self.clone();
            tokio::spawn(async move { me.row_worker(rx).await });
        }
    }

    /// The row rules worker: evaluates every watching rule on each durable batch; the batches
    /// waiting together (up to [`pending::MAX_GROUP`]) are evaluated in order and committed once.
    async fn row_worker(self: Arc<Self>, mut rx: tokio::sync::mpsc::Receiver<row::Arrived>) {
        while let Some(first) = rx.recv().await {
            self.feed.took();
            let mut group = vec![first];
            while group.len() < pending::MAX_GROUP {
                match rx.try_recv() {
                    Ok(a) => {
                        self.feed.took();
                        group.push(a);
                    }
                    Err(_) => break,
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let run = Run::new(self.store.clone());
            for a in &group {
                self.evaluate_batch(a, &run).await;
            }
            self.finish(run).await;
        }
    }

    /// Commits a group's changes (one transaction), then records its evaluations (a failed
    /// commit fails every evaluation of the group).
    async fn finish(&self, run: Run) {
        let Run { pending, outcomes } = run;
        let outcomes = match outcomes.into_inner() {
            Ok(o) => o,
            Err(_) => return,
        };
        let committed = match Arc::try_unwrap(pending).map(Mutex::into_inner) {
            Ok(Ok(p)) => blocking(move || p.commit()).await,
            _ => Err(RulesError::Store("pending changes still in use".into())),
        };
        for (name, start, lag, outcome) in outcomes {
            let outcome = match &committed {
                Ok(()) => outcome,
                Err(e) => Err(RulesError::Store(format!("commit: {e}"))),
            };
            self.record(&name, start, lag, outcome);
        }
    }

    /// Every rule watching `a`'s stream over it.
    async fn evaluate_batch(self: &Arc<Self>, a: &row::Arrived, run: &Run) {
        let watching: Vec<(RuleSpec, Timing)> = match self.loaded.read() {
            Ok(l) => l
                .values()
                .filter(|r| {
                    r.spec.enabled
                        && r.spec.kind != RuleKind::Query
                        && r.spec.db == a.db
                        && r.spec.stream.as_deref() == Some(a.table.stream.as_str())
                })
                .map(|r| (r.spec.clone(), r.timing))
                .collect(),
            Err(_) => Vec::new(),
        };
        if watching.is_empty() {
            return;
        }
        let layout = row::layout(&self.engine, &a.db, &a.table.stream);
        // One Arrow conversion per batch, shared by every rule.
        let batch = match row::record_batch(&layout, &a.table) {
            Ok(b) => b,
            Err(e) => {
                for (spec, _) in &watching {
                    let now = now_ns();
                    run.outcome(&spec.name, now, now - a.at_ns, Err(e.clone_invalid()));
                }
                return;
            }
        };
        let (together, others): (Vec<_>, Vec<_>) = watching
            .into_iter()
            .partition(|(s, _)| s.kind == RuleKind::Row && !self.joins_devices(s));
        let mut units: BTreeMap<String, Vec<(RuleSpec, Timing)>> = BTreeMap::new();
        for (spec, timing) in others {
            let key = (spec.kind == RuleKind::Window
                && !self.joins_devices(&spec)
                && !self.evaluates_generally(&spec.name))
            .then(|| window_share::share_key(&spec, &batch))
            .flatten();
            match key {
                Some(key) => units.entry(key).or_default().push((spec, timing)),
                None => {
                    self.evaluate_row(&spec, timing, a, batch.clone(), run)
                        .await
                }
            }
        }
        for (key, rules) in units {
            self.evaluate_windows(&key, rules, a, &batch, run).await;
        }
        if !together.is_empty() {
            self.evaluate_rows(together, a, batch, run).await;
        }
    }

    /// Every plain row rule of a stream over one batch in one blocking task: conditions compiled
    /// once to DataFusion physical expressions ([`row::Compiled`]) and evaluated on the batch, the
    /// open alert instances read from memory; if a condition fails (a rule broke), each rule is
    /// evaluated alone so that only the broken one reports an error.
    async fn evaluate_rows(
        self: &Arc<Self>,
        rules: Vec<(RuleSpec, Timing)>,
        a: &row::Arrived,
        batch: strata_query::arrow::array::RecordBatch,
        run: &Run,
    ) {
        let start = now_ns();
        let conds: Vec<String> = rules
            .iter()
            .map(|(s, _)| s.condition.clone().unwrap_or_default())
            .collect();
        let (compiled, pending) = (self.compiled.clone(), run.pending.clone());
        // Off the async runtime: compiled conditions over the batch, then each rule's step.
        let outcomes = blocking(move || {
            let refs: Vec<&str> = conds.iter().map(String::as_str).collect();
            let flags = match compiled.flags(&refs, &batch) {
                Ok(f) => f,
                Err(_) => return Ok(Err((rules, batch))),
            };
            let last = row::last_rows(&batch)?;
            let mut pending = pending
                .lock()
                .map_err(|_| RulesError::Store("pending changes poisoned".into()))?;
            let mut out = Vec::with_capacity(rules.len());
            for ((spec, timing), flag) in rules.into_iter().zip(flags) {
                // Open instances only (resolved ones cannot change without a match).
                let stepped = pending.open_of(&spec.name).and_then(|mine| {
                    row::step_rule(&spec, timing, &batch, (&last, &flag), mine, start)
                });
                match stepped {
                    Ok((changes, entries, matched, n)) => {
                        let pushed = pending.push(&spec.name, changes, entries);
                        out.push((spec.name, pushed.map(|()| (matched, n))));
                    }
                    Err(e) => out.push((spec.name, Err(e))),
                }
            }
            Ok(Ok(out))
        })
        .await;
        match outcomes {
            Ok(Ok(outcomes)) => {
                for (name, r) in outcomes {
                    run.outcome(&name, start, start - a.at_ns, r);
                }
            }
            // A condition failed: each rule alone, so that only the broken one reports it.
            Ok(Err((rules, batch))) => {
                for (spec, timing) in rules {
                    self.evaluate_row(&spec, timing, a, batch.clone(), run)
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "row rules evaluation failed"),
        }
    }

    /// Window rules sharing one state (same share key) over one batch: the batch added once,
    /// each closed window aggregated once and judged by each rule.
    async fn evaluate_windows(
        self: &Arc<Self>,
        key: &str,
        rules: Vec<(RuleSpec, Timing)>,
        a: &row::Arrived,
        batch: &strata_query::arrow::array::RecordBatch,
        run: &Run,
    ) {
        let start = now_ns();
        let shape = match rules.first().map(|(s, _)| window::Shape::of(s)) {
            Some(Ok(shape)) => shape,
            Some(Err(e)) => {
                for (spec, _) in &rules {
                    run.outcome(&spec.name, start, start - a.at_ns, Err(e.clone_invalid()));
                }
                return;
            }
            None => return,
        };
        let mut unit = self.take_unit(key, &rules);
        let opens = rules.iter().map(|(s, _)| run.open_keys(&s.name)).collect();
        let specs: Vec<&RuleSpec> = rules.iter().map(|(s, _)| s).collect();
        let results = unit.evaluate(&specs, shape, batch, opens);
        if let Ok(mut l) = self.late.lock() {
            for (spec, _) in &rules {
                l.insert(spec.name.clone(), unit.late_dropped());
            }
        }
        if let Ok(mut u) = self.shared.lock() {
            u.insert(key.to_string(), unit);
        }
        for ((spec, timing), closed) in rules.iter().zip(results) {
            let outcome = closed.and_then(|closed| {
                let (mut matches, mut queued) = (0, 0);
                for (end, groups) in closed {
                    matches += groups.values().filter(|(m, _)| *m).count() as u64;
                    queued += run.step(spec, *timing, groups, end)?;
                }
                Ok((matches, queued))
            });
            run.outcome(&spec.name, start, start - a.at_ns, outcome);
        }
    }

    /// The unit of `key`, out of the map while it is evaluated; a new one takes over the state
    /// a rule of `rules` had alone (rebuilt from the stream after a restart), if any.
    fn take_unit(&self, key: &str, rules: &[(RuleSpec, Timing)]) -> window_share::Unit {
        if let Some(u) = self.shared.lock().ok().and_then(|mut u| u.remove(key)) {
            return u;
        }
        let mut own = None;
        if let Ok(mut w) = self.windows.lock() {
            for (spec, _) in rules {
                match w.remove(&spec.name) {
                    Some(s) if own.is_none() && s.is_incremental() => own = Some(s),
                    _ => {}
                }
            }
        }
        window_share::Unit::new(own.unwrap_or_else(|| self.window_state()))
    }

    /// Whether rule `name` has a window state of its own on the general path (it keeps it: moving
    /// to a shared state would lose its open windows).
    fn evaluates_generally(&self, name: &str) -> bool {
        self.windows
            .lock()
            .ok()
            .and_then(|w| w.get(name).map(window::WindowState::is_general))
            .unwrap_or(false)
    }

    /// Forgets rule `name`'s window state (its own, and its part of a shared one).
    fn forget_windows(&self, name: &str) {
        if let Ok(mut w) = self.windows.lock() {
            w.remove(name);
        }
        if let Ok(mut u) = self.shared.lock() {
            u.retain(|_, unit| !unit.forget(name));
        }
    }

    /// One rule over one batch, alone.
    async fn evaluate_row(
        self: &Arc<Self>,
        spec: &RuleSpec,
        timing: Timing,
        a: &row::Arrived,
        batch: strata_query::arrow::array::RecordBatch,
        run: &Run,
    ) {
        let start = now_ns();
        let outcome = self.run_row(spec, timing, batch, start, run).await;
        run.outcome(&spec.name, start, start - a.at_ns, outcome);
    }

    async fn run_row(
        self: &Arc<Self>,
        spec: &RuleSpec,
        timing: Timing,
        batch: strata_query::arrow::array::RecordBatch,
        now: i64,
        run: &Run,
    ) -> Result<(u64, u64)> {
        if spec.kind == RuleKind::Window {
            return self.run_window(spec, timing, batch, run).await;
        }
        let stream = spec.stream.as_deref().unwrap_or_default();
        let cond = spec.condition.as_deref().unwrap_or_default();
        let devices = self.devices_for(spec).await?;
        let seen = row::evaluate(stream, cond, batch, devices).await?;
        let matches = seen.values().filter(|(m, _)| *m).count() as u64;
        let queued = run.step(spec, timing, seen, now)?;
        Ok((matches, queued))
    }

    /// Sets the broker `mqtt` actions publish to (call before [`Rules::start`]); without one,
    /// rules with `mqtt` actions are refused.
    pub fn set_mqtt_broker(&self, broker: mqtt::Broker) {
        let _ = self.broker.set(broker);
    }

    /// Sets where `command` actions go (call before [`Rules::start`]).
    pub fn set_command_sink(&self, sink: Arc<dyn outbox::CommandSink>) {
        let _ = self.commands.set(sink);
    }

    /// Stops evaluating and delivering (undelivered entries stay in the outbox).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
    }

    fn view(&self, spec: RuleSpec) -> RuleView {
        let status = self.stats.get(&spec.name);
        RuleView {
            spec: spec.redacted(),
            status,
        }
    }

    fn load(&self, spec: RuleSpec, timing: Timing) {
        if let Ok(mut l) = self.loaded.write() {
            let running = l.get(&spec.name).is_some_and(|o| o.running);
            let mut entry = Loaded::new(spec, timing);
            entry.running = running;
            l.insert(entry.spec.name.clone(), entry);
        }
        self.refresh_watch();
    }

    /// Wakes the dispatcher (after new outbox entries).
    fn kick(&self) {
        let _ = self.wake.try_send(());
    }

    /// The query rules' own thread (a single-threaded runtime): evaluates the jobs
    /// [`Rules::schedule`] sends, one after the other, so that their scans never run on the
    /// runtime that serves ingest and the row worker. Ends when the scheduler stops.
    fn start_query_thread(
        self: &Arc<Self>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<QueryJob>,
    ) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("rules-query".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            me.evaluate_job(job).await;
                        }
                    }),
                    Err(e) => tracing::error!(error = %e, "cannot start the query rules runtime"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the query rules thread");
        }
    }

    /// The evaluator loop: every 50 ms, hands the due query rules that are not running to the
    /// query thread, those sharing a scan as one job.
    async fn schedule(self: Arc<Self>, jobs: tokio::sync::mpsc::UnboundedSender<QueryJob>) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            for job in self.due_jobs(now_ns()) {
                if jobs.send(job).is_err() {
                    return;
                }
            }
        }
    }

    /// The query rules due at `now`, marked running and their next due time set, grouped by unit.
    fn due_jobs(&self, now: i64) -> Vec<QueryJob> {
        let mut jobs: BTreeMap<String, QueryJob> = BTreeMap::new();
        let Ok(mut l) = self.loaded.write() else {
            return Vec::new();
        };
        for r in l.values_mut() {
            if !r.spec.enabled || r.spec.kind != RuleKind::Query || r.running {
                continue;
            }
            if r.next_due_ns == 0 {
                r.next_due_ns = r.first_due(now);
            }
            let due = r.next_due_ns;
            if due > now {
                continue;
            }
            r.running = true;
            // Keep the cadence (and the phase); skip missed periods rather than bursting.
            let behind = (now - due) / r.timing.every_ns.max(1) + 1;
            r.next_due_ns = due + behind * r.timing.every_ns.max(1);
            jobs.entry(r.unit.clone())
                .or_default()
                .push((r.spec.clone(), r.timing, due));
        }
        jobs.into_values().collect()
    }

    /// Evaluates one job: the rules of a shared unit with one query (each alone if that query
    /// fails), any other rule alone; then marks them not running.
    async fn evaluate_job(self: &Arc<Self>, job: QueryJob) {
        let names: Vec<String> = job.iter().map(|(s, _, _)| s.name.clone()).collect();
        let mut alone = job;
        if alone.len() > 1 {
            let start = now_ns();
            let group: Vec<(RuleSpec, Timing)> =
                alone.iter().map(|(s, t, _)| (s.clone(), *t)).collect();
            match eval::run_shared(self, &group, start).await {
                Ok(outcomes) => {
                    for ((spec, _, due), outcome) in alone.drain(..).zip(outcomes) {
                        self.record(&spec.name, start, start - due, outcome);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "shared query failed; each rule alone"),
            }
        }
        for (spec, timing, due) in alone {
            self.evaluate_query(spec, timing, due).await;
        }
        if let Ok(mut l) = self.loaded.write() {
            for name in names {
                if let Some(r) = l.get_mut(&name) {
                    r.running = false;
                }
            }
        }
    }

    /// One evaluation of a query rule scheduled for `due_ns`.
    async fn evaluate_query(self: &Arc<Self>, spec: RuleSpec, timing: Timing, due_ns: i64) {
        let start = now_ns();
        let outcome = eval::run_query_rule(self, &spec, timing, start).await;
        self.record(&spec.name, start, start - due_ns, outcome);
    }

    /// Records one evaluation that started at `start_ns`, `lag_ns` after it was due: counts
    /// notifications queued (and wakes the outbox), or logs the error.
    fn record(&self, rule: &str, start_ns: i64, lag_ns: i64, outcome: Result<(u64, u64)>) {
        let end = now_ns();
        let outcome = match outcome {
            Ok((matches, queued)) => {
                if queued > 0 {
                    self.stats.notified(rule, queued);
                    self.kick();
                }
                Ok(matches)
            }
            Err(e) => {
                tracing::warn!(rule, error = %e, "rule evaluation failed");
                Err(e.to_string())
            }
        };
        self.stats
            .evaluated(rule, end, end - start_ns, lag_ns, outcome);
    }
}

/// One group of batches being evaluated: the changes to commit and the evaluations to record
/// once committed (rule, start, lag, outcome).
struct Run {
    pending: Arc<Mutex<pending::Pending>>,
    outcomes: Mutex<Vec<Outcome>>,
}

/// One evaluation to record: rule, start (ns), lag (ns), (matches, transitions) or the error.
type Outcome = (String, i64, i64, Result<(u64, u64)>);

impl Run {
    fn new(store: Arc<Store>) -> Run {
        Run {
            pending: Arc::new(Mutex::new(pending::Pending::new(store))),
            outcomes: Mutex::default(),
        }
    }

    fn outcome(&self, rule: &str, start: i64, lag: i64, outcome: Result<(u64, u64)>) {
        if let Ok(mut o) = self.outcomes.lock() {
            o.push((rule.to_string(), start, lag, outcome));
        }
    }

    /// The keys of `rule`'s open instances (with the group's changes so far).
    fn open_keys(&self, rule: &str) -> Result<std::collections::HashSet<alert::AlertKey>> {
        let p = self
            .pending
            .lock()
            .map_err(|_| RulesError::Store("pending changes poisoned".into()))?;
        Ok(p.open_of(rule)?.into_iter().map(|a| a.key).collect())
    }

    /// Steps `spec`'s instances of the keys `seen` at `now` (in memory) and adds the changes to
    /// the group's commit; returns the transitions.
    fn step(
        &self,
        spec: &RuleSpec,
        timing: Timing,
        seen: BTreeMap<alert::AlertKey, (bool, eval::Values)>,
        now: i64,
    ) -> Result<u64> {
        let mut p = self
            .pending
            .lock()
            .map_err(|_| RulesError::Store("pending changes poisoned".into()))?;
        let (changes, entries, n) = row::step_seen(spec, p.open_of(&spec.name)?, seen, now, timing);
        p.push(&spec.name, changes, entries)?;
        Ok(n)
    }
}

impl Loaded {
    fn new(spec: RuleSpec, timing: Timing) -> Loaded {
        let unit = match spec.sql.as_deref().and_then(query_share::share_key) {
            Some(key) if spec.kind == RuleKind::Query => format!("{}\0{key}", timing.every_ns),
            _ => format!("\0{}", spec.name),
        };
        Loaded {
            spec,
            timing,
            next_due_ns: 0,
            running: false,
            unit,
        }
    }

    /// The first due time at or after `now`: the rule's phase within `every`, from a hash of its
    /// unit, so that rules (or shared groups) of the same `every` are spread over the interval
    /// instead of all due at the same instant, while a shared group stays due together.
    fn first_due(&self, now: i64) -> i64 {
        use std::hash::{Hash, Hasher};
        let every = self.timing.every_ns.max(1);
        let mut h = std::hash::DefaultHasher::new();
        self.unit.hash(&mut h);
        let phase = (h.finish() % every as u64) as i64;
        let at = now - now.rem_euclid(every) + phase;
        if at < now { at + every } else { at }
    }
}

/// The attribute keys of a devices table with struct attributes, comma-separated.
fn attribute_keys(devices: &strata_query::arrow::array::RecordBatch) -> String {
    use strata_query::arrow::datatypes::DataType;
    match devices
        .schema()
        .field_with_name("attributes")
        .map(|f| f.data_type().clone())
    {
        Ok(DataType::Struct(fields)) if !fields.is_empty() => fields
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => "none".into(),
    }
}

fn redact(a: &mut ActionSpec) {
    if let ActionSpec::Webhook {
        secret: Some(s), ..
    } = a
    {
        *s = spec::REDACTED.to_string();
    }
}

/// Runs a store call on the blocking pool (redb commits fsync).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RulesError::Store(format!("store task failed: {e}")))?
}
