//! Issue 14, defect 1: slowloris and connection floods. Against the real binary with small caps
//! and short timeouts: hundreds of idle, half-sent HTTP requests and silent MQTT sockets do not
//! keep an operator's `curl` or a device's CONNECT (`mosquitto_pub`) out; the idle sockets are
//! closed after the header timeout; connections that completed a request fill the cap, a new one
//! is refused, and both evictions and refusals are counted in `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_tests::{Server, mosquitto_pub, temp_data_dir};

/// Opens `n` sockets to `port`, each sending `prefix` and then nothing.
fn idle_sockets(port: u16, n: usize, prefix: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            let _ = s.write_all(prefix);
            Some(s)
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // e.g. a 408 before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

/// The status code `curl` gets for `url` (`000` when it could not connect or got no answer).
fn curl_status(url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The value of a metric line `name{labels}` in the `/metrics` text.
fn metric(server: &Server, series: &str) -> u64 {
    let text = server.get("/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[test]
fn idle_half_sent_sockets_do_not_keep_operators_or_devices_out() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(
        &dir,
        &[
            "--mqtt-addr",
            "127.0.0.1:0",
            "--max-connections-http",
            "40",
            "--max-connections-mqtt",
            "40",
            "--header-timeout",
            "2s",
        ],
    );
    let mqtt_port = server.logged_port("MQTT device endpoint listening");
    let device = server.create_device("d1", "m");
    let key = device["primary_key"]
        .as_str()
        .expect("primary key")
        .to_owned();
    let http_port: u16 = server.base().rsplit(':').next().unwrap().parse().unwrap();

    let mut http_idle = idle_sockets(http_port, 300, b"GET /health HTTP/1.1\r\nHost: x\r\n");
    let mqtt_idle = idle_sockets(mqtt_port, 300, b"\x10");
    assert!(http_idle.len() >= 290 && mqtt_idle.len() >= 290);

    let started = Instant::now();
    assert_eq!(
        curl_status(&server.url("/health")),
        "200",
        "operator kept out"
    );
    let out = mosquitto_pub(mqtt_port, "d1", &key, "devices/d1/telemetry", r#"{"v": 1}"#);
    assert!(
        out.status.success(),
        "device kept out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answers came at once"
    );

    // Every idle HTTP socket is closed: evicted at once, or by the 2 s header timeout.
    let still_open = http_idle
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(6)))
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        still_open, 0,
        "idle sockets left open past the header timeout"
    );

    let evicted_http = metric(
        &server,
        "strata_connections_refused_total{listener=\"http\",reason=\"evicted\"}",
    );
    let evicted_mqtt = metric(
        &server,
        "strata_connections_refused_total{listener=\"mqtt\",reason=\"evicted\"}",
    );
    assert!(evicted_http >= 250, "http evictions {evicted_http}");
    assert!(evicted_mqtt >= 250, "mqtt evictions {evicted_mqtt}");
    assert_eq!(
        metric(&server, "strata_connections_max{listener=\"http\"}"),
        40
    );
}

#[test]
fn busy_connections_fill_the_cap_then_new_ones_are_refused_and_counted() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(
        &dir,
        &["--max-connections-http", "5", "--header-timeout", "2s"],
    );
    let http_port: u16 = server.base().rsplit(':').next().unwrap().parse().unwrap();
    // Let the header timeout close the harness's own idle keep-alive connection first.
    std::thread::sleep(Duration::from_millis(2500));
    // Five keep-alive connections that each completed a request: established, not evictable.
    let mut busy: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
            s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 2"), "{:?}", &buf[..n]);
            s
        })
        .collect();
    let mut refused = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    refused
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(
        closed_within(&mut refused, Duration::from_secs(1)),
        "a connection beyond the cap was served"
    );
    // The keep-alive connections sit idle: the header timeout closes them and room returns.
    for s in &mut busy {
        assert!(
            closed_within(s, Duration::from_secs(6)),
            "idle keep-alive kept"
        );
    }
    assert_eq!(curl_status(&server.url("/ping")), "204");
    assert!(
        metric(
            &server,
            "strata_connections_refused_total{listener=\"http\",reason=\"limit\"}"
        ) >= 1
    );
}

