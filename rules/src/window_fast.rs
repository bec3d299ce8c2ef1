//! Tumbling and hopping window rules whose `select` is plain aggregates of float columns
//! (`avg`, `sum`, `min`, `max`, `count` of a column, `count(*)`, each `AS` a name), aggregated
//! incrementally: per open window, one accumulator per group (groups interned to dense ids, so a
//! row costs an index and a few additions, no per-row allocation and no DataFusion run). When the
//! watermark closes a window its groups become one small record batch with the columns the SQL
//! `SELECT group_by, select … GROUP BY group_by` would give (group columns as text, `avg`/`sum`/
//! `min`/`max` as Float64, `count` as Int64) and the rule's `condition` runs over it as a
//! DataFusion physical expression compiled once per rule. Only the groups that matched or that
//! the caller says may have an open instance become values (the others cannot change state).
//! Other selects, other column types and conditions joining `devices` use
//! [`crate::window_eval`]'s DataFusion aggregation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use strata_query::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use strata_query::arrow::compute::cast;
use strata_query::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_query::datafusion::common::DFSchema;
use strata_query::datafusion::physical_expr::PhysicalExpr;

use crate::alert::AlertKey;
use crate::error::{Result, RulesError};
use crate::eval::{Values, instances};
use crate::spec::RuleSpec;
use crate::window_eval::{Closed, Shape, stamp, time_column};

/// An aggregate function of the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Avg,
    Sum,
    Min,
    Max,
    Count,
    CountStar,
}

/// One `func(column) AS alias` of the select.
#[derive(Debug, Clone)]
struct Agg {
    func: Func,
    /// Index into [`Plan::inputs`] (none for `count(*)`).
    input: Option<usize>,
    alias: String,
}

/// A select the fast path can compute.
#[derive(Debug, Clone)]
pub struct Plan {
    aggs: Vec<Agg>,
    inputs: Vec<String>,
    group_by: Vec<String>,
}

/// Running statistics of one input column in one group of one window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    sum: f64,
    n: i64,
    min: f64,
    max: f64,
}

impl Stat {
    /// Adds one value.
    pub(crate) fn add(&mut self, v: f64) {
        self.sum += v;
        self.n += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }
}

