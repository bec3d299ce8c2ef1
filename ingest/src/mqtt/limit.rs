//! Per-listener connection caps, shared by the MQTT endpoint and the server's HTTP, HTTPS and
//! Flight listeners.
//!
//! A [`ConnectionLimit`] admits at most `max` connections. A connection starts *pending* (it has
//! not yet sent a complete request or an accepted CONNECT) and becomes *established* when the
//! protocol code calls [`Slot::establish`]. When the cap is reached, a new connection evicts the
//! oldest pending one (its [`LimitedIo`] fails its next read or write, which wakes it at once):
//! a client holding many idle, half-sent connections cannot keep a device or an operator out.
//! Only when every slot is established is the new connection refused (closed at once). Both
//! outcomes are counted ([`ConnectionLimit::refused`], [`ConnectionLimit::evicted`]).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One listener's cap. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    slots: Mutex<Slots>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

#[derive(Debug, Default)]
struct Slots {
    next: u64,
    open: BTreeMap<u64, Arc<SlotState>>,
    pending: BTreeSet<u64>,
}

/// State shared by a [`Slot`] and the limit: whether it was evicted, and who to wake then.
#[derive(Debug, Default)]
struct SlotState {
    evicted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl SlotState {
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    }

    fn register(&self, cx: &Context<'_>) {
        if let Ok(mut w) = self.waker.lock() {
            match w.as_ref() {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
    }

    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }
}

impl ConnectionLimit {
    /// A cap of `max` open connections (at least 1).
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            inner: Arc::new(Inner {
                max: max.max(1),
                slots: Mutex::new(Slots::default()),
                refused: AtomicU64::new(0),
                evicted: AtomicU64::new(0),
            }),
        }
    }

    /// Admits a new connection: a free slot, or the slot of the oldest pending connection
    /// (evicted); `None` (counted as refused) when every slot is established.
    pub fn admit(&self) -> Option<Slot> {
        let mut slots = self.inner.slots.lock().ok()?;
        if slots.open.len() >= self.inner.max {
            let oldest = slots.pending.pop_first();
            match oldest.and_then(|id| slots.open.remove(&id)) {
                Some(victim) => {
                    victim.evict();
                    self.inner.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.inner.refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let id = slots.next;
        slots.next += 1;
        let state = Arc::new(SlotState::default());
        slots.open.insert(id, state.clone());
        slots.pending.insert(id);
        Some(Slot(Establish {
            id,
            state,
            limit: self.inner.clone(),
        }))
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.slots.lock().map(|s| s.open.len()).unwrap_or(0)
    }

    /// New connections refused because every slot was established.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Pending connections closed to make room for a new one.
    pub fn evicted(&self) -> u64 {
        self.inner.evicted.load(Ordering::Relaxed)
    }
}

/// An admitted connection's place under the cap; freed when dropped.
#[derive(Debug)]
pub struct Slot(Establish);

/// A handle that marks a connection established (cheap to clone, frees nothing).
#[derive(Debug, Clone)]
pub struct Establish {
    id: u64,
    state: Arc<SlotState>,
    limit: Arc<Inner>,
}

impl Establish {
    /// Marks the connection established (a complete request, an accepted CONNECT): it can no
    /// longer be evicted.
    pub fn establish(&self) {
        if let Ok(mut slots) = self.limit.slots.lock() {
            slots.pending.remove(&self.id);
        }
    }
}

impl Slot {
    /// Marks the connection established; see [`Establish::establish`].
    pub fn establish(&self) {
        self.0.establish();
    }

    /// A handle to mark the connection established from elsewhere (e.g. a request layer).
    pub fn handle(&self) -> Establish {
        self.0.clone()
    }

    /// Whether the connection was evicted.
    pub fn is_evicted(&self) -> bool {
        self.0.state.is_evicted()
    }

    /// Resolves once the connection is evicted.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            self.0.state.register(cx);
            if self.is_evicted() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let me = &self.0;
        if let Ok(mut slots) = me.limit.slots.lock()
            && slots
                .open
                .get(&me.id)
                .is_some_and(|s| Arc::ptr_eq(s, &me.state))
        {
            slots.open.remove(&me.id);
            slots.pending.remove(&me.id);
        }
    }
}

/// A connection holding a [`Slot`]: frees it when dropped; after eviction every read and write
/// fails with `ConnectionAborted`.
#[derive(Debug)]
pub struct LimitedIo<T> {
    inner: T,
    slot: Slot,
}

impl<T> LimitedIo<T> {
    /// `inner` under `slot`.
    pub fn new(inner: T, slot: Slot) -> Self {
        LimitedIo { inner, slot }
    }

    /// The slot (to [`Slot::establish`] it).
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The connection and its slot, apart (e.g. to run a TLS handshake on the bare stream).
    pub fn into_parts(self) -> (T, Slot) {
        (self.inner, self.slot)
    }

    fn check(&self, cx: &Context<'_>) -> std::io::Result<()> {
        self.slot.0.state.register(cx);
        if self.slot.is_evicted() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "connection closed to make room under the connection limit",
            ));
        }
        Ok(())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LimitedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LimitedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_limit_evicts_the_oldest_pending_then_refuses() {
        let limit = ConnectionLimit::new(2);
        let a = limit.admit().unwrap();
        let b = limit.admit().unwrap();
        b.establish();
        let c = limit.admit().unwrap();
        assert!(a.is_evicted() && !b.is_evicted() && !c.is_evicted());
        assert_eq!((limit.open(), limit.evicted(), limit.refused()), (2, 1, 0));
        c.establish();
        assert!(limit.admit().is_none());
        assert_eq!(limit.refused(), 1);
        // An evicted slot's release does not free the slot now held by another connection.
        drop(a);
        assert_eq!(limit.open(), 2);
        drop(c);
        assert_eq!(limit.open(), 1);
        assert!(limit.admit().is_some());
    }
}
