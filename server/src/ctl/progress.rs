//! Progress bars of the client commands on stderr (indicatif): hidden with `--quiet`/`--json`
//! and whenever stderr is not a terminal, so scripts and logs see only the final summary.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` bytes, with throughput and ETA.
pub fn bytes(total: u64, quiet: bool, what: &str) -> ProgressBar {
    bar(
        total,
        quiet,
        what,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    )
}

/// A bar over `total` items called `unit` (e.g. "devices"), with rate and ETA.
pub fn items(total: u64, quiet: bool, what: &str, unit: &str) -> ProgressBar {
    let template =
        format!("{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}}");
    bar(total, quiet, what, &template)
}

fn bar(total: u64, quiet: bool, what: &str, template: &str) -> ProgressBar {
    let target = match quiet {
        true => ProgressDrawTarget::hidden(),
        false => ProgressDrawTarget::stderr(),
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}