impl Default for Stat {
    fn default() -> Stat {
        Stat {
            sum: 0.0,
            n: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

/// The accumulators of one open window: rows and input statistics per group id.
#[derive(Debug, Default)]
struct Window {
    rows: Vec<i64>,
    stats: Vec<Stat>,
}

/// Incremental state of one tumbling or hopping window rule.
#[derive(Debug)]
pub struct Fast {
    plan: Plan,
    groups: Groups,
    windows: BTreeMap<i64, Window>,
    condition: Condition,
}

/// Group keys interned to dense ids, shared by every rule grouping by the same columns (a
/// batch is interned once, not once per rule: the last batch's ids are kept, recognised by
/// its first column, which the memo holds so that its allocation cannot be reused).
#[derive(Debug, Clone)]
pub(crate) struct Groups {
    shared: Arc<Mutex<Interner>>,
}

/// The interned keys of one `group_by` list.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    keys: Vec<Vec<Option<String>>>,
    last: Option<(ArrayRef, Arc<Vec<u32>>)>,
}

/// The group interners of one rules instance, by `group_by` list: every window rule of the
/// instance grouping by the same columns shares one (its `WindowState`s get a clone). A state
/// made on its own (a dry run, a test) has its own.
#[derive(Debug, Clone, Default)]
pub struct GroupInterners(Arc<Mutex<InternersByColumns>>);

/// One interner per `group_by` list.
type InternersByColumns = HashMap<Vec<String>, Arc<Mutex<Interner>>>;

impl GroupInterners {
    /// The interner of `group_by`.
    pub(crate) fn groups(&self, group_by: &[String]) -> Groups {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let shared = all.entry(group_by.to_vec()).or_default().clone();
        Groups { shared }
    }
}

/// A rule's condition compiled for the schema of its results.
#[derive(Debug, Default)]
pub struct Condition {
    compiled: Option<(SchemaRef, Arc<dyn PhysicalExpr>)>,
}

/// One result row to build: group id, rows, input statistics.
pub(crate) type Entry<'a> = (usize, i64, &'a [Stat]);

impl Plan {
    /// The plan of `spec`'s select, if the fast path can compute it over batches of `schema`.
    pub fn of(spec: &RuleSpec, schema: &Schema) -> Option<Plan> {
        let cond = spec.condition.as_deref().unwrap_or_default();
        if crate::registry_join::mentions_devices(cond) {
            return None;
        }
        let mut plan = Plan {
            aggs: Vec::new(),
            inputs: Vec::new(),
            group_by: spec.group_by.clone(),
        };
        for item in split_top(spec.select.as_deref()?) {
            plan.aggs.push(parse_item(item, &mut plan.inputs)?);
        }
        let text = |n: &String| {
            schema.field_with_name(n).ok().is_some_and(|f| {
                matches!(f.data_type(), DataType::Utf8)
                    || matches!(f.data_type(), DataType::Dictionary(_, v) if **v == DataType::Utf8)
            })
        };
        let float = |n: &String| {
            schema
                .field_with_name(n)
                .ok()
                .is_some_and(|f| *f.data_type() == DataType::Float64)
        };
        let names: HashSet<&str> = plan
            .group_by
            .iter()
            .chain(plan.aggs.iter().map(|a| &a.alias))
            .map(String::as_str)
            .collect();
        let distinct = names.len() == plan.group_by.len() + plan.aggs.len();
        (!plan.aggs.is_empty()
            && distinct
            && plan.group_by.iter().all(text)
            && plan.inputs.iter().all(float))
        .then_some(plan)
    }
}

/// Splits a select list at its top-level commas.
fn split_top(select: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0i32, 0);
    for (i, c) in select.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(select[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(select[from..].trim());
    out
}

/// `func(column) AS alias` (identifiers lower case unless double-quoted, as SQL folds them).
fn parse_item(item: &str, inputs: &mut Vec<String>) -> Option<Agg> {
    let open = item.find('(')?;
    let close = item.rfind(')')?;
    let func = match item[..open].trim().to_ascii_lowercase().as_str() {
        "avg" => Func::Avg,
        "sum" => Func::Sum,
        "min" => Func::Min,
        "max" => Func::Max,
        "count" => Func::Count,
        _ => return None,
    };
    let arg = item[open + 1..close].trim();
    let rest = item[close + 1..].trim();
    let alias = rest
        .strip_prefix("AS ")
        .or_else(|| rest.strip_prefix("as "))
        .map(|a| ident(a.trim()))??;
    if arg == "*" {
        return (func == Func::Count).then_some(Agg {
            func: Func::CountStar,
            input: None,
            alias,
        });
    }
    let column = ident(arg)?;
    let input = match inputs.iter().position(|c| *c == column) {
        Some(i) => i,
        None => {
            inputs.push(column);
            inputs.len() - 1
        }
    };
    Some(Agg {
        func,
        input: Some(input),
        alias,
    })
}

/// A plain identifier: `"Quoted"` verbatim, otherwise lower-case letters, digits and `_`.
fn ident(s: &str) -> Option<String> {
    if let Some(q) = s.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        return (!q.is_empty() && !q.contains('"')).then(|| q.to_string());
    }
    let ok = !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then(|| s.to_string())
}

impl Fast {
    /// Empty state for `plan`, its groups interned by `interners`.
    pub fn new(plan: Plan, interners: &GroupInterners) -> Fast {
        Fast {
            groups: interners.groups(&plan.group_by),
            plan,
            windows: BTreeMap::new(),
            condition: Condition::default(),
        }
    }

