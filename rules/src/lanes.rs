//! How one dispatcher pass splits the due outbox entries (pure logic, no I/O):
//!
//! - a **lane** (rule, alert instance, action) is delivered in sequence order, and a later entry
//!   waits while an earlier one of its lane waits for a retry;
//! - a **destination** is where a remote delivery goes: a webhook's `scheme://host:port`, or the
//!   MQTT broker. Every lane belongs to exactly one destination (the action is part of the lane);
//! - remote entries are grouped into one job per destination, handed to the delivery workers
//!   (`pool.rs`); a destination that is busy (a worker holds it) or paused (it timed out or
//!   refused a connection) is skipped for the rest of the pass, so a page read later in the same
//!   pass can never hand over a later entry of a lane whose earlier entry is still in a worker;
//! - stream, command and `alert_history` entries are local (engine writes, the command inbox)
//!   and stay on the dispatcher thread.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::outbox::{OutboxEntry, Target};
use crate::spec::ActionSpec;

/// Destination of every `mqtt` action (the one broker of `--rules-mqtt-broker`).
pub(crate) const MQTT_DESTINATION: &str = "mqtt";

/// Where an entry is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A row of `alert_history` (written in one batch per database).
    History,
    /// A stream row or a device command, on the dispatcher thread.
    Local,
    /// A webhook or an MQTT publish, by a worker that holds this destination.
    Remote(String),
}

/// The route of an entry's target.
pub(crate) fn route(target: &Target) -> Route {
    match target {
        Target::History { .. } => Route::History,
        Target::Action { action, .. } => match action {
            ActionSpec::Webhook { url, .. } => Route::Remote(destination_of_url(url)),
            ActionSpec::Mqtt { .. } => Route::Remote(MQTT_DESTINATION.to_string()),
            ActionSpec::Stream { .. } | ActionSpec::Command { .. } => Route::Local,
        },
    }
}

/// `scheme://host:port` of a URL (lower case, default port made explicit, no user info), so
/// that every URL served by one host shares its fate; the whole text if it has no scheme.
pub(crate) fn destination_of_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host_port = host_port.to_ascii_lowercase();
    let has_port = match host_port.rfind(']') {
        Some(end) => host_port[end..].contains(':'),
        None => host_port.contains(':'),
    };
    if has_port {
        return format!("{scheme}://{host_port}");
    }
    let port = if scheme == "https" { 443 } else { 80 };
    format!("{scheme}://{host_port}:{port}")
}

/// The delivery lane of an entry: its rule, alert instance and action, whose notifications
/// must arrive in order; `None` for history rows (each carries its own time).
pub(crate) fn lane(e: &OutboxEntry) -> Option<String> {
    match &e.target {
        Target::History { .. } => None,
        target => Some(format!(
            "{}\u{0}{}\u{0}{}",
            e.notification.rule,
            serde_json::to_string(&e.notification.key).unwrap_or_default(),
            serde_json::to_string(target).unwrap_or_default()
        )),
    }
}

/// Whether a destination can take a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Avail {
    /// No worker holds it and it is not paused.
    Free,
    /// A worker holds it (a job queued or running).
    Busy,
    /// It timed out or refused a connection; not tried before this time (ns).
    PausedUntil(i64),
}

/// What a pass does with one page of due entries.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Stream and command entries, in sequence order.
    pub local: Vec<OutboxEntry>,
    /// `alert_history` entries.
    pub history: Vec<OutboxEntry>,
    /// Remote entries per free destination, lane by lane, each lane in sequence order.
    pub jobs: BTreeMap<String, Vec<OutboxEntry>>,
}

/// The state of one pass over the outbox, page after page.
#[derive(Debug)]
pub(crate) struct Round {
    /// When the pass started (ns): entries due at or before it are attempted.
    pub now: i64,
    /// Earliest time something skipped becomes due (ns).
    pub next: i64,
    /// Lanes with an earlier entry still waiting: their later entries wait too.
    pub waiting: HashSet<String>,
    /// Destinations handed to a worker, busy or paused during this pass.
    blocked: HashSet<String>,
}

impl Round {
    /// A pass starting at `now`, due to look again within a second.
    pub fn new(now: i64) -> Round {
        Round {
            now,
            next: now + 1_000_000_000,
            waiting: HashSet::new(),
            blocked: HashSet::new(),
        }
    }

