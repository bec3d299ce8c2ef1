//! A series read for a cold move ([`Segment::read_series_decimal`]): like
//! [`Segment::read_series`] over the whole segment, except that a float field whose every chunk
//! in the series uses the decimal codec without exceptions comes as its integers and their
//! scales ([`Decimals`]) instead of floats. The cold writer stores such a field as a Parquet
//! DECIMAL of those very integers, so neither the `int / 10^k` division of the decoder nor the
//! writer's search for a scale runs for it (both were a third of a move's time,
//! `benches/cold/RESULTS.md`). The two readings agree: the float of integer `i` at scale `k` is
//! `i / 10^k`, correctly rounded, in both.

use super::{Block, FieldChunk, Segment, decode_field_onto, decode_time_chunk, presence};
use crate::codec::{self, Codec};
use crate::error::Result;
use crate::rows::Rows;
use crate::{ColumnData, FieldType, SeriesId};

/// A float column's present values as integers at decimal scales: `values[start..end]` are at
/// scale `k` for each `(end, k)` of `scales` (`start` is the previous run's end, or 0), so value
/// `j` is `values[j] / 10^k`; or, for a cold move, one entry per chunk (`packed`, in row order;
/// `values` and `scales` then empty): its integers still encoded as the segment stores them
/// where they are delta-packed, which the cold writer turns into Parquet's delta encoding
/// without decoding them, else decoded. [`Decimals::unpack`] turns the chunks into runs.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Decimals {
    pub values: Vec<i64>,
    pub scales: Vec<(usize, u8)>,
    pub packed: Vec<PackedInts>,
}

/// One decimal chunk's integers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PackedInts {
    /// Values in the chunk (its rows with a value).
    pub count: usize,
    /// Their decimal scale: value `i` is `i / 10^k`.
    pub k: u8,
    /// The integers.
    pub ints: ChunkInts,
    /// The chunk's smallest and largest value, from its statistics.
    pub min: f64,
    pub max: f64,
}

/// A chunk's integers, as the segment stores them or decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChunkInts {
    /// A [`Codec::DeltaPacked`] payload, copied out of the segment (its chunk checksum
    /// verified).
    Encoded(Vec<u8>),
    /// The `count` integers.
    Decoded(Vec<i64>),
}

impl PackedInts {
    /// Appends the integers to `out`.
    pub fn decode(&self, out: &mut Vec<i64>) -> std::result::Result<(), String> {
        match &self.ints {
            ChunkInts::Encoded(payload) => {
                codec::decode_integers(Codec::DeltaPacked, payload, self.count, out)
                    .map_err(|e| e.to_string())
            }
            ChunkInts::Decoded(ints) => {
                out.extend_from_slice(ints);
                Ok(())
            }
        }
    }

    /// Decodes the integers in place (nothing to do when they are decoded).
    pub fn decode_in_place(&mut self) -> std::result::Result<(), String> {
        if let ChunkInts::Encoded(_) = self.ints {
            let mut ints = Vec::with_capacity(self.count);
            self.decode(&mut ints)?;
            self.ints = ChunkInts::Decoded(ints);
        }
        Ok(())
    }
}

impl Decimals {
    /// Records that the values added since the last run are at scale `k`.
    fn close_run(&mut self, k: u8) {
        let end = self.values.len();
        match self.scales.last_mut() {
            Some((e, _)) if *e == end => {}
            Some((e, last)) if *last == k => *e = end,
            None if end == 0 => {}
            _ => self.scales.push((end, k)),
        }
    }

    /// Adds `other`'s values after these: still encoded when both are, else decoded.
    pub fn append(&mut self, mut other: Decimals) -> std::result::Result<(), String> {
        if self.values.is_empty() && other.values.is_empty() {
            self.packed.append(&mut other.packed);
            return Ok(());
        }
        self.unpack()?;
        other.unpack()?;
        for (run, k) in other.runs() {
            self.values.extend_from_slice(run);
            self.close_run(k);
        }
        Ok(())
    }

    /// Decodes the chunks still encoded ([`Decimals::packed`]) into `values` and `scales`.
    pub fn unpack(&mut self) -> std::result::Result<(), String> {
        let total: usize = self.packed.iter().map(|p| p.count).sum();
        self.values.reserve(total);
        for p in std::mem::take(&mut self.packed) {
            p.decode(&mut self.values)?;
            self.close_run(p.k);
        }
        Ok(())
    }

