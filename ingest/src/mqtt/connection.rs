//! The async life of one connection: CONNECT (with timeout, protocol check, authentication and
//! takeover; a verified TLS client certificate may stand in for the key), then a loop that reads
//! packets into the [`Session`], hands accumulated messages to the commit pipeline (one commit in
//! flight per connection, so PUBACKs leave in order), writes PUBACKs once the commit returned,
//! and enforces keep-alive, rate pauses and server signals.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{Connect, ConnectReturnCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::auth::{AuthFailure, ClientCertificate};
use super::channel::{InboundError, Outgoing};
use super::commit::{CommitFailure, CommitJob, CommitOutcome};
use super::connect::{Opening, connack, connack_session, read_opening};
use super::session::{Close, Control, Session};
use super::shared::{Refused, Registered, Shared, Signal};
use super::stats::{Counters, PendingCharge, RejectReason, add, dec};

/// Initial read buffer per connection (grows for larger packets).
const READ_BUFFER: usize = 4096;

/// Decrements a gauge when dropped.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn open(counter: &'a AtomicU64) -> Self {
        add(counter, 1);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        dec(self.0);
    }
}

/// Serves one connection to the end.
pub(crate) async fn run<S>(shared: &Arc<Shared>, mut io: S, certificate: Option<ClientCertificate>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let counters = &shared.env.counters;
    add(&counters.connections_accepted, 1);
    let _open = Gauge::open(&counters.connections_open);
    // Connections accepted by `MqttServer::serve*` are capped by its `ConnectionLimit` (an
    // evicted connection may still be counted open for a moment); this check covers the others.
    let over_limit = !super::shared::admitted_under_limit()
        && counters
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
            > shared.env.config.max_connections as u64;
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
    let Some(connect) = handshake(shared, &mut io, &mut rbuf, over_limit).await else {
        return;
    };
    if shared.storage_failing() {
        // The last commit failed on storage: "server unavailable" tells a client (the device
        // SDK) that the trouble is the server's, not a message it keeps sending.
        refuse(
            &mut io,
            counters,
            ConnectReturnCode::ServiceUnavailable,
            RejectReason::Storage,
        )
        .await;
        return;
    }
    let Some((device, (id, signal, outbox))) = admit(shared, &mut io, &connect, certificate).await
    else {
        return;
    };
    add(&counters.sessions_started, 1);
    let _session = Gauge::open(&counters.sessions_open);
    let persistent = !connect.clean_session;
    let resumed = open_session(shared, &device, persistent).await;
    if write_bytes(
        &mut io,
        &connack_session(ConnectReturnCode::Success, resumed.is_some()),
        shared.env.config.write_timeout,
    )
    .await
    .is_ok()
    {
        let keep_alive = match connect.keep_alive {
            0 => shared.env.config.default_keep_alive,
            s => Duration::from_secs(u64::from(s)),
        };
        let mut session = Session::new(
            shared.env.clone(),
            device.clone(),
            std::time::Instant::now(),
        );
        let want_fetch = resumed.as_ref().is_some_and(|s| !s.is_empty());
        if let Some(subscriptions) = resumed {
            session.resume(subscriptions, shared.unpark(&device));
        }
        let mut conn = Conn {
            shared,
            io,
            rbuf,
            session,
            inflight: None,
            closing: None,
            commit_failed: false,
            signal,
            idle_limit: keep_alive.mul_f64(1.5),
            last_seen: Instant::now(),
            outbox,
            persistent,
            save: None,
            want_fetch,
            fetch: None,
            to_mark: Vec::new(),
            marking: HashSet::new(),
        };
        conn.run().await;
        conn.mark_remaining();
        if persistent {
            shared.park(&device, conn.session.take_outstanding());
        }
    }
    shared.unregister(&device, id);
}

/// Opens the device plane's side of a session: for a persistent session (clean session = 0),
/// the stored subscriptions (`Some`, possibly empty, when a session was stored: CONNACK's
/// session-present flag); a clean session forgets any stored one.
async fn open_session(shared: &Shared, device: &str, persistent: bool) -> Option<Vec<String>> {
    let channel = shared.env.config.channel.clone()?;
    let device = device.to_owned();
    tokio::task::spawn_blocking(move || {
        channel.session_opened(&device);
        let stored = channel.load_session(&device);
        if !persistent && stored.is_some() {
            channel.save_session(&device, None);
        }
        stored.filter(|_| persistent)
    })
    .await
    .ok()
    .flatten()
}

