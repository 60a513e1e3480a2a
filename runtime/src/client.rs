//! The [`Client`]: enqueue jobs (also inside your own transaction, `client/tx.rs`), ask about
//! them and wait for their results (`client/wait.rs`). Cheap to clone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use switchyard_core::{
    CancelOutcome, EnqueueOutcome, Error, JobFilter, JobId, JobRecord, NewJob, QueueCounts, Result,
    RetryOutcome, SharedClock, Storage, SystemClock,
};

use crate::job::{BlockingJob, EnqueueOptions, Job};

// Transactional enqueue (`enqueue_tx` & co., the pools) and waiting for results (`wait`,
// `result`) each live in their own file, as further `impl Client` blocks.
mod tx;
mod wait;
pub use tx::{TxEnqueue, TxFuture};

/// Enqueues jobs and reads, cancels and retries them.
#[derive(Debug, Clone)]
pub struct Client {
    storage: Arc<dyn Storage>,
    /// Where relative delays count from; `None` is the system clock.
    clock: Option<SharedClock>,
}

fn new_job<T: serde::Serialize>(kind: &str, job: &T, opts: EnqueueOptions) -> Result<NewJob> {
    let payload = serde_json::to_value(job).map_err(|e| {
        Error::invalid(format!(
            "the arguments of a `{kind}` job do not encode as JSON: {e}"
        ))
    })?;
    Ok(opts.apply(NewJob::new(kind, payload)))
}

impl Client {
    /// A client on `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            clock: None,
        }
    }

    /// Counts relative delays ([`EnqueueOptions::delay`]) from `clock` (a test's
    /// `TestClock`) instead of the system clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A delay in `opts` made absolute by this client's clock.
    fn timed(&self, opts: EnqueueOptions) -> EnqueueOptions {
        match &self.clock {
            Some(c) => opts.resolve_delay(c.as_ref()),
            None => opts.resolve_delay(&SystemClock),
        }
    }

    /// The storage behind this client.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Enqueues a job with its type's default options. Returns its id (or, for a unique key
    /// already held by a live job, that job's id).
    pub async fn enqueue<J: Job>(&self, job: J) -> Result<JobId> {
        self.enqueue_with(job, EnqueueOptions::default()).await
    }

    /// Enqueues a job with options.
    pub async fn enqueue_with<J: Job>(&self, job: J, opts: EnqueueOptions) -> Result<JobId> {
        let opts = self.timed(opts.or(job.options()));
        let new = new_job(J::KIND, &job, opts)?;
        self.enqueue_one(new).await
    }

    /// Enqueues a blocking job with options.
    pub async fn enqueue_blocking<J: BlockingJob>(
        &self,
        job: J,
        opts: EnqueueOptions,
    ) -> Result<JobId> {
        let opts = self.timed(opts.or(job.options()));
        let new = new_job(J::KIND, &job, opts)?;
        self.enqueue_one(new).await
    }

    /// Enqueues many jobs of one type in one storage call (all or none).
    pub async fn enqueue_many<J: Job>(
        &self,
        jobs: impl IntoIterator<Item = J>,
        opts: EnqueueOptions,
    ) -> Result<Vec<JobId>> {
        let news = jobs
            .into_iter()
            .map(|j| new_job(J::KIND, &j, self.timed(opts.clone().or(j.options()))))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .storage
            .enqueue(news)
            .await?
            .into_iter()
            .map(EnqueueOutcome::id)
            .collect())
    }

    /// Enqueues prepared jobs (any kind, raw JSON payloads) in one storage call.
    pub async fn enqueue_raw(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        self.storage.enqueue(jobs).await
    }

    async fn enqueue_one(&self, job: NewJob) -> Result<JobId> {
        let out = self.storage.enqueue(vec![job]).await?;
        out.into_iter()
            .next()
            .map(EnqueueOutcome::id)
            .ok_or_else(|| {
                Error::new(
                    switchyard_core::ErrorKind::Internal,
                    "enqueue returned nothing",
                )
            })
    }

    /// The job with this id, or `None`.
    pub async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        self.storage.get(id).await
    }

    /// One page of jobs.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.storage.list(filter).await
    }

    /// Cancels a job.
    pub async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        self.storage.cancel(id).await
    }

    /// Runs a finished job again.
    pub async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        self.storage.retry(id).await
    }

    /// Counts per queue and state.
    pub async fn counts(&self) -> Result<Vec<QueueCounts>> {
        self.storage.counts().await
    }

    /// Deletes finished jobs that finished before `before`; returns how many.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.storage.prune(before, 1000).await?;
            total += n;
            if n < 1000 {
                return Ok(total);
            }
        }
    }
}
