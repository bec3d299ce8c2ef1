//! `strata sql --format chart` (and `\format chart` in the shell): a line chart of a
//! time-indexed result drawn in the terminal with Braille dots (2 × 4 dots per character).
//!
//! The x axis is the result's first timestamp column; every numeric column is a line, split by
//! the first text column when there is one (`SELECT time, device, speed …` draws one line per
//! device). Each character column shows every point that falls in it (consecutive points are
//! joined by straight segments), so a large result keeps its minima and maxima instead of being
//! sampled. Lines get distinct ANSI colours when stdout is a terminal. Hand-written rather than
//! `textplots`: that crate prints to stdout itself, panics below 32 × 3 dots and labels the axis
//! with bare numbers, where a time series wants times.

use anyhow::bail;
use strata_query::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use strata_query::arrow::compute::cast;
use strata_query::arrow::datatypes::{
    DataType, Float64Type, SchemaRef, TimeUnit, TimestampNanosecondType,
};

/// At most this many lines are drawn (the rest are named in a note).
const MAX_SERIES: usize = 8;
/// ANSI colours of the lines, in order.
const COLORS: [&str; MAX_SERIES] = [
    "\x1b[34m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[35m", "\x1b[36m", "\x1b[94m", "\x1b[91m",
];
const RESET: &str = "\x1b[0m";

/// One line of the chart: its name and its (time ns, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `column` or `column[key]`.
    pub name: String,
    /// Points in result order.
    pub points: Vec<(i64, f64)>,
}

/// Size and style of a drawing.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// Characters across the plotting area.
    pub width: usize,
    /// Text rows of the plotting area.
    pub height: usize,
    /// ANSI colours.
    pub color: bool,
}

impl Style {
    /// Fits the terminal width (`COLUMNS`, else 100 columns) and 20 rows.
    pub fn for_terminal(color: bool) -> Style {
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(100);
        Style {
            width: columns.saturating_sub(14).clamp(20, 400),
            height: 20,
            color,
        }
    }
}

/// The lines of a result: x from the first timestamp column, one line per numeric column (and
/// per value of the first text column). A clear error when the result cannot be charted.
pub fn series(schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<Vec<Series>> {
    let fields = schema.fields();
    let Some(x) = fields
        .iter()
        .position(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
    else {
        bail!("a chart needs a timestamp column (time, or date_bin(...) AS t); use --format table");
    };
    let key = fields.iter().position(|f| {
        matches!(
            f.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _)
        )
    });
    let ys: Vec<usize> = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type().is_numeric())
        .map(|(i, _)| i)
        .collect();
    if ys.is_empty() {
        bail!("a chart needs at least one numeric column to draw; use --format table");
    }
    let mut out: Vec<Series> = Vec::new();
    for batch in batches {
        let times = cast(
            batch.column(x),
            &DataType::Timestamp(TimeUnit::Nanosecond, None),
        )?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let keys = key
            .map(|k| cast(batch.column(k), &DataType::Utf8))
            .transpose()?;
        for &y in &ys {
            let values: ArrayRef = cast(batch.column(y), &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let column = fields[y].name();
            for row in 0..batch.num_rows() {
                if times.is_null(row) || values.is_null(row) || !values.value(row).is_finite() {
                    continue;
                }
                let name = match &keys {
                    Some(k) if !k.is_null(row) => {
                        format!("{column}[{}]", k.as_string::<i32>().value(row))
                    }
                    _ => column.to_string(),
                };
                let point = (times.value(row), values.value(row));
                match out.iter_mut().find(|s| s.name == name) {
                    Some(s) => s.points.push(point),
                    None => out.push(Series {
                        name,
                        points: vec![point],
                    }),
                }
            }
        }
    }
    if out.is_empty() {
        bail!("nothing to chart: every row has a null time or value");
    }
    Ok(out)
}

/// A canvas of Braille cells; each cell remembers the last line drawn into it (its colour).
struct Canvas {
    width: usize,
    height: usize,
    dots: Vec<u8>,
    owner: Vec<Option<usize>>,
}

/// The Braille bit of dot (dx, dy) inside a cell (dx 0..2, dy 0..4, top to bottom).
fn dot_bit(dx: usize, dy: usize) -> u8 {
    const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
    BITS[dx][dy]
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            dots: vec![0; width * height],
            owner: vec![None; width * height],
        }
    }

    /// Sets dot (x, y), y counted from the top, in dot units.
    fn set(&mut self, x: usize, y: usize, line: usize) {
        let (cx, cy) = (x / 2, y / 4);
        if cx >= self.width || cy >= self.height {
            return;
        }
        let cell = cy * self.width + cx;
        self.dots[cell] |= dot_bit(x % 2, y % 4);
        self.owner[cell] = Some(line);
    }

    /// Draws a straight segment between two dots (Bresenham).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), line: usize) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x as usize, y as usize, line);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Row `r` as text (colours when `color`).
    fn row(&self, r: usize, color: bool) -> String {
        let mut s = String::new();
        let mut current: Option<usize> = None;
        for c in 0..self.width {
            let cell = r * self.width + c;
            let owner = self.owner[cell].filter(|_| self.dots[cell] != 0);
            if color && owner != current {
                s.push_str(match owner {
                    Some(i) => COLORS[i % COLORS.len()],
                    None => RESET,
                });
                current = owner;
            }
            s.push(char::from_u32(0x2800 + u32::from(self.dots[cell])).unwrap_or(' '));
        }
        if color && current.is_some() {
            s.push_str(RESET);
        }
        s
    }
}

