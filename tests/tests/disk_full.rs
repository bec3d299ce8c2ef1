//! Black-box full-disk test: the server runs on a 16 MiB tmpfs of its own (a user + mount
//! namespace made with `unshare`, entered with `nsenter`; no root needed where unprivileged user
//! namespaces are allowed). The test fills that filesystem with a file, and checks that HTTP
//! writes are refused with 507 and a message saying what to do, that MQTT QoS 1 publishes get no
//! PUBACK and the connection is closed, that refusals are counted in `/metrics`, and that once the
//! file is deleted writes succeed again without a restart; every acknowledged point is then
//! readable, also after a restart on the same filesystem.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_tests::{Server, free_port, rows, wait_until};

/// A process holding a user + mount namespace in which `mount_point` is a small tmpfs.
struct SmallFs {
    holder: Child,
    mount_point: PathBuf,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (e.g. `16m`) on `mount_point` in a new namespace.
    fn mount(mount_point: &Path, size: &str) -> SmallFs {
        let script =
            format!("mount -t tmpfs -o size={size} tmpfs \"$0\" && echo ready && exec sleep 3600");
        let mut holder = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
            .arg(mount_point)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) is installed");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the holder's output");
        assert_eq!(
            line.trim(),
            "ready",
            "cannot make a small filesystem with unshare + mount (are unprivileged user namespaces disabled?): {:?}",
            holder
                .wait_with_output()
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        );
        SmallFs {
            holder,
            mount_point: mount_point.to_path_buf(),
        }
    }

    /// The command prefix that runs a program inside the namespace.
    fn wrapper(&self) -> Vec<String> {
        let pid = self.holder.id().to_string();
        [
            "nsenter",
            "--target",
            &pid,
            "--user",
            "--mount",
            "--preserve-credentials",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `path` inside the namespace, as seen from this process.
    fn outside(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").expect("absolute path");
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(rel)
    }

    /// Fills the filesystem with `filler` until ENOSPC; returns the bytes written.
    fn fill(&self, filler: &Path) -> u64 {
        let mut f = std::fs::File::create(self.outside(filler)).expect("create filler");
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        written
    }

    /// Free bytes on the filesystem.
    fn free(&self) -> u64 {
        let wrapper = self.wrapper();
        let out = Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .args(["df", "-B1", "--output=avail"])
            .arg(&self.mount_point)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix} in /metrics"))
}

fn point(t: i64) -> String {
    format!("disk,device=d1 v={t}i {t}\n")
}

/// Times of the stored points of stream `disk`, each checked to hold its own value.
fn stored(server: &Server) -> Vec<i64> {
    let r = server.read("stream=disk");
    assert_eq!(r.status, 200, "{}", r.body);
    let mut times: Vec<i64> = rows(&r.json())
        .into_iter()
        .filter(|(device, _, _)| device == "d1")
        .map(|(_, t, m)| {
            assert_eq!(m["v"].as_i64(), Some(t), "value of the point at {t}");
            t
        })
        .collect();
    times.sort();
    times
}

/// Publishes one QoS 1 message with paho; returns what happened: `PUBACK` or `NO-PUBACK`.
const PUBLISH_ONE: &str = r#"
import sys, time
import paho.mqtt.client as mqtt
port, dev, key, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
closed = []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, clean_session=True)
c.username_pw_set(dev, key)
c.on_disconnect = lambda *a: closed.append(1)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
info = c.publish(f"devices/{dev}/telemetry/mq", payload, qos=1)
try:
    info.wait_for_publish(timeout=5)
except Exception:
    pass
acked = info.is_published()
deadline = time.time() + 5
while not acked and not closed and time.time() < deadline:
    time.sleep(0.05)
print("PUBACK" if acked else "NO-PUBACK", "CLOSED" if closed else "OPEN")
c.loop_stop()
"#;

