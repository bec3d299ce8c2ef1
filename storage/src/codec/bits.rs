//! Low-level building blocks shared by the codecs: a bounds-checked byte reader, LEB128 varints,
//! zigzag mapping, fixed-width bit-packing of 128-value blocks, and an LSB-first bit writer/reader.
//!
//! Bit order everywhere is LSB-first: bit `i` of a bit stream is bit `i % 8` of byte `i / 8`, and
//! a value written with `w` bits puts its least significant bit first.

use super::{Codec, CodecError};

/// Values per bit-packed block.
pub(crate) const BLOCK: usize = 128;

/// Builds a [`CodecError::Malformed`] for `codec`.
pub(crate) fn malformed(codec: Codec, detail: impl Into<String>) -> CodecError {
    CodecError::Malformed {
        codec: codec.name(),
        detail: detail.into(),
    }
}

/// Maps a signed integer to an unsigned one so that small magnitudes stay small.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Number of bytes [`put_varint`] writes for `v`.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Number of bits needed to represent `v` (0 for 0).
#[inline]
pub(crate) fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Bytes occupied by `len` values packed with `width` bits each.
#[inline]
pub(crate) fn packed_len(len: usize, width: u32) -> usize {
    (len * width as usize).div_ceil(8)
}

/// A cursor over an untrusted byte buffer; every read is bounds-checked and reports the codec.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    codec: Codec,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`, naming `codec` in its errors.
    pub(crate) fn new(buf: &'a [u8], codec: Codec) -> Self {
        Reader { buf, pos: 0, codec }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error naming this reader's codec.
    pub(crate) fn error(&self, detail: impl Into<String>) -> CodecError {
        malformed(self.codec, detail)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error("unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(self.error(format!("needs {n} bytes, {} left", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a little-endian u64.
    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes that fits in 64 bits.
    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let chunk = u64::from(b & 0x7f);
            if i == 9 && chunk > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            v |= chunk << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// Reads a zigzag-encoded signed varint.
    pub(crate) fn signed(&mut self) -> Result<i64, CodecError> {
        self.varint().map(unzigzag)
    }

    /// Reads a varint that must fit in `usize` and be at most `max`.
    pub(crate) fn len(&mut self, max: usize, what: &str) -> Result<usize, CodecError> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(v) if v <= max => Ok(v),
            _ => Err(self.error(format!("{what} {v} exceeds {max}"))),
        }
    }

    /// The bytes not yet read, without reading them.
    pub(crate) fn peek(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// The unconsumed rest of the buffer (consumes it).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Fails when bytes are left over.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(self.error(format!("{left} trailing bytes"))),
        }
    }
}

/// Packs `vals` (at most [`BLOCK`], each `< 2^width`) LSB-first and appends
/// [`packed_len`]`(vals.len(), width)` bytes.
pub(crate) fn pack(vals: &[u64], width: u32, out: &mut Vec<u8>) {
    debug_assert!(vals.len() <= BLOCK && width <= 64);
    if width == 0 {
        return;
    }
    let mut words = [0u64; BLOCK + 1];
    let w = width as usize;
    for (i, &v) in vals.iter().enumerate() {
        let bit = i * w;
        let (idx, sh) = (bit / 64, bit % 64);
        words[idx] |= v << sh;
        if sh + w > 64 {
            words[idx + 1] |= v >> (64 - sh);
        }
    }
    let nbytes = packed_len(vals.len(), width);
    let start = out.len();
    for word in &words[..nbytes.div_ceil(8)] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.truncate(start + nbytes);
}

/// Unpacks a block packed by [`pack`]: `src` holds `packed_len(len, width)` bytes for some
/// `len <= BLOCK`. All [`BLOCK`] slots of `out` are written; slots past `len` are zero.
/// `width` must be at most 64.
pub(crate) fn unpack(src: &[u8], width: u32, out: &mut [u64; BLOCK]) {
    if width == 0 {
        out.fill(0);
        return;
    }
    // Zero-padded so that every 8-byte load of a value stays inside the buffer.
    let mut bytes = [0u8; 8 * (BLOCK + 1)];
    let n = src.len().min(8 * BLOCK);
    bytes[..n].copy_from_slice(&src[..n]);
    unpack_dispatch(&bytes, width, out);
}

/// Like [`unpack`] for the block in the first `packed` bytes of `tail` (the packed bytes and
/// whatever follows them), except that slots past the block's values may hold anything. When
/// `tail` is long enough for every 8-byte load, it is read in place: no copy into a zeroed
/// buffer (the bits past the block's own are masked or land in those slots).
pub(crate) fn unpack_within(tail: &[u8], packed: usize, width: u32, out: &mut [u64; BLOCK]) {
    match tail.first_chunk::<{ 8 * (BLOCK + 1) }>() {
        Some(bytes) if width > 0 && packed <= 8 * BLOCK => unpack_dispatch(bytes, width, out),
        _ => unpack(&tail[..packed.min(tail.len())], width, out),
    }
}

/// Calls the fixed-width unpacker for `width` (1..=64; zeros for any other width).
fn unpack_dispatch(bytes: &[u8; 8 * (BLOCK + 1)], width: u32, out: &mut [u64; BLOCK]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => unpack_fixed::<$w>(bytes, out),)*
                57..=64 => unpack_wide(bytes, width, out),
                // Callers refuse wider widths first; never read past the buffer if one does not.
                _ => out.fill(0),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56);
}