/// Reads the CONNECT; answers and returns `None` when the connection cannot go on.
async fn handshake<S>(
    shared: &Shared,
    io: &mut S,
    rbuf: &mut BytesMut,
    over_limit: bool,
) -> Option<Connect>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = shared.env.config.max_packet_bytes;
    let opening = timeout(shared.env.config.connect_timeout, async {
        loop {
            if let Some(o) = read_opening(rbuf, max) {
                return Some(o);
            }
            if rbuf.capacity() - rbuf.len() < 1024 {
                rbuf.reserve(READ_BUFFER);
            }
            match io.read_buf(rbuf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => add(&shared.env.counters.bytes_received, n as u64),
            }
        }
    })
    .await;
    let c = &shared.env.counters;
    match opening {
        Err(_) => {
            c.reject(RejectReason::ConnectTimeout);
            None
        }
        Ok(None) => None,
        Ok(Some(Opening::Invalid(reason, message))) => {
            tracing::debug!(%reason, %message, "mqtt connection refused");
            c.reject(reason);
            None
        }
        Ok(Some(Opening::UnsupportedVersion(level))) => {
            tracing::debug!(level, "mqtt protocol level refused");
            refuse(
                io,
                c,
                ConnectReturnCode::RefusedProtocolVersion,
                RejectReason::ProtocolVersion,
            )
            .await;
            None
        }
        Ok(Some(Opening::Connect(_))) if over_limit => {
            refuse(
                io,
                c,
                ConnectReturnCode::ServiceUnavailable,
                RejectReason::ConnectionLimit,
            )
            .await;
            None
        }
        Ok(Some(Opening::Connect(connect))) => Some(connect),
    }
}

/// How often a CONNECT is authenticated again when its device was revoked meanwhile (the
/// registry's revocations arrive asynchronously, so a revocation committed before the
/// authentication may be recorded after it).
const AUTH_ATTEMPTS: usize = 3;

/// Authenticates a CONNECT and registers its session; answers and returns `None` on failure.
/// A device revoked after the authentication began is authenticated again against the
/// registry's current state, which decides.
async fn admit<S>(
    shared: &Arc<Shared>,
    io: &mut S,
    connect: &Connect,
    certificate: Option<ClientCertificate>,
) -> Option<(String, Registered)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut since = Shared::accepted_revocation_seq();
    for _ in 0..AUTH_ATTEMPTS {
        let epoch = shared.auth.epoch();
        let device = authenticate(shared, io, connect, certificate.clone()).await?;
        match shared.register(&device, since, epoch) {
            Ok(registered) => return Some((device, registered)),
            Err(Refused::Revoked) => since = since.map(|_| shared.revocation_seq()),
            Err(Refused::Shutdown) => break,
        }
    }
    refuse(
        io,
        &shared.env.counters,
        ConnectReturnCode::ServiceUnavailable,
        RejectReason::ConnectionLimit,
    )
    .await;
    None
}