/// One Flight call (`ListActions` with a bearer token) through pyarrow: `IN` when the server
/// answered (whatever it answered), `OUT` when the connection was refused or timed out.
const FLIGHT_PROBE: &str = r#"
import sys
import pyarrow.flight as fl
c = fl.FlightClient(sys.argv[1])
opts = fl.FlightCallOptions(headers=[(b"authorization", ("Bearer " + sys.argv[2]).encode())], timeout=5)
try:
    list(c.list_actions(opts))
    print("IN")
except (fl.FlightUnavailableError, fl.FlightTimedOutError) as e:
    print("OUT", e)
except Exception:
    print("IN")
"#;

/// Flight connections that make calls without a token and keep the connection open, until
/// killed: prints `held` once every call failed.
const FLIGHT_HOLDER: &str = r#"
import sys, time
import pyarrow.flight as fl
clients = [fl.FlightClient(sys.argv[1]) for _ in range(int(sys.argv[2]))]
for c in clients:
    try:
        list(c.list_actions(fl.FlightCallOptions(timeout=5)))
    except Exception:
        pass
print("held", flush=True)
time.sleep(120)
"#;

/// Idle sockets that never sign in (PostgreSQL: silent; Flight: a half-sent HTTP/2 preface, or
/// a connection whose calls carry no token) do not keep SQL clients out: they are the first to
/// go when the cap is reached. (Before, a PG connection held its place from accept and a Flight
/// connection from its first byte, so a few hundred sockets without any token locked every
/// client out.)
#[test]
fn idle_sockets_without_a_sign_in_do_not_keep_sql_clients_out() {
    let (_tmp, dir) = temp_data_dir();
    let server = Server::start(
        &dir,
        &[
            "--pg-addr",
            "127.0.0.1:0",
            "--flight-addr",
            "127.0.0.1:0",
            "--max-connections-pg",
            "20",
            "--max-connections-flight",
            "20",
        ],
    );
    let pg_port = server.logged_port("PostgreSQL listening");
    let flight_port = server.logged_port("Flight SQL listening");
    let reader = server.create_token(&["read"]);
    let pg_idle = idle_sockets(pg_port, 100, b"");
    let flight_idle = idle_sockets(flight_port, 100, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    assert!(pg_idle.len() >= 95 && flight_idle.len() >= 95);
    let mut holder = std::process::Command::new("python3")
        .args(["-c", FLIGHT_HOLDER])
        .arg(format!("grpc://127.0.0.1:{flight_port}"))
        .arg("30")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with pyarrow is installed");
    let mut line = String::new();
    let stdout = holder.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    std::thread::sleep(Duration::from_millis(300)); // every one accepted

    let psql = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={pg_port} user=strata dbname=default sslmode=disable connect_timeout=5"
        ))
        .args(["-X", "-tA", "-c", "SELECT 41 + 1"])
        .env("PGPASSWORD", &reader)
        .output()
        .expect("psql is installed (.ci/install.d/50-postgres.sh)");
    assert!(
        psql.status.success(),
        "a signed-in client was kept out: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "42");

    let probe = Command::new("python3")
        .args(["-c", FLIGHT_PROBE])
        .arg(format!("grpc://127.0.0.1:{flight_port}"))
        .arg(&reader)
        .output()
        .expect("python3 with pyarrow is installed");
    let answer = String::from_utf8_lossy(&probe.stdout);
    assert!(
        answer.starts_with("IN"),
        "a Flight client was kept out: {answer} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let _ = holder.kill();
    let _ = holder.wait();
    for listener in ["pg", "flight"] {
        let evicted = metric(
            &server,
            &format!(
                "strata_connections_refused_total{{listener=\"{listener}\",reason=\"evicted\"}}"
            ),
        );
        assert!(evicted >= 75, "{listener} evictions {evicted}");
    }
}
