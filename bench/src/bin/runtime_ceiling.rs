//! Run with: `cargo run --release -p switchyard-bench --bin runtime_ceiling`
//!
//! Diagnostic: the worker's own ceiling on this machine. W2 (one worker, concurrency 16, no-op
//! handler, drain `--jobs` queued jobs, 10,000 by default) against a storage that costs
//! nothing: claims pop records from a queue in memory, completions count. No backend can
//! make W2 faster than this, so it bounds every storage's drain figure. Prints jobs/s and
//! this process' CPU time per job (median of `--runs`, 3).
//!
//! The storage here implements only what a worker calls (claim, heartbeat, complete); it is a
//! measuring device, not a backend.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use switchyard::{Registry, Worker};
use switchyard_bench::cpu::own_cpu;
use switchyard_bench::jobs::bench_jobs;
use switchyard_bench::{arg, median};
use switchyard_core::{
    async_trait, CancelOutcome, ClaimRequest, Completion, CompletionStatus, DispatchItem,
    EnqueueOutcome, Error, JobFilter, JobId, JobRecord, JobState, LeaseRef, LeaseStatus, NewJob,
    QueueCounts, RescueReport, Result, RetryOutcome, Storage, StorageCapabilities, WakeHub,
    WakeSubscription,
};

/// Records waiting in memory; claims pop them, completions count them.
#[derive(Debug, Default)]
struct FreeStorage {
    pending: Mutex<VecDeque<JobRecord>>,
    completed: AtomicUsize,
    wake: WakeHub,
}

fn unsupported(what: &str) -> Error {
    Error::new(
        switchyard_core::ErrorKind::Unsupported,
        format!("the runtime ceiling's storage does not {what}"),
    )
}

fn record(job: NewJob, now: DateTime<Utc>) -> JobRecord {
    JobRecord {
        id: job.id,
        kind: job.kind,
        queue: job.queue,
        payload: job.payload,
        priority: job.priority,
        state: JobState::Available,
        attempt: 0,
        max_attempts: job.max_attempts,
        run_at: now,
        created_at: now,
        started_at: None,
        finished_at: None,
        lease_expires_at: None,
        lease_token: None,
        worker_id: None,
        errors: Vec::new(),
        result: None,
        unique_key: job.unique_key,
        cancel_requested: false,
        timeout_ms: job.timeout_ms,
        tags: job.tags,
    }
}

#[async_trait]
impl Storage for FreeStorage {
    fn name(&self) -> &'static str {
        "free"
    }

    fn capabilities(&self) -> StorageCapabilities {
        StorageCapabilities::full()
    }

    async fn migrate(&self) -> Result<()> {
        Ok(())
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        let now = Utc::now();
        let mut pending = self.pending.lock().expect("poisoned");
        Ok(jobs
            .into_iter()
            .map(|j| {
                let id = j.id;
                pending.push_back(record(j, now));
                EnqueueOutcome::Inserted(id)
            })
            .collect())
    }

    async fn get(&self, _id: JobId) -> Result<Option<JobRecord>> {
        Err(unsupported("read jobs"))
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let now = Utc::now();
        let token = uuid::Uuid::new_v4();
        let mut pending = self.pending.lock().expect("poisoned");
        let n = req.limit.min(pending.len());
        Ok(pending
            .drain(..n)
            .map(|mut r| {
                r.state = JobState::Running;
                r.attempt += 1;
                r.started_at = Some(now);
                r.lease_token = Some(token);
                r.lease_expires_at = Some(now + req.lease);
                r.worker_id = Some(req.worker_id.clone());
                r
            })
            .collect())
    }

    async fn claim_ids(&self, _ids: &[JobId], _req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        Err(unsupported("claim by id"))
    }

    async fn heartbeat(&self, leases: &[LeaseRef], _lease: Duration) -> Result<Vec<LeaseStatus>> {
        Ok(leases
            .iter()
            .map(|_| LeaseStatus::Held {
                cancel_requested: false,
            })
            .collect())
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
        self.completed
            .fetch_add(completions.len(), Ordering::Relaxed);
        Ok(vec![CompletionStatus::Applied; completions.len()])
    }

    async fn rescue_expired(&self, _now: DateTime<Utc>, _limit: usize) -> Result<RescueReport> {
        Ok(RescueReport::default())
    }

    async fn cancel(&self, _id: JobId) -> Result<CancelOutcome> {
        Err(unsupported("cancel"))
    }

    async fn retry(&self, _id: JobId) -> Result<RetryOutcome> {
        Err(unsupported("retry"))
    }

    async fn list(&self, _filter: &JobFilter) -> Result<Vec<JobRecord>> {
        Err(unsupported("list"))
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        Err(unsupported("count"))
    }

    async fn prune(&self, _before: DateTime<Utc>, _limit: usize) -> Result<u64> {
        Ok(0)
    }

    async fn try_lead(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool> {
        Ok(false)
    }

    async fn resign(&self, _name: &str, _holder: &str) -> Result<()> {
        Ok(())
    }

    async fn due_for_dispatch(
        &self,
        _horizon: DateTime<Utc>,
        _stale_before: DateTime<Utc>,
        _limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        Ok(Vec::new())
    }

    async fn mark_dispatched(&self, _ids: &[JobId]) -> Result<()> {
        Ok(())
    }

    fn subscribe(&self) -> WakeSubscription {
        self.wake.subscribe()
    }
}

#[tokio::main]
async fn main() {
    let n = arg("--jobs", 10_000);
    let runs = arg("--runs", 3).max(1);
    let concurrency = arg("--concurrency", 16);
    let mut figures = Vec::new();
    for run in 1..=runs {
        let storage = Arc::new(FreeStorage::default());
        storage.enqueue(bench_jobs(n, None)).await.expect("enqueue");
        let registry = Registry::new().register_fn("bench", |_, _| async { Ok(None) });
        let (c0, t0) = (own_cpu(), Instant::now());
        let worker = Worker::new(storage.clone(), registry)
            .queues(["bench"])
            .concurrency(concurrency)
            .start();
        while storage.completed.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), own_cpu() - c0);
        worker.stop().await;
        let rate = n as f64 / wall;
        println!(
            "run {run}: {rate:.0} jobs/s, {:.1} µs of CPU per job in this process",
            cpu * 1e6 / n as f64
        );
        figures.push(rate);
    }
    println!(
        "runtime ceiling (median of {runs}): W2 drain {:.0} jobs/s at concurrency {concurrency}",
        median(figures)
    );
}
