//! Test builds only: an error-injecting object store, the object-store counterpart of `faults.rs`.
//! `ColdTier::open` wraps every store it opens in a [`FaultStore`], which records each call
//! (kind and key) in a per-URL trace and fails the calls a test armed with [`inject`]: the `nth`
//! call of one kind (object put, cold-manifest put, get, head, delete, list), counted from when
//! the fault was armed, fails once, either *before* it reaches the store (nothing changed) or
//! *after* it did (the store changed but the caller sees an error: a lost response, a timeout
//! after the write landed, a client retry that meets its own write). Faults and traces are keyed
//! by the store URL, so tests running in parallel do not see each other's. A test can also hold
//! object puts ([`hold_puts`]): they wait before reaching the store until [`release_puts`], so a
//! move can be caught in the middle (see `engine/cold_tests.rs`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A kind of object-store call a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Call {
    /// A put of anything but a cold manifest (Parquet objects).
    Put,
    /// A put of a cold manifest version (`_strata/manifest/…`).
    ManifestPut,
    /// A get (whole object or a range).
    Get,
    /// A head (size and metadata).
    Head,
    /// A delete.
    Delete,
    /// A list.
    List,
}

/// Whether an injected failure happens before the call reaches the store or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// The store is not touched.
    Before,
    /// The store carries the call out; the caller still gets an error.
    After,
}

/// One armed fault: the `nth` (0-based) matching call from now on fails.
#[derive(Debug)]
struct Armed {
    url: String,
    call: Call,
    nth: usize,
    when: When,
}

#[derive(Default)]
struct Table {
    armed: Vec<Armed>,
    fired: HashMap<String, usize>,
    traces: HashMap<String, Vec<(Call, String)>>,
    /// URLs whose object puts wait, with how many puts are waiting now.
    held: HashMap<String, usize>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<Table>> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn with<T>(f: impl FnOnce(&mut Table) -> T) -> T {
    f(table().get_or_insert_with(Table::default))
}

/// Arms a one-shot fault on the store opened with `url`.
pub(crate) fn inject(url: &str, call: Call, nth: usize, when: When) {
    with(|t| {
        t.armed.push(Armed {
            url: url.to_string(),
            call,
            nth,
            when,
        })
    });
}

/// Removes every fault armed on `url` and returns how many fired since the last `clear`.
pub(crate) fn clear(url: &str) -> usize {
    with(|t| {
        t.armed.retain(|a| a.url != url);
        t.fired.remove(url).unwrap_or(0)
    })
}

/// The calls made to the store of `url` since the last `take_trace`, in order.
pub(crate) fn take_trace(url: &str) -> Vec<(Call, String)> {
    with(|t| t.traces.remove(url).unwrap_or_default())
}

/// From now on, object puts (not manifest puts) to the store of `url` wait until
/// [`release_puts`].
pub(crate) fn hold_puts(url: &str) {
    with(|t| t.held.insert(url.to_string(), 0));
}

/// Lets held puts to the store of `url` go on.
pub(crate) fn release_puts(url: &str) {
    with(|t| t.held.remove(url));
}

/// How many object puts to the store of `url` are waiting now.
pub(crate) fn puts_waiting(url: &str) -> usize {
    with(|t| t.held.get(url).copied().unwrap_or(0))
}

/// Waits while puts to `url` are held.
async fn wait_while_held(url: &str) {
    let mut counted = false;
    loop {
        let held = with(|t| match t.held.get_mut(url) {
            Some(n) => {
                *n += usize::from(!counted);
                true
            }
            None => false,
        });
        if !held {
            return;
        }
        counted = true;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Records a call and decides its fate.
fn check(url: &str, call: Call, key: &Path) -> Option<When> {
    with(|t| {
        t.traces
            .entry(url.to_string())
            .or_default()
            .push((call, key.to_string()));
        let mut fate = None;
        for a in t
            .armed
            .iter_mut()
            .filter(|a| a.url == url && a.call == call)
        {
            if a.nth == 0 && fate.is_none() {
                fate = Some(a.when);
            }
            a.nth = a.nth.wrapping_sub(1);
        }
        t.armed.retain(|a| a.nth != usize::MAX);
        if fate.is_some() {
            *t.fired.entry(url.to_string()).or_default() += 1;
        }
        fate
    })
}

fn injected(call: Call, key: &Path, when: When) -> object_store::Error {
    object_store::Error::Generic {
        store: "fault-injection",
        source: format!("injected {call:?} failure {when:?} the call on {key}").into(),
    }
}

/// Wraps `inner`, the store opened for `url`, in the fault layer.
pub(crate) fn wrap(url: &str, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(FaultStore {
        url: url.to_string(),
        inner,
    })
}

/// An [`ObjectStore`] that passes every call to `inner` unless a fault is armed for it.
#[derive(Debug)]
pub(crate) struct FaultStore {
    url: String,
    inner: Arc<dyn ObjectStore>,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

/// Runs `op` under the fault armed for (`call`, `key`), if any.
async fn guarded<T>(
    url: &str,
    call: Call,
    key: &Path,
    op: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match check(url, call, key) {
        None => op.await,
        Some(When::Before) => Err(injected(call, key, When::Before)),
        Some(When::After) => {
            op.await?;
            Err(injected(call, key, When::After))
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let call = if location.as_ref().contains("_strata/manifest/") {
            Call::ManifestPut
        } else {
            Call::Put
        };
        if call == Call::Put {
            wait_while_held(&self.url).await;
        }
        let put = self.inner.put_opts(location, payload, opts);
        guarded(&self.url, call, location, put).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let call = if options.head { Call::Head } else { Call::Get };
        let get = self.inner.get_opts(location, options);
        guarded(&self.url, call, location, get).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (url, inner) = (self.url.clone(), self.inner.clone());
        locations
            .then(move |loc| {
                let (url, inner) = (url.clone(), inner.clone());
                async move {
                    let loc = loc?;
                    let delete = inner.delete(&loc);
                    guarded(&url, Call::Delete, &loc, delete).await?;
                    Ok(loc)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.cloned().unwrap_or_default();
        match check(&self.url, Call::List, &key) {
            Some(when) => {
                futures::stream::once(async move { Err(injected(Call::List, &key, when)) }).boxed()
            }
            None => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
