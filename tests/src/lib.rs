//! Black-box test harness: builds (once) and locates the real `strata` binary, starts it on a free
//! port with a data directory (and an admin token: [`TEST_ADMIN_TOKEN`] through `STRATA_ADMIN_TOKEN`,
//! or the one the server bootstraps itself), waits for `/health`, stops it with SIGTERM or SIGKILL,
//! restarts it on the same port, captures its stderr (JSON logs), and offers small HTTP helpers built
//! on `ureq` that authenticate with the admin token unless told otherwise.
//!
//! Set `STRATA_BIN` to test a prebuilt binary instead of building one with cargo.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// Runs `cargo build --workspace --bins` and returns the `strata` executable cargo reports.
fn build_strata() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml");
    let mut cmd = Command::new(cargo);
    // `--workspace`, like `cargo test --workspace`: cargo unifies dependency features over the
    // packages it builds, so `-p strata-server` would rebuild DataFusion with other features.
    cmd.args([
        "build",
        "--workspace",
        "--bins",
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

/// The admin token the harness gives the server through `STRATA_ADMIN_TOKEN` by default.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789abcdef";

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

    /// The `error` message of a JSON error body (empty when there is none).
    pub fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default()
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
    // `into_string` stops at 10 MB; large reads (crash tests) are bigger.
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(1 << 30)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    Ok(Resp { status, body })
}

/// Sends a request with `method`, extra headers and an optional body.
pub fn try_send(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    finish(match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    })
}

/// POSTs `body` with extra headers (no credentials unless the headers carry them).
pub fn try_post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<Resp, String> {
    try_send("POST", url, Some(body), headers)
}

/// GETs a URL without credentials.
pub fn try_get(url: &str) -> Result<Resp, String> {
    try_send("GET", url, None, &[])
}

/// `Bearer <token>` for an `Authorization` header.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `Basic base64(user:password)` for an `Authorization` header (device credentials).
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648), enough for Basic credentials in tests.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// How a test server gets its admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    /// `STRATA_ADMIN_TOKEN` is set to this value.
    Env(String),
    /// No environment token: the server bootstraps one; the harness reads `DATA/admin-token`.
    Bootstrap,
}

/// A running (or stopped) `strata serve` process.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
    args: Vec<String>,
    admin: AdminToken,
    token: String,
    logs: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    /// A command the server is started through (e.g. `nsenter … --`), empty for none.
    wrapper: Vec<String>,
}

