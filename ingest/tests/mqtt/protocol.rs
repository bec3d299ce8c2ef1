//! The MQTT endpoint at the packet level, with a raw client over a blocking socket: CONNACK
//! codes, PUBACK ordering and durability, takeover, `disconnect_device`, keep-alive, malformed
//! bytes, payload and schema refusals, rate limit, connection limit, SUBSCRIBE rules, shutdown,
//! and the frame replay used by the fuzz target (arbitrary bytes never panic).

use std::time::{Duration, Instant};

use crate::harness::{
    Harness, RawClient, connect_packet, encode, pingreq, publish_packet, subscribe_packet,
};
use proptest::prelude::*;
use rumqttc::{Packet, PubAck, QoS, SubscribeReasonCode};
use strata_ingest::mqtt::{
    AuthFailure, DeviceAuthenticator, MqttConfig, RateLimit, RejectReason, replay,
};

const T0: i64 = 1_700_000_000_000;

fn json(i: i64) -> Vec<u8> {
    format!("{{\"ts\": {}, \"seq\": {i}}}", T0 + i).into_bytes()
}

#[test]
fn connack_codes() {
    let h = Harness::start();
    let cases: [(&str, &str, &str, u8); 4] = [
        ("d1", "d1", "nope", 4),
        ("ghost", "ghost", "k", 4),
        ("", "d1", "k1", 2),
        ("other", "d1", "k1", 2),
    ];
    for (client_id, user, pass, code) in cases {
        let mut c = RawClient::connect(h.addr);
        c.send(&connect_packet(client_id, user, pass, 60));
        assert_eq!(
            c.read_to_end(),
            vec![0x20, 2, 0, code],
            "{client_id}/{user}/{pass}"
        );
    }
    // MQTT 5 CONNECT: protocol level 5, empty properties, client id "d1".
    let mut c = RawClient::connect(h.addr);
    c.send(&[
        0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 2, b'd', b'1',
    ]);
    assert_eq!(c.read_to_end(), vec![0x20, 2, 0, 1]);
    let s = h.server.stats();
    assert_eq!(s.rejects_for(RejectReason::BadCredentials), 2);
    assert_eq!(s.rejects_for(RejectReason::BadClientId), 2);
    assert_eq!(s.rejects_for(RejectReason::ProtocolVersion), 1);
    assert_eq!(s.sessions_started, 0);
}

#[test]
fn pubacks_in_order_and_only_once_durable() {
    let h = Harness::start();
    let mut c = h.client("d1");
    // One at a time: the row is visible the moment its PUBACK arrives.
    for i in 0..20 {
        c.send(&publish_packet(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            i as u16 + 1,
            &json(i),
        ));
        assert_eq!(
            c.read_packet(),
            Some(Packet::PubAck(PubAck::new(i as u16 + 1)))
        );
        assert_eq!(h.rows("telemetry", "d1").len(), i as usize + 1);
    }
    // Pipelined, mixed with QoS 0 and pings: acks come back in publish order.
    let mut burst = Vec::new();
    for i in 20..2020 {
        let qos = if i % 3 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        burst.extend(publish_packet(
            "devices/d1/telemetry",
            qos,
            (i % 60000) as u16 + 1,
            &json(i),
        ));
        if i % 500 == 0 {
            burst.extend(pingreq());
        }
    }
    c.send(&burst);
    let mut expected: Vec<u16> = (20..2020)
        .filter(|i| i % 3 != 0)
        .map(|i| i as u16 + 1)
        .collect();
    let mut acks = Vec::new();
    while acks.len() < expected.len() {
        match c.read_packet() {
            Some(Packet::PubAck(a)) => {
                acks.push(a.pkid);
                // Every acknowledged message is already stored.
                let seq = i64::from(a.pkid) - 1;
                assert!(
                    h.rows("telemetry", "d1")
                        .iter()
                        .any(|r| r.0 == (T0 + seq) * 1_000_000)
                );
            }
            Some(Packet::PingResp) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, std::mem::take(&mut expected));
    assert_eq!(h.rows("telemetry", "d1").len(), 2020);
    assert_eq!(h.server.stats().pending_bytes, 0);
}

#[test]
fn malformed_bytes_close_only_that_connection() {
    let h = Harness::start();
    let mut good = h.client("d1");
    let mut bad = h.client("d2");
    bad.send(&[0xf0, 0x00, 0xde, 0xad]);
    assert!(bad.closed());
    // Garbage before CONNECT too.
    let mut raw = RawClient::connect(h.addr);
    raw.send(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(raw.read_to_end(), Vec::<u8>::new());
    good.send(&pingreq());
    assert_eq!(good.read_packet(), Some(Packet::PingResp));
    assert_eq!(h.server.stats().rejects_for(RejectReason::Malformed), 2);
    // A server-only packet from a client is a protocol violation.
    let mut c = h.client("pump-7");
    c.send(&encode(Packet::PingResp));
    assert!(c.closed());
    assert_eq!(
        h.server
            .stats()
            .rejects_for(RejectReason::ProtocolViolation),
        1
    );
}

#[test]
fn disconnect_device_closes_its_session_within_a_second() {
    let h = Harness::start();
    let mut c = h.client("d1");
    let mut other = h.client("d2");
    assert_eq!(h.server.connected_devices(), vec!["d1", "d2"]);
    let start = Instant::now();
    assert!(h.server.disconnect_device("d1"));
    assert!(c.closed());
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(!h.server.disconnect_device("d1"));
    other.send(&pingreq());
    assert_eq!(other.read_packet(), Some(Packet::PingResp));
    assert_eq!(h.server.stats().rejects_for(RejectReason::Revoked), 1);
}

#[test]
fn second_connection_takes_over() {
    let h = Harness::start();
    let mut first = h.client("d1");
    let mut second = h.client("d1");
    assert!(first.closed());
    second.send(&publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        9,
        &json(1),
    ));
    assert_eq!(second.read_packet(), Some(Packet::PubAck(PubAck::new(9))));
    assert_eq!(h.server.stats().rejects_for(RejectReason::TakenOver), 1);
    assert_eq!(h.server.connected_devices(), vec!["d1"]);
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.server.stats().sessions_open > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(h.server.stats().sessions_open, 0);
    assert!(h.server.connected_devices().is_empty());
}

#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let h = Harness::start();
    let mut c = RawClient::connect(h.addr);
    c.send(&connect_packet("d1", "d1", "k1", 1));
    assert!(matches!(c.read_packet(), Some(Packet::ConnAck(_))));
    let start = Instant::now();
    assert!(c.closed());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::KeepAliveTimeout),
        1
    );
    // Pings keep a session alive past its keep-alive.
    let mut c = RawClient::connect(h.addr);
    c.send(&connect_packet("d2", "d2", "k2", 1));
    assert!(matches!(c.read_packet(), Some(Packet::ConnAck(_))));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(600));
        c.send(&pingreq());
        assert_eq!(c.read_packet(), Some(Packet::PingResp));
    }
}