    /// Splits a page (sequence order) into local entries, history rows and one job per free
    /// destination; `avail` tells whether a destination met for the first time is free.
    pub fn plan(&mut self, page: Vec<OutboxEntry>, mut avail: impl FnMut(&str) -> Avail) -> Plan {
        let mut plan = Plan::default();
        for e in page {
            if e.dead {
                continue;
            }
            let lane = lane(&e);
            if lane.as_ref().is_some_and(|l| self.waiting.contains(l)) {
                continue;
            }
            if e.next_at_ns > self.now {
                self.next = self.next.min(e.next_at_ns);
                self.waiting.extend(lane);
                continue;
            }
            match route(&e.target) {
                Route::History => plan.history.push(e),
                Route::Local => plan.local.push(e),
                Route::Remote(dest) => self.hand(dest, e, &mut plan, &mut avail),
            }
        }
        self.blocked.extend(plan.jobs.keys().cloned());
        for job in plan.jobs.values_mut() {
            fair_order(job);
        }
        plan
    }

    /// Adds a due remote entry to its destination's job, unless the destination is blocked.
    fn hand(
        &mut self,
        dest: String,
        e: OutboxEntry,
        plan: &mut Plan,
        avail: &mut impl FnMut(&str) -> Avail,
    ) {
        if let Some(job) = plan.jobs.get_mut(&dest) {
            job.push(e);
            return;
        }
        if self.blocked.contains(&dest) {
            return;
        }
        match avail(&dest) {
            Avail::Free => {
                plan.jobs.insert(dest, vec![e]);
            }
            Avail::Busy => {
                self.blocked.insert(dest);
            }
            Avail::PausedUntil(at) => {
                self.next = self.next.min(at);
                self.blocked.insert(dest);
            }
        }
    }
}

