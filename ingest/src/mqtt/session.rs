//! One authenticated MQTT session without I/O: turns the packets read from a device into
//! replies (PINGRESP, SUBACK, UNSUBACK, and PUBACKs once their messages are durable) and into
//! decoded messages waiting for a group commit, and decides when the connection must close.
//! The async connection loop (`connection.rs`) and the fuzz entry point drive it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rumqttc::{
    Error as CodecError, Packet, PingResp, PubAck, Publish, QoS, SubAck, Subscribe,
    SubscribeReasonCode, UnsubAck, Unsubscribe,
};
use strata_storage::WriteBatch;

use super::bucket::TokenBucket;
use super::channel::{Outgoing, filter_matches};
use super::config::MqttConfig;
use super::payload::{self, PayloadOptions};
use super::stats::{Counters, PendingCharge, RejectReason, add};
use super::topic::{self, TopicError};
use crate::line_protocol::now_nanos;
use crate::pipeline::{Admission, PipelineError, Writer};

/// Most distinct topic filters one session may hold; further SUBSCRIBEs get the SUBACK failure
/// code 0x80 (a device may only subscribe to its own command topics anyway).
pub(crate) const MAX_SUBSCRIPTIONS: usize = 64;

/// What every session of a server shares.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) config: MqttConfig,
    pub(crate) payload: PayloadOptions,
    pub(crate) admission: Admission,
    pub(crate) counters: Arc<Counters>,
}

impl Env {
    /// The environment for `config`.
    pub(crate) fn new(config: MqttConfig, counters: Arc<Counters>) -> Self {
        let payload = PayloadOptions {
            database: config.database.clone(),
            json_epoch_unit: config.json_epoch_unit,
            json_integers: config.json_integers,
            lp_precision: config.line_protocol_precision,
            device_tags: config.device_tags.clone(),
        };
        let admission = Admission::new(config.database.clone(), config.schemas.clone());
        Env {
            config,
            payload,
            admission,
            counters,
        }
    }
}

/// Why a session ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Close {
    /// DISCONNECT, end of stream or server shutdown: store what was received, then close.
    Graceful,
    /// A refusal: store the messages received before it, then close.
    Reject(RejectReason, String),
}

/// Messages handed to one commit: one batch per message, the PUBACK each one is owed, and the
/// payload bytes they hold (counted until the commit is over).
pub(crate) type Pending = (Vec<WriteBatch>, Vec<Option<u16>>, PendingCharge);

/// A publish on a control topic (e.g. a command acknowledgement), handed to the device channel
/// by the connection once the telemetry received before it is committed.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    /// The topic.
    pub(crate) topic: String,
    /// The payload.
    pub(crate) payload: Bytes,
    /// The PUBACK it is owed (QoS 1).
    pub(crate) ack: Option<u16>,
}

/// The state of one session.
#[derive(Debug)]
pub(crate) struct Session {
    env: Arc<Env>,
    device: String,
    batches: Vec<WriteBatch>,
    acks: Vec<Option<u16>>,
    pending: PendingCharge,
    subscriptions: Vec<String>,
    sub_qos: Vec<QoS>,
    subs_changed: bool,
    control: Option<Control>,
    /// QoS 1 deliveries not yet acknowledged: packet id → key.
    outstanding: HashMap<u16, String>,
    /// Keys of deliveries a previous connection of this persistent session left unacknowledged,
    /// with their packet ids (resent with the DUP flag).
    parked: HashMap<String, u16>,
    next_pkid: u16,
    delivered: Vec<String>,
    bucket: Option<TokenBucket>,
    last_time: i64,
    throttle_until: Option<Instant>,
    /// Bytes to send to the client.
    pub(crate) out: BytesMut,
}

