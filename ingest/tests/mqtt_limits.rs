//! Issue 14: the MQTT endpoint under a connection flood (silent sockets make room for a device's
//! CONNECT instead of keeping it out; a full cap of sessions refuses and counts) and the race of
//! a device revoked while its CONNECT is being authenticated (no session may survive it).

mod mqtt_harness;

use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_harness::{Harness, RawClient, connect_packet};
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
    device.send(&mqtt_harness::pingreq());
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

/// Lets `authenticate` proceed only when told, and says when it was entered.
struct Gated {
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl DeviceAuthenticator for Gated {
    fn authenticate(
        &self,
        client_id: &str,
        _username: Option<&str>,
        _password: Option<&str>,
    ) -> Result<String, AuthFailure> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        Ok(client_id.to_owned())
    }
}

/// Issue 14, defect 7: a device disabled (or rotated, deleted) after its CONNECT was
/// authenticated but before its session was registered does not keep a session.
#[test]
fn a_device_revoked_during_connect_gets_no_session() {
    let (entered_tx, entered) = channel();
    let (release, release_rx) = channel();
    let h = Harness::with_auth(
        MqttConfig::default(),
        Arc::new(Gated {
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        }),
    );
    let mut c = RawClient::connect(h.addr);
    c.send(&connect_packet("d1", "d1", "k1", 60));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!h.server.disconnect_device("d1"), "no session yet");
    release.send(()).unwrap();
    match c.read_packet() {
        Some(Packet::ConnAck(a)) => assert_ne!(a.code, ConnectReturnCode::Success),
        None => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(h.server.connected_devices().is_empty());
    // A later CONNECT of the same device (e.g. re-enabled) is accepted.
    let mut again = RawClient::connect(h.addr);
    again.send(&connect_packet("d1", "d1", "k1", 60));
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    release.send(()).unwrap();
    match again.read_packet() {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, ConnectReturnCode::Success),
        other => panic!("unexpected {other:?}"),
    }
}