    /// The column's floats, one slot per row of `valid` (0 where a row has no value): value
    /// `i` at scale `k` is `i / 10^k`, correctly rounded, as the decimal codec decodes it.
    pub fn to_floats(&self, valid: &[bool]) -> std::result::Result<Vec<f64>, String> {
        if !self.packed.is_empty() {
            let mut plain = self.clone();
            plain.unpack()?;
            return plain.to_floats(valid);
        }
        let present = valid.iter().filter(|ok| **ok).count();
        if present != self.values.len() {
            return Err(format!(
                "{} decimal values given for {present} present rows",
                self.values.len()
            ));
        }
        let mut values = self.runs().flat_map(|(ints, k)| {
            let div = 10f64.powi(i32::from(k));
            ints.iter().map(move |&i| i as f64 / div)
        });
        Ok(valid
            .iter()
            .map(|ok| match ok {
                true => values.next().unwrap_or(0.0),
                false => 0.0,
            })
            .collect())
    }

    /// The runs of decoded values: each slice of values with its scale (none for the chunks
    /// still encoded: [`Decimals::unpack`] first).
    pub fn runs(&self) -> impl Iterator<Item = (&[i64], u8)> + '_ {
        debug_assert!(self.packed.is_empty(), "runs of encoded decimals");
        let mut start = 0;
        self.scales.iter().map(move |&(end, k)| {
            let run = &self.values[start..end];
            start = end;
            (run, k)
        })
    }
}

/// What the first pass of a move learns of one float chunk of a series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FloatChunk {
    /// Decimal without exceptions at scale `k`: every value is an integer over `10^k`, and `k`
    /// is the smallest such scale (the codec takes the largest number of decimals a value
    /// needs when none is an exception); `min` and `max` from the chunk's statistics. Nothing
    /// is decoded.
    Decimal { k: u8, min: f64, max: f64 },
    /// Any other chunk: its present values, decoded.
    Values(Vec<f64>),
}

impl Segment {
    /// The chunks of float field `field` in `series` (none when the segment lacks either), for
    /// finding the field's decimal scale without decoding its decimal chunks.
    pub fn float_chunks(
        &self,
        series: SeriesId,
        field: &(String, FieldType),
    ) -> Result<Vec<FloatChunk>> {
        let (Some(index), Some(fid)) = (self.index_of(series), self.local_field(field)?) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (bi, b) in index.iter().enumerate() {
            let Some(fc) = self.index.field(b, fid) else {
                continue;
            };
            let rows = b.rows as usize;
            if let Some(k) = self.decimal_header(fc, rows) {
                out.push(FloatChunk::Decimal {
                    k,
                    min: f64::from_bits(fc.stats.min),
                    max: f64::from_bits(fc.stats.max),
                });
                continue;
            }
            let bytes = self.chunk(&fc.chunk, series, bi, &field.0)?;
            let col = super::decode_field_chunk(
                bytes,
                &field.0,
                FieldType::Float,
                rows,
                fc.stats.count as usize,
            )
            .map_err(|e| self.decode_error(series, bi, &field.0, e))?;
            let ColumnData::Float(v) = col.data else {
                continue;
            };
            let present = v.into_iter().zip(&col.valid).filter(|(_, ok)| **ok);
            out.push(FloatChunk::Values(present.map(|(x, _)| x).collect()));
        }
        Ok(out)
    }

