//! String columns whose values come in runs, written straight as Parquet column chunks. A cold
//! object's `device` and tag columns hold one value per series, repeated on each of its rows:
//! the parquet crate's writers hash every row's value into their dictionary, which was the
//! largest cost of a move (`benches/cold/RESULTS.md`). Here a chunk is built from the runs, so
//! its cost grows with the series, not the rows: a PLAIN dictionary page of the distinct values,
//! then data pages (v1) of at most [`PAGE_ROWS`] rows whose definition levels and dictionary ids
//! are RLE runs. Each chunk is uncompressed (it is a few bytes per series), has min/max
//! statistics for the chunk and every page (column index) and an offset index, as the crate's
//! own writer would give it ([`super::chunk`]).

use std::collections::HashMap;

use parquet::basic::{Compression, Encoding, Type as Physical};
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedRowGroupWriter;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{ChunkWriter, PageSummary, rle};

/// Most rows per data page: one device's rows of a day sit on one or two pages, so a one-device
/// read selects few rows through the page index (`parquet::device_pages`).
pub(crate) const PAGE_ROWS: usize = 8_192;

/// `rows` consecutive rows holding `value` (`None`: null).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run<'a> {
    pub value: Option<&'a str>,
    pub rows: usize,
}

/// Writes `runs` as the next column chunk of `group`, whose column is `descr` (a string column;
/// a required one refuses a null run).
pub(crate) fn append(
    group: &mut SerializedRowGroupWriter<'_, Vec<u8>>,
    descr: ColumnDescPtr,
    runs: &[Run<'_>],
) -> Result<()> {
    let optional = descr.max_def_level() > 0;
    if !optional && runs.iter().any(|r| r.value.is_none()) {
        return Err(ParquetError::General(format!(
            "column '{}' is required but a series has no value for it",
            descr.name()
        )));
    }
    let (ids, dictionary) = dictionary(runs);
    let mut chunk = ChunkWriter::new(Physical::BYTE_ARRAY);
    if !dictionary.is_empty() {
        chunk.dictionary_page(plain(&dictionary), dictionary.len())?;
    }
    let width = (!dictionary.is_empty()).then(|| id_width(dictionary.len()));
    let encoding = match width {
        Some(_) => Encoding::RLE_DICTIONARY,
        None => Encoding::PLAIN,
    };
    let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
    encodings.extend(width.map(|_| Encoding::RLE_DICTIONARY));
    let (mut min, mut max): (Option<&str>, Option<&str>) = (None, None);
    for page in split(runs, &ids) {
        let stats = PageStats::of(&page);
        let buf = data_page(&page, optional, width);
        let len = buf.len();
        let summary = PageSummary {
            rows: stats.rows,
            nulls: stats.nulls,
            min_max: stats
                .min
                .zip(stats.max)
                .map(|(lo, hi)| (lo.as_bytes().to_vec(), hi.as_bytes().to_vec())),
        };
        chunk.data_page(buf, len, encoding, summary)?;
        min = lesser(min, stats.min);
        max = greater(max, stats.max);
    }
    let statistics = Statistics::new(
        min.map(ByteArray::from),
        max.map(ByteArray::from),
        None,
        Some(chunk.nulls() as u64),
        false,
    );
    chunk.append_to(
        group,
        descr,
        (Compression::UNCOMPRESSED, encodings),
        statistics,
    )
}

/// Each run's dictionary id (`u32::MAX` for a null run) and the distinct values, in order of
/// first appearance.
fn dictionary<'a>(runs: &[Run<'a>]) -> (Vec<u32>, Vec<&'a str>) {
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut values = Vec::new();
    let ids = runs
        .iter()
        .map(|r| match r.value {
            None => u32::MAX,
            Some(v) => *seen.entry(v).or_insert_with(|| {
                values.push(v);
                values.len() as u32 - 1
            }),
        })
        .collect();
    (ids, values)
}

/// Bits per dictionary id: enough for `n` distinct values, at least 1.
fn id_width(n: usize) -> u8 {
    let max = n.saturating_sub(1) as u32;
    (32 - max.leading_zeros()).max(1) as u8
}

