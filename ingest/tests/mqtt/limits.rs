//! Issue 14: the MQTT endpoint under a connection flood (silent sockets make room for a device's
//! CONNECT instead of keeping it out; a full cap of sessions refuses and counts) and the race of
//! a device revoked while its CONNECT is being authenticated (no session may survive it).

use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Harness, RawClient, connect_packet};
use rumqttc::{ConnectReturnCode, Packet};
use strata_ingest::mqtt::{AuthFailure, DeviceAuthenticator, MqttConfig};

#[test]
fn silent_sockets_make_room_for_a_device() {
    let h = Harness::with_config(MqttConfig {
        max_connections: 20,
        ..MqttConfig::default()
    });
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(h.addr).unwrap())
        .collect();
    let mut device = h.client("d1");
    device.send(&crate::harness::pingreq());
    assert!(matches!(device.read_packet(), Some(Packet::PingResp)));
    let limit = h.server.connection_limit();
    assert!(limit.evicted() >= 180, "evicted {}", limit.evicted());
    assert!(limit.open() <= 20);
    drop(idle);
}

#[test]
fn a_full_cap_of_sessions_refuses_new_connections() {
    let h = Harness::with_config(MqttConfig {
        max_connections: 2,
        ..MqttConfig::default()
    });
    let _a = h.client("d1");
    let _b = h.client("d2");
    let mut c = RawClient::connect(h.addr);
    c.send(&connect_packet("pump-7", "pump-7", "s3cr3t", 60));
    assert_eq!(
        c.read_to_end(),
        Vec::<u8>::new(),
        "closed without a session"
    );
    assert_eq!(h.server.connection_limit().refused(), 1);
}

/// The registry as the endpoint sees it: accepts every device while `allowed`; the call after
/// `gate_next` is set says when it was entered and proceeds only when told (so a revocation can
/// land between an authentication and its session's registration).
struct Gated {
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
    gate_next: AtomicBool,
    allowed: AtomicBool,
    calls: AtomicUsize,
    epoch: AtomicU64,
}

impl DeviceAuthenticator for Gated {
    fn authenticate(
        &self,
        client_id: &str,
        _username: Option<&str>,
        _password: Option<&str>,
    ) -> Result<String, AuthFailure> {
        self.calls.fetch_add(1, SeqCst);
        if self.gate_next.swap(false, SeqCst) {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            return Ok(client_id.to_owned());
        }
        match self.allowed.load(SeqCst) {
            true => Ok(client_id.to_owned()),
            false => Err(AuthFailure::NotAuthorized),
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }
}

fn gated() -> (Arc<Gated>, Receiver<()>, Sender<()>) {
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let auth = Arc::new(Gated {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
        gate_next: AtomicBool::new(false),
        allowed: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
        epoch: AtomicU64::new(0),
    });
    (auth, entered, release)
}

/// Issue 14, defect 7: a device disabled (or rotated, deleted) after its CONNECT was
/// authenticated but before its session was registered does not keep a session: the endpoint
/// authenticates it again and the registry's current answer decides. So a revocation event
/// that arrives late (the registry's events are handled on their own thread) refuses nothing
/// the registry accepts (it refused a freshly pinned certificate in CI).
#[test]
fn a_device_revoked_during_connect_is_authenticated_again() {
    let (auth, entered, release) = gated();
    let h = Harness::with_auth(MqttConfig::default(), auth.clone());
    // `allowed`: whether the registry still accepts the device when its revocation arrives.
    for allowed in [false, true] {
        auth.gate_next.store(true, SeqCst);
        let calls = auth.calls.load(SeqCst);
        let mut c = RawClient::connect(h.addr);
        c.send(&connect_packet("d1", "d1", "k1", 60));
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        auth.allowed.store(allowed, SeqCst);
        assert!(!h.server.disconnect_device("d1"), "no session yet");
        release.send(()).unwrap();
        let code = match allowed {
            true => ConnectReturnCode::Success,
            false => ConnectReturnCode::NotAuthorized,
        };
        match c.read_packet() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, code, "allowed {allowed}"),
            other => panic!("allowed {allowed}: unexpected {other:?}"),
        }
        assert_eq!(auth.calls.load(SeqCst) - calls, 2, "authenticated twice");
        assert_eq!(h.server.connected_devices().len(), usize::from(allowed));
    }
}

/// A revocation stamped at or below the epoch a CONNECT read before authenticating (the late
/// event of a change the authentication already saw) neither catches the CONNECT nor closes
/// the session; one stamped above it does both.
#[test]
fn a_revocation_older_than_the_authentication_closes_nothing() {
    let (auth, entered, release) = gated();
    auth.epoch.store(10, SeqCst);
    let h = Harness::with_auth(MqttConfig::default(), auth.clone());
    auth.gate_next.store(true, SeqCst);
    let mut c = RawClient::connect(h.addr);
    c.send(&connect_packet("d1", "d1", "k1", 60));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        !h.server.disconnect_device_before("d1", 10),
        "no session yet"
    );
    release.send(()).unwrap();
    match c.read_packet() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(auth.calls.load(SeqCst), 1, "authenticated once");
    assert!(!h.server.disconnect_device_before("d1", 10));
    c.send(&crate::harness::pingreq());
    assert!(matches!(c.read_packet(), Some(Packet::PingResp)));
    assert!(h.server.disconnect_device_before("d1", 11));
    assert!(c.closed());
    assert!(h.server.connected_devices().is_empty());
}

/// A CONNECT caught at registration by a revocation (it authenticated before the device's key
/// changed) does not displace the session a client opened after the change: it is refused
/// before it could take over.
#[test]
fn a_caught_connect_does_not_take_over_a_newer_session() {
    let (auth, entered, release) = gated();
    let h = Harness::with_auth(MqttConfig::default(), auth.clone());
    auth.gate_next.store(true, SeqCst);
    let mut stale = RawClient::connect(h.addr);
    stale.send(&connect_packet("d1", "d1", "k1", 60));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    // The key changes (epoch 5); its revocation finds no session yet.
    auth.epoch.store(5, SeqCst);
    assert!(!h.server.disconnect_device_before("d1", 5));
    // A client with the new key connects and keeps its session.
    let mut fresh = RawClient::connect(h.addr);
    fresh.send(&connect_packet("d1", "d1", "k1", 60));
    match fresh.read_packet() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("unexpected {other:?}"),
    }
    // The stale CONNECT resumes: caught, authenticated again, refused (the old key is gone).
    auth.allowed.store(false, SeqCst);
    release.send(()).unwrap();
    match stale.read_packet() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::NotAuthorized),
        other => panic!("unexpected {other:?}"),
    }
    fresh.send(&crate::harness::pingreq());
    assert!(
        matches!(fresh.read_packet(), Some(Packet::PingResp)),
        "the newer session is still open"
    );
    assert_eq!(h.server.connected_devices(), vec!["d1"]);
}
