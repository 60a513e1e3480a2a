//! The inline mode: a [`Storage`] that stores through the harness's SQLite storage and then,
//! before its `enqueue` returns, runs each job it inserted that is due, in process.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use switchyard_core::adapter::WakeSubscription;
use switchyard_core::{
    async_trait, CancelOutcome, ClaimRequest, Completion, CompletionStatus, DispatchItem,
    EnqueueOutcome, JobFilter, JobId, JobRecord, LeaseRef, LeaseStatus, NewJob, QueueCounts,
    RescueReport, Result, RetryOutcome, Storage, StorageCapabilities,
};

use super::harness::Runner;

/// The storage behind an inline harness's client.
#[derive(Debug)]
pub(super) struct InlineStorage {
    pub(super) inner: Arc<dyn Storage>,
    /// Weak: the runner's registry holds the client that holds this storage.
    pub(super) runner: Weak<Runner>,
}

#[async_trait]
impl Storage for InlineStorage {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> StorageCapabilities {
        self.inner.capabilities()
    }

    async fn migrate(&self) -> Result<()> {
        self.inner.migrate().await
    }

    async fn destroy(&self) -> Result<()> {
        self.inner.destroy().await
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        let queues: Vec<(JobId, String)> = jobs.iter().map(|j| (j.id, j.queue.clone())).collect();
        let out = self.inner.enqueue(jobs).await?;
        if let Some(runner) = self.runner.upgrade() {
            for (outcome, (id, queue)) in out.iter().zip(queues) {
                if let EnqueueOutcome::Inserted(_) = outcome {
                    runner.run_inline(id, queue).await?;
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.inner.get(id).await
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        self.inner.cancel(id).await
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        self.inner.retry(id).await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        self.inner.claim(req).await
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        self.inner.claim_ids(ids, req).await
    }

    fn subscribe(&self) -> WakeSubscription {
        self.inner.subscribe()
    }

    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>> {
        self.inner.heartbeat(leases, lease).await
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
        self.inner.complete(completions).await
    }

    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport> {
        self.inner.rescue_expired(now, limit).await
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.inner.list(filter).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.inner.counts().await
    }

    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.inner.prune(before, limit).await
    }

    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.inner.try_lead(name, holder, ttl).await
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        self.inner.resign(name, holder).await
    }

    async fn due_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        self.inner
            .due_for_dispatch(horizon, stale_before, limit)
            .await
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        self.inner.mark_dispatched(ids).await
    }

    async fn take_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        self.inner
            .take_for_dispatch(horizon, stale_before, limit)
            .await
    }
}