impl Session {
    /// A session of `device`.
    pub(crate) fn new(env: Arc<Env>, device: String, now: Instant) -> Self {
        let bucket = env.config.rate_limit.map(|l| TokenBucket::new(l, now));
        let pending = PendingCharge::new(env.counters.clone());
        Session {
            env,
            device,
            batches: Vec::new(),
            acks: Vec::new(),
            pending,
            subscriptions: Vec::new(),
            sub_qos: Vec::new(),
            subs_changed: false,
            control: None,
            outstanding: HashMap::new(),
            parked: HashMap::new(),
            next_pkid: 0,
            delivered: Vec::new(),
            bucket,
            last_time: i64::MIN,
            throttle_until: None,
            out: BytesMut::with_capacity(256),
        }
    }

    /// The device this session acts as.
    pub(crate) fn device(&self) -> &str {
        &self.device
    }

    /// Subscriptions granted so far.
    pub(crate) fn subscriptions(&self) -> &[String] {
        &self.subscriptions
    }

    /// When reading may resume, if the device is over its rate.
    pub(crate) fn throttled_until(&self, now: Instant) -> Option<Instant> {
        self.throttle_until.filter(|t| *t > now)
    }

    /// True when enough messages wait for a commit (on this connection, or in bytes on all
    /// connections together) that reading should pause.
    pub(crate) fn pending_full(&self) -> bool {
        let config = &self.env.config;
        let total = self.env.counters.pending_bytes.load(Ordering::Relaxed);
        self.control.is_some()
            || self.batches.len() >= config.max_pending_messages.max(1)
            || self.pending.bytes() >= config.max_pending_bytes as u64
            || (!self.batches.is_empty() && total >= config.max_total_pending_bytes as u64)
    }

    /// Handles every complete packet in `buf`, stopping early when the device goes over its
    /// rate or the pending messages fill up. Returns the number of packets handled and, when the
    /// connection must close, why.
    pub(crate) fn process(&mut self, buf: &mut BytesMut, now: Instant) -> (usize, Option<Close>) {
        let mut handled = 0;
        while self.throttled_until(now).is_none() && !self.pending_full() {
            let packet = match Packet::read(buf, self.env.config.max_packet_bytes) {
                Ok(p) => p,
                Err(CodecError::InsufficientBytes(n)) => {
                    buf.reserve(n);
                    break;
                }
                Err(e) => return (handled, Some(codec_close(&e))),
            };
            handled += 1;
            if let Some(close) = self.packet(packet, now) {
                return (handled, Some(close));
            }
        }
        (handled, None)
    }

    /// Takes the messages waiting for a commit.
    pub(crate) fn take_pending(&mut self) -> Option<Pending> {
        if self.acks.is_empty() {
            return None;
        }
        Some((
            std::mem::take(&mut self.batches),
            std::mem::take(&mut self.acks),
            self.pending.take(),
        ))
    }

    /// Queues the PUBACKs owed for durable messages, in order.
    pub(crate) fn ack(&mut self, acks: &[Option<u16>]) {
        let mut n = 0;
        for pkid in acks.iter().flatten() {
            let _ = PubAck::new(*pkid).write(&mut self.out);
            n += 1;
        }
        add(&self.env.counters.pubacks_sent, n);
    }