#[test]
fn connect_timeout() {
    let h = Harness::with_config(MqttConfig {
        connect_timeout: Duration::from_millis(200),
        ..MqttConfig::default()
    });
    let mut c = RawClient::connect(h.addr);
    let start = Instant::now();
    assert_eq!(c.read_to_end(), Vec::<u8>::new());
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::ConnectTimeout),
        1
    );
}

#[test]
fn bad_payload_closes_after_earlier_messages_are_stored() {
    let h = Harness::start();
    let mut c = h.client("d1");
    let mut burst = publish_packet("devices/d1/telemetry", QoS::AtLeastOnce, 1, &json(1));
    burst.extend(publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        2,
        b"{\"v\": [1]}",
    ));
    burst.extend(publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        3,
        &json(3),
    ));
    c.send(&burst);
    assert_eq!(c.read_packet(), Some(Packet::PubAck(PubAck::new(1))));
    assert!(c.closed());
    assert_eq!(h.rows("telemetry", "d1").len(), 1);
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::InvalidPayload),
        1
    );

    // Line protocol naming another device is refused too.
    let mut c = h.client("d2");
    c.send(&publish_packet(
        "devices/d2/telemetry",
        QoS::AtLeastOnce,
        1,
        b"m,device=d1 v=1",
    ));
    assert!(c.closed());
    assert!(h.rows("m", "d1").is_empty());
}

#[test]
fn schema_conflict_fails_only_the_conflicting_message() {
    let h = Harness::start();
    let mut a = h.client("d1");
    let mut b = h.client("d2");
    a.send(&publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        1,
        b"{\"v\": 1}",
    ));
    assert_eq!(a.read_packet(), Some(Packet::PubAck(PubAck::new(1))));
    b.send(&publish_packet(
        "devices/d2/telemetry",
        QoS::AtLeastOnce,
        1,
        b"{\"v\": \"text\"}",
    ));
    assert!(b.closed());
    a.send(&publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        2,
        b"{\"v\": 2}",
    ));
    assert_eq!(a.read_packet(), Some(Packet::PubAck(PubAck::new(2))));
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::SchemaConflict),
        1
    );
    assert_eq!(h.rows("telemetry", "d1").len(), 2);
    assert!(h.rows("telemetry", "d2").is_empty());
}

