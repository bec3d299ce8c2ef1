//! MQTT actions: a small synchronous MQTT 3.1.1 publisher for the outbox thread. Each delivery
//! is one QoS 1 PUBLISH that counts as delivered only when the broker's PUBACK for its packet id
//! arrives; anything else (no broker, refused CONNECT, timeout, closed socket) is a failed
//! attempt that the outbox retries with backoff and dead-letters after `max_attempts`, like a
//! webhook. The connection is kept between deliveries (clean session, keep-alive off) and opened
//! again when it fails; a cached connection that fails is retried once on a fresh one at once.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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
        loop {
            let (kind, body) = read_packet(conn)?;
            if kind >> 4 == 4 && body.len() >= 2 && u16::from_be_bytes([body[0], body[1]]) == id {
                return Ok(());
            }
            // Anything else (a stale PUBACK, a PINGRESP) is skipped.
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
    let (kind, body) = read_packet(&mut s)?;
    if kind >> 4 != 2 || body.len() < 2 {
        return Err(other("the broker did not answer CONNECT with CONNACK"));
    }
    match body[1] {
        0 => Ok(s),
        4 => Err(other("CONNECT refused: bad user name or password")),
        5 => Err(other("CONNECT refused: not authorized")),
        code => Err(other(format!("CONNECT refused with return code {code}"))),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s[..usize::from(len)]);
}

/// Fixed header byte plus the remaining length, then `body`.
fn frame(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// CONNECT (MQTT 3.1.1, clean session, keep-alive off).
pub fn connect_packet(b: &Broker) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4);
    let mut flags = 0x02;
    if b.username.is_some() {
        flags |= 0x80;
        if b.password.is_some() {
            flags |= 0x40;
        }
    }
    body.push(flags);
    body.extend_from_slice(&0u16.to_be_bytes());
    put_str(&mut body, b.client_id.as_bytes());
    if let Some(u) = &b.username {
        put_str(&mut body, u.as_bytes());
        if let Some(p) = &b.password {
            put_str(&mut body, p.as_bytes());
        }
    }
    frame(0x10, body)
}

/// PUBLISH at QoS 1 with packet id `id`.
pub fn publish_packet(topic: &str, payload: &[u8], id: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x32, body)
}

/// Reads one packet: (fixed header byte, body).
fn read_packet(s: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    s.read_exact(&mut first)?;
    let mut len = 0usize;
    for shift in 0..4 {
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << (7 * shift);
        if b[0] & 0x80 == 0 {
            let mut body = vec![0u8; len];
            s.read_exact(&mut body)?;
            return Ok((first[0], body));
        }
    }
    Err(other("malformed remaining length from the broker"))
}

/// The topic of an MQTT action: `{rule}` and `{device}` (the alert key's device, `-` without
/// one) replaced.
pub fn topic_for(template: &str, rule: &str, key: &crate::alert::AlertKey) -> String {
    let device = key.get("device").map(String::as_str).unwrap_or("-");
    template.replace("{rule}", rule).replace("{device}", device)
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
        let (kind, body) = read_packet(&mut &p[..]).unwrap();
        assert_eq!((kind, body.len()), (0x32, 207));
    }

    #[test]
    fn topics_are_templated_and_checked() {
        let key = [("device".to_string(), "d1".to_string())].into();
        assert_eq!(
            topic_for("alerts/{rule}/{device}", "hot", &key),
            "alerts/hot/d1"
        );
        assert_eq!(topic_for("a/{device}", "r", &Default::default()), "a/-");
        use crate::spec::check_topic;
        assert!(check_topic("alerts/#").is_err());
        assert!(check_topic("").is_err());
        assert!(check_topic("alerts/{device}").is_ok());
    }
}
