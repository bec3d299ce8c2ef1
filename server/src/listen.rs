//! Connection limits and timeouts of the HTTP, HTTPS and Flight listeners (issue 14, defect 1).
//!
//! HTTP and HTTPS are served by `axum-server` (hyper) with a header-read timeout (which in hyper
//! also bounds how long a keep-alive connection may sit idle waiting for its next request), a
//! body-read timeout (longest pause between two chunks of a request body) and a per-listener
//! [`ConnectionLimit`]: at the cap, the oldest connection that has not yet sent a complete request
//! is closed to make room, and only when every connection is busy is the new one refused. Flight
//! SQL gets the same cap, its connections counting as established from their first call with
//! valid credentials.
//! Refusals and evictions are counted in `/metrics` (`strata_connections_refused_total`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum_server::Handle;
use axum_server::accept::{Accept, DefaultAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use futures::StreamExt;
use strata_ingest::mqtt::{ConnectionLimit, Establish, LimitedIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::metrics::{ConnCounters, CountedIo};

/// Timeouts of one HTTP(S) listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpTimeouts {
    /// Longest wait for a complete request header (also the keep-alive idle limit).
    pub header: Duration,
    /// Longest pause between two chunks of a request body.
    pub body: Duration,
}

/// Admits a connection under a [`ConnectionLimit`] (or refuses it), counts it, and marks it
/// established when its first request arrives; then hands it to `inner` (e.g. TLS).
#[derive(Debug, Clone)]
pub struct LimitedAcceptor<A> {
    inner: A,
    limit: ConnectionLimit,
    counters: Option<&'static ConnCounters>,
}

impl<A> LimitedAcceptor<A> {
    /// `inner` behind `limit`; connections counted in `counters` when given.
    pub fn new(inner: A, limit: ConnectionLimit, counters: Option<&'static ConnCounters>) -> Self {
        LimitedAcceptor {
            inner,
            limit,
            counters,
        }
    }
}

/// The stream a [`LimitedAcceptor`] hands on.
pub type LimitedStream = LimitedIo<CountedIo<TcpStream>>;

type BoxedAccept<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<A, S> Accept<TcpStream, S> for LimitedAcceptor<A>
where
    A: Accept<LimitedStream, EstablishService<S>>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = BoxedAccept<(A::Stream, A::Service)>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Some(slot) = self.limit.admit() else {
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection refused: listener at its connection limit",
            ))));
        };
        let _ = stream.set_nodelay(true);
        let establish = slot.handle();
        let io = LimitedIo::new(crate::metrics::count(stream, self.counters), slot);
        Box::pin(self.inner.accept(
            io,
            EstablishService {
                inner: service,
                establish,
            },
        ))
    }
}

/// A connection's service that marks the connection established on its first request.
#[derive(Debug, Clone)]
pub struct EstablishService<S> {
    inner: S,
    establish: Establish,
}

impl<S, B> tower_service::Service<Request<B>> for EstablishService<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.establish.establish();
        self.inner.call(req)
    }
}

/// A running HTTP or HTTPS listener.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<io::Result<()>>,
    what: &'static str,
}

/// Serves `$app` on `$listener` through `$acceptor` with the timeouts; evaluates to the handle
/// and the task (a macro because the acceptor types differ and their bounds name hyper types).
macro_rules! serve_http {
    ($listener:expr, $acceptor:expr, $app:expr, $timeouts:expr) => {{
        let timeouts: HttpTimeouts = $timeouts;
        let handle = Handle::new();
        let app = $app.layer(axum::middleware::from_fn(move |req, next| {
            body_timeout(timeouts.body, req, next)
        }));
        let mut server = axum_server::from_tcp($listener)?
            .acceptor($acceptor)
            .handle(handle.clone())
            .http1_only();
        server
            .http_builder()
            .http1()
            .header_read_timeout(timeouts.header);
        (handle, tokio::spawn(server.serve(app.into_make_service())))
    }};
}

