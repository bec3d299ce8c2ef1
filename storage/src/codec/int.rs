//! Integer codecs (used for timestamps, signed and unsigned integers, and the integers nested in
//! the decimal and float-bits codecs): raw, constant, regular (arithmetic progression),
//! run-length, and frame-of-reference bit-packing in blocks of 128 (with a common divisor and
//! per-block exceptions) of the values, their deltas, their deltas of deltas, or their residuals
//! from a regular grid.
//!
//! All arithmetic wraps, so every `i64` sequence round-trips; `u64` columns are stored as their
//! `i64` bit patterns.

use super::bits::{
    BLOCK, Reader, bit_width, pack, packed_len, put_varint, unpack_within, varint_len, zigzag,
};
use super::{Codec, CodecError, Effort, MAX_CHUNK_VALUES};

/// Receives decoded integers block by block (at most [`BLOCK`] at a time).
pub(crate) trait Sink {
    /// Reserves room for `n` more values.
    fn reserve(&mut self, n: usize);
    /// Appends decoded values.
    fn put(&mut self, vals: &[i64]);
}

impl Sink for Vec<i64> {
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
    #[inline]
    fn put(&mut self, vals: &[i64]) {
        self.extend_from_slice(vals);
    }
}

/// A sink that stores each decoded `i64` bit pattern as a `u64`.
pub(crate) struct AsUnsigned<'a>(pub(crate) &'a mut Vec<u64>);

impl Sink for AsUnsigned<'_> {
    fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }
    #[inline]
    fn put(&mut self, vals: &[i64]) {
        self.0.extend(vals.iter().map(|&v| v as u64));
    }
}

/// Whether `codec` is one of the integer codecs.
pub(crate) fn is_int_codec(codec: Codec) -> bool {
    matches!(
        codec,
        Codec::Raw
            | Codec::Constant
            | Codec::Regular
            | Codec::RunLength
            | Codec::Packed
            | Codec::DeltaPacked
            | Codec::DeltaDeltaPacked
            | Codec::LinearPacked
    )
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encodes `values` with the smallest integer codec; appends the payload to `out`.
pub(crate) fn encode(values: &[i64], out: &mut Vec<u8>, effort: Effort) -> Codec {
    let Some(&first) = values.first() else {
        return Codec::Raw;
    };
    if values.iter().all(|&v| v == first) {
        put_varint(out, zigzag(first));
        return Codec::Constant;
    }
    let step = values[1].wrapping_sub(first);
    if values.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
        put_varint(out, zigzag(first));
        put_varint(out, zigzag(step));
        return Codec::Regular;
    }
    let raw = values.len() * 8;
    let runs = count_runs(values);
    let rle = if runs * 4 <= values.len() {
        run_length_size(values, runs)
    } else {
        usize::MAX
    };
    let packing = best_packing(values, effort);
    if packing.size() < rle.min(raw) {
        write_packed(&packing.head, &packing.seq, packing.plan, out);
        packing.codec
    } else if rle < raw {
        write_run_length(values, runs, out);
        Codec::RunLength
    } else {
        write_raw(values, out);
        Codec::Raw
    }
}

/// One frame-of-reference candidate: its head values, packed sequence and plan.
struct Packing {
    codec: Codec,
    head: Vec<i64>,
    seq: Vec<i64>,
    plan: Plan,
}

impl Packing {
    /// A candidate planned whole (the tests force each codec with it).
    #[cfg(test)]
    fn new(codec: Codec, head: Vec<i64>, seq: Vec<i64>) -> Self {
        let plan = plan(&seq, usize::MAX).expect("a plan without a limit always completes");
        Packing {
            codec,
            head,
            seq,
            plan,
        }
    }

    /// Exact encoded size.
    fn size(&self) -> usize {
        self.plan.size + head_size(&self.head)
    }
}

/// Bytes of the head values.
fn head_size(head: &[i64]) -> usize {
    head.iter().map(|&h| varint_len(zigzag(h))).sum()
}

/// The largest plan with which candidate `rank` (head of `head_len` bytes) beats the best so far
/// (`best_size` bytes, candidate `best_rank`): a smaller total wins, an equal one only for an
/// earlier candidate. `None` when it cannot win.
fn win_limit(best_size: usize, best_rank: usize, rank: usize, head_len: usize) -> Option<usize> {
    let ties_win = usize::from(rank < best_rank);
    (best_size + ties_win).checked_sub(head_len + 1)
}

/// Values on which candidates are sized to decide which to plan first (one block: flushed
/// chunks hold about 2,000 values, so a larger probe would cost as much as a whole plan).
const PROBE: usize = BLOCK;

