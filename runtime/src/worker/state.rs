//! What the worker's stages share: [`Inner`] (the backends, the settings and the claimed jobs by
//! lease), the [`Backlog`] of claimed jobs waiting for a run slot, the messages passed from
//! stage to stage ([`Ready`], [`Done`]), [`lease_of`], and [`AbortOnDrop`] for the stages' tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use switchyard_core::{
    ClaimRequest, Completion, Delivery, Executor, JobRecord, LeaseRef, Queue, SharedClock, Storage,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::config::WorkerConfig;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

pub(super) struct Running {
    /// When the lease was last set by a call the storage answered (the claim, then each
    /// renewal), as sent: the lease surely lasts until this plus the lease length.
    pub(super) renewed: std::time::Instant,
    pub(super) cancel: CancellationToken,
    pub(super) user_cancel: Arc<AtomicBool>,
    pub(super) delivery: Option<Delivery>,
    /// Set when the attempt ended and its completion went to the completer: the lease is still
    /// renewed until the completion is recorded, but a renewal that finds it gone (the
    /// completion was recorded first, which clears the lease) is no lost lease.
    pub(super) finished: bool,
}

pub(super) struct Inner {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) queue: Option<Arc<dyn Queue>>,
    pub(super) registry: Arc<Registry>,
    pub(super) executor: Arc<dyn Executor>,
    pub(super) config: WorkerConfig,
    /// Where retry times count from; `None` is the system clock.
    pub(super) clock: Option<SharedClock>,
    /// Claimed jobs not yet recorded, by lease (id and token): a job this worker claims again
    /// after losing its lease (rescued, then delivered here again) is a second entry, so the
    /// old attempt's completion never removes the new attempt's heartbeats.
    pub(super) running: Mutex<HashMap<LeaseRef, Running>>,
    pub(super) shutdown: Shutdown,
    pub(super) backlog: Backlog,
    /// External queue: when a delivery last arrived, per queue (from the first receive on). A
    /// queue silent for a lease is claimed from storage directly (see `receive.rs`).
    pub(super) last_delivery: Mutex<HashMap<String, std::time::Instant>>,
}

/// Claimed jobs waiting for a run slot. Fetchers claim only while fewer than `concurrency` wait,
/// so slow jobs are not hoarded by one worker while others idle, yet fast jobs keep several
/// claims in flight.
#[derive(Default)]
pub(super) struct Backlog {
    waiting: std::sync::atomic::AtomicUsize,
    shrunk: tokio::sync::Notify,
}

impl Backlog {
    pub(super) fn added(&self, n: usize) {
        self.waiting.fetch_add(n, Ordering::SeqCst);
    }

    pub(super) fn started(&self, limit: usize) {
        if self.waiting.fetch_sub(1, Ordering::SeqCst) <= limit {
            self.shrunk.notify_waiters();
        }
    }

    /// Waits until fewer than `limit` jobs wait. Returns false if `stop` resolves first.
    pub(super) async fn wait_below(
        &self,
        limit: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> bool {
        tokio::pin!(stop);
        loop {
            let shrunk = self.shrunk.notified();
            tokio::pin!(shrunk);
            shrunk.as_mut().enable();
            if self.waiting.load(Ordering::SeqCst) < limit {
                return true;
            }
            tokio::select! {
                _ = &mut shrunk => {}
                _ = &mut stop => return false,
            }
        }
    }
}

/// A finished attempt on its way to the completer: its completion, its broker message, and
/// its attempt number.
pub(super) type Done = (Completion, Option<Delivery>, u32);

impl Inner {
    /// The current time, from the worker's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        match &self.clock {
            Some(c) => c.now(),
            None => Utc::now(),
        }
    }

    /// Claims in flight at once. With a single run slot a second claim gains nothing and
    /// would let batches overtake each other, so jobs run strictly in claim order.
    ///
    /// A broker that hands out few messages per call (SQS: 10) needs more claims in flight to
    /// keep the worker busy: four, each of which receives up to twice the concurrency in
    /// several calls. (More would let a burst claim up to `(fetchers + 1) × concurrency` jobs
    /// that other workers could have run.)
    pub(super) fn fetchers(&self) -> usize {
        if self.config.concurrency == 1 {
            return 1;
        }
        let configured = self.config.fetchers.max(1);
        if self.receive_batch() < self.config.concurrency {
            configured.max(4)
        } else {
            configured
        }
    }

    /// Most messages one receive from the external queue brings (unbounded without one).
    pub(super) fn receive_batch(&self) -> usize {
        match &self.queue {
            Some(q) => q.capabilities().max_batch.max(1),
            None => usize::MAX,
        }
    }

    /// Notes that a delivery of `queue` arrived.
    pub(super) fn delivered(&self, queue: &str) {
        self.last_delivery
            .lock()
            .expect("poisoned")
            .insert(queue.to_string(), std::time::Instant::now());
    }

    /// How long no delivery of `queue` arrived (counted from the first call).
    pub(super) fn silent_for(&self, queue: &str) -> std::time::Duration {
        self.last_delivery
            .lock()
            .expect("poisoned")
            .entry(queue.to_string())
            .or_insert_with(std::time::Instant::now)
            .elapsed()
    }

    pub(super) fn claim_request(&self, limit: usize) -> ClaimRequest {
        ClaimRequest {
            queues: self.config.queues.clone(),
            limit,
            worker_id: self.config.worker_id.clone(),
            lease: self.config.lease,
        }
    }
}

/// A claimed job waiting for a run slot, with the claim slot it holds.
pub(super) type Ready = (JobRecord, Option<Delivery>, OwnedSemaphorePermit);

/// The lease a claimed job runs under.
pub(super) fn lease_of(job: &JobRecord) -> LeaseRef {
    LeaseRef {
        id: job.id,
        token: job.lease_token.unwrap_or_default(),
    }
}

/// A stage's task, aborted when dropped: a worker task aborted (a simulated crash) takes its
/// stages down with it.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
