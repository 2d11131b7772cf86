//! Who handles a partition: a lease per partition in a JetStream key-value bucket, so that one
//! worker at a time fetches a partition's frames and each meter's frames are stored in order.
//!
//! A lease is the key `partition.<consumer>` whose value is the worker's id; it lives as long
//! as the bucket's maximum age (the ack wait and a margin) after its last renewal, so a worker
//! that dies loses its leases by itself, and only after its unacknowledged frames are due for
//! redelivery (JetStream gives those first to the next holder, in order). Workers announce
//! themselves under `worker.<id>` the same way; each takes at most its fair share of the
//! partitions (their number divided by the workers alive, rounded up) and gives back what it
//! holds beyond it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::ingest::IngestError;

/// The leases of one group of workers.
pub(crate) struct Leases {
    kv: kv::Store,
    id: String,
    /// How long a lease lives after its last renewal.
    pub(crate) ttl: Duration,
    /// Partitions (consumers) to share.
    total: usize,
    /// Workers alive, as last counted (at least this one).
    workers: AtomicUsize,
    /// Leases this worker holds.
    held: AtomicUsize,
}

fn nats(e: impl std::fmt::Display) -> IngestError {
    IngestError::Nats(e.to_string())
}

impl Leases {
    /// Opens (or creates) the bucket `bucket` with leases living `ttl`; an existing bucket
    /// keeps its own.
    pub(crate) async fn open(
        js: &jetstream::Context,
        bucket: &str,
        ttl: Duration,
        replicas: usize,
        total: usize,
    ) -> Result<Leases, IngestError> {
        // The bucket's stream, made as a key-value bucket's (history 1, a maximum age) by
        // hand: NATS 2.9's answer to the client's own creation request does not parse.
        let stream = jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("smarty: which fleet worker handles which partition".into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            duplicate_window: ttl.min(Duration::from_secs(120)),
            allow_direct: true,
            allow_rollup: true,
            deny_delete: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        if js.get_stream(&stream.name).await.is_err()
            && let Err(e) = js.create_stream(stream).await
        {
            tracing::debug!("fleet: the lease bucket {bucket}: {e} (made by another worker?)");
        }
        let kv = js
            .get_key_value(bucket)
            .await
            .map_err(|e| IngestError::Nats(format!("the lease bucket {bucket}: {e}")))?;
        let ttl = match kv.status().await {
            Ok(status) if !status.max_age().is_zero() => status.max_age(),
            _ => ttl,
        };
        let id = format!("{:016x}", rand::random::<u64>());
        Ok(Leases {
            kv,
            id,
            ttl,
            total,
            workers: AtomicUsize::new(1),
            held: AtomicUsize::new(0),
        })
    }

    /// This worker's id (random, per run).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Announces this worker and counts those alive.
    pub(crate) async fn heartbeat(&self) -> Result<usize, IngestError> {
        self.kv
            .put(format!("worker.{}", self.id), Bytes::new())
            .await
            .map_err(nats)?;
        let mut keys = self.kv.keys().await.map_err(nats)?;
        let mut workers = 0;
        while let Some(key) = keys.next().await {
            if key.map_err(nats)?.starts_with("worker.") {
                workers += 1;
            }
        }
        let workers = workers.max(1);
        self.workers.store(workers, Ordering::Relaxed);
        Ok(workers)
    }

    /// How many partitions this worker may hold.
    pub(crate) fn fair_share(&self) -> usize {
        self.total
            .div_ceil(self.workers.load(Ordering::Relaxed).max(1))
            .max(1)
    }

    /// Leases held.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether this worker holds more than its share.
    pub(crate) fn over_share(&self) -> bool {
        self.held() > self.fair_share()
    }

    /// Takes the lease of `partition` if it is free and this worker is under its share:
    /// its revision.
    pub(crate) async fn try_take(&self, partition: &str) -> Option<u64> {
        if self.held() >= self.fair_share() {
            return None;
        }
        let revision = self
            .kv
            .create(lease_key(partition), Bytes::from(self.id.clone()))
            .await
            .ok()?;
        self.held.fetch_add(1, Ordering::Relaxed);
        Some(revision)
    }

    /// Renews the lease of `partition` held at `revision`: the new revision, or `None` when
    /// it was lost (another worker holds it now).
    pub(crate) async fn renew(&self, partition: &str, revision: u64) -> Option<u64> {
        match self
            .kv
            .update(lease_key(partition), Bytes::from(self.id.clone()), revision)
            .await
        {
            Ok(revision) => Some(revision),
            Err(e) => {
                tracing::warn!("fleet: the lease of {partition} is lost: {e}");
                self.held.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Gives the lease of `partition` back.
    pub(crate) async fn release(&self, partition: &str, revision: u64) {
        self.held.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = self
            .kv
            .delete_expect_revision(lease_key(partition), Some(revision))
            .await
        {
            tracing::debug!("fleet: giving back the lease of {partition}: {e}");
        }
    }

    /// Forgets this worker (on a clean stop), so that the others take its share at once.
    pub(crate) async fn leave(&self) {
        let _ = self.kv.delete(format!("worker.{}", self.id)).await;
    }
}

fn lease_key(partition: &str) -> String {
    format!("partition.{partition}")
}