/// The smallest of the packed codecs (needs `values.len() >= 2`); on equal sizes the codec
/// earlier in [`Codec::Packed`], [`Codec::DeltaPacked`], [`Codec::DeltaDeltaPacked`],
/// [`Codec::LinearPacked`] wins.
///
/// Candidates are planned in the order of their sizes on the first [`PROBE`] values, each one
/// stopping as soon as it can no longer win: the likely winner is planned whole and the others
/// usually stop after a few blocks. The choice is the same as planning all four whole, except
/// with [`Effort::Quick`], which takes the candidate smallest on the probe (when there is one).
fn best_packing(values: &[i64], effort: Effort) -> Packing {
    let deltas = diffs(values);
    let step = grid_step(values, &deltas);
    let mut order = [0usize, 1, 2, 3];
    let probed = values.len() > 2 * PROBE;
    if probed {
        let probe = |rank: usize| {
            let seq = candidate_seq(rank, &values[..PROBE], &deltas[..=PROBE], step);
            let prefix = &seq[..seq.len().min(PROBE)];
            let head = head_size(&candidate_head(rank, values, step));
            plan(prefix, usize::MAX).map_or(usize::MAX, |p| p.size) + head
        };
        let sizes = [probe(0), probe(1), probe(2), probe(3)];
        order.sort_by_key(|&i| sizes[i]);
    }
    let mut best: Option<(usize, Packing)> = None;
    for rank in order {
        let head = candidate_head(rank, values, step);
        let limit = match &best {
            None => usize::MAX,
            Some((best_rank, b)) => match win_limit(b.size(), *best_rank, rank, head_size(&head)) {
                Some(limit) => limit,
                None => continue,
            },
        };
        let seq = candidate_seq(rank, values, &deltas, step);
        if let Some(plan) = plan(&seq, limit) {
            let codec = CANDIDATES[rank];
            best = Some((
                rank,
                Packing {
                    codec,
                    head,
                    seq,
                    plan,
                },
            ));
        }
        if probed && effort == Effort::Quick {
            break;
        }
    }
    let (_, packing) = best.expect("the first candidate planned has no limit");
    packing
}

/// The packed candidates, in tie order (on equal sizes the earlier wins).
const CANDIDATES: [Codec; 4] = [
    Codec::Packed,
    Codec::DeltaPacked,
    Codec::DeltaDeltaPacked,
    Codec::LinearPacked,
];

/// Head values of candidate `rank` ([`CANDIDATES`]) of `values` (at least two).
fn candidate_head(rank: usize, values: &[i64], step: i64) -> Vec<i64> {
    let x0 = values[0];
    match rank {
        0 => Vec::new(),
        1 => vec![x0],
        2 => vec![x0, values[1].wrapping_sub(x0)],
        _ => vec![x0, step],
    }
}

/// Packed sequence of candidate `rank` of `values` with their `deltas`. Built only for a
/// candidate that is sized, so one that cannot win costs no copy.
fn candidate_seq(rank: usize, values: &[i64], deltas: &[i64], step: i64) -> Vec<i64> {
    match rank {
        0 => values.to_vec(),
        1 => deltas.to_vec(),
        2 => diffs(deltas),
        _ => linear_residuals(values, step),
    }
}

/// The grid step of [`Codec::LinearPacked`]: the mean slope `(last - first) / (n - 1)`, rounded
/// to the lattice `deltas[0] + k * g` where `g` divides every `deltas[i] - deltas[0]`, so the
/// residuals keep the deltas' common divisor (whole milliseconds stay whole milliseconds).
fn grid_step(values: &[i64], deltas: &[i64]) -> i64 {
    let (Some(&d0), Some(&last)) = (deltas.first(), values.last()) else {
        return 0;
    };
    let g = i128::from(seq_gcd(deltas).max(1));
    let den = deltas.len() as i128;
    let excess = i128::from(last) - i128::from(values[0]) - i128::from(d0) * den;
    // Nearest integer to excess / (g * den).
    let k = (2 * excess + g * den).div_euclid(2 * g * den);
    (i128::from(d0) + k * g) as i64
}

/// Wrapping residuals `values[i] - (first + i * step)`.
fn linear_residuals(values: &[i64], step: i64) -> Vec<i64> {
    let mut grid = values[0];
    values
        .iter()
        .map(|&v| {
            let r = v.wrapping_sub(grid);
            grid = grid.wrapping_add(step);
            r
        })
        .collect()
}

/// Wrapping first differences.
fn diffs(v: &[i64]) -> Vec<i64> {
    v.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect()
}

/// Number of runs of equal consecutive values.
fn count_runs(values: &[i64]) -> usize {
    1 + values.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Iterates over `(value, run length)` pairs.
fn runs(values: &[i64]) -> impl Iterator<Item = (i64, usize)> + '_ {
    values.chunk_by(|a, b| a == b).map(|c| (c[0], c.len()))
}

/// Exact encoded size of the run-length codec.
fn run_length_size(values: &[i64], nruns: usize) -> usize {
    let mut prev = 0i64;
    let mut size = varint_len(nruns as u64);
    for (v, len) in runs(values) {
        size += varint_len(zigzag(v.wrapping_sub(prev))) + varint_len(len as u64);
        prev = v;
    }
    size
}

