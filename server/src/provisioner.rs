//! Group commit for provisioning: `POST /api/v1/provision/{enrollment}` hands its request to
//! one background thread, which takes every request waiting at that moment (at most
//! [`MAX_BATCH`]) and provisions them with [`Registry::provision_many`] — all new devices in
//! one registry transaction, one fsync — then answers each. A request is answered only after
//! the transaction holding its device committed, so durability is as with one transaction per
//! device; under load the fsync (and the transaction) is shared by the whole batch.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use strata_registry::{ProvisionRequest, Provisioned, Registry, RegistryError};
use tokio::sync::oneshot;

/// Most requests provisioned in one transaction.
pub const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<Provisioned, RegistryError>>;

/// The handle of the provisioning thread.
#[derive(Debug)]
pub struct Provisioner {
    jobs: Sender<(ProvisionRequest, Reply)>,
}

impl Provisioner {
    /// Starts the thread over `registry` (it ends when the handle is dropped).
    pub fn start(registry: Arc<Registry>) -> std::io::Result<Self> {
        let (jobs, rx) = channel();
        std::thread::Builder::new()
            .name("strata-provision".into())
            .spawn(move || run(&registry, &rx))?;
        Ok(Provisioner { jobs })
    }

    /// Provisions `req` in the next batch and waits for its durable outcome.
    pub async fn provision(&self, req: ProvisionRequest) -> Result<Provisioned, RegistryError> {
        let (reply, answer) = oneshot::channel();
        let gone = || RegistryError::Storage("the provisioning thread stopped".into());
        self.jobs.send((req, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn run(registry: &Registry, rx: &Receiver<(ProvisionRequest, Reply)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (reqs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let results = registry.provision_many(&reqs);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
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
        let p = Arc::new(Provisioner::start(reg.clone()).unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let (p, id) = (p.clone(), format!("d{}", i % 150));
                let key = derive_device_key(&gk, &id);
                tokio::spawn(async move {
                    p.provision(ProvisionRequest {
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
            created += usize::from(t.await.unwrap().unwrap().created);
        }
        assert_eq!(created, 150);
        assert_eq!(reg.enrollment("g").unwrap().provisioned, 150);
    }
}