    fn packet(&mut self, packet: Packet, now: Instant) -> Option<Close> {
        match packet {
            Packet::Publish(p) => self.publish(p, now),
            Packet::PingReq => {
                let _ = PingResp.write(&mut self.out);
                None
            }
            Packet::Subscribe(s) => {
                self.subscribe(s);
                None
            }
            Packet::Unsubscribe(u) => {
                self.unsubscribe(u);
                None
            }
            Packet::Disconnect => Some(Close::Graceful),
            Packet::PubAck(ack) => {
                // A PUBACK for nothing outstanding (e.g. a resend's second ack) is harmless.
                if let Some(key) = self.outstanding.remove(&ack.pkid) {
                    self.delivered.push(key);
                }
                None
            }
            Packet::Connect(_) => Some(violation("a second CONNECT on the connection")),
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Some(violation("QoS 2 packets are not supported"))
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(violation("a packet only a server may send"))
            }
        }
    }

    fn publish(&mut self, p: Publish, now: Instant) -> Option<Close> {
        if p.qos == QoS::ExactlyOnce {
            return Some(Close::Reject(
                RejectReason::Qos2,
                "QoS 2 is not supported: publish at QoS 0 or 1".into(),
            ));
        }
        if p.retain {
            return Some(Close::Reject(
                RejectReason::Retain,
                "retained messages are not supported".into(),
            ));
        }
        if let Some(channel) = &self.env.config.channel
            && topic::below_device(&p.topic, &self.device)
            && channel.accepts(&self.device, &p.topic)
        {
            self.count(&p);
            let ack = (p.qos == QoS::AtLeastOnce).then_some(p.pkid);
            self.control = Some(Control {
                topic: p.topic,
                payload: p.payload,
                ack,
            });
            return None;
        }
        let stream = match topic::telemetry_stream(&p.topic, &self.device) {
            Ok(s) => s.unwrap_or(&self.env.config.default_stream).to_owned(),
            Err(e @ TopicError::OtherDevice { .. }) => {
                return Some(Close::Reject(RejectReason::ForeignTopic, e.to_string()));
            }
            Err(e) => return Some(Close::Reject(RejectReason::InvalidTopic, e.to_string())),
        };
        let time = self.next_time();
        let mut batch = match payload::decode(&p.payload, &stream, &self.env.payload, time) {
            Ok(b) => b,
            Err(e) => return Some(Close::Reject(RejectReason::InvalidPayload, e)),
        };
        if let Err(close) = self.validate(&mut batch) {
            return Some(close);
        }
        self.count(&p);
        if let Some(bucket) = &mut self.bucket
            && let Some(wait) = bucket.take(now)
        {
            self.throttle_until = Some(now + wait);
            add(&self.env.counters.messages_throttled, 1);
        }
        let ack = (p.qos == QoS::AtLeastOnce).then_some(p.pkid);
        if ack.is_some() || batch.rows() > 0 {
            self.batches.push(batch);
            self.acks.push(ack);
            self.pending.add(p.payload.len());
        }
        None
    }

    /// The pipeline's admission of a decoded message: confined to the device (a payload naming
    /// another device is refused) and checked against its model, if it has one. A refusal closes
    /// the connection (the message is not acknowledged); flagged rows are counted.
    fn validate(&self, batch: &mut WriteBatch) -> Result<(), Close> {
        match self
            .env
            .admission
            .admit(batch, &Writer::device(&self.device))
        {
            Ok(outcome) => {
                add(&self.env.counters.rows_flagged, outcome.flagged_rows as u64);
                Ok(())
            }
            Err(PipelineError::Validation(v)) => {
                Err(Close::Reject(RejectReason::Validation, v.to_string()))
            }
            Err(e) => Err(Close::Reject(RejectReason::InvalidPayload, e.to_string())),
        }
    }

    fn count(&self, p: &Publish) {
        let c = &self.env.counters;
        add(&c.messages_received, 1);
        add(&c.payload_bytes, p.payload.len() as u64);
        match p.qos {
            QoS::AtMostOnce => add(&c.messages_qos0, 1),
            _ => add(&c.messages_qos1, 1),
        }
    }

    /// Receive time for rows without a timestamp, strictly increasing within the session so
    /// that two such messages never overwrite each other.
    fn next_time(&mut self) -> i64 {
        let now = now_nanos().max(self.last_time.saturating_add(1));
        self.last_time = now;
        now
    }

    fn subscribe(&mut self, s: Subscribe) {
        let mut codes = Vec::with_capacity(s.filters.len());
        for f in s.filters {
            let known = self.subscriptions.contains(&f.path);
            if !known && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                self.env.counters.reject(RejectReason::SubscribeDenied);
                codes.push(SubscribeReasonCode::Failure);
            } else if topic::subscription_allowed(&f.path, &self.device) {
                let qos = if f.qos == QoS::AtMostOnce {
                    QoS::AtMostOnce
                } else {
                    QoS::AtLeastOnce
                };
                codes.push(SubscribeReasonCode::Success(qos));
                match self.subscriptions.iter().position(|s| *s == f.path) {
                    Some(i) => self.sub_qos[i] = qos,
                    None => {
                        self.subscriptions.push(f.path);
                        self.sub_qos.push(qos);
                    }
                }
                self.subs_changed = true;
            } else {
                self.env.counters.reject(RejectReason::SubscribeDenied);
                codes.push(SubscribeReasonCode::Failure);
            }
        }
        let _ = SubAck::new(s.pkid, codes).write(&mut self.out);
    }

    fn unsubscribe(&mut self, u: Unsubscribe) {
        let before = self.subscriptions.len();
        let mut i = 0;
        while i < self.subscriptions.len() {
            if u.topics.contains(&self.subscriptions[i]) {
                self.subscriptions.remove(i);
                self.sub_qos.remove(i);
            } else {
                i += 1;
            }
        }
        self.subs_changed |= self.subscriptions.len() != before;
        let _ = UnsubAck::new(u.pkid).write(&mut self.out);
    }

    /// Resumes a persistent session: its subscriptions (granted QoS 1) and the deliveries the
    /// previous connection left unacknowledged.
    pub(crate) fn resume(&mut self, subscriptions: Vec<String>, parked: HashMap<String, u16>) {
        self.sub_qos = vec![QoS::AtLeastOnce; subscriptions.len()];
        self.subscriptions = subscriptions;
        self.parked = parked;
    }

    /// Takes the flag set when the subscriptions changed.
    pub(crate) fn take_subs_changed(&mut self) -> bool {
        std::mem::take(&mut self.subs_changed)
    }

    /// Takes the control publish waiting, if any.
    pub(crate) fn take_control(&mut self) -> Option<Control> {
        self.control.take()
    }

    /// Takes the keys of the deliveries the device acknowledged.
    pub(crate) fn take_delivered(&mut self) -> Vec<String> {
        std::mem::take(&mut self.delivered)
    }

    /// The deliveries not yet acknowledged, by key (kept for the next connection of a
    /// persistent session).
    pub(crate) fn take_outstanding(&mut self) -> HashMap<String, u16> {
        let mut out: HashMap<String, u16> = std::mem::take(&mut self.parked);
        out.extend(self.outstanding.drain().map(|(pkid, key)| (key, pkid)));
        out
    }

    /// Forgets the deliveries a previous connection left unacknowledged whose key `keep` refuses
    /// (the device channel no longer owes them: acknowledged meanwhile, expired, superseded).
    pub(crate) fn forget_parked_except(&mut self, keep: impl Fn(&str) -> bool) {
        self.parked.retain(|key, _| keep(key));
    }

    /// Whether the message `key` is sent and waiting for its PUBACK.
    pub(crate) fn is_outstanding(&self, key: &str) -> bool {
        self.outstanding.values().any(|k| k == key)
    }

    /// Publishes `msg` to the device if a subscription matches its topic and it has not expired
    /// at `now_ns`: at QoS 1 (the PUBACK reports it delivered) when the matching subscription
    /// was granted QoS 1, else at QoS 0 (then counted delivered at once). Returns whether it was
    /// written.
    pub(crate) fn deliver(&mut self, msg: &Outgoing, now_ns: i64) -> bool {
        if msg.expires_ns.is_some_and(|e| now_ns >= e) || self.is_outstanding(&msg.key) {
            return false;
        }
        let granted = self
            .subscriptions
            .iter()
            .zip(&self.sub_qos)
            .filter(|(f, _)| filter_matches(f, &msg.topic))
            .map(|(_, q)| *q)
            .max_by_key(|q| *q as u8);
        let Some(qos) = granted else {
            return false;
        };
        let mut publish = Publish::new(msg.topic.as_str(), qos, msg.payload.clone());
        if qos == QoS::AtLeastOnce {
            let (pkid, dup) = match self.parked.remove(&msg.key) {
                Some(p) if !self.outstanding.contains_key(&p) => (p, true),
                _ => match self.free_pkid() {
                    Some(p) => (p, false),
                    None => return false,
                },
            };
            publish.pkid = pkid;
            publish.dup = dup;
            self.outstanding.insert(pkid, msg.key.clone());
        } else {
            self.delivered.push(msg.key.clone());
        }
        let _ = Packet::Publish(publish).write(&mut self.out, usize::MAX);
        add(&self.env.counters.deliveries_sent, 1);
        true
    }

    /// A packet id not in use by an outstanding delivery.
    fn free_pkid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.outstanding.contains_key(&self.next_pkid)
                && !self.parked.values().any(|p| *p == self.next_pkid)
            {
                return Some(self.next_pkid);
            }
        }
        None
    }
}