/// The PLAIN encoding of byte arrays: each one's length (u32 LE), then its bytes.
fn plain(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(|v| 4 + v.len()).sum());
    for v in values {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// One data page's runs: (value, dictionary id, rows).
type PageRuns<'a> = Vec<(Option<&'a str>, u32, usize)>;

/// The runs cut into pages of at most [`PAGE_ROWS`] rows (a run may straddle two pages).
fn split<'a>(runs: &[Run<'a>], ids: &[u32]) -> Vec<PageRuns<'a>> {
    let mut pages = Vec::new();
    let mut page: PageRuns<'a> = Vec::new();
    let mut room = PAGE_ROWS;
    for (run, id) in runs.iter().zip(ids) {
        let mut left = run.rows;
        while left > 0 {
            let take = left.min(room);
            page.push((run.value, *id, take));
            left -= take;
            room -= take;
            if room == 0 {
                pages.push(std::mem::take(&mut page));
                room = PAGE_ROWS;
            }
        }
    }
    if !page.is_empty() || pages.is_empty() {
        pages.push(page);
    }
    pages
}

/// Rows, nulls and the smallest and largest value of one page.
struct PageStats<'a> {
    rows: usize,
    nulls: usize,
    min: Option<&'a str>,
    max: Option<&'a str>,
}

impl<'a> PageStats<'a> {
    fn of(page: &PageRuns<'a>) -> PageStats<'a> {
        let mut s = PageStats {
            rows: 0,
            nulls: 0,
            min: None,
            max: None,
        };
        for (value, _, rows) in page {
            s.rows += rows;
            match value {
                None => s.nulls += rows,
                Some(_) => {
                    s.min = lesser(s.min, *value);
                    s.max = greater(s.max, *value);
                }
            }
        }
        s
    }
}

/// The smaller of two optional values by bytes (Parquet's order for UTF8), `None` ignored.
fn lesser<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.as_bytes() < x.as_bytes() { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The larger of two optional values by bytes, `None` ignored.
fn greater<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Option<&'a str> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.as_bytes() > x.as_bytes() { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// A v1 data page body: for an optional column the definition levels (RLE hybrid, bit width 1,
/// after their length as u32 LE), then, when the column has a dictionary (`width`: bits per
/// id), the id width (one byte, also on a page of nulls: readers expect it) and the ids of the
/// present rows as RLE runs. Without a dictionary every row is null and nothing follows.
fn data_page(page: &PageRuns<'_>, optional: bool, width: Option<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    if optional {
        let levels = rle(page.iter().map(|(v, _, n)| (u32::from(v.is_some()), *n)), 1);
        out.extend_from_slice(&(levels.len() as u32).to_le_bytes());
        out.extend_from_slice(&levels);
    }
    if let Some(width) = width {
        out.push(width);
        let present = page.iter().filter(|(v, _, _)| v.is_some());
        out.extend_from_slice(&rle(present.map(|(_, id, n)| (*id, *n)), width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_widths_cover_the_dictionary() {
        assert_eq!(id_width(0), 1);
        assert_eq!(id_width(1), 1);
        assert_eq!(id_width(2), 1);
        assert_eq!(id_width(3), 2);
        assert_eq!(id_width(256), 8);
        assert_eq!(id_width(257), 9);
    }

    #[test]
    fn pages_split_long_runs_and_keep_every_row() {
        let runs = [
            Run {
                value: Some("a"),
                rows: PAGE_ROWS + 10,
            },
            Run {
                value: None,
                rows: 5,
            },
            Run {
                value: Some("b"),
                rows: PAGE_ROWS,
            },
        ];
        let (ids, dict) = dictionary(&runs);
        assert_eq!(dict, vec!["a", "b"]);
        assert_eq!(ids, vec![0, u32::MAX, 1]);
        let pages = split(&runs, &ids);
        assert_eq!(pages.len(), 3);
        let rows: Vec<usize> = pages.iter().map(|p| PageStats::of(p).rows).collect();
        assert_eq!(rows, vec![PAGE_ROWS, PAGE_ROWS, 15]);
        let second = PageStats::of(&pages[1]);
        assert_eq!(
            (second.min, second.max, second.nulls),
            (Some("a"), Some("b"), 5)
        );
    }
}
