//! Black-box test harness: builds (once) and locates the real `strata` binary, starts it on a free
//! port with a data directory, waits for `/health`, stops it with SIGTERM or SIGKILL, restarts it on
//! the same port, captures its JSON logs, and offers small HTTP helpers built on `ureq`.
//!
//! Set `STRATA_BIN` to test a prebuilt binary instead of building one with cargo.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a server may take to start listening (recovery included).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The `strata` binary, built with cargo on first use (same profile as the tests).
pub fn strata_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("STRATA_BIN") {
        Some(p) => PathBuf::from(p),
        None => build_strata(),
    })
}

/// Runs `cargo build -p strata-server --bin strata` and returns the executable cargo reports.
fn build_strata() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "strata-server",
        "--bin",
        "strata",
        "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .expect("cannot run cargo to build the strata binary");
    assert!(
        out.status.success(),
        "cargo build of the strata binary failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "strata")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo did not report the strata executable")
}

/// An HTTP response: status and body text.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// The body parsed as JSON (panics with the body on failure).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build()
}

/// Turns a ureq result into a [`Resp`]; transport failures become `Err`.
fn finish(res: Result<ureq::Response, ureq::Error>) -> Result<Resp, String> {
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
    };
    let status = resp.status();
    let body = resp.into_string().map_err(|e| e.to_string())?;
    Ok(Resp { status, body })
}

/// POSTs `body` with extra headers.
pub fn try_post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<Resp, String> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(req.send_bytes(body))
}

/// GETs a URL.
pub fn try_get(url: &str) -> Result<Resp, String> {
    finish(agent().get(url).call())
}

/// A running (or stopped) `strata serve` process.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    args: Vec<String>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on a free port with `data_dir` and extra `serve` flags.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_owned(),
            port: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            logs: Arc::default(),
        };
        s.spawn();
        s
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// URL of a path (with query) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Replaces the extra flags used by the next restart.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Every log line the server printed so far (all runs).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts the (stopped) server again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a stopped server");
        self.spawn();
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let mut child = self.child.take().expect("server is not running");
        sigterm(&child);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait failed") {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM; logs:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
        }
    }

    /// The last log lines, for failure messages.
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        logs[logs.len().saturating_sub(40)..].join("\n")
    }

    /// POSTs line protocol to `/api/v1/write?db=...`.
    pub fn write(&self, db: &str, body: &str) -> Resp {
        self.post(&format!("/api/v1/write?db={db}"), body.as_bytes(), &[])
    }

    /// POSTs to a path (panics on transport errors).
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        try_post(&self.url(path), body, headers)
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    /// GETs a path (panics on transport errors).
    pub fn get(&self, path: &str) -> Resp {
        try_get(&self.url(path)).unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    /// `GET /api/v1/read?{query}`.
    pub fn read(&self, query: &str) -> Resp {
        self.get(&format!("/api/v1/read?{query}"))
    }

    /// `GET /health` as JSON.
    pub fn health(&self) -> serde_json::Value {
        let r = self.get("/health");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn spawn(&mut self) {
        let mut child = Command::new(strata_binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--log-format", "json", "--log-level", "info"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", strata_binary().display()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = self.logs.clone();
        std::thread::spawn(move || collect_logs(stderr, logs, tx));
        self.child = Some(child);
        self.port = self.wait_listening(&rx);
        self.wait_healthy();
    }

    fn wait_listening(&mut self, rx: &mpsc::Receiver<u16>) -> u16 {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
                return port;
            }
            let child = self.child.as_mut().expect("child");
            if let Some(status) = child.try_wait().expect("wait failed") {
                self.child = None;
                panic!(
                    "server exited ({status}) before listening; logs:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen in time; logs:\n{}",
                self.log_tail()
            );
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if try_get(&self.url("/health")).is_ok_and(|r| r.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("/health did not answer 200; logs:\n{}", self.log_tail());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends SIGTERM through the shell's `kill` builtin (keeps the crate free of `unsafe`).
fn sigterm(child: &Child) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "could not send SIGTERM to {}",
        child.id()
    );
}

/// Reads the server's stderr, keeps every line and reports the port of the "listening" line.
fn collect_logs(stderr: impl std::io::Read, logs: Arc<Mutex<Vec<String>>>, tx: mpsc::Sender<u16>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(port) = listening_port(&line) {
            let _ = tx.send(port);
        }
        logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "listening" {
        return None;
    }
    v["addr"].as_str()?.rsplit(':').next()?.parse().ok()
}

/// A fresh temporary directory whose `data` subdirectory is used as a data dir.
pub fn temp_data_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("strata-test-")
        .tempdir()
        .expect("tempdir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// Flattens a read response into `(device, time, column -> value)` rows, in response order.
pub fn rows(
    read: &serde_json::Value,
) -> Vec<(String, i64, serde_json::Map<String, serde_json::Value>)> {
    let mut out = Vec::new();
    for s in read["series"].as_array().expect("series array") {
        let device = s["device"].as_str().unwrap_or_default().to_owned();
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or(""))
            .collect();
        for row in s["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            let mut m = serde_json::Map::new();
            for (c, v) in cols.iter().zip(row).skip(1) {
                m.insert((*c).to_owned(), v.clone());
            }
            out.push((device.clone(), row[0].as_i64().expect("ns time"), m));
        }
    }
    out
}

/// Expected database content for model-based checks: `(stream, device, time) -> field -> value`,
/// with field-level last-write-wins like the server.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Model {
    /// The expected points.
    pub points: std::collections::BTreeMap<
        (String, String, i64),
        std::collections::BTreeMap<String, serde_json::Value>,
    >,
}

impl Model {
    /// Records a written point.
    pub fn put(
        &mut self,
        stream: &str,
        device: &str,
        time: i64,
        fields: &[(&str, serde_json::Value)],
    ) {
        let entry = self
            .points
            .entry((stream.to_owned(), device.to_owned(), time))
            .or_default();
        for (k, v) in fields {
            entry.insert((*k).to_owned(), v.clone());
        }
    }

    /// The expected rows of one stream, in the shape [`Model::actual`] returns.
    pub fn expected(
        &self,
        stream: &str,
    ) -> Vec<(
        String,
        i64,
        std::collections::BTreeMap<String, serde_json::Value>,
    )> {
        self.points
            .iter()
            .filter(|((s, _, _), _)| s == stream)
            .map(|((_, d, t), f)| (d.clone(), *t, f.clone()))
            .collect()
    }

    /// Rows of a read response sorted by (device, time), nulls dropped.
    pub fn actual(
        read: &serde_json::Value,
    ) -> Vec<(
        String,
        i64,
        std::collections::BTreeMap<String, serde_json::Value>,
    )> {
        let mut out: Vec<_> = rows(read)
            .into_iter()
            .map(|(d, t, m)| (d, t, m.into_iter().filter(|(_, v)| !v.is_null()).collect()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }
}