    /// Adds a batch's rows to their open windows (those ending after the watermark `wm`); a
    /// row whose windows have all closed moves to `wm` when the shape adjusts late rows, and is
    /// dropped otherwise. Returns the highest time and the rows dropped.
    pub fn add(
        &mut self,
        shape: Shape,
        batch: &RecordBatch,
        wm: Option<i64>,
    ) -> Result<(Option<i64>, u64)> {
        let open = |s: i64| wm.is_none_or(|wm| s + shape.size_ns > wm);
        let times = time_column(batch)?;
        let gids = self.groups.ids_of(&self.plan.group_by, batch)?;
        let gids = gids.as_slice();
        let inputs = self.plan.input_columns(batch)?;
        let width = self.plan.inputs.len();
        let groups = self.groups.len();
        let (mut max_t, mut late) = (None, 0);
        for (row, &g) in gids.iter().enumerate() {
            let t = times.value(row);
            max_t = Some(max_t.map_or(t, |m: i64| m.max(t)));
            // The newest window holding `t` closes last: when it is closed, all are.
            let t = match wm {
                Some(wm)
                    if shape.adjust_late && !open(t.div_euclid(shape.hop_ns) * shape.hop_ns) =>
                {
                    wm
                }
                _ => t,
            };
            let mut took = false;
            let mut s = t.div_euclid(shape.hop_ns) * shape.hop_ns;
            while s > t - shape.size_ns {
                if open(s) {
                    took = true;
                    let w = self.windows.entry(s).or_default();
                    w.rows.resize(groups, 0);
                    w.stats.resize(groups * width, Stat::default());
                    w.rows[g as usize] += 1;
                    for (i, col) in inputs.iter().enumerate() {
                        if let Some(c) = col.filter(|c| c.is_valid(row)) {
                            w.stats[g as usize * width + i].add(c.value(row));
                        }
                    }
                }
                s -= shape.hop_ns;
            }
            if !took {
                late += 1;
            }
        }
        Ok((max_t, late))
    }

    /// Closes the windows ending at or before `wm`, oldest first. `may_be_open`: keys whose
    /// instance may be open (all groups when `None`); a key that matches joins it.
    pub fn close(
        &mut self,
        spec: &RuleSpec,
        shape: Shape,
        wm: i64,
        may_be_open: Option<&mut HashSet<AlertKey>>,
    ) -> Result<Vec<Closed>> {
        let mut condition = std::mem::take(&mut self.condition);
        let out = Judge::alone(spec, &mut condition, may_be_open, |judges| {
            self.close_for(shape, wm, judges)
        });
        self.condition = condition;
        out
    }

    /// [`Fast::close`] for several rules sharing this state (same window, `group_by` and
    /// select; each its own condition and open keys): each window's result batch is made once
    /// and judged by each rule. One result per judge, in order.
    pub fn close_for(
        &mut self,
        shape: Shape,
        wm: i64,
        judges: &mut [Judge],
    ) -> Vec<Result<Vec<Closed>>> {
        let mut due = Vec::new();
        while let Some((&start, _)) = self.windows.first_key_value() {
            if start + shape.size_ns > wm {
                break;
            }
            let w = self.windows.remove(&start).unwrap_or_default();
            due.push((start, w));
        }
        let mut out: Vec<Result<Vec<Closed>>> = judges.iter().map(|_| Ok(Vec::new())).collect();
        if due.is_empty() {
            return out;
        }
        let mut wanted: Vec<Result<Wanted>> = judges
            .iter_mut()
            .map(|j| Wanted::new(&self.groups, &self.plan.group_by, j.may_be_open.take()))
            .collect();
        for (start, w) in due {
            let end = start + shape.size_ns;
            let results = self.results_of(&w, (start, end));
            for ((judge, wanted), out) in judges.iter_mut().zip(&mut wanted).zip(&mut out) {
                let Ok(list) = out else { continue };
                let mut by_end = BTreeMap::new();
                let judged = match (&results, wanted) {
                    (Err(e), _) => Err(e.clone_invalid()),
                    (_, Err(e)) => Err(e.clone_invalid()),
                    (Ok(None), _) => Ok(()),
                    (Ok(Some(r)), Ok(wanted)) => judge.judge(r, wanted, &mut by_end),
                };
                match judged {
                    Ok(()) => list.push((end, by_end.remove(&end).unwrap_or_default())),
                    Err(e) => *out = Err(e),
                }
            }
        }
        out
    }