    /// All rows of `series` with one column per entry of `fields`, as [`Segment::read_series`]
    /// reads them over the whole segment, and per field the [`Decimals`] of a float field whose
    /// every chunk of the series is decimal without exceptions: that column of the rows holds
    /// its validity flags and no values (the data vector is empty). `None` when the segment has
    /// no rows of the series. Blocks out of time order (never written so) are read as floats.
    pub fn read_series_decimal(
        &self,
        series: SeriesId,
        fields: &[(String, FieldType)],
    ) -> Result<Option<(Rows, Vec<Option<Decimals>>)>> {
        let Some(index) = self.index_of(series) else {
            return Ok(None);
        };
        let wanted = self.local_fields(fields)?;
        let ordered = index.windows(2).all(|w| w[0].max_time < w[1].min_time);
        let mut decimals: Vec<Option<Decimals>> = wanted
            .iter()
            .zip(fields)
            .map(|(want, (_, ty))| {
                let all = *ty == FieldType::Float
                    && ordered
                    && want.is_some_and(|fid| self.decimal_everywhere(index, fid));
                all.then(Decimals::default)
            })
            .collect();
        if decimals.iter().all(Option::is_none) {
            let rows = self.read_series(series, i64::MIN, i64::MAX, fields)?;
            return Ok(rows.map(|r| (r, decimals)));
        }
        let mut out = Rows::empty(fields);
        let total: usize = index.iter().map(|b| b.rows as usize).sum();
        // Room for every row up front: growing by doubling copied each column once more.
        out.times.reserve(total);
        for (col, d) in out.columns.iter_mut().zip(&mut decimals) {
            match d {
                Some(_) => col.valid.reserve(total),
                None => col.reserve(total),
            }
        }
        for (bi, block) in index.iter().enumerate() {
            let n = block.rows as usize;
            let bytes = self.chunk(&block.time, series, bi, "time")?;
            decode_time_chunk(bytes, n, &mut out.times)
                .map_err(|e| self.decode_error(series, bi, "time", e))?;
            for (fi, ((want, (name, ty)), col)) in
                wanted.iter().zip(fields).zip(&mut out.columns).enumerate()
            {
                let chunk = want.and_then(|fid| self.index.field(block, fid));
                match (chunk, &mut decimals[fi]) {
                    (None, Some(_)) => col.valid.resize(col.valid.len() + n, false),
                    (None, None) => (0..n).for_each(|_| col.push_null()),
                    (Some(fc), Some(d)) => {
                        let bytes = self.chunk(&fc.chunk, series, bi, name)?;
                        chunk_onto(bytes, (n, fc), &mut col.valid, d)
                            .map_err(|e| self.decode_error(series, bi, name, e))?;
                    }
                    (Some(fc), None) => {
                        let bytes = self.chunk(&fc.chunk, series, bi, name)?;
                        decode_field_onto(bytes, name, *ty, n, fc.stats.count as usize, col)
                            .map_err(|e| self.decode_error(series, bi, name, e))?;
                    }
                }
            }
        }
        Ok((!out.is_empty()).then_some((out, decimals)))
    }

    /// True when every chunk of field `fid` in `blocks` is decimal without exceptions, from the
    /// chunks' first bytes (not checksummed here: the read that follows checks each chunk and
    /// fails on a damaged one).
    fn decimal_everywhere(&self, blocks: &[Block], fid: u16) -> bool {
        blocks.iter().all(|b| {
            (self.index.field(b, fid))
                .is_none_or(|fc| self.decimal_header(fc, b.rows as usize).is_some())
        })
    }

    /// The scale of a field chunk (of a block of `rows` rows) stored with the decimal codec
    /// without exceptions, from its first bytes (not checksummed here: a read of the chunk
    /// checks it and fails on a damaged one).
    fn decimal_header(&self, fc: &FieldChunk, rows: usize) -> Option<u8> {
        let start = fc.chunk.offset as usize;
        let bytes = self
            .bytes()
            .get(start..start.saturating_add(fc.chunk.len as usize))?;
        let (codec, rest) = payload(bytes, rows)?;
        codec::decimal_scale(codec, rest)
    }
}

/// A field chunk's codec and payload, past its presence flag and bitmap.
fn payload(bytes: &[u8], rows: usize) -> Option<(Codec, &[u8])> {
    let rest = match bytes.split_first()? {
        (0, rest) => rest,
        (1, rest) => rest.get(rows.div_ceil(8)..)?,
        _ => return None,
    };
    let (&codec, rest) = rest.split_first()?;
    Some((Codec::from_u8(codec).ok()?, rest))
}

