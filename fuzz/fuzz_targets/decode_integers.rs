//! Fuzz target: signed and unsigned integer decoding. Byte 0 picks the codec (its top bit selects
//! unsigned), bytes 1..4 are `n` (24-bit little endian), the rest is the payload. Decoding must
//! never panic; a successful decode must yield exactly `n` values that round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::codec::{
    Codec, decode_integers, decode_unsigned, encode_integers, encode_unsigned,
};

fuzz_target!(|data: &[u8]| {
    let Some((head, buf)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(codec) = Codec::from_u8(head[0] & 0x7f) else {
        return;
    };
    let n = u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize;
    if head[0] & 0x80 == 0 {
        let mut out = Vec::new();
        if decode_integers(codec, buf, n, &mut out).is_ok() {
            assert_eq!(out.len(), n);
            let mut enc = Vec::new();
            let c = encode_integers(&out, &mut enc);
            let mut again = Vec::new();
            decode_integers(c, &enc, n, &mut again).expect("re-encoded integers decode");
            assert_eq!(again, out);
        }
    } else {
        let mut out = Vec::new();
        if decode_unsigned(codec, buf, n, &mut out).is_ok() {
            assert_eq!(out.len(), n);
            let mut enc = Vec::new();
            let c = encode_unsigned(&out, &mut enc);
            let mut again = Vec::new();
            decode_unsigned(c, &enc, n, &mut again).expect("re-encoded unsigned decode");
            assert_eq!(again, out);
        }
    }
});