fn violation(what: &str) -> Close {
    Close::Reject(RejectReason::ProtocolViolation, what.to_owned())
}

fn codec_close(e: &CodecError) -> Close {
    match e {
        CodecError::PayloadSizeLimitExceeded(n) => Close::Reject(
            RejectReason::PacketTooLarge,
            format!("packet of {n} bytes is above the packet size limit"),
        ),
        other => Close::Reject(
            RejectReason::Malformed,
            format!("malformed packet: {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> BytesMut {
        let mut p = Publish::new(topic, qos, payload.to_vec());
        p.pkid = pkid;
        let mut b = BytesMut::new();
        Packet::Publish(p).write(&mut b, usize::MAX).unwrap();
        b
    }

    fn session(config: MqttConfig) -> Session {
        let env = Arc::new(Env::new(config, Arc::new(Counters::default())));
        Session::new(env, "d1".into(), Instant::now())
    }

    #[test]
    fn pending_limits_pause_reading_and_bytes_are_released() {
        let mut s = session(MqttConfig {
            max_total_pending_bytes: 30,
            ..MqttConfig::default()
        });
        let mut buf = publish(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            1,
            b"{\"v\": 1.5, \"w\": 2}",
        );
        buf.extend(publish(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            2,
            b"{\"v\": 2.5, \"w\": 3}",
        ));
        let (handled, close) = s.process(&mut buf, Instant::now());
        assert_eq!((handled, close), (2, None));
        assert!(s.pending_full(), "36 bytes pending > 30 allowed in total");
        let counters = s.env.counters.clone();
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 36);
        let (batches, acks, charge) = s.take_pending().unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(acks, vec![Some(1), Some(2)]);
        assert!(!s.pending_full());
        drop(charge);
        assert_eq!(counters.pending_bytes.load(Ordering::Relaxed), 0);
        s.ack(&acks);
        assert_eq!(&s.out[..], &[0x40, 2, 0, 1, 0x40, 2, 0, 2]);
    }

    /// Issue 14, defect 7: a session's subscription list is bounded; beyond the cap SUBACK
    /// answers the failure code and the list does not grow.
    #[test]
    fn subscriptions_are_capped() {
        let mut s = session(MqttConfig::default());
        let mut buf = BytesMut::new();
        for i in 0..(MAX_SUBSCRIPTIONS as u16 + 10) {
            let sub = Subscribe::new(format!("devices/d1/commands/c{i}"), QoS::AtLeastOnce);
            let mut sub = sub;
            sub.pkid = i + 1;
            Packet::Subscribe(sub).write(&mut buf, usize::MAX).unwrap();
        }
        let (handled, close) = s.process(&mut buf, Instant::now());
        assert_eq!((handled, close), (MAX_SUBSCRIPTIONS + 10, None));
        assert_eq!(s.subscriptions().len(), MAX_SUBSCRIPTIONS);
        // SUBACK: 0x90, remaining length 3, packet id (2 bytes), one return code.
        let codes: Vec<u8> = s.out.chunks(5).map(|a| a[4]).collect();
        assert_eq!(codes.len(), MAX_SUBSCRIPTIONS + 10);
        assert!(codes[..MAX_SUBSCRIPTIONS].iter().all(|c| *c == 1));
        assert!(codes[MAX_SUBSCRIPTIONS..].iter().all(|c| *c == 0x80));
        // A filter already held is still acknowledged.
        let mut again = BytesMut::new();
        let mut sub = Subscribe::new("devices/d1/commands/c0", QoS::AtLeastOnce);
        sub.pkid = 999;
        Packet::Subscribe(sub)
            .write(&mut again, usize::MAX)
            .unwrap();
        s.out.clear();
        s.process(&mut again, Instant::now());
        assert_eq!(s.out[4], 1);
    }

    fn subscribe(s: &mut Session, filter: &str, qos: QoS) {
        let mut sub = Subscribe::new(filter, qos);
        sub.pkid = 7;
        let mut b = BytesMut::new();
        Packet::Subscribe(sub).write(&mut b, usize::MAX).unwrap();
        s.process(&mut b, Instant::now());
        assert!(s.take_subs_changed());
        s.out.clear();
    }

    fn outgoing(key: &str, expires_ns: Option<i64>) -> Outgoing {
        Outgoing {
            key: key.into(),
            topic: format!("devices/d1/commands/{key}"),
            payload: b"{}".to_vec(),
            expires_ns,
        }
    }

    fn sent(s: &mut Session) -> Publish {
        let mut out = std::mem::take(&mut s.out);
        match Packet::read(&mut out, usize::MAX) {
            Ok(Packet::Publish(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deliveries_wait_for_their_puback_and_never_expire_in_flight() {
        let mut s = session(MqttConfig::default());
        assert!(!s.deliver(&outgoing("a", None), 0), "no subscription yet");
        subscribe(&mut s, "devices/d1/commands/#", QoS::AtLeastOnce);
        assert!(s.deliver(&outgoing("a", Some(100)), 99));
        let p = sent(&mut s);
        assert_eq!((p.qos, p.pkid, p.dup), (QoS::AtLeastOnce, 1, false));
        assert_eq!(p.topic, "devices/d1/commands/a");
        assert!(!s.deliver(&outgoing("a", None), 0), "already in flight");
        assert!(!s.deliver(&outgoing("b", Some(100)), 100), "expired");
        assert!(s.out.is_empty());
        let mut ack = BytesMut::new();
        PubAck::new(1).write(&mut ack).unwrap();
        s.process(&mut ack, Instant::now());
        assert_eq!(s.take_delivered(), ["a"]);
        // A second connection of a persistent session resends with the same packet id and DUP.
        assert!(s.deliver(&outgoing("c", None), 0));
        let parked = s.take_outstanding();
        assert_eq!(parked.get("c"), Some(&2));
        let mut next = session(MqttConfig::default());
        next.resume(vec!["devices/d1/commands/#".into()], parked);
        assert!(next.deliver(&outgoing("d", None), 0));
        let d = sent(&mut next);
        assert_ne!(d.pkid, 2, "the parked packet id stays reserved");
        assert!(next.deliver(&outgoing("c", None), 0));
        let c = sent(&mut next);
        assert_eq!((c.pkid, c.dup), (2, true));
    }

    #[test]
    fn qos0_subscriptions_count_as_delivered_when_written() {
        let mut s = session(MqttConfig::default());
        subscribe(&mut s, "devices/d1/commands/+", QoS::AtMostOnce);
        assert!(s.deliver(&outgoing("a", None), 0));
        assert_eq!(sent(&mut s).qos, QoS::AtMostOnce);
        assert_eq!(s.take_delivered(), ["a"]);
    }

    #[test]
    fn server_times_increase() {
        let mut s = session(MqttConfig::default());
        let times: Vec<i64> = (0..100).map(|_| s.next_time()).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