impl HttpServer {
    /// Serves `app` over plain HTTP on `listener` under `limit` in the background.
    pub fn start_plain(
        listener: std::net::TcpListener,
        limit: ConnectionLimit,
        app: Router,
        timeouts: HttpTimeouts,
    ) -> io::Result<HttpServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let acceptor = LimitedAcceptor::new(
            DefaultAcceptor::new(),
            limit,
            Some(&crate::metrics::HTTP_CONNECTIONS),
        );
        let (handle, task) = serve_http!(listener, acceptor, app, timeouts);
        Ok(HttpServer {
            addr,
            handle,
            task,
            what: "http",
        })
    }

    /// Serves `app` over TLS with `config` on `listener` under `limit` in the background (the
    /// TLS handshake is bounded by `handshake`).
    pub fn start_tls(
        listener: std::net::TcpListener,
        limit: ConnectionLimit,
        app: Router,
        timeouts: HttpTimeouts,
        config: Arc<rustls::ServerConfig>,
        handshake: Duration,
    ) -> io::Result<HttpServer> {
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = RustlsAcceptor::new(RustlsConfig::from_config(config))
            .handshake_timeout(handshake)
            .acceptor(DefaultAcceptor::new());
        let acceptor = LimitedAcceptor::new(tls, limit, None);
        let (handle, task) = serve_http!(listener, acceptor, app, timeouts);
        Ok(HttpServer {
            addr,
            handle,
            task,
            what: "https",
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and lets in-flight requests finish for at most `drain`.
    pub fn begin_shutdown(&self, drain: Duration) {
        self.handle.graceful_shutdown(Some(drain));
    }

    /// Waits for the listener to stop (at most `limit`), aborting it after that.
    pub async fn finish(mut self, limit: Duration) {
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, listener = self.what, "listener failed"),
            Ok(Err(e)) => tracing::error!(error = %e, listener = self.what, "listener task failed"),
            Err(_) => {
                tracing::warn!(
                    listener = self.what,
                    "requests did not finish in time; closing them"
                );
                self.task.abort();
            }
        }
    }
}

/// Route layer: a request body that pauses longer than `limit` before or between two chunks
/// fails (the handler answers with its body-read error and the connection closes).
async fn body_timeout(limit: Duration, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let timed = futures::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(limit, stream.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "request body stalled for more than {} ms (--body-timeout)",
                        limit.as_millis()
                    ),
                )),
                None,
            )),
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(timed)))
        .await
}

/// A Flight SQL connection under its listener's [`ConnectionLimit`]: pending (evicted first when
/// the cap is reached) until a call with valid credentials, which the Flight service marks
/// through the connection's [`Establish`] handle (tonic puts this connect info in each
/// request's extensions). Bytes alone (a half-sent HTTP/2 preface) or calls without a valid
/// token do not hold a place.
#[derive(Debug)]
pub struct FlightConn {
    io: LimitedIo<TcpStream>,
}

impl tonic::transport::server::Connected for FlightConn {
    type ConnectInfo = Establish;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.slot().handle()
    }
}

impl AsyncRead for FlightConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlightConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connections of `listener` admitted under `limit` (refused ones are closed at once),
/// for tonic's `serve_with_incoming`.
pub fn flight_incoming(
    listener: TcpListener,
    limit: ConnectionLimit,
) -> impl futures::Stream<Item = io::Result<FlightConn>> + Send + 'static {
    let listener = Arc::new(listener);
    futures::stream::unfold((listener, limit), |(listener, limit)| async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "Flight SQL accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(slot) = limit.admit() else {
                tracing::debug!(%peer, "Flight SQL connection refused: connection limit");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let conn = FlightConn {
                io: LimitedIo::new(tcp, slot),
            };
            return Some((Ok(conn), (listener, limit)));
        }
    })
}
