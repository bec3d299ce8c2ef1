//! MQTT actions: a small synchronous MQTT 3.1.1 publisher for the outbox thread (packets encoded
//! and decoded by rumqttc's `mqttbytes`, the codec the rest of the workspace uses). Each delivery
//! is one QoS 1 PUBLISH that counts as delivered only when the broker's PUBACK for its packet id
//! arrives; anything else (no broker, refused CONNECT, timeout, closed socket) is a failed
//! attempt that the outbox retries with backoff and dead-letters after `max_attempts`, like a
//! webhook. The connection is kept between deliveries (clean session, keep-alive off) and opened
//! again when it fails; a cached connection that fails is retried once on a fresh one at once.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{ConnectReturnCode, Packet, QoS};

/// Largest packet accepted from the broker (PUBACKs and CONNACKs are a few bytes).
const MAX_PACKET: usize = 1 << 20;

/// Timeout of connecting, and of each read and write.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The broker MQTT actions publish to (the server's `--rules-mqtt-broker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `HOST:PORT`.
    pub addr: String,
    /// MQTT client id.
    pub client_id: String,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password (with `username`).
    pub password: Option<String>,
}

/// A publisher holding at most one open connection.
#[derive(Debug)]
pub struct Publisher {
    broker: Broker,
    conn: Option<TcpStream>,
    next_id: u16,
}

impl Publisher {
    /// A publisher for `broker`; connects on the first publish.
    pub fn new(broker: Broker) -> Publisher {
        Publisher {
            broker,
            conn: None,
            next_id: 0,
        }
    }

    /// Publishes `payload` to `topic` at QoS 1 and waits for its PUBACK.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        if self.conn.is_some() {
            match self.publish_once(topic, payload) {
                Ok(()) => return Ok(()),
                // A kept connection may have been closed by the broker meanwhile: try a new one.
                Err(_) => self.conn = None,
            }
        }
        let r = self.publish_once(topic, payload);
        if r.is_err() {
            self.conn = None;
        }
        r.map_err(|e| format!("mqtt broker {}: {e}", self.broker.addr))
    }

    fn publish_once(&mut self, topic: &str, payload: &[u8]) -> std::io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.broker)?);
        }
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let Some(conn) = self.conn.as_mut() else {
            return Err(other("not connected"));
        };
        conn.write_all(&publish_packet(topic, payload, id))?;
        let mut buf = BytesMut::new();
        loop {
            match read_packet(conn, &mut buf)? {
                Packet::PubAck(ack) if ack.pkid == id => return Ok(()),
                // Anything else (a stale PUBACK, a PINGRESP) is skipped.
                _ => {}
            }
        }
    }
}

fn other(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// Opens a connection and completes CONNECT / CONNACK.
fn connect(b: &Broker) -> std::io::Result<TcpStream> {
    let addr = b
        .addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| other("the address resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(&connect_packet(b))?;
    let Packet::ConnAck(ack) = read_packet(&mut s, &mut BytesMut::new())? else {
        return Err(other("the broker did not answer CONNECT with CONNACK"));
    };
    match ack.code {
        ConnectReturnCode::Success => Ok(s),
        ConnectReturnCode::BadUserNamePassword => {
            Err(other("CONNECT refused: bad user name or password"))
        }
        ConnectReturnCode::NotAuthorized => Err(other("CONNECT refused: not authorized")),
        code => Err(other(format!("CONNECT refused: {code:?}"))),
    }
}

/// CONNECT (MQTT 3.1.1, clean session, keep-alive off).
pub fn connect_packet(b: &Broker) -> Vec<u8> {
    let mut connect = rumqttc::Connect::new(b.client_id.as_str());
    connect.keep_alive = 0;
    connect.clean_session = true;
    if let Some(u) = &b.username {
        connect.set_login(u.as_str(), b.password.as_deref().unwrap_or(""));
    }
    encode(|buf| connect.write(buf))
}

/// PUBLISH at QoS 1 with packet id `id`.
pub fn publish_packet(topic: &str, payload: &[u8], id: u16) -> Vec<u8> {
    let mut publish = rumqttc::Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
    publish.pkid = id;
    encode(|buf| publish.write(buf))
}

/// The bytes `write` puts in a buffer (an encoding error leaves them empty, which the broker
/// refuses and the outbox retries).
fn encode(write: impl FnOnce(&mut BytesMut) -> Result<usize, rumqttc::Error>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    match write(&mut buf) {
        Ok(_) => buf.to_vec(),
        Err(e) => {
            tracing::warn!(target: "strata::rules", error = %e, "cannot encode an MQTT packet");
            Vec::new()
        }
    }
}

/// Reads one packet from `s`, keeping bytes of the next one in `buf`.
fn read_packet(s: &mut impl Read, buf: &mut BytesMut) -> std::io::Result<Packet> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(packet) => return Ok(packet),
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(other(format!("malformed packet from the broker: {e}"))),
        }
        let mut chunk = [0u8; 512];
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(other("the broker closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The topic of an MQTT action: `{rule}` and `{device}` (the alert key's device, `-` without
/// one) replaced. The device may come from any string column of a query rule, so the characters
/// a topic level cannot hold (`+` and `#` are wildcards, `/` separates levels, NUL is refused by
/// brokers) become `_`: the publish stays one valid topic at the template's level.
pub fn topic_for(template: &str, rule: &str, key: &crate::alert::AlertKey) -> String {
    let device = match key.get("device").map(String::as_str) {
        None | Some("") => "-".to_string(),
        Some(d) => d
            .chars()
            .map(|c| match c {
                '+' | '#' | '/' | '\0' => '_',
                c => c,
            })
            .collect(),
    };
    template
        .replace("{rule}", rule)
        .replace("{device}", &device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_encode_as_mqtt_311() {
        let b = Broker {
            addr: "h:1".into(),
            client_id: "c".into(),
            username: Some("u".into()),
            password: Some("p".into()),
        };
        assert_eq!(
            connect_packet(&b),
            vec![
                0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 0, 0, 1, b'c', 0, 1, b'u', 0,
                1, b'p'
            ]
        );
        let p = publish_packet("a/b", &[7u8; 200], 9);
        assert_eq!(&p[..9], &[0x32, 207, 1, 0, 3, b'a', b'/', b'b', 0]);
        assert_eq!(p[9], 9);
        assert_eq!(p.len(), 3 + 207);
        let Packet::Publish(read) = read_packet(&mut &p[..], &mut BytesMut::new()).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!((read.pkid, read.payload.len()), (9, 200));
    }

    #[test]
    fn topics_are_templated_and_checked() {
        let key = [("device".to_string(), "d1".to_string())].into();
        assert_eq!(
            topic_for("alerts/{rule}/{device}", "hot", &key),
            "alerts/hot/d1"
        );
        assert_eq!(topic_for("a/{device}", "r", &Default::default()), "a/-");
        let odd: crate::alert::AlertKey = [("device".to_string(), "a/#+\0b".to_string())].into();
        assert_eq!(topic_for("alerts/{device}/x", "r", &odd), "alerts/a____b/x");
        use crate::spec::check_topic;
        assert!(check_topic("alerts/#").is_err());
        assert!(check_topic("").is_err());
        assert!(check_topic("alerts/{device}").is_ok());
    }
}
