//! The first packet of a connection: framing the CONNECT, sniffing the protocol name and level
//! before handing MQTT 3.1.1 to the `rumqttc` codec (which would misread an MQTT 5 CONNECT), and
//! the CONNACK bytes.

use bytes::BytesMut;
use rumqttc::{ConnAck, Connect, ConnectReturnCode, Error as CodecError, Packet, Protocol};

use super::stats::RejectReason;

/// What the first packet of a connection turned out to be.
#[derive(Debug)]
pub(crate) enum Opening {
    /// An MQTT 3.1.1 CONNECT.
    Connect(Connect),
    /// A CONNECT of another protocol version: answer CONNACK 0x01 and close.
    UnsupportedVersion(u8),
    /// Anything else: close without answering.
    Invalid(RejectReason, String),
}

/// Frames the opening packet from `buf`; `None` while more bytes are needed. Consumes the
/// packet's bytes when it returns `Some`.
pub(crate) fn read_opening(buf: &mut BytesMut, max_packet: usize) -> Option<Opening> {
    // Judge the first byte at once: a client speaking another protocol is refused without
    // waiting for the length its bytes happen to announce.
    match buf.first() {
        None => return None,
        Some(0x10) => {}
        Some(&other) => {
            return Some(Opening::Invalid(
                RejectReason::Malformed,
                format!("expected CONNECT, got packet type byte 0x{other:02x}"),
            ));
        }
    }
    let frame_len = match rumqttc::check(buf.iter(), max_packet) {
        Ok(header) => header.frame_length(),
        Err(CodecError::InsufficientBytes(_)) => return None,
        Err(e) => return Some(codec_error(&e)),
    };
    let body_start = 1 + remaining_length_bytes(&buf[1..]);
    if let Some(level) = foreign_level(&buf[body_start..frame_len]) {
        let _ = buf.split_to(frame_len);
        return Some(Opening::UnsupportedVersion(level));
    }
    Some(match Packet::read(buf, max_packet) {
        Ok(Packet::Connect(c)) if c.protocol == Protocol::V4 => Opening::Connect(c),
        Ok(other) => Opening::Invalid(
            RejectReason::Malformed,
            format!("expected an MQTT 3.1.1 CONNECT, got {other:?}"),
        ),
        Err(e) => codec_error(&e),
    })
}

/// Number of bytes of the remaining-length field at the start of `b` (1 to 4).
fn remaining_length_bytes(b: &[u8]) -> usize {
    b.iter()
        .take(4)
        .position(|x| x & 0x80 == 0)
        .map_or(4, |p| p + 1)
}

/// The protocol level of a CONNECT that is well framed but not MQTT 3.1.1 ("MQTT" level 4):
/// MQTT 3.1 (`MQIsdp` level 3), MQTT 5, or any other level of "MQTT".
fn foreign_level(body: &[u8]) -> Option<u8> {
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let name = body.get(2..2 + name_len)?;
    let level = *body.get(2 + name_len)?;
    match (name, level) {
        (b"MQTT", 4) => None,
        (b"MQTT", _) | (b"MQIsdp", _) => Some(level),
        _ => None,
    }
}

fn codec_error(e: &CodecError) -> Opening {
    match e {
        CodecError::PayloadSizeLimitExceeded(n) => Opening::Invalid(
            RejectReason::PacketTooLarge,
            format!("CONNECT of {n} bytes is above the packet size limit"),
        ),
        other => Opening::Invalid(
            RejectReason::Malformed,
            format!("malformed CONNECT: {other}"),
        ),
    }
}

/// The bytes of a refusing CONNACK (session present false).
pub(crate) fn connack(code: ConnectReturnCode) -> BytesMut {
    connack_session(code, false)
}

/// The bytes of a CONNACK with the session-present flag.
pub(crate) fn connack_session(code: ConnectReturnCode, session_present: bool) -> BytesMut {
    let mut out = BytesMut::with_capacity(4);
    // Writing a fixed-size CONNACK into a buffer cannot fail.
    let _ = ConnAck::new(code, session_present).write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_bytes(name: &[u8], level: u8) -> BytesMut {
        let mut body = vec![0, name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&[level, 0x02, 0, 60, 0, 2, b'd', b'1']);
        let mut b = BytesMut::new();
        b.extend_from_slice(&[0x10, body.len() as u8]);
        b.extend_from_slice(&body);
        b
    }

    #[test]
    fn versions() {
        let mut b = connect_bytes(b"MQTT", 4);
        match read_opening(&mut b, 1024) {
            Some(Opening::Connect(c)) => assert_eq!(c.client_id, "d1"),
            other => panic!("{other:?}"),
        }
        assert!(b.is_empty());
        let mut b = connect_bytes(b"MQTT", 5);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::UnsupportedVersion(5))
        ));
        let mut b = connect_bytes(b"MQIsdp", 3);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::UnsupportedVersion(3))
        ));
        let mut b = connect_bytes(b"XXXX", 4);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::Invalid(RejectReason::Malformed, _))
        ));
    }

    #[test]
    fn framing() {
        let full = connect_bytes(b"MQTT", 4);
        let mut partial = BytesMut::from(&full[..5]);
        assert!(read_opening(&mut partial, 1024).is_none());
        let mut b = BytesMut::from(&[0x30u8, 0][..]);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::Invalid(RejectReason::Malformed, _))
        ));
        let mut b = BytesMut::from(&[0x10u8, 0xff, 0xff, 0x03][..]);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::Invalid(RejectReason::PacketTooLarge, _))
        ));
        let mut b = BytesMut::from(&[0x10u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
        assert!(matches!(
            read_opening(&mut b, 1024),
            Some(Opening::Invalid(RejectReason::Malformed, _))
        ));
        assert_eq!(
            &connack(ConnectReturnCode::RefusedProtocolVersion)[..],
            &[0x20, 2, 0, 1]
        );
    }
}