fn mqtt_publish(port: u16, dev: &str, key: &str, t_ms: i64) -> String {
    let payload = format!("{{\"ts\": {t_ms}, \"v\": {t_ms}}}");
    let out = Command::new("python3")
        .args(["-c", PUBLISH_ONE])
        .args([&port.to_string(), dev, key, &payload])
        .output()
        .expect("python3 with paho-mqtt is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A server (`sync` durability, MQTT on a free port) whose data directory is on a 16 MiB tmpfs
/// mounted under `tmp`: the filesystem, the server, the path of a filler file on that
/// filesystem, and the MQTT port.
fn on_a_small_fs(tmp: &Path) -> (SmallFs, Server, PathBuf, u16) {
    let mount_point = tmp.join("small");
    std::fs::create_dir(&mount_point).expect("mkdir");
    let fs = SmallFs::mount(&mount_point, "16m");
    let mqtt_port = free_port();
    let mqtt = format!("127.0.0.1:{mqtt_port}");
    let args = ["--durability", "sync", "--mqtt-addr", &mqtt];
    let server = Server::start_wrapped(&mount_point.join("data"), &args, &fs.wrapper());
    (fs, server, mount_point.join("filler"), mqtt_port)
}

#[test]
fn a_full_disk_refuses_writes_with_507_and_the_server_recovers_when_space_returns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (fs, mut server, filler, mqtt_port) = on_a_small_fs(tmp.path());
    let device = server.create_device("disk-dev", "disk-model");
    let key = device["primary_key"]
        .as_str()
        .expect("primary key")
        .to_string();

    let mut acked = Vec::new();
    for t in 0..50 {
        let r = server.write("default", &point(t));
        assert_eq!(r.status, 204, "{}", r.body);
        acked.push(t);
    }
    let outcome = mqtt_publish(mqtt_port, "disk-dev", &key, 1_000);
    assert!(
        outcome.starts_with("PUBACK"),
        "{outcome}: {}",
        server.log_tail()
    );

    let filled = fs.fill(&filler);
    assert!(
        filled > 0 && fs.free() < 64 * 1024,
        "filled {filled}, free {}",
        fs.free()
    );
    // The WAL file's last page may still take a few small records; then writes are refused.
    let mut refused = 0;
    let mut t = 50;
    while refused < 10 {
        assert!(t < 1_000, "no write was refused on a full disk");
        let r = server.write("default", &point(t));
        if r.status == 204 && refused == 0 {
            acked.push(t);
            t += 1;
            continue;
        }
        assert_eq!(
            r.status, 507,
            "write on a full disk: {} {}",
            r.status, r.body
        );
        let error = r.error();
        assert!(error.contains("no space left"), "{error}");
        assert!(error.contains("retry the write later"), "{error}");
        refused += 1;
        t += 1;
    }
    let refused_range = t - 10..t;
    // MQTT: the publish is not acknowledged and the connection is closed.
    let outcome = mqtt_publish(mqtt_port, "disk-dev", &key, 2_000);
    assert_eq!(outcome, "NO-PUBACK CLOSED", "MQTT publish on a full disk");
    let text = server.get("/metrics").body;
    let no_space = metric(&text, "strata_write_refusals_total{reason=\"no_space\"} ");
    assert!(
        no_space >= f64::from(refused),
        "{no_space} refusals counted"
    );
    assert_eq!(server.health()["status"], "ok", "liveness on a full disk");

    // Space returns: writes succeed again, no restart.
    std::fs::remove_file(fs.outside(&filler)).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_after = loop {
        let r = server.write("default", &point(10_000));
        if r.status == 204 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(first_after.status, 204);
    acked.push(10_000);
    for t in 10_001..10_010 {
        let r = server.write("default", &point(t));
        assert_eq!(r.status, 204, "{}", r.body);
        acked.push(t);
    }
    // New MQTT connections are refused as "server unavailable" for 5 s after the last failed
    // commit; then publishes are acknowledged again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outcome = mqtt_publish(mqtt_port, "disk-dev", &key, 3_000);
        if outcome.starts_with("PUBACK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{outcome}: {}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every acknowledged point is there (refused ones may be: their outcome is unknown).
    let have = stored(&server);
    for t in &acked {
        assert!(have.contains(t), "acknowledged point {t} missing");
    }
    assert!(
        have.iter()
            .all(|t| acked.contains(t) || refused_range.contains(t)),
        "{have:?}"
    );
    assert_eq!(server.terminate(), 0);
    server.restart();
    let after = stored(&server);
    assert_eq!(after, have, "the same points after a restart");
    assert_eq!(server.terminate(), 0);
}

/// The device SDK on a full disk: the server closes each connection whose commit failed and
/// refuses new ones as "server unavailable" for a while, which tells the SDK the trouble is the
/// server's. No buffered message is given up as one the server refuses, and once space returns
/// every point is delivered.
#[test]
fn the_device_sdk_keeps_its_buffered_telemetry_through_a_full_disk() {
    use strata_client::device::{Device, DeviceConfig, Point};
    let tmp = tempfile::tempdir().expect("tempdir");
    let (fs, server, filler, mqtt_port) = on_a_small_fs(tmp.path());
    let key = server.create_device("sdk-dev", "")["primary_key"]
        .as_str()
        .expect("primary key")
        .to_string();
    let config = DeviceConfig::new(
        "sdk-dev",
        "127.0.0.1",
        mqtt_port,
        &key,
        tmp.path().join("buffer"),
    );
    let device = Device::connect(config).expect("connect");
    let point = |i: i64| {
        Point::new("sdk")
            .field("v", i as f64)
            .at(1_700_000_000_000_000_000 + i * 1_000_000_000)
    };
    device.publish(&[point(0)]).expect("buffered");
    device
        .flush(Duration::from_secs(30))
        .expect("first point delivered");

    fs.fill(&filler);
    let mut t = 0;
    while server.write("default", &point_line(t)).status != 507 {
        assert!(t < 1_000, "no write was refused on a full disk");
        t += 1;
    }
    for i in 1..=20 {
        device.publish(&[point(i)]).expect("buffered");
    }
    // Long enough for many reconnects (500 ms apart) while every commit fails.
    std::thread::sleep(Duration::from_secs(8));
    std::fs::remove_file(fs.outside(&filler)).expect("remove filler");
    device
        .flush(Duration::from_secs(60))
        .expect("every message delivered once space returned");
    let stats = device.stats();
    assert_eq!(stats.buffer.rejected_messages, 0, "{stats:?}");
    let r = server.post(
        "/api/v1/query",
        b"SELECT count(*) AS n FROM sdk",
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["n"], 21, "{}", r.body);
}

/// One line of line protocol for the HTTP probe writes.
fn point_line(t: i64) -> String {
    format!("probe,device=p v={t} {t}")
}

/// Publishes `lines` to the broker on `port`, one QoS 1 message each, with the real
/// `mosquitto_pub` (its PUBACKs come from the broker, not from Strata).
fn broker_publish(port: u16, topic: &str, lines: &str) {
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(lines.as_bytes()).expect("write");
    std::io::Seek::rewind(&mut file).expect("rewind");
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-q", "1", "-l", "-t", topic])
        .stdin(Stdio::from(file))
        .output()
        .expect("mosquitto_pub is installed (.ci/run installs mosquitto-clients)");
    assert!(out.status.success(), "{out:?}");
}

/// Time (ms since the epoch) of the bridged message numbered 0.
const BRIDGE_T0_MS: i64 = 1_700_000_000_000;

/// JSON messages `{"ts": T0 + i, "v": i}` for `i` in `range`.
fn bridge_messages(range: std::ops::Range<i64>) -> String {
    range
        .map(|i| format!("{{\"ts\": {}, \"v\": {i}}}\n", BRIDGE_T0_MS + i))
        .collect()
}

/// Numbers of the rows of stream `bridged` in time order, each checked to hold its own value;
/// empty while the stream does not exist.
fn bridged(server: &Server) -> Vec<i64> {
    let sql = format!(
        "SELECT CAST(v AS BIGINT) AS v, CAST(time AS BIGINT) / 1000000 - {BRIDGE_T0_MS} AS t \
         FROM bridged ORDER BY time"
    );
    let r = server.post(
        "/api/v1/query",
        sql.as_bytes(),
        &[("Accept", "application/json")],
    );
    if r.status == 400 && r.body.contains("not found") {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            let t = row["t"].as_i64().expect("t");
            assert_eq!(row["v"].as_i64(), Some(t), "value of the row at {t}");
            t
        })
        .collect()
}

/// The broker bridge (`--bridge-broker`, a real Mosquitto) through a full disk: the commit of
/// the messages published meanwhile fails, the bridge acknowledges none of them, ends its broker
/// session and connects again (every second here), and once space returns the broker's
/// redelivery brings every message in: nothing is lost, nothing is stored twice, and messages
/// published after the failure do not overtake the ones before. (Before this, the bridge kept
/// its session: the failed messages stayed unacknowledged and were never delivered again, while
/// the later ones were stored and acknowledged out of order.)
#[test]
fn the_broker_bridge_redelivers_what_a_full_disk_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount_point = tmp.path().join("small");
    std::fs::create_dir(&mount_point).expect("mkdir");
    let fs = SmallFs::mount(&mount_point, "16m");
    let broker_port = free_port();
    let _broker = strata_tests::Mosquitto::start(broker_port);
    let broker = format!("127.0.0.1:{broker_port}");
    let args = [
        "--durability",
        "sync",
        "--no-mqtt",
        "--bridge-broker",
        &broker,
        "--bridge-route",
        "plant/{device}/{stream}",
        "--bridge-client-id",
        "strata-disk-test",
        "--bridge-storage-retry",
        "1s",
    ];
    let server = Server::start_wrapped(&mount_point.join("data"), &args, &fs.wrapper());
    let metric_of = |name: &str| metric(&server.get("/metrics").body, name);
    wait_until("the bridge connected", Duration::from_secs(20), || {
        (metric_of("strata_bridge_connects_total ") >= 1.0).then_some(())
    });
    // The SUBSCRIBE follows the CONNACK: publish the first messages again until they arrive
    // (the same times and values again: stored once).
    let topic = "plant/press-1/bridged";
    let mut attempts = 0;
    while bridged(&server).len() != 5 {
        assert!(attempts < 10, "the bridge never stored the first messages");
        attempts += 1;
        broker_publish(broker_port, topic, &bridge_messages(0..5));
        let deadline = Instant::now() + Duration::from_secs(3);
        while bridged(&server).len() != 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let filler = mount_point.join("filler");
    fs.fill(&filler);
    let mut t = 0;
    while server.write("default", &point_line(t)).status != 507 {
        assert!(t < 1_000, "no write was refused on a full disk");
        t += 1;
    }
    broker_publish(broker_port, topic, &bridge_messages(5..25));
    wait_until(
        "a commit failed on storage",
        Duration::from_secs(20),
        || (metric_of("strata_bridge_storage_failures_total ") >= 1.0).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2)); // a few reconnects, each failing again
    assert_eq!(
        bridged(&server).len(),
        5,
        "nothing stored while the disk is full"
    );

    std::fs::remove_file(fs.outside(&filler)).expect("remove filler");
    broker_publish(broker_port, topic, &bridge_messages(25..30));
    let all: Vec<i64> = (0..30).collect();
    wait_until("every message stored", Duration::from_secs(30), || {
        (bridged(&server) == all).then_some(())
    });
    assert!(metric_of("strata_bridge_connects_total ") >= 2.0);
    let acked = metric_of("strata_bridge_messages_acked_total ");
    assert!(acked >= 30.0, "{acked} messages acknowledged");
    assert_eq!(metric_of("strata_bridge_messages_invalid_total "), 0.0);
}