    /// A closed window's groups as the SQL aggregation's rows (`None`: no group had a row).
    fn results_of(&self, w: &Window, bounds: (i64, i64)) -> Result<Option<Results>> {
        let width = self.plan.inputs.len();
        let entries: Vec<Entry> = (0..w.rows.len())
            .filter(|&g| w.rows[g] > 0)
            .map(|g| (g, w.rows[g], &w.stats[g * width..(g + 1) * width]))
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        let batch = self.plan.result_batch(&self.groups, &entries)?;
        Ok(Some(Results {
            rows: entries.iter().map(|e| (e.0, bounds, e.1)).collect(),
            batch,
        }))
    }
}

/// The results of closed windows: per row its group, window bounds and row count (a window
/// without rows cannot hold), and the aggregates as the SQL aggregation's columns.
pub(crate) struct Results {
    pub(crate) rows: Vec<(usize, (i64, i64), i64)>,
    pub(crate) batch: RecordBatch,
}

/// Closed windows' alert values by window end, then key.
pub(crate) type ByEnd = BTreeMap<i64, BTreeMap<AlertKey, (bool, Values)>>;

/// One rule judging the results of a window state (its own or one shared with rules of the
/// same window, `group_by` and select): its spec, compiled condition and open keys.
pub struct Judge<'a> {
    /// The rule.
    pub spec: &'a RuleSpec,
    /// Its condition, compiled at the first use.
    pub condition: &'a mut Condition,
    /// Keys whose instance may be open (`None`: every result is returned).
    pub may_be_open: Option<&'a mut HashSet<AlertKey>>,
}

impl Judge<'_> {
    /// A state's close for one rule alone: `close_for` with that rule as the only judge (its
    /// condition lent by the state for the call), and its one result.
    pub fn alone(
        spec: &RuleSpec,
        condition: &mut Condition,
        may_be_open: Option<&mut HashSet<AlertKey>>,
        close_for: impl FnOnce(&mut [Judge]) -> Vec<Result<Vec<Closed>>>,
    ) -> Result<Vec<Closed>> {
        let judge = Judge {
            spec,
            condition,
            may_be_open,
        };
        close_for(&mut [judge])
            .into_iter()
            .next()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The rule's condition over closed windows' results (once over all of them), into `out`:
    /// values for the results that matched or may be open; a window without rows does not
    /// hold (its values are its bounds only).
    pub(crate) fn judge(
        &mut self,
        r: &Results,
        wanted: &mut Wanted,
        out: &mut ByEnd,
    ) -> Result<()> {
        let flags = self.condition.flags(self.spec, &r.batch)?;
        for (i, &(g, (start, end), rows)) in r.rows.iter().enumerate() {
            let matched = rows > 0 && flags.is_valid(i) && flags.value(i);
            if !wanted.take(g, matched) {
                continue;
            }
            let groups = out.entry(end).or_default();
            if rows == 0 {
                let key = wanted.key(g);
                let mut empty = Values::new();
                stamp(&mut empty, start, end);
                groups.insert(key, (false, empty));
                continue;
            }
            for (k, mut values) in instances(&[r.batch.slice(i, 1)])? {
                wanted.note(&k, matched);
                stamp(&mut values, start, end);
                groups.insert(k, (matched, values));
            }
        }
        Ok(())
    }
}

/// Which results of a close can change state: those that matched, and those whose instance may
/// be open (`None`: every result, as dry runs need). The open keys become group ids once per
/// close, so a group that neither matched nor is open costs one set lookup, not its alert key.
pub(crate) struct Wanted<'a> {
    open: Option<(&'a mut HashSet<AlertKey>, HashSet<usize>)>,
    groups: Groups,
    group_by: Vec<String>,
}

impl<'a> Wanted<'a> {
    /// The groups of `may_be_open`'s keys (keys never interned have no result to find).
    pub(crate) fn new(
        groups: &Groups,
        group_by: &[String],
        may_be_open: Option<&'a mut HashSet<AlertKey>>,
    ) -> Result<Wanted<'a>> {
        let open = match may_be_open {
            None => None,
            Some(keys) => {
                let ids = groups.ids_of_keys(group_by, keys)?;
                Some((keys, ids))
            }
        };
        Ok(Wanted {
            open,
            groups: groups.clone(),
            group_by: group_by.to_vec(),
        })
    }

    /// The alert key of group `g`.
    pub(crate) fn key(&self, g: usize) -> AlertKey {
        self.groups.alert_key(&self.group_by, g)
    }

    /// Whether group `g`'s result is wanted; a match makes the group open for later windows.
    pub(crate) fn take(&mut self, g: usize, matched: bool) -> bool {
        match &mut self.open {
            None => true,
            Some((_, ids)) if matched => {
                ids.insert(g);
                true
            }
            Some((_, ids)) => ids.contains(&g),
        }
    }

    /// Records that a wanted result of `key` matched (its instance may be open from now on).
    pub(crate) fn note(&mut self, key: &AlertKey, matched: bool) {
        if let (Some((keys, _)), true) = (&mut self.open, matched) {
            keys.insert(key.clone());
        }
    }
}

