//! A rule definition as the HTTP API takes it (`POST /api/v1/rules`): its JSON shape, the checks
//! that do not need the SQL engine (names, kinds, durations, actions), and the parsed timings.
//! SQL is checked by planning it ([`crate::Rules::validate`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_ingest::text::{check_database, check_name, parse_duration};

use crate::error::{Result, RulesError};

/// The stream, in the rule's database, that receives every alert transition.
pub const HISTORY_STREAM: &str = "alert_history";

/// Longest rule name.
pub const MAX_RULE_NAME: usize = 128;
/// Shortest `every` of a query rule.
pub const MIN_EVERY_NS: i64 = 100_000_000;
/// Webhook attempts before an entry is dead-lettered, unless the action says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// First retry delay of a webhook, doubled on each failure.
pub const DEFAULT_BACKOFF: &str = "1s";

/// Kind of rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// A boolean condition over each incoming row of a stream.
    Row,
    /// An aggregate over windows (not available in this version).
    Window,
    /// Any SQL run every interval; each result row is an alert instance.
    Query,
}

impl RuleKind {
    /// The kind's name in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Row => "row",
            RuleKind::Window => "window",
            RuleKind::Query => "query",
        }
    }
}

/// What a rule does when an alert fires or resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ActionSpec {
    /// HTTP POST of the notification as JSON.
    Webhook {
        /// `http://` URL.
        url: String,
        /// Key of the `X-Strata-Signature: sha256=<hex HMAC-SHA256 of the body>` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// Attempts before the notification is dead-lettered (default 12).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attempts: Option<u32>,
        /// First retry delay, doubled after each failure up to 10 minutes (default `1s`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backoff: Option<String>,
    },
    /// Writes the notification as a row into a stream.
    Stream {
        /// Database (the rule's when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        db: Option<String>,
        /// Stream name.
        stream: String,
    },
    /// QoS 1 MQTT publish of the notification (the webhook's JSON) to the server's broker
    /// (`--rules-mqtt-broker`).
    Mqtt {
        /// Topic; `{rule}` and `{device}` are replaced by the rule name and the key's device.
        topic: String,
        /// Attempts before the notification is dead-lettered (default 12).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_attempts: Option<u32>,
        /// First retry delay, doubled after each failure up to 10 minutes (default `1s`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backoff: Option<String>,
    },
    /// A command into the alert's device's command inbox, sent when the alert fires.
    Command {
        /// Command name.
        name: String,
        /// Command payload.
        #[serde(default)]
        payload: serde_json::Value,
    },
}

/// Window of a window rule (accepted shape; window rules are refused in this version).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// `tumbling`, `hopping`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Everything else of the window.
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_json::Value>,
}

fn default_db() -> String {
    strata_storage::DEFAULT_DATABASE.to_string()
}

fn yes() -> bool {
    true
}

/// A rule as stored and returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name: letters, digits, `_`, `-`, `.`; at most 128 bytes.
    #[serde(default)]
    pub name: String,
    /// Database of the rule's stream and of its alert history (`default`).
    #[serde(default = "default_db")]
    pub db: String,
    /// The stream a row or window rule watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Rule kind.
    pub kind: RuleKind,
    /// Row rule: SQL boolean expression over a row (and the registry's `devices` as `devices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Query rule: the SQL to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// Query rule: how often (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// How long an instance must hold before it fires (default `0s`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long a firing instance keeps firing after its condition stops holding (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_firing_for: Option<String>,
    /// Window rule: the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    /// Window rule: grouping columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Window rule: aggregate select list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<String>,
    /// Window rule: allowed lateness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lateness: Option<String>,
    /// Window rule: what happens to a row later than the lateness allows (`drop` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_policy: Option<LatePolicy>,
    /// Labels copied into every notification and alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Actions on firing and resolve.
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    /// Whether the rule is evaluated.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a window rule does with a row whose windows have all closed (Azure Stream Analytics'
/// late-arrival actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// The row is left out of the rule (it is still stored) and counted as dropped.
    Drop,
    /// The row's event time is moved forward to the earliest time still open (the watermark),
    /// so it counts in the window open there.
    Adjust,
}

