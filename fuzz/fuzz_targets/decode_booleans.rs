//! Fuzz target: boolean decoding. Byte 0 picks the codec, bytes 1..4 are `n` (24-bit little
//! endian), the rest is the payload. Decoding must never panic; a successful decode must yield
//! exactly `n` values that round-trip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storage::codec::{Codec, decode_booleans, encode_booleans};

fuzz_target!(|data: &[u8]| {
    let Some((head, buf)) = data.split_first_chunk::<4>() else {
        return;
    };
    let Ok(codec) = Codec::from_u8(head[0]) else {
        return;
    };
    let n = u32::from_le_bytes([head[1], head[2], head[3], 0]) as usize;
    let mut out = Vec::new();
    if decode_booleans(codec, buf, n, &mut out).is_ok() {
        assert_eq!(out.len(), n);
        let mut enc = Vec::new();
        let c = encode_booleans(&out, &mut enc);
        let mut again = Vec::new();
        decode_booleans(c, &enc, n, &mut again).expect("re-encoded booleans decode");
        assert_eq!(again, out);
    }
});