/// Orders a destination's job lane by lane: each lane's entries stay in sequence order, and the
/// lanes whose oldest entry has the fewest failed attempts go first (then the oldest). Lanes owe
/// each other no order, and a paused destination is probed with the first entry of its job: so
/// while a host is unreachable the probes (and the attempts they count) go round its lanes,
/// instead of one quickly retried lane being the only one ever tried (and the others never
/// reaching their `max_attempts`).
fn fair_order(job: &mut Vec<OutboxEntry>) {
    let mut lanes: Vec<Vec<OutboxEntry>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in job.drain(..) {
        let i = *index
            .entry(lane(&e).unwrap_or_default())
            .or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
        lanes[i].push(e);
    }
    lanes.sort_by_key(|l| l.first().map(|e| (e.attempts, e.seq)));
    job.extend(lanes.into_iter().flatten());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Notification;

    fn webhook(url: &str) -> Target {
        Target::Action {
            action: ActionSpec::Webhook {
                url: url.to_string(),
                secret: None,
                max_attempts: None,
                backoff: None,
            },
            db: "default".into(),
        }
    }

    fn entry(seq: u64, rule: &str, device: &str, target: Target) -> OutboxEntry {
        let n = Notification {
            id: format!("id{seq}"),
            rule: rule.into(),
            key: [("device".to_string(), device.to_string())].into(),
            state: "firing".into(),
            values: Default::default(),
            time: String::new(),
            started: String::new(),
            labels: Default::default(),
            time_ns: 0,
        };
        let mut e = OutboxEntry::new(target, n);
        e.seq = seq;
        e
    }

    fn seqs(entries: &[OutboxEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_job_starts_with_the_least_tried_lane_and_keeps_each_lane_in_order() {
        let mut tried = entry(1, "hot", "d1", webhook("http://h:1/"));
        tried.attempts = 3;
        let page = vec![
            tried,
            entry(2, "once", "d7", webhook("http://h:1/")),
            entry(3, "hot", "d1", webhook("http://h:1/")),
            entry(4, "hot", "d2", webhook("http://h:1/")),
            entry(5, "once", "d7", webhook("http://h:1/")),
        ];
        let mut round = Round::new(100);
        let plan = round.plan(page, |_| Avail::Free);
        assert_eq!(seqs(&plan.jobs["http://h:1"]), [2, 5, 4, 1, 3]);
    }

    #[test]
    fn destinations_are_scheme_host_and_port() {
        let d = destination_of_url;
        assert_eq!(d("http://Example.com/a?b"), "http://example.com:80");
        assert_eq!(d("http://example.com:80/x"), "http://example.com:80");
        assert_eq!(d("https://u:p@example.com"), "https://example.com:443");
        assert_eq!(d("http://127.0.0.1:9000/hook"), "http://127.0.0.1:9000");
        assert_eq!(d("http://[::1]/hook"), "http://[::1]:80");
        assert_eq!(d("http://[::1]:8080#f"), "http://[::1]:8080");
        assert_eq!(d("not a url"), "not a url");
    }

    #[test]
    fn routes_split_remote_local_and_history() {
        assert_eq!(
            route(&webhook("http://h:1/x")),
            Route::Remote("http://h:1".into())
        );
        let mqtt = Target::Action {
            action: ActionSpec::Mqtt {
                topic: "t".into(),
                max_attempts: None,
                backoff: None,
            },
            db: "default".into(),
        };
        assert_eq!(route(&mqtt), Route::Remote(MQTT_DESTINATION.into()));
        let stream = Target::Action {
            action: ActionSpec::Stream {
                db: None,
                stream: "s".into(),
            },
            db: "default".into(),
        };
        assert_eq!(route(&stream), Route::Local);
        assert_eq!(route(&Target::History { db: "d".into() }), Route::History);
    }

    #[test]
    fn due_remote_entries_are_grouped_per_destination_lane_by_lane() {
        let page = vec![
            entry(1, "a", "d1", webhook("http://slow:1/a")),
            entry(2, "b", "d1", webhook("http://fast:1/b")),
            entry(3, "a", "d2", webhook("http://slow:1/other-path")),
            entry(4, "a", "d1", Target::History { db: "x".into() }),
            entry(5, "a", "d1", webhook("http://slow:1/a")),
        ];
        let mut round = Round::new(100);
        let plan = round.plan(page, |_| Avail::Free);
        assert_eq!(plan.jobs.len(), 2);
        // Lane a/d1 (1, 5) before lane a/d2 (3): each lane in order, its oldest first.
        assert_eq!(seqs(&plan.jobs["http://slow:1"]), [1, 5, 3]);
        assert_eq!(seqs(&plan.jobs["http://fast:1"]), [2]);
        assert_eq!(seqs(&plan.history), [4]);
        assert!(plan.local.is_empty());
    }

    #[test]
    fn a_lane_waiting_for_a_retry_holds_its_later_entries_only() {
        let mut first = entry(1, "a", "d1", webhook("http://h:1/a"));
        first.next_at_ns = 500;
        let page = vec![
            first,
            entry(2, "a", "d1", webhook("http://h:1/a")),
            entry(3, "a", "d2", webhook("http://h:1/a")),
        ];
        let mut round = Round::new(100);
        let plan = round.plan(page, |_| Avail::Free);
        assert_eq!(seqs(&plan.jobs["http://h:1"]), [3]);
        assert_eq!(round.next, 500);
        // The lane keeps waiting on the next page of the same pass.
        let plan = round.plan(vec![entry(9, "a", "d1", webhook("http://h:1/a"))], |_| {
            Avail::Free
        });
        assert!(plan.jobs.is_empty());
    }

    #[test]
    fn busy_and_paused_destinations_are_skipped_for_the_whole_pass() {
        let page = vec![
            entry(1, "a", "d1", webhook("http://busy:1/")),
            entry(2, "a", "d1", webhook("http://paused:1/")),
            entry(3, "b", "d1", webhook("http://free:1/")),
        ];
        let mut round = Round::new(100);
        let mut asked = Vec::new();
        let plan = round.plan(page, |d| {
            asked.push(d.to_string());
            match d {
                "http://busy:1" => Avail::Busy,
                "http://paused:1" => Avail::PausedUntil(300),
                _ => Avail::Free,
            }
        });
        assert_eq!(plan.jobs.keys().collect::<Vec<_>>(), ["http://free:1"]);
        assert_eq!(round.next, 300);
        // Later pages: every destination seen is blocked now (free:1 went to a worker), even if
        // it became free meanwhile: a later entry must not overtake one still in a worker.
        let page = vec![
            entry(7, "a", "d1", webhook("http://busy:1/")),
            entry(8, "b", "d1", webhook("http://free:1/")),
            entry(9, "c", "d1", webhook("http://new:1/")),
        ];
        let plan = round.plan(page, |d| {
            asked.push(d.to_string());
            Avail::Free
        });
        assert_eq!(plan.jobs.keys().collect::<Vec<_>>(), ["http://new:1"]);
        assert_eq!(
            asked,
            [
                "http://busy:1",
                "http://paused:1",
                "http://free:1",
                "http://new:1"
            ]
        );
    }

    #[test]
    fn dead_entries_are_skipped_and_local_ones_stay_on_the_dispatcher() {
        let mut dead = entry(1, "a", "d1", webhook("http://h:1/"));
        dead.dead = true;
        let stream = Target::Action {
            action: ActionSpec::Stream {
                db: None,
                stream: "s".into(),
            },
            db: "default".into(),
        };
        let page = vec![dead, entry(2, "a", "d1", stream)];
        let mut round = Round::new(100);
        let plan = round.plan(page, |_| Avail::Free);
        assert!(plan.jobs.is_empty());
        assert_eq!(seqs(&plan.local), [2]);
    }
}