/// Authenticates a CONNECT (with the client certificate when the connection has one); answers
/// and returns `None` on failure.
async fn authenticate<S>(
    shared: &Arc<Shared>,
    io: &mut S,
    connect: &Connect,
    certificate: Option<ClientCertificate>,
) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let c = &shared.env.counters;
    if connect.client_id.is_empty() {
        refuse(
            io,
            c,
            ConnectReturnCode::BadClientId,
            RejectReason::BadClientId,
        )
        .await;
        return None;
    }
    let auth = shared.auth.clone();
    let client_id = connect.client_id.clone();
    let login = connect.login.clone();
    let result = tokio::task::spawn_blocking(move || {
        let (user, pass) = match &login {
            Some(l) => (
                Some(l.username.as_str()).filter(|s| !s.is_empty()),
                Some(l.password.as_str()).filter(|s| !s.is_empty()),
            ),
            None => (None, None),
        };
        match &certificate {
            Some(cert) => auth.authenticate_certificate(&client_id, cert, user, pass),
            None => auth.authenticate(&client_id, user, pass),
        }
    })
    .await
    .unwrap_or(Err(AuthFailure::Unavailable));
    let failure = match result {
        Ok(device) if device == connect.client_id => return Some(device),
        Ok(_) => AuthFailure::BadClientId,
        Err(f) => f,
    };
    let reason = match failure {
        AuthFailure::BadCredentials => RejectReason::BadCredentials,
        AuthFailure::NotAuthorized => RejectReason::NotAuthorized,
        AuthFailure::BadClientId => RejectReason::BadClientId,
        AuthFailure::Unavailable => RejectReason::AuthUnavailable,
    };
    tracing::info!(client_id = %connect.client_id, %reason, "mqtt connect refused");
    refuse(io, c, failure.return_code(), reason).await;
    None
}

/// Sends a refusing CONNACK (best effort) and counts the reason.
async fn refuse<S>(io: &mut S, counters: &Counters, code: ConnectReturnCode, reason: RejectReason)
where
    S: AsyncWrite + Unpin,
{
    counters.reject(reason);
    let _ = write_bytes(io, &connack(code), Duration::from_secs(5)).await;
    let _ = io.shutdown().await;
}