/// Unpacks 128 values of `W <= 56` bits (LSB-first). Eight values take exactly `W` bytes, so
/// value `j` of group `g` starts in byte `g * W + j * W / 8` at bit `j * W % 8`: one unaligned
/// little-endian load, a shift and a mask, all offsets but the group's constant (so the inner
/// loop unrolls, where a loop over bit positions computed at run time does not).
#[inline(always)]
fn unpack_fixed<const W: usize>(bytes: &[u8; 8 * (BLOCK + 1)], out: &mut [u64; BLOCK]) {
    let mask = (1u64 << W) - 1;
    for g in 0..BLOCK / 8 {
        for j in 0..8 {
            let at = g * W + j * W / 8;
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            out[g * 8 + j] = (u64::from_le_bytes(word) >> (j * W % 8)) & mask;
        }
    }
}

/// Unpacks 128 values of 57 to 64 bits (too wide for one shifted 8-byte load): from 64-bit words,
/// each value from the word its first bit lies in and the next.
fn unpack_wide(bytes: &[u8; 8 * (BLOCK + 1)], width: u32, out: &mut [u64; BLOCK]) {
    let mut words = [0u64; BLOCK + 1];
    for (w, c) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        *w = u64::from_le_bytes(a);
    }
    let w = width as usize;
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    for (i, o) in out.iter_mut().enumerate() {
        let bit = i * w;
        let (idx, sh) = (bit / 64, bit % 64);
        let lo = words[idx] >> sh;
        // `<< 1 << (63 - sh)` is a branch-free `<< (64 - sh)` that yields 0 when `sh == 0`.
        let hi = (words[idx + 1] << 1) << (63 - sh);
        *o = (lo | hi) & mask;
    }
}

/// Appends bits LSB-first to a byte vector.
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    nbits: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer appending to `out`.
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            nbits: 0,
        }
    }

    /// Writes the low `n` bits of `v` (`n <= 64`; higher bits of `v` must be zero).
    #[inline]
    pub(crate) fn write(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        if n > 32 {
            self.write(v & 0xffff_ffff, 32);
            self.write(v >> 32, n - 32);
            return;
        }
        self.acc |= v << self.nbits;
        self.nbits += n;
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    /// Flushes the last partial byte (zero-padded).
    pub(crate) fn finish(self) {
        if self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
    }
}

/// Reads bits LSB-first from an untrusted buffer.
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
}

impl<'a> BitReader<'a> {
    /// A reader over all bits of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BitReader {
            buf,
            pos: 0,
            limit: buf.len() * 8,
        }
    }

    /// Bits consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Returns the next `n <= 56` bits without consuming them (zero past the end).
    #[inline]
    fn peek56(&self, n: u32) -> u64 {
        let byte = self.pos / 8;
        let word = match self.buf.get(byte..byte + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_le_bytes(a)
            }
            None => {
                let mut a = [0u8; 8];
                let s = self.buf.get(byte..).unwrap_or(&[]);
                a[..s.len()].copy_from_slice(s);
                u64::from_le_bytes(a)
            }
        };
        (word >> (self.pos % 8)) & ((1u64 << n) - 1)
    }

    /// Reads `n <= 64` bits; `None` when the buffer is exhausted.
    #[inline]
    pub(crate) fn read(&mut self, n: u32) -> Option<u64> {
        if self.pos + n as usize > self.limit {
            return None;
        }
        if n <= 56 {
            let v = self.peek56(n);
            self.pos += n as usize;
            Some(v)
        } else {
            let lo = self.peek56(32);
            self.pos += 32;
            let hi = self.peek56(n - 32);
            self.pos += (n - 32) as usize;
            Some(lo | (hi << 32))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, pack, packed_len, unpack, unpack_within};

    /// Every width from 0 to 64 and lengths from 1 to a full block: what `pack` wrote, `unpack`
    /// reads back, with zeros past the length.
    #[test]
    fn unpack_reads_back_what_pack_wrote_at_every_width() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for width in 0..=64u32 {
            for len in [1, 7, 8, 9, 63, 64, 65, 127, BLOCK] {
                let mask = if width == 64 {
                    u64::MAX
                } else {
                    (1u64 << width) - 1
                };
                let vals: Vec<u64> = (0..len)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // The extremes of the width too: all ones, zero.
                        match i % 5 {
                            0 => mask,
                            1 => 0,
                            _ => x & mask,
                        }
                    })
                    .collect();
                let mut packed = Vec::new();
                pack(&vals, width, &mut packed);
                assert_eq!(packed.len(), packed_len(len, width));
                let mut out = [1u64; BLOCK];
                unpack(&packed, width, &mut out);
                assert_eq!(&out[..len], &vals[..], "width {width}, len {len}");
                assert!(
                    out[len..].iter().all(|&v| v == 0),
                    "width {width}, len {len}"
                );
                // Followed by other bytes (all ones: any bit read past the block's would show),
                // short of a full buffer (copied) and past it (read in place).
                for extra in [0, 5, 8 * (BLOCK + 1)] {
                    let mut tail = packed.clone();
                    tail.resize(packed.len() + extra, 0xff);
                    let mut out = [1u64; BLOCK];
                    unpack_within(&tail, packed.len(), width, &mut out);
                    assert_eq!(&out[..len], &vals[..], "width {width}, len {len}, +{extra}");
                }
            }
        }
    }
}