impl Plan {
    /// The result rows `entries` as the SQL aggregation would give them.
    pub(crate) fn result_batch(&self, groups: &Groups, entries: &[Entry]) -> Result<RecordBatch> {
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let interned = groups.lock()?;
        for (i, name) in self.group_by.iter().enumerate() {
            fields.push(Field::new(name, DataType::Utf8, true));
            let v: StringArray = entries
                .iter()
                .map(|&(g, _, _)| interned.keys[g][i].as_deref())
                .collect();
            cols.push(Arc::new(v));
        }
        drop(interned);
        for a in &self.aggs {
            let stat = |st: &[Stat]| a.input.map(|i| st[i]).unwrap_or_default();
            let (dt, col): (DataType, ArrayRef) = match a.func {
                Func::Count => (
                    DataType::Int64,
                    Arc::new(Int64Array::from_iter_values(
                        entries.iter().map(|e| stat(e.2).n),
                    )),
                ),
                Func::CountStar => (
                    DataType::Int64,
                    Arc::new(Int64Array::from_iter_values(entries.iter().map(|e| e.1))),
                ),
                f => {
                    let v: Float64Array = entries.iter().map(|e| value(f, stat(e.2))).collect();
                    (DataType::Float64, Arc::new(v))
                }
            };
            fields.push(Field::new(&a.alias, dt, true));
            cols.push(col);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
            .map_err(|e| RulesError::Invalid(format!("window: {e}")))
    }

    /// Number of input columns.
    pub(crate) fn width(&self) -> usize {
        self.inputs.len()
    }

    /// The group columns.
    pub(crate) fn group_by(&self) -> &[String] {
        &self.group_by
    }

    /// The input columns as floats (`None`: the batch has no such column, all NULL).
    pub(crate) fn input_columns<'a>(
        &self,
        batch: &'a RecordBatch,
    ) -> Result<Vec<Option<&'a Float64Array>>> {
        self.inputs
            .iter()
            .map(|name| match batch.column_by_name(name) {
                None => Ok(None),
                Some(c) => c
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .map(Some)
                    .ok_or_else(|| {
                        RulesError::Invalid(format!("window: column '{name}' is no longer a float"))
                    }),
            })
            .collect()
    }
}

/// An aggregate of float statistics (NULL without values, as SQL).
fn value(f: Func, s: Stat) -> Option<f64> {
    let v = match f {
        Func::Avg => s.sum / s.n as f64,
        Func::Sum => s.sum,
        Func::Min => s.min,
        _ => s.max,
    };
    (s.n > 0).then_some(v)
}

impl Condition {
    /// The rule's condition over `batch` (compiled once per schema), NULL as false.
    pub(crate) fn flags(&mut self, spec: &RuleSpec, batch: &RecordBatch) -> Result<BooleanArray> {
        let bad = |e: &dyn std::fmt::Display| RulesError::Invalid(format!("condition: {e}"));
        let schema = batch.schema();
        let expr = match &self.compiled {
            Some((s, e)) if *s == schema => e.clone(),
            _ => {
                let df = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| bad(&e))?;
                let ctx = crate::registry_join::session();
                let cond = spec.condition.as_deref().unwrap_or_default();
                let logical = ctx.parse_sql_expr(cond, &df).map_err(|e| bad(&e))?;
                let e = ctx
                    .create_physical_expr(logical, &df)
                    .map_err(|e| bad(&e))?;
                self.compiled = Some((schema.clone(), e.clone()));
                e
            }
        };
        let v = expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| bad(&e))?;
        let b = cast(&v, &DataType::Boolean).map_err(|e| bad(&e))?;
        b.as_any()
            .downcast_ref::<BooleanArray>()
            .cloned()
            .ok_or_else(|| bad(&"not a boolean"))
    }
}