/// Reads a decimal field chunk (without exceptions) of `rows` rows: its flags onto `valid`, its
/// integers onto `d` as one more chunk, still encoded when they are delta-packed, else decoded
/// (with the chunk's extremes either way).
fn chunk_onto(
    bytes: &[u8],
    (rows, fc): (usize, &FieldChunk),
    valid: &mut Vec<bool>,
    d: &mut Decimals,
) -> std::result::Result<(), String> {
    let count = fc.stats.count as usize;
    let rest = presence(bytes, rows, count, valid)?;
    let read = match rest.split_first() {
        Some((&codec, payload)) if codec == Codec::Decimal.id() => {
            match codec::decimal_delta_packed(payload) {
                Some((k, packed)) => Ok((k, ChunkInts::Encoded(packed.to_vec()))),
                None => {
                    let mut ints = Vec::with_capacity(count);
                    codec::decode_decimal_ints(payload, count, &mut ints)
                        .map(|k| (k, ChunkInts::Decoded(ints)))
                        .map_err(|e| e.to_string())
                }
            }
        }
        Some((codec, _)) => Err(format!(
            "codec {codec} is not the decimal codec its header said"
        )),
        None => Err("missing codec byte".into()),
    };
    match read {
        Ok((k, ints)) => {
            d.packed.push(PackedInts {
                count,
                k,
                ints,
                min: f64::from_bits(fc.stats.min),
                max: f64::from_bits(fc.stats.max),
            });
            Ok(())
        }
        Err(e) => {
            valid.truncate(valid.len() - rows);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{BLOCK_ROWS, SegmentWriter};
    use crate::{Column, ColumnData};

    fn fields() -> Vec<(String, FieldType)> {
        ["dec", "full", "flat", "sparse"]
            .iter()
            .map(|n| (n.to_string(), FieldType::Float))
            .chain([("n".to_string(), FieldType::Integer)])
            .collect()
    }

    /// Rows `0..n` of a series: `dec` with one decimal in the first block and three after it
    /// (a null in every 5th row), `full` at full precision, `flat` constant in the first block,
    /// `sparse` only in the second block, `n` an integer.
    fn rows(n: usize) -> Rows {
        let mut r = Rows::empty(&fields());
        for i in 0..n {
            r.times.push(1_000 + i as i64 * 10);
            let x = i as f64;
            // One division of exact integers: the nearest double to a decimal.
            let dec = match i < BLOCK_ROWS {
                true => (x * 3.0 - 400.0) / 10.0,
                false => (x * 7.0 - 40_001.0) / 1000.0,
            };
            push(&mut r.columns[0], (i % 5 != 0).then_some(dec));
            push(&mut r.columns[1], Some((x * 0.7).sin()));
            push(
                &mut r.columns[2],
                Some(if i < BLOCK_ROWS { 2.5 } else { x / 4.0 }),
            );
            push(
                &mut r.columns[3],
                (BLOCK_ROWS..2 * BLOCK_ROWS)
                    .contains(&i)
                    .then_some(x / 100.0),
            );
            r.columns[4].data =
                match std::mem::replace(&mut r.columns[4].data, ColumnData::Integer(vec![])) {
                    ColumnData::Integer(mut v) => {
                        v.push(i as i64);
                        ColumnData::Integer(v)
                    }
                    other => other,
                };
            r.columns[4].valid.push(true);
        }
        r
    }

    fn push(c: &mut Column, v: Option<f64>) {
        match (v, &mut c.data) {
            (Some(v), ColumnData::Float(d)) => {
                d.push(v);
                c.valid.push(true);
            }
            _ => c.push_null(),
        }
    }

    /// A float column's values from its decimals (0.0 where not valid), as the floats read.
    fn floats(d: &Decimals, valid: &[bool]) -> Vec<u64> {
        let mut d = d.clone();
        d.unpack().unwrap();
        let mut present = d.runs().flat_map(|(ints, k)| {
            ints.iter()
                .map(move |i| *i as f64 / 10f64.powi(i32::from(k)))
        });
        valid
            .iter()
            .map(|ok| {
                if *ok {
                    present.next().unwrap().to_bits()
                } else {
                    0f64.to_bits()
                }
            })
            .collect()
    }

    #[test]
    fn decimal_reads_equal_float_reads_and_skip_other_codecs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.seg");
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields()).unwrap();
        let n = 3 * BLOCK_ROWS + 17;
        w.write_series(7, &rows(n)).unwrap();
        w.write_series(8, &rows(100)).unwrap();
        w.finish().unwrap();
        let seg = Segment::open(&path).unwrap();
        assert!(seg.read_series_decimal(9, &fields()).unwrap().is_none());
        for (sid, rows) in [(7, n), (8, 100)] {
            let want = seg
                .read_series(sid, i64::MIN, i64::MAX, &fields())
                .unwrap()
                .unwrap();
            let (got, decimals) = seg.read_series_decimal(sid, &fields()).unwrap().unwrap();
            assert_eq!(got.times, want.times);
            assert_eq!(got.len(), rows);
            // `dec` is decimal everywhere (scales 1 then 3); `full` is not and `flat` has a
            // constant chunk; `sparse` is decimal where it has chunks (series 8 has none);
            // `n` is not a float.
            let which: Vec<bool> = decimals.iter().map(Option::is_some).collect();
            assert_eq!(which, vec![true, false, false, true, false], "series {sid}");
            for (fi, d) in decimals.iter().enumerate() {
                let (g, w) = (&got.columns[fi], &want.columns[fi]);
                assert_eq!(g.valid, w.valid, "series {sid} field {fi}");
                match (d, &w.data) {
                    (Some(d), ColumnData::Float(wv)) => {
                        assert_eq!(g.data.len(), 0, "a decimal column holds no floats");
                        let want_bits: Vec<u64> = wv
                            .iter()
                            .zip(&w.valid)
                            .map(|(v, ok)| if *ok { v.to_bits() } else { 0f64.to_bits() })
                            .collect();
                        assert_eq!(floats(d, &w.valid), want_bits, "series {sid} field {fi}");
                    }
                    (None, _) => assert_eq!(g, w, "series {sid} field {fi}"),
                    (Some(_), _) => panic!("decimals for a field that is not a float"),
                }
            }
            if sid == 7 {
                let mut d = decimals[0].clone().unwrap();
                d.unpack().unwrap();
                let scales: Vec<u8> = d.runs().map(|r| r.1).collect();
                assert_eq!(scales, vec![1, 3]);
            }
        }
    }

    #[test]
    fn float_chunks_give_the_scale_the_decoded_floats_give() {
        use crate::cold::decimal::Scaler;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.seg");
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields()).unwrap();
        let n = 2 * BLOCK_ROWS + 5;
        w.write_series(7, &rows(n)).unwrap();
        w.finish().unwrap();
        let seg = Segment::open(&path).unwrap();
        let want = seg
            .read_series(7, i64::MIN, i64::MAX, &fields())
            .unwrap()
            .unwrap();
        for (fi, field) in fields().iter().enumerate().take(4) {
            let chunks = seg.float_chunks(7, field).unwrap();
            let mut by_chunks = Scaler::default();
            let fit = chunks.iter().all(|c| match c {
                FloatChunk::Decimal { k, min, max } => by_chunks.push_bounds(*k, *min, *max),
                FloatChunk::Values(v) => v.iter().all(|x| by_chunks.push(*x)),
            });
            let ColumnData::Float(v) = &want.columns[fi].data else {
                panic!("not floats");
            };
            let mut by_floats = Scaler::default();
            let floats_fit = v
                .iter()
                .zip(&want.columns[fi].valid)
                .all(|(x, ok)| !*ok || by_floats.push(*x));
            assert_eq!(fit, floats_fit, "{}", field.0);
            if fit {
                assert_eq!(by_chunks.scale, by_floats.scale, "{}", field.0);
            }
            let decimal = chunks
                .iter()
                .filter(|c| matches!(c, FloatChunk::Decimal { .. }));
            match field.0.as_str() {
                // Decimal in both blocks it has values in (1 then 3 decimals).
                "dec" => assert_eq!(decimal.count(), 3),
                "sparse" => assert_eq!(decimal.count(), 1),
                "full" => assert_eq!(decimal.count(), 0),
                // Constant in the first block, decimal after.
                _ => assert_eq!(decimal.count(), 2),
            }
        }
    }

    #[test]
    fn a_damaged_decimal_chunk_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.seg");
        let mut w = SegmentWriter::create(&path, "db", "m", 0, 1 << 40, &fields()).unwrap();
        w.write_series(7, &rows(50)).unwrap();
        w.finish().unwrap();
        let seg = Segment::open(&path).unwrap();
        let block = &seg.index_of(7).unwrap()[0];
        let fc = &seg.index.fields(block)[0];
        let at = fc.chunk.offset as usize + fc.chunk.len as usize - 1;
        drop(seg);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        let seg = Segment::open(&path).unwrap();
        let err = seg
            .read_series_decimal(7, &fields())
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch in chunk 'dec'"), "{err}");
    }

    #[test]
    fn runs_merge_equal_scales_and_skip_empty_ones() {
        let mut d = Decimals::default();
        d.close_run(3);
        d.values.extend([1, 2]);
        d.close_run(1);
        d.values.push(3);
        d.close_run(1);
        d.close_run(2);
        d.values.push(40);
        d.close_run(2);
        let runs: Vec<(Vec<i64>, u8)> = d.runs().map(|(v, k)| (v.to_vec(), k)).collect();
        assert_eq!(runs, vec![(vec![1, 2, 3], 1), (vec![40], 2)]);
    }
}
