//! Runs the frame handling of one connection over a byte string, without sockets,
//! authentication or storage: the CONNECT sniffing, the packet codec, topic checks, payload
//! decoding and reply generation exactly as a live connection runs them. Used by the
//! `mqtt_frames` fuzz target and by tests.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use strata_storage::WriteBatch;

use super::config::MqttConfig;
use super::connect::{Opening, read_opening};
use super::session::{Close, Env, Session};
use super::stats::{Counters, RejectReason};
use crate::lp_scan::is_device_id;

/// What replaying a byte string did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The bytes started with an MQTT 3.1.1 CONNECT (accepted without authentication).
    pub connected: bool,
    /// Packets handled after the CONNECT.
    pub packets: usize,
    /// Messages accepted for storage.
    pub messages: usize,
    /// Rows those messages decoded to.
    pub rows: usize,
    /// Bytes of replies (PUBACK, SUBACK, ...) produced.
    pub reply_bytes: usize,
    /// Decoded batches that broke a batch invariant (always 0 unless there is a bug).
    pub malformed_batches: usize,
    /// Subscriptions granted.
    pub subscriptions: usize,
    /// Why the connection would have been closed, if it would.
    pub close: Option<RejectReason>,
}

/// Replays `bytes` as the input of one connection under `config`. Every message is treated as
/// committed at once, and rate-limit pauses are skipped by advancing a simulated clock.
pub fn replay(bytes: &[u8], config: &MqttConfig) -> Replay {
    let mut out = Replay::default();
    let mut buf = BytesMut::from(bytes);
    let connect = match read_opening(&mut buf, config.max_packet_bytes) {
        Some(Opening::Connect(c)) => c,
        Some(Opening::UnsupportedVersion(_)) => {
            out.close = Some(RejectReason::ProtocolVersion);
            return out;
        }
        Some(Opening::Invalid(reason, _)) => {
            out.close = Some(reason);
            return out;
        }
        None => return out,
    };
    out.connected = true;
    let device = if is_device_id(&connect.client_id) {
        connect.client_id
    } else {
        "device".to_owned()
    };
    let env = Arc::new(Env::new(config.clone(), Arc::new(Counters::default())));
    let mut now = Instant::now();
    let mut session = Session::new(env, device, now);
    loop {
        let (handled, close) = session.process(&mut buf, now);
        out.packets += handled;
        if let Some((batches, acks, _charge)) = session.take_pending() {
            out.messages += batches.len();
            out.rows += batches.iter().map(WriteBatch::rows).sum::<usize>();
            out.malformed_batches += batches.iter().filter(|b| !well_formed(b)).count();
            session.ack(&acks);
        }
        out.reply_bytes += session.out.len();
        out.subscriptions = session.subscriptions().len();
        session.out.clear();
        if let Some(close) = close {
            out.close = match close {
                Close::Graceful => None,
                Close::Reject(reason, _) => Some(reason),
            };
            return out;
        }
        match session.throttled_until(now) {
            Some(t) => now = t,
            None if handled == 0 => return out,
            None => {}
        }
    }
}

/// One slot per row in every column, row series in range.
fn well_formed(batch: &WriteBatch) -> bool {
    batch.tables.iter().all(|t| {
        t.row_series.len() == t.times.len()
            && t.row_series.iter().all(|&s| (s as usize) < t.series.len())
            && t.columns
                .iter()
                .all(|c| c.data.len() == t.times.len() && c.valid.len() == t.times.len())
    })
}
