//! Fuzz target: the MQTT frame handling of one connection (CONNECT sniffing, the rumqttc packet
//! codec, topic checks, payload decoding, replies) never panics on any byte string, and every
//! batch it decodes is well formed. When the first byte is odd, a valid CONNECT is prepended so
//! the fuzzer spends its time on the session's packets.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_ingest::mqtt::{MqttConfig, RateLimit, replay};

/// CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "d1".
const CONNECT: [u8; 16] = [
    0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'd', b'1',
];

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = match data.split_first() {
        Some((&b, rest)) => (b, rest),
        None => (0, data),
    };
    let mut bytes = Vec::with_capacity(rest.len() + CONNECT.len());
    if mode & 1 == 1 {
        bytes.extend_from_slice(&CONNECT);
    }
    bytes.extend_from_slice(rest);
    let mut config = MqttConfig {
        max_packet_bytes: 4096,
        max_pending_messages: 8,
        ..MqttConfig::default()
    };
    if mode & 2 == 2 {
        config.rate_limit = Some(RateLimit {
            messages_per_sec: 10.0,
            burst: 2.0,
        });
    }
    let r = replay(&bytes, &config);
    assert_eq!(r.malformed_batches, 0);
    assert!(r.messages <= r.packets);
});
