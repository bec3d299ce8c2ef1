//! MQTT crash test: several paho-mqtt publishers (Python, an independently written client) send
//! uniquely valued QoS 1 messages while the server is killed with SIGKILL and restarted, over
//! several rounds and durability modes. A message counts as acknowledged only once paho reports
//! its PUBACK; after the last restart every acknowledged message must be stored with its exact
//! value and time, and nothing that was never sent may appear.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use strata_tests::{Server, free_port, rows, temp_data_dir};

const ROUNDS: usize = 6;
const DEVICES: usize = 4;
/// `ts` of message `seq` is `BASE_MS + seq` (milliseconds), unique per device.
const BASE_MS: i64 = 1_700_000_000_000;
/// Value of message `seq` of publisher `idx`: `idx * STRIDE + seq`, unique overall.
const STRIDE: i64 = 10_000_000;

/// The publisher: one thread per device; publishes windows of 10 QoS 1 messages and prints
/// `ACK device seq value` for each message whose PUBACK arrived; on any failure (the server
/// died) it reconnects and goes on with new sequence numbers, until the stop file exists.
const PUBLISHER: &str = r#"
import json, os, sys, threading, time
import paho.mqtt.client as mqtt

port, stop, base_ms, stride = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
creds = [a.split(":", 1) for a in sys.argv[5:]]
lock = threading.Lock()

def out(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

def session(idx, dev, key, seq):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev, clean_session=True)
    c.username_pw_set(dev, key)
    try:
        c.connect("127.0.0.1", port, keepalive=30)
    except Exception:
        time.sleep(0.05)
        return seq
    c.loop_start()
    try:
        while not os.path.exists(stop):
            window = []
            for _ in range(10):
                seq += 1
                v = idx * stride + seq
                payload = json.dumps({"ts": base_ms + seq, "v": v})
                window.append((seq, v, c.publish(f"devices/{dev}/telemetry/crash", payload, qos=1)))
            for s, v, info in window:
                try:
                    info.wait_for_publish(timeout=5)
                except Exception:
                    return seq
                if not info.is_published():
                    return seq
                out(f"ACK {dev} {s} {v}")
    finally:
        c.loop_stop()
        try:
            c.disconnect()
        except Exception:
            pass
    return seq

def run(idx, dev, key):
    seq = 0
    while not os.path.exists(stop):
        seq = session(idx, dev, key, seq)
    out(f"DONE {dev} {seq}")

threads = [threading.Thread(target=run, args=(i, d, k)) for i, (d, k) in enumerate(creds)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"#;

/// Durability mode per round, and tiny memtables on odd rounds so flushes run while killed.
fn round_args(i: usize, mqtt: &str) -> Vec<String> {
    let mut args = vec!["--mqtt-addr".to_string(), mqtt.to_string()];
    let mode = ["sync", "interval:50", "none"][i % 3];
    args.extend(["--durability".into(), mode.into()]);
    if i % 2 == 1 {
        for a in ["--memtable-mb", "0.05", "--flush-age", "200ms"] {
            args.push(a.into());
        }
    }
    args
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Acknowledged messages: (device, seq) -> value.
type Acks = Arc<Mutex<HashMap<(String, i64), i64>>>;

fn start_publishers(
    dir: &Path,
    port: u16,
    creds: &[String],
) -> (Child, Acks, Arc<Mutex<Vec<String>>>) {
    let script = dir.join("publisher.py");
    std::fs::write(&script, PUBLISHER).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(dir.join("stop"))
        .arg(BASE_MS.to_string())
        .arg(STRIDE.to_string())
        .args(creds)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with paho-mqtt is installed (.ci/run installs it)");
    let acks: Acks = Arc::default();
    let other = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let (a, o) = (acks.clone(), other.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ACK", dev, seq, v] => {
                    let key = (dev.to_string(), seq.parse().unwrap());
                    a.lock().unwrap().insert(key, v.parse().unwrap());
                }
                _ => o.lock().unwrap().push(line),
            }
        }
    });
    (child, acks, other)
}

fn wait_exit(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the publishers did not stop within {within:?}");
}

fn ack_count(acks: &Acks) -> usize {
    acks.lock().unwrap().len()
}

#[test]
fn pubacked_messages_survive_sigkill() {
    let (tmp, dir) = temp_data_dir();
    let mqtt = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(&dir, &as_strs(&round_args(0, &mqtt)));
    let mut creds = Vec::new();
    let mut idx_of = HashMap::new();
    for i in 0..DEVICES {
        let id = format!("crash-{i}");
        let d = server.create_device(&id, "pub");
        creds.push(format!("{id}:{}", d["primary_key"].as_str().unwrap()));
        idx_of.insert(id, i as i64);
    }
    let port: u16 = mqtt.rsplit(':').next().unwrap().parse().unwrap();
    let (mut publishers, acks, other) = start_publishers(tmp.path(), port, &creds);
    let mut rng = StdRng::seed_from_u64(7);
    let mut acked_before_kill = Vec::new();
    for round in 1..=ROUNDS {
        let target = ack_count(&acks) + 20;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ack_count(&acks) < target {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..=300)));
        acked_before_kill.push(ack_count(&acks));
        server.kill9();
        server.set_args(&as_strs(&round_args(round, &mqtt)));
        server.restart();
    }
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    wait_exit(&mut publishers, Duration::from_secs(60));
    server.kill9();
    server.restart();

    let acks = acks.lock().unwrap().clone();
    let done = other.lock().unwrap().clone();
    assert_eq!(done.len(), DEVICES, "publisher output: {done:?}");
    let mut stored: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let resp = server.read("stream=crash");
    assert_eq!(resp.status, 200, "{}", resp.body);
    for (device, t, fields) in rows(&resp.json()) {
        let v = fields["v"]
            .as_f64()
            .unwrap_or_else(|| panic!("no v at {t}: {fields:?}"));
        let seq = (t - BASE_MS * 1_000_000) / 1_000_000;
        assert_eq!(
            t,
            (BASE_MS + seq) * 1_000_000,
            "time {t} is not a sent timestamp"
        );
        assert_eq!(
            v,
            (idx_of[&device] * STRIDE + seq) as f64,
            "{device} seq {seq}: stored value was never sent at this time"
        );
        assert!(stored.insert((device, seq), v).is_none(), "duplicate row");
    }
    let lost: Vec<_> = acks
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(&(**v as f64)))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        lost.is_empty(),
        "{} PUBACKed messages lost of {}, e.g. {:?}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!(
        "mqtt crash test: {ROUNDS} kills, {} messages PUBACKed (before each kill: {acked_before_kill:?}), \
         {} stored",
        acks.len(),
        stored.len()
    );
}
