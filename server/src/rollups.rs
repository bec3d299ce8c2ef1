//! Rollups as operators see them: `/metrics` gauges per database, stream and interval
//! (pending windows, lag, back-fill state, last error) and the engine's rollup counters.

use std::fmt::Write;

use strata_storage::rollup::{RollupStatus, format_every};

/// Appends the rollup gauges and counters to a Prometheus text exposition.
pub fn render_metrics(out: &mut String, rollups: &[RollupStatus], counters: (u64, u64, u64)) {
    let family = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let label = |r: &RollupStatus| {
        format!(
            "database=\"{}\",stream=\"{}\",every=\"{}\"",
            crate::metrics::escape(&r.database),
            crate::metrics::escape(&r.stream),
            format_every(r.spec.every)
        )
    };
    family(
        out,
        "strata_rollup_pending_windows",
        "(series, window) pairs written and not yet absorbed into the rollup.",
        "gauge",
    );
    for r in rollups {
        let _ = writeln!(
            out,
            "strata_rollup_pending_windows{{{}}} {}",
            label(r),
            r.pending_windows
        );
    }
    family(
        out,
        "strata_rollup_lag_seconds",
        "How long the oldest write not yet absorbed into the rollup has waited.",
        "gauge",
    );
    for r in rollups {
        let _ = writeln!(
            out,
            "strata_rollup_lag_seconds{{{}}} {}",
            label(r),
            r.lag.as_secs_f64()
        );
    }
    family(
        out,
        "strata_rollup_backfill_pending",
        "1 while the rollup is still back-filling existing data (the planner does not use it yet).",
        "gauge",
    );
    for r in rollups {
        let _ = writeln!(
            out,
            "strata_rollup_backfill_pending{{{}}} {}",
            label(r),
            u8::from(!r.backfilled())
        );
    }
    family(
        out,
        "strata_rollup_failing",
        "1 when the last maintenance run of the rollup failed (the error is in the lifecycle status).",
        "gauge",
    );
    for r in rollups {
        let _ = writeln!(
            out,
            "strata_rollup_failing{{{}}} {}",
            label(r),
            u8::from(r.last_error.is_some())
        );
    }
    let (windows, rows, errors) = counters;
    for (name, help, v) in [
        (
            "strata_rollup_windows_absorbed_total",
            "Dirty (series, window) pairs re-aggregated since start.",
            windows,
        ),
        (
            "strata_rollup_rows_written_total",
            "Rollup rows written (absorb and back-fill) since start.",
            rows,
        ),
        (
            "strata_rollup_errors_total",
            "Failed rollup maintenance runs since start.",
            errors,
        ),
    ] {
        family(out, name, help, "counter");
        let _ = writeln!(out, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::lifecycle::RollupSpec;

    #[test]
    fn gauges_carry_database_stream_and_interval() {
        let status = RollupStatus {
            database: "db".into(),
            stream: "tr\"ucks".into(),
            spec: RollupSpec {
                every: 60_000_000_000,
                keep: None,
            },
            table: "_rollup_1m_trucks".into(),
            pending_windows: 7,
            lag: std::time::Duration::from_millis(1500),
            backfill_below: Some(5),
            last_run: None,
            last_error: Some("disk full".into()),
        };
        let mut out = String::new();
        render_metrics(&mut out, &[status], (1, 2, 3));
        let label = "database=\"db\",stream=\"tr\\\"ucks\",every=\"1m\"";
        for line in [
            format!("strata_rollup_pending_windows{{{label}}} 7"),
            format!("strata_rollup_lag_seconds{{{label}}} 1.5"),
            format!("strata_rollup_backfill_pending{{{label}}} 1"),
            format!("strata_rollup_failing{{{label}}} 1"),
            "strata_rollup_windows_absorbed_total 1".to_string(),
            "strata_rollup_errors_total 3".to_string(),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