impl Groups {
    fn lock(&self) -> Result<MutexGuard<'_, Interner>> {
        self.shared
            .lock()
            .map_err(|_| RulesError::Invalid("window: group interner poisoned".into()))
    }

    /// Number of groups.
    pub(crate) fn len(&self) -> usize {
        self.lock().map(|i| i.keys.len()).unwrap_or(0)
    }

    /// The alert key of group `g` (its non-null group columns).
    pub(crate) fn alert_key(&self, group_by: &[String], g: usize) -> AlertKey {
        let Ok(i) = self.lock() else {
            return AlertKey::new();
        };
        group_by
            .iter()
            .zip(&i.keys[g])
            .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
            .collect()
    }

    /// The ids of the groups of `keys` (alert keys: the non-null group columns), those known.
    pub(crate) fn ids_of_keys(
        &self,
        group_by: &[String],
        keys: &HashSet<AlertKey>,
    ) -> Result<HashSet<usize>> {
        let i = self.lock()?;
        let mut joined = String::new();
        let mut out = HashSet::with_capacity(keys.len());
        for key in keys {
            joined.clear();
            for name in group_by {
                push_part(&mut joined, key.get(name).map(String::as_str));
            }
            if let Some(&id) = i.ids.get(joined.as_str()) {
                out.insert(id as usize);
            }
        }
        Ok(out)
    }

    /// The dense group id of every row (new groups get the next ids); the same batch again
    /// (another rule) is answered from the memo.
    pub(crate) fn ids_of(&self, group_by: &[String], batch: &RecordBatch) -> Result<Arc<Vec<u32>>> {
        let mut i = self.lock()?;
        let first = (batch.num_columns() > 0).then(|| batch.column(0).clone());
        if let (Some((col, ids)), Some(first)) = (&i.last, &first)
            && std::ptr::addr_eq(Arc::as_ptr(col), Arc::as_ptr(first))
            && ids.len() == batch.num_rows()
        {
            return Ok(ids.clone());
        }
        let ids = Arc::new(i.intern(group_by, batch)?);
        i.last = first.map(|c| (c, ids.clone()));
        Ok(ids)
    }
}

impl Interner {
    fn intern(&mut self, group_by: &[String], batch: &RecordBatch) -> Result<Vec<u32>> {
        let cols: Vec<Option<StringArray>> = group_by
            .iter()
            .map(|g| match batch.column_by_name(g) {
                Some(c) => cast(c, &DataType::Utf8)
                    .map_err(|e| RulesError::Invalid(format!("group_by: {e}")))
                    .map(|a| a.as_any().downcast_ref::<StringArray>().cloned()),
                None => Ok(None),
            })
            .collect::<Result<_>>()?;
        let text = |row: usize| -> Vec<Option<String>> {
            cols.iter()
                .map(|c| {
                    c.as_ref()
                        .filter(|c| c.is_valid(row))
                        .map(|c| c.value(row).to_string())
                })
                .collect()
        };
        let mut joined = String::new();
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            joined.clear();
            for c in &cols {
                let v = c.as_ref().filter(|c| c.is_valid(row)).map(|c| c.value(row));
                push_part(&mut joined, v);
            }
            let id = match self.ids.get(joined.as_str()) {
                Some(&id) => id,
                None => {
                    let id = self.keys.len() as u32;
                    self.keys.push(text(row));
                    self.ids.insert(joined.clone(), id);
                    id
                }
            };
            out.push(id);
        }
        Ok(out)
    }
}

/// One group column of an interned key: `\u{1}` and the text, or `\u{0}` for NULL.
fn push_part(joined: &mut String, v: Option<&str>) {
    match v {
        Some(v) => {
            joined.push('\u{1}');
            joined.push_str(v);
        }
        None => joined.push('\u{0}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(select: &str) -> RuleSpec {
        serde_json::from_value(
            serde_json::json!({"name": "w", "kind": "window", "stream": "env",
            "window": {"type": "tumbling", "size": "10s"}, "group_by": ["device"],
            "select": select, "condition": "t > 1"}),
        )
        .unwrap()
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("device", DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
        ])
    }

    #[test]
    fn plain_aggregates_take_the_fast_path_others_do_not() {
        let s = schema();
        assert!(Plan::of(&spec("avg(temperature) AS t"), &s).is_some());
        let p = Plan::of(&spec("max(temperature) AS t, count(*) AS c"), &s).unwrap();
        assert_eq!((p.aggs.len(), p.inputs.len()), (2, 1));
        for other in [
            "avg(temperature) + 1 AS t",
            "avg(n) AS t",
            "avg(Temperature) AS t",
            "avg(temperature)",
            "stddev(temperature) AS t",
            "avg(temperature) AS device",
        ] {
            assert!(Plan::of(&spec(other), &s).is_none(), "{other}");
        }
    }
}
