//! Shared test harness for the MQTT endpoint tests: an in-process [`MqttServer`] on
//! 127.0.0.1:0 writing to a real engine in a temporary directory, a static authenticator, a raw
//! MQTT client over a blocking `TcpStream` (packets built with the `rumqttc` codec), helpers to
//! run `mosquitto_pub`, and scans of what the engine stored.

#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::{Connect, Packet, PingReq, Protocol, Publish, QoS, Subscribe};
use strata_ingest::mqtt::{DeviceAuthenticator, MqttConfig, MqttServer, StaticAuthenticator};
use strata_storage::{Engine, EngineConfig, ScanRequest};

/// Device ids and keys known to every harness.
pub const DEVICES: [(&str, &str); 3] = [("d1", "k1"), ("d2", "k2"), ("pump-7", "s3cr3t")];

/// A running server.
pub struct Harness {
    pub server: MqttServer,
    pub engine: Arc<Engine>,
    pub addr: SocketAddr,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A server with the default configuration.
    pub fn start() -> Self {
        Self::with_config(MqttConfig::default())
    }

    /// A server with `config`.
    pub fn with_config(config: MqttConfig) -> Self {
        Self::with_auth(config, Arc::new(StaticAuthenticator::new(DEVICES)))
    }

    /// A server with `config` and the authenticator `auth`.
    pub fn with_auth(config: MqttConfig, auth: Arc<dyn DeviceAuthenticator>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut engine_config = EngineConfig::new(dir.path());
        engine_config.background = false;
        let engine = Arc::new(Engine::open(engine_config).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = MqttServer::new(config, engine.clone(), auth).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let s = server.clone();
        rt.spawn(async move { s.serve(listener).await });
        Harness {
            server,
            engine,
            addr,
            rt,
            _dir: dir,
        }
    }

    /// Rows of `device` in `stream` as (time, field values sorted by field name).
    pub fn rows(
        &self,
        stream: &str,
        device: &str,
    ) -> Vec<(i64, Vec<(String, strata_storage::Value)>)> {
        let req = ScanRequest {
            database: "default".into(),
            stream: stream.into(),
            device: Some(device.into()),
            start: i64::MIN,
            end: i64::MAX,
            ..ScanRequest::default()
        };
        let mut out = Vec::new();
        for batch in self.engine.scan(&req).unwrap_or_default() {
            for (i, t) in batch.times.iter().enumerate() {
                let mut fields: Vec<_> = batch
                    .columns
                    .iter()
                    .filter_map(|c| c.get(i).map(|v| (c.name.clone(), v)))
                    .collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                out.push((*t, fields));
            }
        }
        out.sort_by_key(|r| r.0);
        out
    }

    /// Waits until `stream` holds `n` rows of `device` (QoS 0 needs no ack, so tests poll).
    pub fn wait_rows(&self, stream: &str, device: &str, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.rows(stream, device).len();
            if got >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `mosquitto_pub` against the server with `args`, its standard input read from a file
    /// holding `stdin` (a pipe fed by the test can stall `-l` mode).
    pub fn mosquitto_pub(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let port = self.addr.port().to_string();
        let input = match stdin {
            Some(data) => {
                let mut file = tempfile::tempfile().unwrap();
                file.write_all(data).unwrap();
                file.seek(SeekFrom::Start(0)).unwrap();
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .stdin(input);
        run_captured(cmd, Duration::from_secs(120))
    }

    /// A raw client connected and authenticated as `device`.
    pub fn client(&self, device: &str) -> RawClient {
        let key = DEVICES.iter().find(|(d, _)| *d == device).unwrap().1;
        let mut c = RawClient::connect(self.addr);
        c.send(&connect_packet(device, device, key, 60));
        assert_eq!(
            c.read_packet(),
            Some(Packet::ConnAck(rumqttc::ConnAck::new(
                rumqttc::ConnectReturnCode::Success,
                false
            )))
        );
        c
    }
}

/// Runs a command with its output captured in files (a full pipe cannot stall it), killing it
/// after `limit`.
pub fn run_captured(mut cmd: Command, limit: Duration) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdout(Stdio::from(stdout.try_clone().unwrap()))
        .stderr(Stdio::from(stderr.try_clone().unwrap()))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed?)"));
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    let read = |f: &mut std::fs::File| {
        let mut v = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// `-i id -u id -P key` for a device.
pub fn creds(device: &str, key: &str) -> Vec<String> {
    ["-i", device, "-u", device, "-P", key]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A CONNECT packet with the given identity.
pub fn connect_packet(client_id: &str, user: &str, pass: &str, keep_alive: u16) -> Vec<u8> {
    let mut c = Connect::new(client_id);
    c.keep_alive = keep_alive;
    c.protocol = Protocol::V4;
    c.set_login(user, pass);
    encode(Packet::Connect(c))
}

/// A PUBLISH packet.
pub fn publish_packet(topic: &str, qos: QoS, pkid: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = Publish::new(topic, qos, payload.to_vec());
    p.pkid = pkid;
    encode(Packet::Publish(p))
}

/// A SUBSCRIBE packet.
pub fn subscribe_packet(pkid: u16, filter: &str) -> Vec<u8> {
    let mut s = Subscribe::new(filter, QoS::AtLeastOnce);
    s.pkid = pkid;
    encode(Packet::Subscribe(s))
}

/// A PINGREQ packet.
pub fn pingreq() -> Vec<u8> {
    let mut b = BytesMut::new();
    PingReq.write(&mut b).unwrap();
    b.to_vec()
}

pub fn encode(p: Packet) -> Vec<u8> {
    let mut b = BytesMut::new();
    p.write(&mut b, usize::MAX).unwrap();
    b.to_vec()
}

/// A blocking MQTT client that speaks raw packets.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next packet from the server; `None` at end of stream (or on a read error/timeout).
    pub fn read_packet(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("server sent a malformed packet: {e}"),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Raw bytes until end of stream.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = self.buf.to_vec();
        let _ = self.stream.read_to_end(&mut out);
        out
    }

    /// True when the server closed the connection (reads end of stream within 10 s).
    pub fn closed(&mut self) -> bool {
        loop {
            match self.read_packet() {
                None => return true,
                Some(Packet::PubAck(_)) => continue,
                Some(_) => return false,
            }
        }
    }
}