/// Draws the lines (at most [`MAX_SERIES`]) with value labels on the left, times below and a
/// legend.
pub fn render(lines: &[Series], style: Style, format_time: impl Fn(i64) -> String) -> String {
    let shown = &lines[..lines.len().min(MAX_SERIES)];
    let all = || shown.iter().flat_map(|s| s.points.iter());
    let (t0, t1) = all().fold((i64::MAX, i64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut v0, mut v1) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if v0 == v1 {
        (v0, v1) = (v0 - 1.0, v1 + 1.0);
    }
    let (w, h) = (style.width.max(2), style.height.max(2));
    let (xdots, ydots) = ((w * 2 - 1) as f64, (h * 4 - 1) as f64);
    let span = (t1 as f64 - t0 as f64).max(1.0);
    let to_dot = |(t, v): (i64, f64)| {
        let x = ((t as f64 - t0 as f64) / span * xdots).round() as i64;
        let y = ((v1 - v) / (v1 - v0) * ydots).round() as i64;
        (x, y)
    };
    let mut canvas = Canvas::new(w, h);
    for (i, s) in shown.iter().enumerate() {
        let mut points = s.points.clone();
        points.sort_by_key(|p| p.0);
        let dots: Vec<(i64, i64)> = points.into_iter().map(to_dot).collect();
        match dots.as_slice() {
            [only] => canvas.line(*only, *only, i),
            _ => dots.windows(2).for_each(|p| canvas.line(p[0], p[1], i)),
        }
    }
    let label = |v: f64| format!("{:>11}", short_number(v));
    let mut out = String::new();
    for r in 0..h {
        let tag = match r {
            0 => label(v1),
            r if r == h - 1 => label(v0),
            r if r == h / 2 => label((v0 + v1) / 2.0),
            _ => " ".repeat(11),
        };
        out.push_str(&format!("{tag} ┤{}\n", canvas.row(r, style.color)));
    }
    out.push_str(&format!("{} └{}\n", " ".repeat(11), "─".repeat(w)));
    let (left, right) = (format_time(t0), format_time(t1));
    let gap = (w + 1).saturating_sub(left.len() + right.len()).max(1);
    out.push_str(&format!(
        "{}{left}{}{right}\n",
        " ".repeat(13),
        " ".repeat(gap)
    ));
    for (i, s) in shown.iter().enumerate() {
        let mark = match style.color {
            true => format!("{}━━{RESET}", COLORS[i % COLORS.len()]),
            false => "━━".to_string(),
        };
        out.push_str(&format!(
            "{}{mark} {} ({} points)\n",
            " ".repeat(13),
            s.name,
            s.points.len()
        ));
    }
    if lines.len() > MAX_SERIES {
        out.push_str(&format!(
            "{}(and {} more lines not drawn; narrow the query to draw them)\n",
            " ".repeat(13),
            lines.len() - MAX_SERIES
        ));
    }
    out
}

/// A compact number label: 4 significant digits, exponent form when very large or small.
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match s {
        "-0" => "0".to_string(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use strata_query::arrow::array::{
        Float64Array, Int64Array, StringArray, TimestampNanosecondArray,
    };
    use strata_query::arrow::datatypes::{Field, Schema};

    fn plain(width: usize, height: usize) -> Style {
        Style {
            width,
            height,
            color: false,
        }
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let b = RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect())
            .unwrap();
        (schema, vec![b])
    }

    /// Dots of a rendered chart's plotting rows, as (column, row) cells that are not blank.
    fn inked(chart: &str, height: usize) -> Vec<(usize, usize)> {
        chart
            .lines()
            .take(height)
            .enumerate()
            .flat_map(|(r, line)| {
                let plot = line.split('┤').nth(1).unwrap_or("").to_string();
                plot.chars()
                    .enumerate()
                    .filter(|(_, c)| *c != '\u{2800}')
                    .map(move |(c, _)| (c, r))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn a_rising_line_goes_from_bottom_left_to_top_right() {
        let s = Series {
            name: "v".into(),
            points: (0..50).map(|i| (i * 1_000_000_000, i as f64)).collect(),
        };
        let chart = render(&[s], plain(40, 10), |t| format!("T{t}"));
        let ink = inked(&chart, 10);
        assert!(ink.contains(&(0, 9)), "{chart}");
        assert!(ink.contains(&(39, 0)), "{chart}");
        // One dot column per character: the line is monotone, never two rows apart per step.
        assert!(
            ink.iter().all(|&(c, r)| c.abs_diff(39 - r * 39 / 9) <= 5),
            "{chart}"
        );
        assert!(
            chart.lines().next().unwrap().trim_start().starts_with("49"),
            "{chart}"
        );
        assert!(
            chart.lines().nth(9).unwrap().trim_start().starts_with('0'),
            "{chart}"
        );
        assert!(
            chart.contains("T0") && chart.contains("T49000000000"),
            "{chart}"
        );
        assert!(chart.contains("━━ v (50 points)"), "{chart}");
    }

    #[test]
    fn a_spike_among_many_points_is_kept() {
        let mut points: Vec<(i64, f64)> = (0..100_000).map(|i| (i, 1.0)).collect();
        points[77_777].1 = 100.0;
        let chart = render(
            &[Series {
                name: "v".into(),
                points,
            }],
            plain(30, 8),
            |t| t.to_string(),
        );
        let ink = inked(&chart, 8);
        assert!(
            ink.iter().any(|&(_, r)| r == 0),
            "the spike reaches the top row:\n{chart}"
        );
        assert!(
            ink.iter().filter(|&&(_, r)| r == 7).count() >= 28,
            "{chart}"
        );
    }

    #[test]
    fn lines_split_by_the_first_text_column_and_colour_when_asked() {
        let (schema, batches) = batch(vec![
            (
                "time",
                Arc::new(TimestampNanosecondArray::from(vec![1, 2, 1, 2])) as ArrayRef,
            ),
            (
                "device",
                Arc::new(StringArray::from(vec!["a", "a", "b", "b"])),
            ),
            (
                "speed",
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(5)])),
            ),
        ]);
        let lines = series(&schema, &batches).unwrap();
        assert_eq!(
            lines,
            vec![
                Series {
                    name: "speed[a]".into(),
                    points: vec![(1, 1.0), (2, 2.0)]
                },
                Series {
                    name: "speed[b]".into(),
                    points: vec![(2, 5.0)]
                },
            ]
        );
        let chart = render(
            &lines,
            Style {
                width: 20,
                height: 5,
                color: true,
            },
            |t| t.to_string(),
        );
        assert!(
            chart.contains(COLORS[0]) && chart.contains(COLORS[1]),
            "{chart}"
        );
        let plain_chart = render(&lines, plain(20, 5), |t| t.to_string());
        assert!(!plain_chart.contains('\x1b'));
    }

    #[test]
    fn results_without_time_or_numbers_are_refused_clearly() {
        let (schema, batches) = batch(vec![(
            "v",
            Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
        )]);
        let e = series(&schema, &batches).unwrap_err().to_string();
        assert!(e.contains("timestamp column"), "{e}");
        let (schema, batches) = batch(vec![
            (
                "time",
                Arc::new(TimestampNanosecondArray::from(vec![1])) as ArrayRef,
            ),
            ("device", Arc::new(StringArray::from(vec!["a"]))),
        ]);
        let e = series(&schema, &batches).unwrap_err().to_string();
        assert!(e.contains("numeric column"), "{e}");
    }

    #[test]
    fn flat_and_single_point_lines_draw_without_dividing_by_zero() {
        let one = Series {
            name: "v".into(),
            points: vec![(5, 3.0)],
        };
        let chart = render(&[one], plain(10, 4), |t| t.to_string());
        assert_eq!(inked(&chart, 4).len(), 1, "{chart}");
        assert_eq!(short_number(1234.5678), "1234.5678");
        assert_eq!(short_number(2.5e12), "2.500e12");
        assert_eq!(short_number(-0.0), "0");
    }
}