impl Server {
    /// Starts a server on a free port with `data_dir`, extra `serve` flags and
    /// `STRATA_ADMIN_TOKEN` = [`TEST_ADMIN_TOKEN`].
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_with(data_dir, args, AdminToken::Env(TEST_ADMIN_TOKEN.into()))
    }

    /// Starts a server with extra environment variables (e.g. `AWS_*` for an object store).
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server::new(data_dir, args, AdminToken::Env(TEST_ADMIN_TOKEN.into()));
        s.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.spawn();
        s
    }

    /// Starts a server choosing how it gets its admin token.
    pub fn start_with(data_dir: &Path, args: &[&str], admin: AdminToken) -> Server {
        let mut s = Server::new(data_dir, args, admin);
        s.spawn();
        s
    }

    fn new(data_dir: &Path, args: &[&str], admin: AdminToken) -> Server {
        Server {
            child: None,
            data_dir: data_dir.to_owned(),
            port: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            admin,
            token: String::new(),
            logs: Arc::default(),
            env: Vec::new(),
            wrapper: Vec::new(),
        }
    }

    /// Starts a server through `wrapper` (a command that ends by exec'ing its arguments, such as
    /// `nsenter --target PID --mount --`, so the server runs in another mount namespace).
    pub fn start_wrapped(data_dir: &Path, args: &[&str], wrapper: &[String]) -> Server {
        let mut s = Server::new(data_dir, args, AdminToken::Env(TEST_ADMIN_TOKEN.into()));
        s.wrapper = wrapper.to_vec();
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

    /// The admin token the helpers send.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `Authorization` header value carrying the admin token.
    pub fn auth(&self) -> String {
        bearer(&self.token)
    }

    /// Replaces the extra flags used by the next restart.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Replaces how the next restart gets its admin token.
    pub fn set_admin(&mut self, admin: AdminToken) {
        self.admin = admin;
    }

    /// Every stderr line the server printed so far (all runs).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The port of the newest log line with this `message` and an `addr` field, e.g.
    /// `"MQTT device endpoint listening"` for a listener started on port 0.
    pub fn logged_port(&self, message: &str) -> u16 {
        self.logs()
            .iter()
            .rev()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["message"] == message)
            .and_then(|v| v["addr"].as_str()?.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no '{message}' log line with an addr; logs:\n{}",
                    self.log_tail()
                )
            })
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

    /// POSTs line protocol to `/api/v1/write?db=...` with the admin token.
    pub fn write(&self, db: &str, body: &str) -> Resp {
        self.post(&format!("/api/v1/write?db={db}"), body.as_bytes(), &[])
    }

    /// Sends a request; adds the admin token unless `headers` carry an `Authorization` header
    /// (panics on transport errors).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let auth = self.auth();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            all.push(("Authorization", &auth));
        }
        try_send(method, &self.url(path), body, &all)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Sends a request without any credentials (panics on transport errors).
    pub fn send_anonymous(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        try_send(method, &self.url(path), body, &[])
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// POSTs to a path with the admin token unless `headers` carry credentials.
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        self.send("POST", path, Some(body), headers)
    }

    /// POSTs a JSON value with the admin token.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        self.send(
            "POST",
            path,
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
        )
    }

    /// Sends a JSON body with any method and the admin token.
    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> Resp {
        self.send(
            method,
            path,
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
        )
    }

    /// GETs a path with the admin token (panics on transport errors).
    pub fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, &[])
    }

    /// GETs a path with the given `Authorization` header value.
    pub fn get_as(&self, path: &str, authorization: &str) -> Resp {
        self.send("GET", path, None, &[("Authorization", authorization)])
    }

    /// DELETEs a path with the admin token.
    pub fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None, &[])
    }

    /// `GET /api/v1/read?{query}` with the admin token.
    pub fn read(&self, query: &str) -> Resp {
        self.get(&format!("/api/v1/read?{query}"))
    }

    /// `GET /api/v1/health` (the detailed health: recovery report, engine counters) with the
    /// admin token, as JSON. The public `/health` answers only the status.
    pub fn health(&self) -> serde_json::Value {
        let r = self.get("/api/v1/health");
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Registers a device and returns the creation response body (with its keys).
    pub fn create_device(&self, id: &str, model: &str) -> serde_json::Value {
        let r = self.post_json(
            "/api/v1/devices",
            &serde_json::json!({"id": id, "model": model, "attributes": {}}),
        );
        assert_eq!(r.status, 201, "creating device {id}: {}", r.body);
        r.json()
    }

    /// Creates an API token with these scopes and returns its secret.
    pub fn create_token(&self, scopes: &[&str]) -> String {
        let r = self.post_json("/api/v1/tokens", &serde_json::json!({ "scopes": scopes }));
        assert_eq!(r.status, 201, "creating a token: {}", r.body);
        r.json()["token"]
            .as_str()
            .expect("token in the response")
            .to_owned()
    }

    fn spawn(&mut self) {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(strata_binary());
                c
            }
            None => Command::new(strata_binary()),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--log-format", "json"])
            .args(&self.args)
            .env_remove("STRATA_ADMIN_TOKEN")
            .env_remove("STRATA_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !self.args.iter().any(|a| a == "--log-level") {
            cmd.args(["--log-level", "info"]);
        }
        // Parallel test servers must not race for the development default 127.0.0.1:1883.
        if !self
            .args
            .iter()
            .any(|a| a == "--mqtt-addr" || a == "--no-mqtt")
        {
            cmd.arg("--no-mqtt");
        }
        if let AdminToken::Env(t) = &self.admin {
            cmd.env("STRATA_ADMIN_TOKEN", t);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", strata_binary().display()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = self.logs.clone();
        std::thread::spawn(move || collect_logs(stderr, logs, tx));
        self.child = Some(child);
        self.port = self.wait_listening(&rx);
        self.wait_healthy();
        self.token = match &self.admin {
            AdminToken::Env(t) => t.clone(),
            AdminToken::Bootstrap => read_admin_token(&self.data_dir),
        };
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

/// Reads `DATA/admin-token` (trimmed).
pub fn read_admin_token(data_dir: &Path) -> String {
    let path = data_dir.join("admin-token");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
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

/// A TCP port on 127.0.0.1 that was free a moment ago (for listeners the server binds itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Mosquitto broker (Debian `mosquitto`) on 127.0.0.1:`port`, killed when dropped.
pub struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    /// Starts the broker; returns once it accepts TCP connections.
    pub fn start(port: u16) -> Mosquitto {
        let child = Command::new("mosquitto")
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/install.d/10-mqtt.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `payload` to `topic` at QoS 1 with the real `mosquitto_pub`, as device `id` (client
/// id = user name = `id`, password `key`), on 127.0.0.1:`port`.
pub fn mosquitto_pub(port: u16, id: &str, key: &str, topic: &str, payload: &str) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-i", id, "-u", id, "-P", key])
        .args(["-q", "1", "-t", topic, "-m", payload])
        .output()
        .expect("mosquitto_pub is installed (.ci/run installs mosquitto-clients)")
}

/// A real webhook receiver (`tests/python/webhook_receiver.py`: Python's `http.server`, checks
/// the HMAC signature with `secret`, answers `status`, appends each request as one JSON line to
/// a file), killed on drop.
pub struct WebhookReceiver {
    child: Child,
    out: PathBuf,
}

impl WebhookReceiver {
    /// Starts the receiver on `port`, recording into `out`; returns once it listens.
    pub fn start(port: u16, secret: &str, out: &Path, status: u16) -> WebhookReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args([
                &port.to_string(),
                secret,
                out.to_str().expect("UTF-8 path"),
                &status.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the receiver's first line");
        assert_eq!(line.trim(), "listening");
        WebhookReceiver {
            child,
            out: out.to_owned(),
        }
    }

    /// Every request received so far, in order.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it returns `Some`, failing the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs SQL over `POST /api/v1/query` (asserting 200) and returns the JSON rows.
pub fn sql_rows(server: &Server, text: &str) -> Vec<serde_json::Value> {
    let r = server.post(
        "/api/v1/query",
        text.as_bytes(),
        &[("Accept", "application/json")],
    );
    assert_eq!(r.status, 200, "{text}: {}", r.body);
    r.json().as_array().expect("rows").clone()
}

// Certificates made with the `openssl` command line (independent of the server's rcgen code).

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed ECDSA P-256 CA made by the `openssl` command line: `(cert.pem, key.pem)` in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&cert),
        "-days",
        "30",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    (cert, key)
}

/// A device certificate `CN = device` signed by `ca`: `(cert.pem, key.pem)` in `dir`.
pub fn make_device_cert(dir: &Path, device: &str, ca: &(PathBuf, PathBuf)) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{device}.pem")),
        dir.join(format!("{device}.key")),
    );
    let csr = dir.join(format!("{device}.csr"));
    let ext = dir.join(format!("{device}.ext"));
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
        "-subj",
        &format!("/CN={device}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        s(&csr),
        "-CA",
        s(&ca.0),
        "-CAkey",
        s(&ca.1),
        "-CAcreateserial",
        "-out",
        s(&cert),
        "-days",
        "30",
        "-extfile",
        s(&ext),
    ]);
    (cert, key)
}

/// Lowercase hex SHA-256 of a PEM certificate's DER bytes (via openssl).
pub fn thumbprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-in", s(cert), "-noout", "-fingerprint", "-sha256"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().rsplit('=').next().unwrap();
    hex.replace(':', "").to_lowercase()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A child process (a test peer such as moto or Azurite) killed on drop.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 60 s) until something listens on `port` on 127.0.0.1.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A moto S3 server on a free port with bucket `bucket` created: the service and its port.