fn write_raw(values: &[i64], out: &mut Vec<u8>) {
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn write_run_length(values: &[i64], nruns: usize, out: &mut Vec<u8>) {
    put_varint(out, nruns as u64);
    let mut prev = 0i64;
    for (v, len) in runs(values) {
        put_varint(out, zigzag(v.wrapping_sub(prev)));
        put_varint(out, len as u64);
        prev = v;
    }
}

/// The chunk-wide parameters and exact size of a frame-of-reference packing.
#[derive(Clone, Copy)]
struct Plan {
    /// Common divisor of all `seq[i] - seq[0]` (0 when all are equal).
    g: u64,
    /// Encoded bytes, excluding the head values.
    size: usize,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Greatest common divisor of the distances of every value from the first.
fn seq_gcd(seq: &[i64]) -> u64 {
    let Some(&base) = seq.first() else { return 0 };
    let mut g = 0;
    for &v in seq {
        let d = v.abs_diff(base);
        if g == 0 || d % g != 0 {
            g = gcd(g, d);
            if g == 1 {
                break;
            }
        }
    }
    g
}

/// Division by a fixed `g` of numbers known to be multiples of it: a shift for the power of two
/// in `g`, then a multiplication by the inverse of its odd part modulo 2^64.
#[derive(Clone, Copy)]
struct ExactDiv {
    shift: u32,
    inverse: u64,
}

impl ExactDiv {
    fn new(g: u64) -> Self {
        let g = g.max(1);
        let shift = g.trailing_zeros();
        let odd = g >> shift;
        // Newton's iteration doubles the correct low bits: 3 -> 6 -> ... -> 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        ExactDiv { shift, inverse }
    }

    #[inline]
    fn div(self, d: u64) -> u64 {
        (d >> self.shift).wrapping_mul(self.inverse)
    }
}

fn min_max(block: &[i64]) -> (i64, i64) {
    block
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Offsets of a block from its minimum, divided by the chunk's common divisor.
fn offsets(block: &[i64], div: ExactDiv, q: &mut [u64; BLOCK]) -> i64 {
    let (min, _) = min_max(block);
    for (o, &v) in q.iter_mut().zip(block) {
        *o = div.div(v.abs_diff(min));
    }
    min
}

/// How one block's offsets are stored: a bit width, and the offsets that do not fit in it
/// (exceptions, stored apart as position + high bits).
struct BlockLayout {
    width: u32,
    exceptions: usize,
    /// Bytes after the width byte and the minimum.
    size: usize,
}

/// Most exceptions a block may carry.
const MAX_EXCEPTIONS: usize = BLOCK / 8;

/// Picks the width that minimises the block's size, exceptions included (at most
/// [`MAX_EXCEPTIONS`]).
fn layout(q: &[u64]) -> BlockLayout {
    let mut hist = [0u8; 65];
    for &v in q {
        hist[bit_width(v) as usize] += 1;
    }
    let full = (0..=64).rev().find(|&b| hist[b] > 0).unwrap_or(0);
    let mut best = BlockLayout {
        width: full as u32,
        exceptions: 0,
        size: packed_len(q.len(), full as u32),
    };
    // Occupied bit widths above the candidate width: (width, count).
    let mut above = [(0usize, 0usize); MAX_EXCEPTIONS];
    let (mut nabove, mut exceptions) = (0, 0);
    for w in (0..full).rev() {
        let count = usize::from(hist[w + 1]);
        if count > 0 {
            exceptions += count;
            if exceptions > MAX_EXCEPTIONS {
                break;
            }
            above[nabove] = (w + 1, count);
            nabove += 1;
        }
        // Count byte, one position byte and a varint of the high bits per exception.
        let patch: usize = above[..nabove]
            .iter()
            .map(|&(bw, c)| c * (1 + (bw - w).div_ceil(7)))
            .sum();
        let size = packed_len(q.len(), w as u32) + 1 + patch;
        if size < best.size {
            best = BlockLayout {
                width: w as u32,
                exceptions,
                size,
            };
        }
    }
    best
}

/// The plan of `seq`, or `None` as soon as its size exceeds `limit` bytes.
fn plan(seq: &[i64], limit: usize) -> Option<Plan> {
    let g = seq_gcd(seq);
    let div = ExactDiv::new(g);
    let mut size = if seq.is_empty() { 0 } else { varint_len(g) };
    let mut prev_min = 0i64;
    let mut q = [0u64; BLOCK];
    for block in seq.chunks(BLOCK) {
        let min = offsets(block, div, &mut q);
        size += 1 + varint_len(zigzag(min.wrapping_sub(prev_min))) + layout(&q[..block.len()]).size;
        if size > limit {
            return None;
        }
        prev_min = min;
    }
    Some(Plan { g, size })
}

fn write_packed(head: &[i64], seq: &[i64], p: Plan, out: &mut Vec<u8>) {
    out.reserve(p.size + head.len() * 10);
    for &h in head {
        put_varint(out, zigzag(h));
    }
    if seq.is_empty() {
        return;
    }
    put_varint(out, p.g);
    let div = ExactDiv::new(p.g);
    let mut prev_min = 0i64;
    let mut q = [0u64; BLOCK];
    for block in seq.chunks(BLOCK) {
        let min = offsets(block, div, &mut q);
        let q = &mut q[..block.len()];
        let l = layout(q);
        out.push(l.width as u8 | if l.exceptions > 0 { PATCHED } else { 0 });
        put_varint(out, zigzag(min.wrapping_sub(prev_min)));
        prev_min = min;
        if l.exceptions > 0 {
            write_patches(q, l.width, l.exceptions, out);
        }
        pack(q, l.width, out);
    }
}

/// Flag in a block's width byte: the block carries exceptions.
const PATCHED: u8 = 0x80;

/// Writes the exceptions of a block (values of `width` bits or more) and clears their high bits.
fn write_patches(q: &mut [u64], width: u32, count: usize, out: &mut Vec<u8>) {
    out.push(count as u8);
    let limit = 1u64 << width;
    for (i, &v) in q.iter().enumerate() {
        if v >= limit {
            out.push(i as u8);
        }
    }
    for v in q.iter_mut() {
        if *v >= limit {
            put_varint(out, *v >> width);
            *v &= limit - 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes `n` integers encoded with `codec` into `sink`.
pub(crate) fn decode<S: Sink>(
    codec: Codec,
    buf: &[u8],
    n: usize,
    sink: &mut S,
) -> Result<(), CodecError> {
    let mut r = Reader::new(buf, codec);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    match codec {
        Codec::Raw => decode_raw(&mut r, n, sink),
        Codec::Constant => {
            let v = r.signed()?;
            r.finish()?;
            sink.reserve(n);
            emit_regular(v, 0, n, sink);
            Ok(())
        }
        Codec::Regular => {
            let (first, step) = (r.signed()?, r.signed()?);
            r.finish()?;
            sink.reserve(n);
            emit_regular(first, step, n, sink);
            Ok(())
        }
        Codec::RunLength => decode_run_length(&mut r, n, sink),
        Codec::Packed => decode_packed::<0, S>(&mut r, n, sink),
        Codec::DeltaPacked => decode_packed::<1, S>(&mut r, n, sink),
        Codec::DeltaDeltaPacked => decode_packed::<2, S>(&mut r, n, sink),
        Codec::LinearPacked => decode_packed::<LINEAR, S>(&mut r, n, sink),
        _ => Err(r.error("not an integer codec")),
    }
}

fn decode_raw<S: Sink>(r: &mut Reader<'_>, n: usize, sink: &mut S) -> Result<(), CodecError> {
    if Some(r.remaining()) != n.checked_mul(8) {
        return Err(r.error(format!(
            "{} bytes cannot hold exactly {n} values",
            r.remaining()
        )));
    }
    sink.reserve(n);
    let mut vals = [0i64; BLOCK];
    for chunk in r.rest().chunks(8 * BLOCK) {
        let len = chunk.len() / 8;
        for (v, b) in vals.iter_mut().zip(chunk.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            *v = i64::from_le_bytes(a);
        }
        sink.put(&vals[..len]);
    }
    Ok(())
}

/// Emits `first, first + step, ...` (`n` values, wrapping).
fn emit_regular<S: Sink>(first: i64, step: i64, n: usize, sink: &mut S) {
    let mut vals = [0i64; BLOCK];
    let mut x = first;
    let mut left = n;
    while left > 0 {
        let len = left.min(BLOCK);
        for v in &mut vals[..len] {
            *v = x;
            x = x.wrapping_add(step);
        }
        sink.put(&vals[..len]);
        left -= len;
    }
}

fn decode_run_length<S: Sink>(
    r: &mut Reader<'_>,
    n: usize,
    sink: &mut S,
) -> Result<(), CodecError> {
    let nruns = r.len(r.remaining() / 2, "run count")?;
    sink.reserve(n);
    let (mut value, mut total) = (0i64, 0usize);
    for _ in 0..nruns {
        value = value.wrapping_add(r.signed()?);
        let len = r.len(n - total, "run length")?;
        if len == 0 {
            return Err(r.error("empty run"));
        }
        emit_regular(value, 0, len, sink);
        total += len;
    }
    if total != n {
        return Err(r.error(format!("runs hold {total} values, expected {n}")));
    }
    r.finish()
}

/// Running state of the delta reconstruction: last value and last delta.
struct Prefix {
    x: i64,
    d: i64,
}

/// The `ORDER` of [`Codec::LinearPacked`]: the head holds the grid's first value and step, and
/// every value (the first included) is packed as its residual from the grid.
const LINEAR: usize = 3;

fn decode_packed<const ORDER: usize, S: Sink>(
    r: &mut Reader<'_>,
    n: usize,
    sink: &mut S,
) -> Result<(), CodecError> {
    // Head values read, and how many of them are values of the column.
    let (nread, nhead) = if ORDER == LINEAR {
        (2 * usize::from(n > 0), 0)
    } else {
        (ORDER.min(n), ORDER.min(n))
    };
    let mut st = Prefix { x: 0, d: 0 };
    if nread >= 1 {
        st.x = r.signed()?;
    }
    if nread >= 2 {
        st.d = r.signed()?;
    }
    let m = n - nhead;
    if m == 0 {
        return head_only(r, nhead, st, sink);
    }
    let g = r.varint()?;
    let blocks = m.div_ceil(BLOCK);
    if blocks > r.remaining() / 2 {
        return Err(r.error(format!("{} bytes cannot hold {n} values", r.remaining())));
    }
    sink.reserve(n);
    put_head(nhead, &st, sink);
    if ORDER == 2 && nhead == 2 {
        st.x = st.x.wrapping_add(st.d);
    }
    let (mut min, mut q, mut vals) = (0i64, [0u64; BLOCK], [0i64; BLOCK]);
    let mut patches = Patches::new();
    for b in 0..blocks {
        let len = BLOCK.min(m - b * BLOCK);
        let (width, tail, bytes) = read_block(r, len, &mut min, &mut patches)?;
        let packed = bytes.len();
        if width == 0 && patches.count == 0 {
            // Every offset is zero (a run of equal deltas, say): nothing to unpack or multiply.
            vals.fill(min);
        } else {
            unpack_within(tail, packed, width, &mut q);
            patches.apply(&mut q, width);
            let narrow = patches.count == 0 && width <= 32;
            reconstruct::<ORDER>(&q, min, g, narrow, &mut vals);
        }
        prefix::<ORDER>(&mut vals[..len], &mut st);
        sink.put(&vals[..len]);
    }
    r.finish()
}

/// `values` in [`Codec::DeltaPacked`] whatever codec would be smallest, for tests of what reads
/// that layout.
#[cfg(test)]
pub(crate) fn encode_delta_packed(values: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    if let [only] = values {
        put_varint(&mut out, zigzag(*only));
    }
    if values.len() < 2 {
        return out;
    }
    let deltas = diffs(values);
    let rank = CANDIDATES
        .iter()
        .position(|&c| c == Codec::DeltaPacked)
        .unwrap_or(1);
    let step = grid_step(values, &deltas);
    let p = Packing::new(
        Codec::DeltaPacked,
        candidate_head(rank, values, step),
        candidate_seq(rank, values, &deltas, step),
    );
    write_packed(&p.head, &p.seq, p.plan, &mut out);
    out
}

/// One block of a [`Codec::DeltaPacked`] stream as [`delta_blocks`] hands it over: deltas that
/// are each `min` plus an offset.
pub(crate) enum DeltaBlock<'a> {
    /// `len` offsets packed at `width` bits as stored ([`pack`]'s layout, `packed_len(len,
    /// width)` bytes): a block without exceptions in a stream whose common divisor is 1 (or
    /// of width 0: every offset 0).
    Packed {
        min: i64,
        len: usize,
        width: u32,
        bytes: &'a [u8],
    },
    /// The block's offsets, unpacked, exceptions applied and multiplied by the divisor.
    Offsets { min: i64, offsets: &'a [u64] },
}

/// The first value of a [`Codec::DeltaPacked`] payload of at least one value (its head), read
/// without walking the rest; `None` when the head is not there. [`delta_blocks`] checks the
/// whole payload.
pub(crate) fn delta_first(buf: &[u8]) -> Option<i64> {
    Reader::new(buf, Codec::DeltaPacked).signed().ok()
}

/// Walks a [`Codec::DeltaPacked`] payload of `n` values without decoding it: returns the first
/// value (`None` when `n` is 0) after calling `each` with every block of deltas in order
/// (`value[i + 1] = value[i] + delta[i]`, wrapping). The payload is checked as [`decode`] checks
/// it; on an error some blocks may have been handed over already.
pub(crate) fn delta_blocks(
    buf: &[u8],
    n: usize,
    mut each: impl FnMut(DeltaBlock<'_>),
) -> Result<Option<i64>, CodecError> {
    let mut r = Reader::new(buf, Codec::DeltaPacked);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    if n == 0 {
        r.finish()?;
        return Ok(None);
    }
    let first = r.signed()?;
    let m = n - 1;
    if m == 0 {
        r.finish()?;
        return Ok(Some(first));
    }
    let g = r.varint()?;
    let blocks = m.div_ceil(BLOCK);
    if blocks > r.remaining() / 2 {
        return Err(r.error(format!("{} bytes cannot hold {n} values", r.remaining())));
    }
    let (mut min, mut q) = (0i64, [0u64; BLOCK]);
    let mut patches = Patches::new();
    for b in 0..blocks {
        let len = BLOCK.min(m - b * BLOCK);
        let (width, tail, bytes) = read_block(&mut r, len, &mut min, &mut patches)?;
        // As `decode` reads it: `min + q * g`, where a divisor of 0 makes every delta `min`.
        if patches.count == 0 && (g == 1 || width == 0) {
            each(DeltaBlock::Packed {
                min,
                len,
                width,
                bytes,
            });
            continue;
        }
        unpack_within(tail, bytes.len(), width, &mut q);
        patches.apply(&mut q, width);
        for o in &mut q[..len] {
            *o = o.wrapping_mul(g);
        }
        each(DeltaBlock::Offsets {
            min,
            offsets: &q[..len],
        });
    }
    r.finish()?;
    Ok(Some(first))
}

/// Reads one packed block of `len` values as [`decode`] and [`delta_blocks`] both read it: its
/// width, its smallest value (added to `min`, which holds the previous block's), its exceptions
/// (into `patches`), and its packed offsets: the width, what follows the block's head (for
/// unpacking in place) and the block's own packed bytes.
#[inline(always)]
fn read_block<'a>(
    r: &mut Reader<'a>,
    len: usize,
    min: &mut i64,
    patches: &mut Patches,
) -> Result<(u32, &'a [u8], &'a [u8]), CodecError> {
    let head = r.u8()?;
    let width = u32::from(head & !PATCHED);
    if width > 64 {
        return Err(r.error(format!("bit width {width} exceeds 64")));
    }
    *min = min.wrapping_add(r.signed()?);
    patches.count = 0;
    if head & PATCHED != 0 {
        patches.read(r, len, width)?;
    }
    let tail = r.peek();
    let bytes = r.bytes(packed_len(len, width))?;
    Ok((width, tail, bytes))
}

/// The exceptions of one block: positions and the bits above the block's width.
struct Patches {
    count: usize,
    pos: [u8; BLOCK],
    high: [u64; BLOCK],
}

impl Patches {
    fn new() -> Patches {
        Patches {
            count: 0,
            pos: [0; BLOCK],
            high: [0; BLOCK],
        }
    }

    fn read(&mut self, r: &mut Reader<'_>, len: usize, width: u32) -> Result<(), CodecError> {
        let count = usize::from(r.u8()?);
        if width >= 64 || count == 0 || count > len.min(MAX_EXCEPTIONS) {
            return Err(r.error(format!(
                "{count} exceptions in a block of {len} at width {width}"
            )));
        }
        let pos = r.bytes(count)?;
        if pos.iter().any(|&p| usize::from(p) >= len) {
            return Err(r.error("exception position outside its block"));
        }
        self.pos[..count].copy_from_slice(pos);
        for h in &mut self.high[..count] {
            *h = r.varint()?;
        }
        self.count = count;
        Ok(())
    }

    #[inline]
    fn apply(&self, q: &mut [u64; BLOCK], width: u32) {
        for (&p, &h) in self.pos[..self.count].iter().zip(&self.high) {
            q[usize::from(p)] |= h.wrapping_shl(width);
        }
    }
}

/// Finishes a packed stream that holds only head values.
fn head_only<S: Sink>(
    r: &mut Reader<'_>,
    nhead: usize,
    st: Prefix,
    sink: &mut S,
) -> Result<(), CodecError> {
    r.finish()?;
    sink.reserve(nhead);
    put_head(nhead, &st, sink);
    Ok(())
}

/// Emits the verbatim head values (the first value, and the second for delta-of-delta).
fn put_head<S: Sink>(nhead: usize, st: &Prefix, sink: &mut S) {
    match nhead {
        1 => sink.put(&[st.x]),
        2 => sink.put(&[st.x, st.x.wrapping_add(st.d)]),
        _ => {}
    }
}

/// Turns unpacked offsets into sequence values: `min + q * g` (wrapping). `narrow`: every
/// offset is below 2^32, so a product takes one 32x32->64 multiply when `g` is below 2^32 too
/// and two otherwise (one instruction for two values each), where a 64-bit multiply without
/// AVX-512 takes three.
#[inline(always)]
fn reconstruct<const ORDER: usize>(
    q: &[u64; BLOCK],
    min: i64,
    g: u64,
    narrow: bool,
    vals: &mut [i64; BLOCK],
) {
    if g == 1 {
        for (v, &o) in vals.iter_mut().zip(q) {
            *v = min.wrapping_add(o as i64);
        }
    } else if narrow && g <= u64::from(u32::MAX) {
        let g = u64::from(g as u32);
        for (v, &o) in vals.iter_mut().zip(q) {
            *v = min.wrapping_add((u64::from(o as u32) * g) as i64);
        }
    } else if narrow {
        for (v, &o) in vals.iter_mut().zip(q) {
            *v = min.wrapping_add(u64::from(o as u32).wrapping_mul(g) as i64);
        }
    } else {
        for (v, &o) in vals.iter_mut().zip(q) {
            *v = min.wrapping_add(o.wrapping_mul(g) as i64);
        }
    }
}

/// Integrates the sequence `ORDER` times in place.
#[inline(always)]
fn prefix<const ORDER: usize>(vals: &mut [i64], st: &mut Prefix) {
    match ORDER {
        1 => {
            let mut x = st.x;
            for v in vals {
                x = x.wrapping_add(*v);
                *v = x;
            }
            st.x = x;
        }
        2 => {
            let (mut x, mut d) = (st.x, st.d);
            for v in vals {
                d = d.wrapping_add(*v);
                x = x.wrapping_add(d);
                *v = x;
            }
            (st.x, st.d) = (x, d);
        }
        LINEAR => {
            let (mut x, d) = (st.x, st.d);
            for v in vals {
                *v = v.wrapping_add(x);
                x = x.wrapping_add(d);
            }
            st.x = x;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[i64]) -> (Codec, usize) {
        let mut buf = Vec::new();
        let codec = encode(values, &mut buf, Effort::Smallest);
        let mut out = Vec::new();
        decode(codec, &buf, values.len(), &mut out).unwrap();
        assert_eq!(out, values, "codec {codec:?}");
        (codec, buf.len())
    }

    /// Encodes with a forced packed codec, for testing each layout on any data.
    fn forced(values: &[i64], codec: Codec) -> Vec<u8> {
        let deltas = diffs(values);
        let step = grid_step(values, &deltas);
        let rank = CANDIDATES.iter().position(|&c| c == codec).unwrap();
        let p = Packing::new(
            codec,
            candidate_head(rank, values, step),
            candidate_seq(rank, values, &deltas, step),
        );
        let mut out = Vec::new();
        write_packed(&p.head, &p.seq, p.plan, &mut out);
        assert_eq!(out.len(), p.size());
        out
    }

    /// The choice made by planning every candidate whole: the smallest, the earliest on ties.
    fn exhaustive_choice(values: &[i64]) -> (Codec, usize) {
        let all = [
            Codec::Packed,
            Codec::DeltaPacked,
            Codec::DeltaDeltaPacked,
            Codec::LinearPacked,
        ]
        .map(|c| (c, forced(values, c).len()));
        all.into_iter()
            .fold(all[0], |best, c| if c.1 < best.1 { c } else { best })
    }

    #[test]
    fn a_later_candidate_must_be_smaller_an_earlier_one_may_tie() {
        // Best so far: 100 bytes, candidate 2. A candidate with a 3-byte head:
        assert_eq!(win_limit(100, 2, 3, 3), Some(96), "later: total 99 at most");
        assert_eq!(
            win_limit(100, 2, 1, 3),
            Some(97),
            "earlier: total 100 ties and wins"
        );
        assert_eq!(win_limit(2, 2, 3, 3), None, "the head alone is too big");
        assert_eq!(win_limit(3, 2, 1, 3), Some(0));
    }

    proptest::proptest! {
        /// Planning the likeliest candidate first and stopping the others early chooses what
        /// planning all of them whole chooses, ties included, on short and long columns of
        /// every shape (steps, ramps, noise, outliers, a level change after the probe).
        #[test]
        fn bounded_choice_equals_exhaustive_choice(
            len in 2usize..3_000,
            shape in 0u8..6,
            seed in proptest::prelude::any::<u64>(),
            scale in 1i64..1_000,
        ) {
            let mut x = seed;
            let mut noise = || {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 17) as i64 - 8
            };
            let values: Vec<i64> = (0..len as i64)
                .map(|i| match shape {
                    0 => i * scale + noise(),
                    1 => i * i / 7 * scale,
                    2 => noise() * scale,
                    3 => if i % 97 == 0 { i64::MAX / 3 } else { i * 10_000 + noise() },
                    4 => if i < 600 { i * scale } else { 5_000_000 + noise() * scale },
                    _ => (i / 50) * scale,
                })
                .collect();
            let chosen = best_packing(&values, Effort::Smallest);
            let mut out = Vec::new();
            write_packed(&chosen.head, &chosen.seq, chosen.plan, &mut out);
            proptest::prop_assert_eq!((chosen.codec, out.len()), exhaustive_choice(&values));
        }
    }

    proptest::proptest! {
        /// `Effort::Quick` output decodes to the input; on columns of at most two blocks it is
        /// the smallest output itself, and beyond it is the probe's choice, never more than
        /// `Raw`.
        #[test]
        fn quick_effort_round_trips(
            len in 1usize..2_000,
            step in -1_000i64..1_000,
            noise in 0i64..5_000,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut x = seed;
            let values: Vec<i64> = (0..len as i64)
                .map(|i| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    i * step + ((x >> 33) as i64 % (noise + 1))
                })
                .collect();
            let (mut quick, mut smallest) = (Vec::new(), Vec::new());
            let codec = encode(&values, &mut quick, Effort::Quick);
            encode(&values, &mut smallest, Effort::Smallest);
            let mut out = Vec::new();
            decode(codec, &quick, values.len(), &mut out).unwrap();
            proptest::prop_assert_eq!(&out, &values);
            proptest::prop_assert!(quick.len() <= values.len() * 8 + 1);
            if len <= 2 * PROBE {
                proptest::prop_assert_eq!(&quick, &smallest);
            }
        }
    }

    /// The values a [`delta_blocks`] walk describes, rebuilt from its blocks.
    fn walked(buf: &[u8], n: usize) -> Result<Vec<i64>, CodecError> {
        let mut deltas = Vec::new();
        let first = delta_blocks(buf, n, |block| match block {
            DeltaBlock::Packed {
                min,
                len,
                width,
                bytes,
            } => {
                let mut q = [0u64; BLOCK];
                super::super::bits::unpack(bytes, width, &mut q);
                deltas.extend(q[..len].iter().map(|o| min.wrapping_add(*o as i64)));
            }
            DeltaBlock::Offsets { min, offsets } => {
                deltas.extend(offsets.iter().map(|o| min.wrapping_add(*o as i64)));
            }
        })?;
        let mut out: Vec<i64> = first.into_iter().collect();
        for d in deltas {
            let last = out.last().copied().unwrap_or(0);
            out.push(last.wrapping_add(d));
        }
        Ok(out)
    }

    proptest::proptest! {
        /// Walking a delta-packed payload's blocks gives back the values it encodes, whatever
        /// the blocks hold: plain blocks, exceptions, a common divisor, extremes that wrap.
        #[test]
        fn delta_blocks_walk_gives_back_the_values(
            len in 0usize..1_500,
            shape in 0u8..5,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut x = seed;
            let mut noise = |m: u64| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 17) % m) as i64
            };
            let mut v = 0i64;
            let values: Vec<i64> = (0..len)
                .map(|i| {
                    v = match shape {
                        0 => v + noise(2_001) - 1_000,
                        1 => v + 30 * (noise(21) - 10),
                        2 if i % 53 == 0 => v + noise(1 << 40),
                        3 => if i % 2 == 0 { i64::MAX - noise(9) } else { i64::MIN + noise(9) },
                        _ => v + 7,
                    };
                    v
                })
                .collect();
            let buf = encode_delta_packed(&values);
            proptest::prop_assert_eq!(walked(&buf, values.len()).unwrap(), values);
        }
    }

    #[test]
    fn delta_blocks_refuse_what_decode_refuses() {
        let values: Vec<i64> = (0..300).map(|i| i * i % 1_000).collect();
        let buf = forced(&values, Codec::DeltaPacked);
        for cut in [1, buf.len() / 2, buf.len() - 1] {
            assert!(walked(&buf[..cut], values.len()).is_err(), "cut at {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(walked(&longer, values.len()).is_err(), "trailing byte");
        assert!(
            walked(&buf, MAX_CHUNK_VALUES + 1).is_err(),
            "too many values"
        );
        let mut wide = Vec::new();
        put_varint(&mut wide, 0);
        put_varint(&mut wide, 1);
        wide.extend_from_slice(&[65, 0]);
        assert!(walked(&wide, 2).is_err(), "width 65");
    }

    #[test]
    fn every_packed_order_round_trips_extremes() {
        let v: Vec<i64> = (0..1000)
            .map(|i| match i % 5 {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => 0,
                3 => -1,
                _ => i * 7919,
            })
            .collect();
        for codec in [
            Codec::Packed,
            Codec::DeltaPacked,
            Codec::DeltaDeltaPacked,
            Codec::LinearPacked,
        ] {
            let buf = forced(&v, codec);
            let mut out = Vec::new();
            decode(codec, &buf, v.len(), &mut out).unwrap();
            assert_eq!(out, v, "{codec:?}");
        }
    }

    #[test]
    fn gcd_shrinks_multiples() {
        // Millisecond timestamps in nanoseconds with jitter of a few whole milliseconds.
        let v: Vec<i64> = (0..1000)
            .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000 + (i * 7 % 5) * 1_000_000)
            .collect();
        let (codec, size) = round_trip(&v);
        assert_eq!(codec, Codec::DeltaPacked);
        // 5 distinct jitters -> deltas span 9 multiples of 1 ms -> 4 bits a value.
        assert!(size < 1000 * 4 / 8 + 100, "{size}");
    }

    /// Each way offsets become values: zero offsets, narrow offsets with a common factor below
    /// and above 2^32, wide offsets with one, and exceptions; on blocks full and partial.
    #[test]
    fn every_reconstruction_path_round_trips() {
        let ten_s = 10_000_000_000i64;
        let start = 1_704_067_200_000_000_000i64;
        // 10-second times with a gap now and then: factor 10^10, offsets of 0-2 bits, and
        // blocks without a gap have every offset zero.
        let times: Vec<i64> = (0..1000i64)
            .filter(|i| i % 331 != 5 && i % 97 != 3)
            .map(|i| start + i * ten_s)
            .collect();
        // Multiples of 3 (factor below 2^32) with offsets both narrow and wide.
        let narrow: Vec<i64> = (0..700i64).map(|i| 3 * ((i * 7919) % 1000)).collect();
        let wide: Vec<i64> = (0..700i64)
            .map(|i| 3 * ((i * 0x9e37_79b9) % (1 << 40)))
            .collect();
        // Small multiples of 10^10 with one far outlier: stored as an exception.
        let mut outlier: Vec<i64> = (0..300i64).map(|i| ten_s * ((i * 13) % 16)).collect();
        outlier[77] = ten_s * 100_000;
        for v in [&times, &narrow, &wide, &outlier] {
            for len in [v.len(), 129, 128, 127, 3] {
                round_trip(&v[..len]);
            }
        }
        assert_ne!(round_trip(&times).0, Codec::Regular);
    }

    #[test]
    fn picks_constant_regular_and_runs() {
        assert_eq!(round_trip(&[5; 300]).0, Codec::Constant);
        assert_eq!(
            round_trip(&(0..300).map(|i| 3 - 2 * i).collect::<Vec<_>>()).0,
            Codec::Regular
        );
        let steps: Vec<i64> = (0..10_000).map(|i| (i / 1000) * 1_000_003).collect();
        let (codec, size) = round_trip(&steps);
        assert_eq!(codec, Codec::RunLength);
        assert!(size < 60, "{size}");
    }

    #[test]
    fn random_in_range_uses_frame_of_reference() {
        let mut x = 12345u64;
        let v: Vec<i64> = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1_000_000 + (x >> 54) as i64
            })
            .collect();
        let (codec, size) = round_trip(&v);
        assert_eq!(codec, Codec::Packed);
        assert!(size <= 1000 * 10 / 8 + 30, "{size}");
    }

    #[test]
    fn rejects_bad_widths_and_short_input() {
        let buf = forced(
            &(0..300).map(|i| i * i).collect::<Vec<_>>(),
            Codec::DeltaPacked,
        );
        let mut out = Vec::new();
        assert!(decode(Codec::DeltaPacked, &buf[..buf.len() - 1], 300, &mut out).is_err());
        let mut bad = buf.clone();
        bad[2] = 65; // first block width (after head and g varints, both one byte)
        assert!(decode(Codec::DeltaPacked, &bad, 300, &mut Vec::new()).is_err());
        assert!(decode(Codec::DeltaPacked, &buf, 600, &mut Vec::new()).is_err());
        assert!(decode(Codec::Regular, &[2, 2], usize::MAX, &mut Vec::new()).is_err());
    }
}