/// A message that arrives while an earlier one's commit is in flight is neither stored nor
/// acknowledged when that commit fails: PUBACKs stay in order and nothing after the failed
/// message is kept. Another device keeps the one commit thread busy so the second message
/// arrives while the first waits.
#[test]
fn nothing_after_a_failed_commit_is_stored_or_acknowledged() {
    let h = Harness::with_config(MqttConfig {
        commit_threads: 1,
        ..MqttConfig::default()
    });
    let mut a = h.client("d1");
    let mut b = h.client("d2");
    let topic = "devices/d1/telemetry";
    a.send(&publish_packet(topic, QoS::AtLeastOnce, 1, b"{\"v\": 1}"));
    assert_eq!(a.read_packet(), Some(Packet::PubAck(PubAck::new(1))));
    let mut burst = Vec::new();
    for i in 0..300u16 {
        burst.extend(publish_packet(
            "devices/d2/telemetry",
            QoS::AtLeastOnce,
            i + 1,
            &json(i.into()),
        ));
    }
    b.send(&burst);
    a.send(&publish_packet(
        topic,
        QoS::AtLeastOnce,
        2,
        b"{\"v\": \"text\"}",
    ));
    std::thread::sleep(Duration::from_millis(5));
    a.send(&publish_packet(topic, QoS::AtLeastOnce, 3, b"{\"v\": 3}"));
    let mut acked = Vec::new();
    while let Some(p) = a.read_packet() {
        if let Packet::PubAck(ack) = p {
            acked.push(ack.pkid);
        }
    }
    assert!(
        acked.is_empty(),
        "acknowledged after the failure: {acked:?}"
    );
    assert_eq!(h.rows("telemetry", "d1").len(), 1);
    assert_eq!(h.wait_rows("telemetry", "d2", 300), 300);
}

#[test]
fn rate_limit_slows_a_device_down_without_dropping() {
    let h = Harness::with_config(MqttConfig {
        rate_limit: Some(RateLimit {
            messages_per_sec: 100.0,
            burst: 10.0,
        }),
        ..MqttConfig::default()
    });
    let mut c = h.client("d1");
    let mut burst = Vec::new();
    for i in 0..110 {
        burst.extend(publish_packet(
            "devices/d1/telemetry",
            QoS::AtLeastOnce,
            i as u16 + 1,
            &json(i),
        ));
    }
    // A commit's fsync can stall for seconds on a machine busy with other I/O (a parallel
    // build); the throttle is what this test checks, not the disk, so the client waits long.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let start = Instant::now();
    c.send(&burst);
    for i in 0..110u16 {
        let packet = c.read_packet();
        assert_eq!(
            packet,
            Some(Packet::PubAck(PubAck::new(i + 1))),
            "PUBACK {} after {:?}; server stats: {:?}",
            i + 1,
            start.elapsed(),
            h.server.stats()
        );
    }
    let took = start.elapsed();
    // 10 at once, then 100 at 100/s: at least 0.9 s, however fast the machine.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert_eq!(h.rows("telemetry", "d1").len(), 110);
    assert!(h.server.stats().messages_throttled >= 99);
}

#[test]
fn subscriptions_only_to_own_commands() {
    let h = Harness::start();
    let mut c = h.client("d1");
    for (pkid, filter, granted) in [
        (1, "devices/d1/commands/#", true),
        (2, "devices/d2/commands/#", false),
        (3, "#", false),
        (4, "devices/d1/telemetry", false),
    ] {
        c.send(&subscribe_packet(pkid, filter));
        let code = if granted {
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        } else {
            SubscribeReasonCode::Failure
        };
        assert_eq!(
            c.read_packet(),
            Some(Packet::SubAck(rumqttc::SubAck::new(pkid, vec![code]))),
            "{filter}"
        );
    }
    c.send(&encode(Packet::Unsubscribe(rumqttc::Unsubscribe {
        pkid: 5,
        topics: vec!["devices/d1/commands/#".into()],
    })));
    assert_eq!(
        c.read_packet(),
        Some(Packet::UnsubAck(rumqttc::UnsubAck::new(5)))
    );
    assert_eq!(
        h.server.stats().rejects_for(RejectReason::SubscribeDenied),
        3
    );
}

#[test]
fn disconnect_and_shutdown_store_what_was_received() {
    let h = Harness::start();
    let mut c = h.client("d1");
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(publish_packet(
            "devices/d1/telemetry",
            QoS::AtMostOnce,
            0,
            &json(i),
        ));
    }
    burst.extend(encode(Packet::Disconnect));
    c.send(&burst);
    assert!(c.closed());
    assert_eq!(h.rows("telemetry", "d1").len(), 500);

    let mut c = h.client("d2");
    let mut burst = Vec::new();
    for i in 0..500 {
        burst.extend(publish_packet(
            "devices/d2/telemetry",
            QoS::AtMostOnce,
            0,
            &json(i),
        ));
    }
    c.send(&burst);
    c.send(&pingreq());
    assert_eq!(c.read_packet(), Some(Packet::PingResp));
    h.rt.block_on(h.server.shutdown(Duration::from_secs(5)));
    assert!(c.closed());
    assert_eq!(h.rows("telemetry", "d2").len(), 500);
    assert_eq!(h.server.stats().connections_open, 0);
    // No new connections after shutdown.
    assert!(
        std::net::TcpStream::connect(h.addr).is_err() || {
            let mut late = RawClient::connect(h.addr);
            late.send(&connect_packet("d1", "d1", "k1", 60));
            late.read_packet().is_none()
        }
    );
}