pub fn moto(bucket: &str) -> (Service, u16) {
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-p", &port.to_string(), "-H", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install \"moto[server]\")");
    wait_port(port);
    let r = try_send(
        "PUT",
        &format!("http://127.0.0.1:{port}/{bucket}"),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    (Service(child), port)
}

/// The `AWS_*` environment that points the object_store S3 client at a moto server on `port`.
pub fn s3_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// An Azurite blob emulator on a free port with container `container` created: the service (its
/// storage in a temporary directory kept with it) and the environment that points object_store's
/// Azure client at it.
pub fn azurite(container: &str) -> ((Service, tempfile::TempDir), Vec<(&'static str, String)>) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let child = Command::new("azurite-blob")
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.path().display().to_string(),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite-blob (npm install -g azurite@3.35.0)");
    let service = Service(child);
    wait_port(port);
    create_container(port, container);
    let env = vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".to_string()),
        (
            "AZURITE_BLOB_STORAGE_URL",
            format!("http://127.0.0.1:{port}"),
        ),
    ];
    ((service, dir), env)
}

/// Creates `container` in Azurite with its well-known development key (Shared Key signing done
/// in Python, which every CI image here has).
fn create_container(port: u16, container: &str) {
    let script = format!(
        r#"
import base64, hmac, hashlib, urllib.request, email.utils
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date = email.utils.formatdate(usegmt=True)
canon_headers = "x-ms-date:" + date + "\nx-ms-version:2021-08-06\n"
canon_resource = "/devstoreaccount1/devstoreaccount1/{container}\nrestype:container"
to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + canon_headers + canon_resource
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request("http://127.0.0.1:{port}/devstoreaccount1/{container}?restype=container", method="PUT",
    headers={{"x-ms-date": date, "x-ms-version": "2021-08-06",
             "Authorization": "SharedKey devstoreaccount1:" + sig, "Content-Length": "0"}})
print(urllib.request.urlopen(req).status)
"#
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(basic("d1", "k"), "Basic ZDE6aw==");
        assert_eq!(bearer("t"), "Bearer t");
    }
}