/// Durations of a rule in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// Query rule period.
    pub every_ns: i64,
    /// `for`.
    pub for_ns: i64,
    /// `keep_firing_for`.
    pub keep_firing_for_ns: i64,
}

/// Parses a duration field into nanoseconds; `None` gives `default`.
pub fn duration_ns(field: &str, text: Option<&str>, default: &str) -> Result<i64> {
    let text = text.unwrap_or(default);
    let d = parse_duration(text)
        .map_err(|e| RulesError::Invalid(format!("{field}: invalid duration '{text}': {e}")))?;
    i64::try_from(d.as_nanos())
        .map_err(|_| RulesError::Invalid(format!("{field}: duration '{text}' is too long")))
}

fn need(value: &Option<String>, field: &str, kind: RuleKind) -> Result<()> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(RulesError::Invalid(format!(
            "a {} rule needs '{field}'",
            kind.as_str()
        ))),
    }
}

fn refuse(value: bool, field: &str, kind: RuleKind) -> Result<()> {
    if value {
        return Err(RulesError::Invalid(format!(
            "'{field}' does not apply to a {} rule",
            kind.as_str()
        )));
    }
    Ok(())
}

impl RuleSpec {
    /// Checks everything that does not need the SQL engine and returns the timings.
    pub fn check(&self) -> Result<Timing> {
        check_rule_name(&self.name)?;
        check_database(&self.db).map_err(|e| RulesError::Invalid(format!("db: {e}")))?;
        if let Some(s) = &self.stream {
            check_name(s, "stream").map_err(|e| RulesError::Invalid(format!("stream: {e}")))?;
        }
        let timing = Timing {
            every_ns: duration_ns("every", self.every.as_deref(), "30s")?,
            for_ns: duration_ns("for", self.for_.as_deref(), "0s")?,
            keep_firing_for_ns: duration_ns(
                "keep_firing_for",
                self.keep_firing_for.as_deref(),
                "0s",
            )?,
        };
        match self.kind {
            RuleKind::Query => {
                need(&self.sql, "sql", self.kind)?;
                refuse(self.condition.is_some(), "condition", self.kind)?;
                refuse(self.window.is_some(), "window", self.kind)?;
                refuse(self.late_policy.is_some(), "late_policy", self.kind)?;
                if timing.every_ns < MIN_EVERY_NS {
                    return Err(RulesError::Invalid(
                        "every: must be at least 100ms".to_string(),
                    ));
                }
            }
            RuleKind::Row => {
                need(&self.stream, "stream", self.kind)?;
                need(&self.condition, "condition", self.kind)?;
                refuse(self.sql.is_some(), "sql", self.kind)?;
                refuse(self.every.is_some(), "every", self.kind)?;
                refuse(self.window.is_some(), "window", self.kind)?;
                refuse(self.late_policy.is_some(), "late_policy", self.kind)?;
            }
            RuleKind::Window => {
                need(&self.stream, "stream", self.kind)?;
                need(&self.select, "select", self.kind)?;
                need(&self.condition, "condition", self.kind)?;
                refuse(self.sql.is_some(), "sql", self.kind)?;
                refuse(self.every.is_some(), "every", self.kind)?;
                if self.window.is_none() {
                    return Err(RulesError::Invalid("a window rule needs 'window'".into()));
                }
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            check_action(a).map_err(|e| RulesError::Invalid(format!("actions[{i}]: {e}")))?;
        }
        Ok(timing)
    }

    /// The rule with secrets replaced by `"<redacted>"` (what the API returns).
    pub fn redacted(&self) -> RuleSpec {
        let mut out = self.clone();
        for a in &mut out.actions {
            if let ActionSpec::Webhook {
                secret: Some(s), ..
            } = a
            {
                *s = REDACTED.to_string();
            }
        }
        out
    }
}

/// A cycle of derived streams among `rules`, as the streams along it (`db.stream`), if any.
/// A row or window rule is an edge from the stream it watches to each stream it writes (its
/// `stream` actions and its database's alert history).
pub fn find_cycle(rules: &[RuleSpec]) -> Option<Vec<String>> {
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rules.iter().filter(|r| r.kind != RuleKind::Query) {
        let Some(src) = &r.stream else { continue };
        let from = format!("{}.{src}", r.db);
        let out = edges.entry(from).or_default();
        out.push(format!("{}.{}", r.db, HISTORY_STREAM));
        for a in &r.actions {
            if let ActionSpec::Stream { db, stream } = a {
                out.push(format!("{}.{stream}", db.as_deref().unwrap_or(&r.db)));
            }
        }
    }
    let starts: Vec<String> = edges.keys().cloned().collect();
    for start in starts {
        let mut path = vec![start.clone()];
        if walk(&edges, &start, &mut path) {
            return Some(path);
        }
    }
    None
}

/// Depth-first search for a way back to `path[0]`; `path` holds the way when found.
fn walk(edges: &BTreeMap<String, Vec<String>>, at: &str, path: &mut Vec<String>) -> bool {
    for next in edges.get(at).map(Vec::as_slice).unwrap_or_default() {
        if *next == path[0] {
            path.push(next.clone());
            return true;
        }
        if path.contains(next) {
            continue;
        }
        path.push(next.clone());
        if walk(edges, next, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// What a secret reads as in API answers.
pub const REDACTED: &str = "<redacted>";

/// Checks a rule name.
pub fn check_rule_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_RULE_NAME {
        return Err(RulesError::Invalid(format!(
            "name: a rule needs a name of 1 to {MAX_RULE_NAME} bytes"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(RulesError::Invalid(format!(
            "name: '{name}' has the character {c:?}; use letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(())
}

/// Checks an action's topic template: not empty, no wildcards or NUL, at most 65,535 bytes.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("mqtt action needs a 'topic'".into());
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err("mqtt topic is longer than 65,535 bytes".into());
    }
    if let Some(c) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(format!(
            "mqtt topic '{topic}' has {c:?}; a publish topic cannot hold wildcards or NUL"
        ));
    }
    Ok(())
}

fn check_retries(
    what: &str,
    max_attempts: Option<u32>,
    backoff: Option<&str>,
) -> std::result::Result<(), String> {
    if max_attempts == Some(0) {
        return Err(format!("{what} max_attempts must be at least 1"));
    }
    duration_ns("backoff", backoff, DEFAULT_BACKOFF).map_err(|e| e.to_string())?;
    Ok(())
}

fn check_action(a: &ActionSpec) -> std::result::Result<(), String> {
    match a {
        ActionSpec::Webhook {
            url,
            secret,
            max_attempts,
            backoff,
        } => {
            if !url.starts_with("http://") || url.len() <= "http://".len() {
                return Err(format!(
                    "webhook url '{url}' must be an http:// URL (https:// webhooks are not available in this version)"
                ));
            }
            if secret.as_deref() == Some(REDACTED) {
                return Err("webhook secret: send the secret itself, not \"<redacted>\"".into());
            }
            check_retries("webhook", *max_attempts, backoff.as_deref())
        }
        ActionSpec::Stream { db, stream } => {
            if let Some(db) = db {
                check_database(db).map_err(|e| format!("stream action db: {e}"))?;
            }
            check_name(stream, "stream").map_err(|e| format!("stream action: {e}"))
        }
        ActionSpec::Mqtt {
            topic,
            max_attempts,
            backoff,
        } => {
            check_topic(topic)?;
            check_retries("mqtt", *max_attempts, backoff.as_deref())
        }
        ActionSpec::Command { name, .. } => {
            if name.trim().is_empty() {
                return Err("command action needs a 'name'".into());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<RuleSpec> {
        serde_json::from_value(v).map_err(|e| RulesError::Invalid(e.to_string()))
    }

    #[test]
    fn issue_examples_parse() {
        let row = parse(serde_json::json!({"name": "hot", "db": "default", "stream": "env", "kind": "row",
            "condition": "temperature > 90", "actions": [{"type": "webhook", "url": "http://127.0.0.1:9000/hook"}]}))
        .unwrap();
        assert_eq!(row.kind, RuleKind::Row);
        row.check().unwrap();
        let q = parse(
            serde_json::json!({"name": "silent", "kind": "query", "every": "30s", "for": "1m",
            "sql": "SELECT device FROM last_values('env')", "actions": []}),
        )
        .unwrap();
        let t = q.check().unwrap();
        assert_eq!(t.every_ns, 30_000_000_000);
        assert_eq!(t.for_ns, 60_000_000_000);
        assert_eq!(q.db, "default");
    }

    #[test]
    fn late_policy_is_drop_or_adjust_and_only_for_window_rules() {
        let window = |policy: &str| {
            parse(
                serde_json::json!({"name": "w", "kind": "window", "stream": "env",
                "window": {"type": "tumbling", "size": "1m"}, "select": "avg(t) AS a",
                "condition": "a > 1", "late_policy": policy}),
            )
        };
        for (text, policy) in [("drop", LatePolicy::Drop), ("adjust", LatePolicy::Adjust)] {
            let w = window(text).unwrap();
            assert_eq!(w.late_policy, Some(policy));
            w.check().unwrap();
            assert_eq!(serde_json::to_value(&w).unwrap()["late_policy"], text);
        }
        assert!(window("keep").is_err());
        let row = parse(
            serde_json::json!({"name": "r", "kind": "row", "stream": "env",
            "condition": "t > 1", "late_policy": "adjust"}),
        )
        .unwrap();
        let e = row.check().unwrap_err().to_string();
        assert!(e.contains("late_policy"), "{e}");
    }

    #[test]
    fn bad_rules_are_refused() {
        let base = serde_json::json!({"name": "q", "kind": "query", "sql": "SELECT 1"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            parse(b).and_then(|r| r.check().map(|_| ()))
        };
        assert!(
            with("every", "10x".into())
                .unwrap_err()
                .to_string()
                .contains("every")
        );
        assert!(with("every", "10ms".into()).is_err());
        assert!(with("name", "a b".into()).is_err());
        assert!(with("name", "".into()).is_err());
        assert!(with("condition", "x > 1".into()).is_err());
        assert!(with("bogus", 1.into()).is_err());
        let bad_action = serde_json::json!([{"type": "webhook", "url": "ftp://x"}]);
        assert!(
            with("actions", bad_action)
                .unwrap_err()
                .to_string()
                .contains("actions[0]")
        );
        let mqtt = serde_json::json!([{"type": "mqtt", "topic": "alerts/{device}"}]);
        assert!(with("actions", mqtt).is_ok());
        let wildcard = serde_json::json!([{"type": "mqtt", "topic": "alerts/#"}]);
        assert!(with("actions", wildcard).is_err());
        assert!(
            with("kind", "window".into())
                .unwrap_err()
                .to_string()
                .contains("stream")
        );
        assert!(
            with("kind", "row".into())
                .unwrap_err()
                .to_string()
                .contains("stream")
        );
    }

    #[test]
    fn derived_stream_cycles_are_found() {
        let row = |name: &str, from: &str, to: &str| {
            parse(
                serde_json::json!({"name": name, "kind": "row", "stream": from,
                "condition": "x > 1", "actions": [{"type": "stream", "stream": to}]}),
            )
            .unwrap()
        };
        assert!(find_cycle(&[row("a", "s1", "s2"), row("b", "s2", "s3")]).is_none());
        let c = find_cycle(&[row("a", "s1", "s2"), row("b", "s2", "s1")]).unwrap();
        assert_eq!(c.first(), c.last());
        assert!(find_cycle(&[row("a", "s1", "s1")]).is_some());
        assert!(find_cycle(&[row("h", "alert_history", "x")]).is_some());
    }

    #[test]
    fn secrets_are_redacted() {
        let r = parse(
            serde_json::json!({"name": "q", "kind": "query", "sql": "SELECT 1",
            "actions": [{"type": "webhook", "url": "http://h/x", "secret": "s3"}]}),
        )
        .unwrap();
        let shown = serde_json::to_string(&r.redacted()).unwrap();
        assert!(!shown.contains("s3") && shown.contains(REDACTED));
    }
}
