//! String codecs: raw (varint lengths, then the concatenated bytes), constant (one string), and
//! dictionary (distinct strings in first-seen order, then bit-packed ids).

use std::collections::HashMap;

use super::bits::{BLOCK, Reader, bit_width, pack, packed_len, put_varint, unpack, varint_len};
use super::{Codec, CodecError, MAX_CHUNK_VALUES, MAX_STRING_BYTES};
use crate::StringColumn;

/// Encodes strings with the smallest string codec.
pub(crate) fn encode(values: &StringColumn, out: &mut Vec<u8>) -> Codec {
    if values.is_empty() {
        return Codec::Raw;
    }
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut dict: Vec<&str> = Vec::new();
    let codes: Vec<u64> = values
        .iter()
        .map(|s| {
            let next = dict.len() as u32;
            let id = *ids.entry(s).or_insert(next);
            if id == next {
                dict.push(s);
            }
            u64::from(id)
        })
        .collect();
    if dict.len() == 1 {
        write_plain(|| dict.iter().copied(), out);
        return Codec::Constant;
    }
    let width = bit_width(dict.len() as u64 - 1);
    let dict_size = varint_len(dict.len() as u64)
        + dict
            .iter()
            .map(|s| varint_len(s.len() as u64) + s.len())
            .sum::<usize>()
        + 1
        + packed_len(codes.len(), width);
    let raw_size = values
        .iter()
        .map(|s| varint_len(s.len() as u64))
        .sum::<usize>()
        + values.data.len();
    if raw_size <= dict_size {
        write_plain(|| values.iter(), out);
        return Codec::Raw;
    }
    put_varint(out, dict.len() as u64);
    write_plain(|| dict.iter().copied(), out);
    out.push(width as u8);
    for block in codes.chunks(BLOCK) {
        pack(block, width, out);
    }
    Codec::Dictionary
}