async fn write_bytes<S>(io: &mut S, bytes: &[u8], limit: Duration) -> Result<(), ()>
where
    S: AsyncWrite + Unpin,
{
    match timeout(limit, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// A commit in flight: its outcome, the PUBACKs it owes, and the bytes it holds.
type Inflight = (
    oneshot::Receiver<CommitOutcome>,
    Vec<Option<u16>>,
    PendingCharge,
);

/// The running session loop.
struct Conn<'a, S> {
    shared: &'a Shared,
    io: S,
    rbuf: BytesMut,
    session: Session,
    inflight: Option<Inflight>,
    closing: Option<Close>,
    /// A commit failed: nothing more is committed on this connection, so no message after the
    /// failed one is stored or acknowledged (PUBACKs stay in order).
    commit_failed: bool,
    signal: watch::Receiver<Signal>,
    idle_limit: Duration,
    last_seen: Instant,
    /// Woken when messages wait for the device ([`Shared::notify`]).
    outbox: Arc<Notify>,
    /// Clean session = 0: subscriptions are stored, unacknowledged deliveries kept.
    persistent: bool,
    /// A persistent session's changed subscriptions, stored before the next write to the device
    /// (so a SUBACK it sees means the subscription survives a crash).
    save: Option<(String, Vec<String>)>,
    /// Fetch the messages waiting for the device as soon as no fetch is running.
    want_fetch: bool,
    /// The running outbox task: marks acknowledged deliveries, then (if asked) fetches what
    /// waits. Answers the keys it marked and the messages fetched.
    fetch: Option<oneshot::Receiver<Fetched>>,
    /// Keys acknowledged by the device, not yet handed to an outbox task.
    to_mark: Vec<String>,
    /// Keys acknowledged by the device whose marking has not completed: a fetch that read the
    /// store before the marking must not send them again.
    marking: HashSet<String>,
}

/// What an outbox task answers: the keys it marked delivered, and the messages it fetched (when
/// it was asked to fetch).
type Fetched = (Vec<String>, Option<Vec<Outgoing>>);

/// How a flush ended.
enum Flushed {
    /// Everything was written; `shutdown` when the server asked to shut down meanwhile.
    Done { shutdown: bool },
    /// A takeover or revocation arrived.
    Kicked(Signal),
    /// The write failed or timed out.
    Failed,
}

/// What woke the loop up.
enum Event {
    Signal(Signal),
    Committed(CommitOutcome),
    Read(std::io::Result<usize>),
    Idle,
    Resume,
    /// Something waits for the device.
    Notified,
    /// The outbox task finished.
    Outbox(Option<Fetched>),
}

impl<S> Conn<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self) {
        loop {
            let now = Instant::now();
            let blocked = self.blocked(now);
            if blocked || self.inflight.is_some() {
                // Time spent not reading, or making the client wait for a commit, is not the
                // client's silence.
                self.last_seen = now;
            }
            if self.closing.is_none() && !blocked && !self.rbuf.is_empty() {
                let (handled, close) = self.session.process(&mut self.rbuf, now.into_std());
                if handled > 0 {
                    self.last_seen = now;
                }
                self.close_with(close);
                if self.rbuf.is_empty() && self.rbuf.capacity() > 16 * READ_BUFFER {
                    // Give back the room a large packet needed.
                    self.rbuf = BytesMut::with_capacity(READ_BUFFER);
                }
            }
            self.after_packets();
            self.save_subscriptions().await;
            self.submit();
            self.start_outbox();
            if !self.flush().await {
                return;
            }
            if self.closing.is_some() && self.inflight.is_none() {
                self.finish();
                let _ = timeout(Duration::from_secs(1), self.io.shutdown()).await;
                return;
            }
            let event = self.next_event().await;
            if !self.on_event(event) {
                return;
            }
        }
    }

    /// True when reading is paused (rate limit, or too many messages waiting for a commit).
    fn blocked(&self, now: Instant) -> bool {
        self.session.throttled_until(now.into_std()).is_some() || self.session.pending_full()
    }

    fn close_with(&mut self, close: Option<Close>) {
        if self.closing.is_none() {
            self.closing = close;
        }
    }

    /// Picks up what the packets just handled changed for the device plane: deliveries the
    /// device acknowledged, and subscriptions (stored for a persistent session; a new
    /// subscription may match messages already waiting).
    fn after_packets(&mut self) {
        let delivered = self.session.take_delivered();
        self.marking.extend(delivered.iter().cloned());
        self.to_mark.extend(delivered);
        if !self.session.take_subs_changed() {
            return;
        }
        self.want_fetch = true;
        if self.persistent {
            let device = self.session.device().to_owned();
            self.save = Some((device, self.session.subscriptions().to_vec()));
        }
    }

    /// Stores the subscriptions [`Conn::after_packets`] noted (on the blocking pool, waited
    /// for): called before each flush, so the SUBACK follows the stored subscription.
    async fn save_subscriptions(&mut self) {
        let (Some((device, subscriptions)), Some(channel)) =
            (self.save.take(), self.shared.env.config.channel.clone())
        else {
            return;
        };
        let saved = tokio::task::spawn_blocking(move || {
            channel.save_session(&device, Some(&subscriptions));
        })
        .await;
        if let Err(e) = saved {
            tracing::error!(error = %e, "storing a persistent session's subscriptions failed");
        }
    }

    /// Starts the outbox task when acknowledged deliveries wait to be marked or a fetch is due.
    fn start_outbox(&mut self) {
        if self.fetch.is_some() {
            return;
        }
        let Some(channel) = self.shared.env.config.channel.clone() else {
            self.want_fetch = false;
            return;
        };
        let fetch = self.closing.is_none()
            && std::mem::take(&mut self.want_fetch)
            && !self.session.subscriptions().is_empty();
        if !fetch && self.to_mark.is_empty() {
            return;
        }
        let marks = std::mem::take(&mut self.to_mark);
        let device = self.session.device().to_owned();
        let subscriptions = self.session.subscriptions().to_vec();
        let (tx, rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            // Fetch first: a new message is sent without waiting for the previous ones' marks
            // (each a durable write). `outbox_done` drops the keys marked here from `due`.
            let due = if fetch {
                Some(channel.pending(&device, &subscriptions))
            } else {
                None
            };
            for key in &marks {
                channel.delivered(&device, key);
            }
            let _ = tx.send((marks, due));
        });
        self.fetch = Some(rx);
    }

    /// Marks the deliveries acknowledged just before the connection ended.
    fn mark_remaining(&mut self) {
        let mut marks = std::mem::take(&mut self.to_mark);
        marks.extend(self.session.take_delivered());
        if let (false, Some(channel)) = (marks.is_empty(), self.shared.env.config.channel.clone()) {
            let device = self.session.device().to_owned();
            tokio::task::spawn_blocking(move || {
                for key in &marks {
                    channel.delivered(&device, key);
                }
            });
        }
    }

    /// Sends what the outbox task fetched.
    fn outbox_done(&mut self, done: Option<Fetched>) {
        self.fetch = None;
        let Some((marked, due)) = done else {
            return;
        };
        for key in &marked {
            self.marking.remove(key);
        }
        let Some(due) = due else {
            self.after_packets();
            return;
        };
        self.session
            .forget_parked_except(|key| due.iter().any(|m| m.key == key));
        let now = crate::line_protocol::now_nanos();
        for msg in &due {
            // The fetch ran before this task's marks: what it marked may still read as due.
            if !self.marking.contains(&msg.key) && !marked.contains(&msg.key) {
                self.session.deliver(msg, now);
            }
        }
        self.after_packets();
    }

    /// Hands a control publish (received after every pending telemetry message was committed)
    /// to the device channel; its PUBACK leaves once the channel has stored it.
    fn submit_control(&mut self, control: Control) {
        let Some(channel) = self.shared.env.config.channel.clone() else {
            return;
        };
        let device = self.session.device().to_owned();
        let (reply, rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let outcome = match channel.inbound(&device, &control.topic, &control.payload) {
                Ok(()) => Ok(Vec::new()),
                Err(InboundError::Refused(message)) => {
                    tracing::warn!(device, topic = control.topic, %message, "mqtt control message refused");
                    Ok(Vec::new())
                }
                Err(InboundError::Unavailable(message)) => Err(CommitFailure {
                    index: 0,
                    reason: RejectReason::Storage,
                    message,
                }),
            };
            let _ = reply.send(outcome);
        });
        let charge = PendingCharge::new(self.shared.env.counters.clone());
        self.inflight = Some((rx, vec![control.ack], charge));
    }

    /// Hands waiting messages to the committer when no commit is in flight.
    fn submit(&mut self) {
        if self.inflight.is_some() || self.commit_failed {
            return;
        }
        let Some((batches, acks, charge)) = self.session.take_pending() else {
            if let Some(control) = self.session.take_control() {
                self.submit_control(control);
            }
            return;
        };
        let (reply, rx) = oneshot::channel();
        let job = CommitJob {
            batches,
            keep_going: false,
            reply,
        };
        if self.shared.committer.submit(job) {
            self.inflight = Some((rx, acks, charge));
        } else {
            self.closing = Some(Close::Reject(
                RejectReason::Storage,
                "the commit pipeline is stopped".into(),
            ));
        }
    }

    /// Writes queued output; false when the connection must be dropped. A takeover or
    /// revocation interrupts a stalled write at once; a shutdown lets it finish.
    async fn flush(&mut self) -> bool {
        if self.session.out.is_empty() {
            return true;
        }
        let limit = self.shared.env.config.write_timeout;
        let out = std::mem::take(&mut self.session.out);
        let outcome = {
            let Conn { io, signal, .. } = self;
            let write = write_bytes(io, &out, limit);
            tokio::pin!(write);
            let mut shutdown = false;
            loop {
                tokio::select! {
                    biased;
                    changed = signal.changed() => match changed.map(|()| *signal.borrow()) {
                        Ok(Signal::Run) => {}
                        Ok(Signal::Shutdown) => shutdown = true,
                        Ok(kick) => break Flushed::Kicked(kick),
                        Err(_) => break Flushed::Kicked(Signal::Revoked),
                    },
                    written = &mut write => break match written {
                        Ok(()) => Flushed::Done { shutdown },
                        Err(()) => Flushed::Failed,
                    },
                }
            }
        };
        self.session.out = out;
        self.session.out.clear();
        match outcome {
            Flushed::Done { shutdown } => {
                if shutdown {
                    self.close_with(Some(Close::Graceful));
                }
                true
            }
            Flushed::Kicked(signal) => {
                self.kicked(signal);
                false
            }
            Flushed::Failed => {
                self.count_close(RejectReason::WriteFailed);
                false
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        let now = Instant::now();
        let can_read = self.closing.is_none() && !self.blocked(now);
        let resume = self
            .session
            .throttled_until(now.into_std())
            .map(Instant::from_std);
        let idle_at = self.last_seen + self.idle_limit;
        tokio::select! {
            biased;
            changed = self.signal.changed() => match changed {
                Ok(()) => Event::Signal(*self.signal.borrow()),
                // The sender goes away only after a takeover or revocation was sent.
                Err(_) => Event::Signal(Signal::Revoked),
            },
            outcome = async {
                match &mut self.inflight {
                    Some((rx, _, _)) => rx.await,
                    None => std::future::pending().await,
                }
            } => Event::Committed(outcome.unwrap_or_else(|_| Err(CommitFailure {
                index: 0,
                reason: RejectReason::Storage,
                message: "the commit pipeline stopped".into(),
            }))),
            read = read_some(&mut self.io, &mut self.rbuf), if can_read => Event::Read(read),
            done = async {
                match &mut self.fetch {
                    Some(rx) => rx.await.ok(),
                    None => std::future::pending().await,
                }
            } => Event::Outbox(done),
            () = self.outbox.notified(), if self.closing.is_none() => Event::Notified,
            // While a commit is in flight the client may be waiting for our PUBACKs: its
            // silence is not idleness.
            () = sleep_until(idle_at), if can_read && self.inflight.is_none() => Event::Idle,
            () = sleep_until(resume.unwrap_or(now)), if resume.is_some() && self.closing.is_none() => Event::Resume,
        }
    }

    /// Applies an event; false when the connection must be dropped at once.
    fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Signal(Signal::Run) => true,
            Event::Signal(Signal::Shutdown) => {
                self.close_with(Some(Close::Graceful));
                true
            }
            Event::Signal(signal) => {
                self.kicked(signal);
                false
            }
            Event::Committed(outcome) => {
                self.committed(outcome);
                true
            }
            Event::Read(Ok(0)) | Event::Read(Err(_)) => {
                self.close_with(Some(Close::Graceful));
                true
            }
            Event::Read(Ok(n)) => {
                add(&self.shared.env.counters.bytes_received, n as u64);
                true
            }
            Event::Idle => {
                self.close_with(Some(Close::Reject(
                    RejectReason::KeepAliveTimeout,
                    "no packet within 1.5 × the keep-alive".into(),
                )));
                true
            }
            Event::Resume => true,
            Event::Notified => {
                self.want_fetch = true;
                true
            }
            Event::Outbox(done) => {
                self.outbox_done(done);
                true
            }
        }
    }

    fn committed(&mut self, outcome: CommitOutcome) {
        let Some((_, acks, _charge)) = self.inflight.take() else {
            return;
        };
        match outcome {
            Ok(_) => self.session.ack(&acks),
            Err(failure) => {
                let stored = acks.get(..failure.index).unwrap_or(&[]);
                self.session.ack(stored);
                self.commit_failed = true;
                if failure.reason == RejectReason::Storage {
                    self.shared.storage_failed();
                }
                tracing::warn!(
                    device = self.session.device(),
                    reason = %failure.reason,
                    error = %failure.message,
                    "mqtt message not stored; closing the connection"
                );
                // Replace a graceful close: the failure is what the metrics should show.
                if !matches!(self.closing, Some(Close::Reject(..))) {
                    self.closing = Some(Close::Reject(failure.reason, failure.message));
                }
            }
        }
    }

    fn kicked(&mut self, signal: Signal) {
        let reason = match signal {
            Signal::TakenOver => RejectReason::TakenOver,
            _ => RejectReason::Revoked,
        };
        tracing::info!(device = self.session.device(), %reason, "mqtt session closed by the server");
        self.count_close(reason);
    }

    fn count_close(&self, reason: RejectReason) {
        self.shared.env.counters.reject(reason);
    }

    /// Records why a draining connection ends.
    fn finish(&mut self) {
        if let Some(Close::Reject(reason, message)) = &self.closing {
            tracing::info!(
                device = self.session.device(),
                %reason,
                %message,
                "mqtt connection closed"
            );
            self.count_close(*reason);
        }
    }
}

/// Reads more bytes, making room first.
async fn read_some<S>(io: &mut S, buf: &mut BytesMut) -> std::io::Result<usize>
where
    S: AsyncRead + Unpin,
{
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUFFER);
    }
    io.read_buf(buf).await
}