/// Accepts `dev-N` with key `key-N`.
struct Numbered;

impl DeviceAuthenticator for Numbered {
    fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<String, AuthFailure> {
        let n = client_id
            .strip_prefix("dev-")
            .ok_or(AuthFailure::BadCredentials)?;
        match (username, password) {
            (Some(u), Some(p)) if u == client_id && p == format!("key-{n}") => Ok(client_id.into()),
            _ => Err(AuthFailure::BadCredentials),
        }
    }
}

#[test]
fn many_connections_share_group_commits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::with_auth(MqttConfig::default(), std::sync::Arc::new(Numbered));
    let n = 500;
    let addr = h.addr;
    let acked = h.rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            tasks.push(tokio::spawn(async move {
                let id = format!("dev-{i}");
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                s.write_all(&connect_packet(&id, &id, &format!("key-{i}"), 60))
                    .await
                    .unwrap();
                let mut connack = [0u8; 4];
                s.read_exact(&mut connack).await.unwrap();
                assert_eq!(connack, [0x20, 2, 0, 0]);
                let topic = format!("devices/{id}/telemetry");
                s.write_all(&publish_packet(&topic, QoS::AtLeastOnce, 7, &json(i)))
                    .await
                    .unwrap();
                let mut puback = [0u8; 4];
                s.read_exact(&mut puback).await.unwrap();
                assert_eq!(puback, [0x40, 2, 0, 7]);
                s
            }));
        }
        let mut open = Vec::new();
        for t in tasks {
            open.push(t.await.unwrap());
        }
        open.len()
    });
    assert_eq!(acked, n as usize);
    for i in [0, n / 2, n - 1] {
        assert_eq!(h.rows("telemetry", &format!("dev-{i}")).len(), 1);
    }
    let s = h.server.stats();
    assert_eq!(
        (s.sessions_started, s.pubacks_sent, s.rows_written),
        (n as u64, n as u64, n as u64)
    );
    assert!(
        s.commits < n as u64,
        "{} commits for {n} connections",
        s.commits
    );
}

#[test]
fn replay_runs_the_frame_handling() {
    let mut bytes = connect_packet("d1", "d1", "k1", 60);
    bytes.extend(publish_packet(
        "devices/d1/telemetry",
        QoS::AtLeastOnce,
        1,
        &json(1),
    ));
    bytes.extend(publish_packet(
        "devices/d1/telemetry/x",
        QoS::AtMostOnce,
        0,
        b"x v=1",
    ));
    bytes.extend(subscribe_packet(2, "devices/d1/commands/#"));
    bytes.extend(pingreq());
    let r = replay(&bytes, &MqttConfig::default());
    assert!(r.connected);
    assert_eq!(
        (r.packets, r.messages, r.rows, r.subscriptions),
        (4, 2, 2, 1)
    );
    assert_eq!(r.reply_bytes, 4 + 5 + 2, "PUBACK, SUBACK, PINGRESP");
    assert_eq!(r.close, None);
    bytes.extend(publish_packet(
        "devices/d2/telemetry",
        QoS::AtMostOnce,
        0,
        b"x v=1",
    ));
    assert_eq!(
        replay(&bytes, &MqttConfig::default()).close,
        Some(RejectReason::ForeignTopic)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_frames_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512), with_connect in any::<bool>()) {
        let mut bytes = if with_connect { connect_packet("d1", "d1", "k1", 60) } else { Vec::new() };
        bytes.extend(tail);
        let r = replay(&bytes, &MqttConfig::default());
        prop_assert_eq!(r.malformed_batches, 0);
    }

    #[test]
    fn mutated_sessions_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = connect_packet("d1", "d1", "k1", 60);
        bytes.extend(publish_packet("devices/d1/telemetry", QoS::AtLeastOnce, 1, &json(1)));
        bytes.extend(publish_packet("devices/d1/telemetry/s", QoS::AtMostOnce, 0, b"s,t=1 v=1i,w=\"x\" 5"));
        bytes.extend(subscribe_packet(2, "devices/d1/commands/#"));
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let r = replay(&bytes, &MqttConfig::default());
        prop_assert_eq!(r.malformed_batches, 0);
    }
}
