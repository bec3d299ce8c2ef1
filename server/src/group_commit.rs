//! Group commit for the device plane's durable writes. A [`Batcher`] owns one thread that takes
//! every request waiting at that moment (up to a maximum) and runs them as one batch — one
//! registry transaction, one fsync — then answers each. A request is answered only after the
//! transaction holding it committed, so durability is as with one transaction per request; under
//! load the fsync and the transaction are shared by the whole batch. Used for
//! `POST /api/v1/provision/{enrollment}` ([`Registry::provision_many`], at most
//! [`MAX_PROVISION_BATCH`]) and for marking MQTT command deliveries
//! ([`Registry::mark_commands_delivered`], at most [`MAX_MARK_BATCH`]) and storing persistent MQTT
//! sessions' subscriptions ([`Registry::set_mqtt_sessions`], same maximum).

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use strata_registry::{Command, ProvisionRequest, Provisioned, Registry, RegistryError};
use tokio::sync::oneshot;

/// Most provisioning requests in one transaction.
pub const MAX_PROVISION_BATCH: usize = 1024;

/// Most delivery marks in one transaction.
pub const MAX_MARK_BATCH: usize = 4096;

type Job<Q, A> = (Q, oneshot::Sender<A>);

/// The handle of a batching thread: requests `Q`, answers `A`.
#[derive(Debug)]
pub struct Batcher<Q, A> {
    jobs: Sender<Job<Q, A>>,
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts thread `name` running batches of at most `max` requests through `run` (which
    /// returns one answer per request, in order). The thread ends with the handle.
    pub fn start(
        name: &str,
        max: usize,
        run: impl Fn(Vec<Q>) -> Vec<A> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, rx) = channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(&rx, max, run))?;
        Ok(Batcher { jobs })
    }

    /// Queues `q` for the next batch; its answer (`None` if the thread is gone).
    pub fn submit(&self, q: Q) -> Option<oneshot::Receiver<A>> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((q, reply)).ok()?;
        Some(answer)
    }

    /// Runs `q` in the next batch and waits for its answer.
    pub async fn call(&self, q: Q) -> Option<A> {
        self.submit(q)?.await.ok()
    }

    /// Like [`Batcher::call`] from a blocking thread (not from async code).
    pub fn call_blocking(&self, q: Q) -> Option<A> {
        self.submit(q)?.blocking_recv().ok()
    }
}

fn serve<Q, A>(rx: &Receiver<Job<Q, A>>, max: usize, run: impl Fn(Vec<Q>) -> Vec<A>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max.max(1) {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        for (reply, answer) in replies.into_iter().zip(run(reqs)) {
            let _ = reply.send(answer);
        }
    }
}

/// Provisioning in batches ([`Registry::provision_many`]).
pub type Provisioner = Batcher<ProvisionRequest, Result<Provisioned, RegistryError>>;

/// Starts the provisioning thread over `registry`.
pub fn provisioner(registry: Arc<Registry>) -> std::io::Result<Provisioner> {
    Batcher::start("strata-provision", MAX_PROVISION_BATCH, move |reqs| {
        registry.provision_many(&reqs)
    })
}

/// Delivery marks in batches ([`Registry::mark_commands_delivered`]): `(device, command id)`.
pub type Marker = Batcher<(String, String), Result<Command, RegistryError>>;

/// Starts the delivery-marking thread over `registry`.
pub fn marker(registry: Arc<Registry>) -> std::io::Result<Marker> {
    Batcher::start("strata-marks", MAX_MARK_BATCH, move |marks| {
        registry.mark_commands_delivered(&marks)
    })
}

/// Persistent-session saves in batches ([`Registry::set_mqtt_sessions`]): `(device,
/// subscriptions or None to forget)`.
pub type SessionSaver = Batcher<(String, Option<Vec<String>>), Result<(), RegistryError>>;

/// Starts the session-saving thread over `registry`.
pub fn session_saver(registry: Arc<Registry>) -> std::io::Result<SessionSaver> {
    Batcher::start("strata-sessions", MAX_MARK_BATCH, move |sessions| {
        registry.set_mqtt_sessions(&sessions)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_registry::{NewEnrollment, ProvisionCredential, derive_device_key};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(Registry::open(dir.path().join("r.redb")).unwrap());
        let new: NewEnrollment = serde_json::from_str(r#"{"id": "g"}"#).unwrap();
        let gk = reg.create_enrollment("t", new).unwrap().group_key.unwrap();
        let p = Arc::new(provisioner(reg.clone()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (p, id) = (p.clone(), format!("d{}", i % 150));
                let key = derive_device_key(&gk, &id);
                tokio::spawn(async move {
                    p.call(ProvisionRequest {
                        enrollment: "g".into(),
                        device_id: id,
                        credential: ProvisionCredential::Key(key),
                    })
                    .await
                })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            created += usize::from(t.await.unwrap().unwrap().unwrap().created);
        }
        assert_eq!(created, 150);
        assert_eq!(reg.enrollment("g").unwrap().provisioned, 150);
    }

    #[test]
    fn blocking_callers_get_their_own_answers() {
        let b = Arc::new(
            Batcher::start("t", 8, |xs: Vec<u32>| xs.iter().map(|x| x * 2).collect()).unwrap(),
        );
        let handles: Vec<_> = (0..50u32)
            .map(|i| {
                let b = b.clone();
                std::thread::spawn(move || b.call_blocking(i))
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), Some(i as u32 * 2));
        }
    }
}