/// Writes all lengths as varints, then all bytes.
fn write_plain<'a, I: Iterator<Item = &'a str>>(strings: impl Fn() -> I, out: &mut Vec<u8>) {
    for s in strings() {
        put_varint(out, s.len() as u64);
    }
    for s in strings() {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Decodes `n` strings.
pub(crate) fn decode(
    codec: Codec,
    buf: &[u8],
    n: usize,
    out: &mut StringColumn,
) -> Result<(), CodecError> {
    let mut r = Reader::new(buf, codec);
    if n > MAX_CHUNK_VALUES {
        return Err(r.error(format!("{n} values exceed the limit of {MAX_CHUNK_VALUES}")));
    }
    match codec {
        Codec::Raw => {
            let (strs, ends) = read_plain(&mut r, n)?;
            r.finish()?;
            check_room(&r, out, strs.len())?;
            out.data.reserve(strs.len());
            out.ends.reserve(n);
            append_all(out, strs, &ends);
            Ok(())
        }
        Codec::Constant => {
            let (s, _) = read_plain(&mut r, 1)?;
            r.finish()?;
            let total = s.len().saturating_mul(n);
            check_room(&r, out, total)?;
            out.data.reserve(total);
            out.ends.reserve(n);
            (0..n).for_each(|_| out.push(s));
            Ok(())
        }
        Codec::Dictionary => decode_dictionary(&mut r, n, out),
        _ => Err(r.error("not a string codec")),
    }
}

/// Reads `count` varint lengths and the concatenated UTF-8 bytes; returns the bytes and the end
/// offset of each string in them, every one a char boundary.
fn read_plain<'a>(r: &mut Reader<'a>, count: usize) -> Result<(&'a str, Vec<usize>), CodecError> {
    if count > r.remaining() {
        return Err(r.error(format!(
            "{} bytes cannot hold {count} lengths",
            r.remaining()
        )));
    }
    let mut ends = Vec::with_capacity(count);
    let mut total = 0usize;
    for _ in 0..count {
        let len = r.len(r.remaining(), "string length")?;
        total = total
            .checked_add(len)
            .ok_or_else(|| r.error("lengths overflow"))?;
        ends.push(total);
    }
    let bytes = r.bytes(total)?;
    let s = std::str::from_utf8(bytes).map_err(|e| r.error(format!("invalid UTF-8: {e}")))?;
    if !ends.iter().all(|&e| s.is_char_boundary(e)) {
        return Err(r.error("string boundary inside a UTF-8 character"));
    }
    Ok((s, ends))
}

/// Fails unless `extra` more bytes fit in `out` (u32 offsets) and under [`MAX_STRING_BYTES`].
fn check_room(r: &Reader<'_>, out: &StringColumn, extra: usize) -> Result<(), CodecError> {
    let total = out.data.len().saturating_add(extra);
    if extra > MAX_STRING_BYTES || total > u32::MAX as usize {
        return Err(r.error(format!(
            "{extra} decoded bytes exceed the string column limit"
        )));
    }
    Ok(())
}

/// Appends the strings of `s` split at `ends`.
fn append_all(out: &mut StringColumn, s: &str, ends: &[usize]) {
    let mut start = 0;
    for &e in ends {
        out.push(&s[start..e]);
        start = e;
    }
}

fn decode_dictionary(
    r: &mut Reader<'_>,
    n: usize,
    out: &mut StringColumn,
) -> Result<(), CodecError> {
    let count = r.len(r.remaining(), "dictionary size")?;
    let (dict, ends) = read_plain(r, count)?;
    let entries: Vec<&str> = {
        let mut start = 0;
        ends.iter()
            .map(|&e| {
                let s = &dict[start..e];
                start = e;
                s
            })
            .collect()
    };
    let width = u32::from(r.u8()?);
    if n > 0 && (entries.is_empty() || width > 32) {
        return Err(r.error(format!(
            "bad dictionary: {} entries, id width {width}",
            entries.len()
        )));
    }
    let ids = r.bytes(packed_len(n, width))?;
    r.finish()?;
    // First pass validates the ids and sizes the output; second pass appends.
    let mut total = 0usize;
    for_each_id(ids, width, n, |id| {
        let s = entries
            .get(id as usize)
            .ok_or_else(|| r.error(format!("id {id} out of range")))?;
        total = total.saturating_add(s.len());
        Ok(())
    })?;
    check_room(r, out, total)?;
    out.data.reserve(total);
    out.ends.reserve(n);
    for_each_id(ids, width, n, |id| {
        out.push(entries[id as usize]);
        Ok(())
    })
}

/// Unpacks `n` ids of `width` bits and calls `f` on each.
fn for_each_id(
    ids: &[u8],
    width: u32,
    n: usize,
    mut f: impl FnMut(u64) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let mut q = [0u64; BLOCK];
    let block_bytes = packed_len(BLOCK, width);
    for b in 0..n.div_ceil(BLOCK) {
        let len = BLOCK.min(n - b * BLOCK);
        let start = b * block_bytes;
        let bytes = ids
            .get(start..start + packed_len(len, width))
            .unwrap_or(&[]);
        unpack(bytes, width, &mut q);
        q[..len].iter().try_for_each(|&id| f(id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(values: &[&str]) -> StringColumn {
        let mut c = StringColumn::default();
        values.iter().for_each(|s| c.push(s));
        c
    }

    fn round_trip(values: &StringColumn) -> (Codec, usize) {
        let mut buf = Vec::new();
        let codec = encode(values, &mut buf);
        let mut out = column(&["prefix"]);
        decode(codec, &buf, values.len(), &mut out).unwrap();
        assert_eq!(out.get(0), "prefix");
        assert_eq!(
            out.iter().skip(1).collect::<Vec<_>>(),
            values.iter().collect::<Vec<_>>()
        );
        (codec, buf.len())
    }

    #[test]
    fn picks_by_shape() {
        let states = ["idle", "driving", "loading", "unloading", "maintenance"];
        let many: Vec<&str> = (0..1000).map(|i| states[(i / 7) % 5]).collect();
        let (codec, size) = round_trip(&column(&many));
        assert_eq!(codec, Codec::Dictionary);
        assert!(size < 1000 * 3 / 8 + 60, "{size}");
        assert_eq!(round_trip(&column(&["é"; 50])).0, Codec::Constant);
        let unique: Vec<String> = (0..200).map(|i| format!("device-{i}")).collect();
        let refs: Vec<&str> = unique.iter().map(String::as_str).collect();
        assert_eq!(round_trip(&column(&refs)).0, Codec::Raw);
        assert_eq!(round_trip(&column(&[])).0, Codec::Raw);
        assert_eq!(
            round_trip(&column(&["", "ü", "", "ü", "", "ü"])).0,
            Codec::Dictionary
        );
    }

    #[test]
    fn rejects_split_characters_and_bad_ids() {
        let mut out = StringColumn::default();
        // "é" is two bytes; lengths 1 + 1 would split it.
        assert!(decode(Codec::Raw, &[1, 1, 0xc3, 0xa9], 2, &mut out).is_err());
        assert!(decode(Codec::Raw, &[2, 0xc3, 0xa9], 1, &mut out).is_ok());
        // Dictionary of 2 entries with width 2: id 3 is out of range.
        assert!(
            decode(
                Codec::Dictionary,
                &[2, 1, 1, b'a', b'b', 2, 0b11],
                1,
                &mut out
            )
            .is_err()
        );
        assert!(
            decode(
                Codec::Dictionary,
                &[2, 1, 1, b'a', b'b', 2, 0b01],
                1,
                &mut out
            )
            .is_ok()
        );
        assert_eq!(out.iter().collect::<Vec<_>>(), ["é", "b"]);
        assert!(decode(Codec::Constant, &[1, b'x'], MAX_CHUNK_VALUES + 1, &mut out).is_err());
    }
}
