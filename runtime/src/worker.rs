//! The worker (seed 002): one fetcher claims jobs in batches up to the free capacity, a
//! semaphore bounds concurrency, a heartbeater renews leases and relays cancel requests, and a
//! completer records finished attempts in batches.
//!
//! Jobs come either from the storage's own queue (`Storage::claim`) or from an external
//! [`Queue`] whose deliveries name job ids that are then claimed in storage
//! (`Storage::claim_ids`), so every attempt is fenced by its lease token either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use switchyard_core::{
    AttemptError, ClaimRequest, Completion, CompletionStatus, Delivery, Executor, JobContext,
    JobError, JobErrorKind, JobId, JobRecord, LeaseRef, LeaseStatus, Outcome, Queue, Storage,
    TokioExecutor,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::registry::Registry;
use crate::shutdown::Shutdown;

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues to take jobs from.
    pub queues: Vec<String>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often running jobs' leases are renewed (and cancel requests picked up).
    pub heartbeat: Duration,
    /// Longest idle wait between claims when no wake-up arrives.
    pub poll_interval: Duration,
    /// How long a graceful shutdown waits for running jobs before aborting them.
    pub shutdown_timeout: Duration,
    /// Retry backoff.
    pub backoff: Backoff,
    /// This worker's id, stored on the jobs it runs.
    pub worker_id: String,
    /// Most completions recorded in one storage call.
    pub completion_batch: usize,
    /// Claims in flight at once. Two hide a claim's round trip behind the previous batch; jobs
    /// claimed and not yet started can reach `fetchers × concurrency` (use 1 for long jobs
    /// shared by many workers). With a concurrency of 1 there is always one.
    pub fetchers: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: vec![switchyard_core::DEFAULT_QUEUE.to_string()],
            concurrency: 10,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            worker_id: default_worker_id(),
            completion_batch: 500,
            fetchers: 2,
        }
    }
}

/// `hostname-pid-random`, unique per worker.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_string());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..6]
    )
}

/// A worker, configured and not yet running. Start it with [`Worker::start`] or
/// [`Worker::run_until`].
pub struct Worker {
    storage: Arc<dyn Storage>,
    queue: Option<Arc<dyn Queue>>,
    registry: Arc<Registry>,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("storage", &self.storage.name())
            .field("queue", &self.queue.as_ref().map(|q| q.name()))
            .field("registry", &self.registry)
            .field("config", &self.config)
            .finish()
    }
}

impl Worker {
    /// A worker on `storage`'s own queue with default settings.
    pub fn new(storage: Arc<dyn Storage>, registry: Registry) -> Self {
        Self {
            storage,
            queue: None,
            registry: Arc::new(registry),
            executor: Arc::new(TokioExecutor),
            config: WorkerConfig::default(),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Takes deliveries from an external queue instead of the storage's own.
    pub fn external_queue(mut self, queue: Arc<dyn Queue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Sets the queues.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the concurrency (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Sets the heartbeat interval.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// Sets the polling backstop interval.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Sets the graceful shutdown timeout.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Sets the retry backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Sets the executor (default: [`TokioExecutor`]).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// Sets the worker id.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = id.into();
        self
    }

    /// Starts the worker in the background.
    pub fn start(self) -> WorkerHandle {
        let shutdown = Shutdown::new();
        let task = tokio::spawn(self.run(shutdown.clone()));
        WorkerHandle { shutdown, task }
    }

    /// Runs until `signal` resolves, then shuts down gracefully (aborting after the shutdown
    /// timeout). Installs no signal handlers: pass [`crate::shutdown::signal()`] for that.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        let handle = self.start();
        signal.await;
        handle.stop().await;
    }

    /// Runs until `shutdown` is pulled and everything in flight is recorded.
    pub async fn run(self, shutdown: Shutdown) {
        let inner = Arc::new(Inner {
            storage: self.storage,
            queue: self.queue,
            registry: self.registry,
            executor: self.executor,
            config: self.config,
            running: Mutex::new(HashMap::new()),
            shutdown,
            backlog: Backlog::default(),
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let stop_heartbeat = CancellationToken::new();
        // Sub-tasks are aborted if this task is aborted (a simulated crash).
        let mut completer = AbortOnDrop(tokio::spawn(completer(inner.clone(), done_rx)));
        let mut heartbeater = AbortOnDrop(tokio::spawn(heartbeater(
            inner.clone(),
            stop_heartbeat.clone(),
        )));
        // Fetchers claim into an ordered buffer; the runner starts buffered jobs in that order
        // as run slots free up. Both stop at graceful shutdown; the runner then drains.
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let mut runner = AbortOnDrop(tokio::spawn(runner(inner.clone(), ready_rx, done_tx)));
        let claimed = Arc::new(Semaphore::new(
            inner.config.concurrency * (inner.fetchers() + 1),
        ));
        let fetchers = (0..inner.fetchers())
            .map(|_| fetch_loop(&inner, &claimed, &ready_tx))
            .collect::<Vec<_>>();
        futures::future::join_all(fetchers).await;
        // Ids received in bundles and not yet handed out go back to the broker for others.
        if let Some(queue) = &inner.queue {
            if let Err(e) = queue.release().await {
                tracing::warn!(error = %e, "giving back undelivered bundle members failed; the adapter holds them for its next receive, and their messages come back after their visibility timeout or when the connection closes");
            }
        }
        // Fetching stopped: jobs in flight (running or buffered) get the shutdown timeout to
        // finish, then they are aborted and released.
        let _deadline = AbortOnDrop(tokio::spawn({
            let shutdown = inner.shutdown.clone();
            let timeout = inner.config.shutdown_timeout;
            async move {
                tokio::time::sleep(timeout).await;
                if !shutdown.is_hard() {
                    tracing::warn!("shutdown timeout passed: aborting running jobs");
                }
                shutdown.hard();
            }
        }));
        drop(ready_tx);
        let _ = (&mut runner.0).await;
        let _ = (&mut completer.0).await;
        stop_heartbeat.cancel();
        let _ = (&mut heartbeater.0).await;
        tracing::info!(worker = %inner.config.worker_id, "worker stopped");
    }
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// The worker's shutdown switch.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Graceful shutdown: stop fetching, let running jobs finish (up to the shutdown timeout,
    /// then abort and release them), record everything, return.
    pub async fn stop(self) {
        self.shutdown.graceful();
        let _ = self.task.await;
    }

    /// Hard shutdown: abort running jobs now, release them for re-delivery, return.
    pub async fn abort(self) {
        self.shutdown.hard();
        let _ = self.task.await;
    }

    /// Simulates a crash: the worker and its jobs vanish without recording anything. Their
    /// leases expire and the rescuer takes over. For tests.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// Waits for the worker to stop by itself (after its shutdown switch is pulled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

struct Running {
    /// When the lease was last set by a call the storage answered (the claim, then each
    /// renewal), as sent: the lease surely lasts until this plus the lease length.
    renewed: std::time::Instant,
    cancel: CancellationToken,
    user_cancel: Arc<AtomicBool>,
    delivery: Option<Delivery>,
}

struct Inner {
    storage: Arc<dyn Storage>,
    queue: Option<Arc<dyn Queue>>,
    registry: Arc<Registry>,
    executor: Arc<dyn Executor>,
    config: WorkerConfig,
    /// Claimed jobs not yet recorded, by lease (id and token): a job this worker claims again
    /// after losing its lease (rescued, then delivered here again) is a second entry, so the
    /// old attempt's completion never removes the new attempt's heartbeats.
    running: Mutex<HashMap<LeaseRef, Running>>,
    shutdown: Shutdown,
    backlog: Backlog,
}

/// Claimed jobs waiting for a run slot. Fetchers claim only while fewer than `concurrency` wait,
/// so slow jobs are not hoarded by one worker while others idle, yet fast jobs keep several
/// claims in flight.
#[derive(Default)]
struct Backlog {
    waiting: std::sync::atomic::AtomicUsize,
    shrunk: tokio::sync::Notify,
}

impl Backlog {
    fn added(&self, n: usize) {
        self.waiting.fetch_add(n, Ordering::SeqCst);
    }

    fn started(&self, limit: usize) {
        if self.waiting.fetch_sub(1, Ordering::SeqCst) <= limit {
            self.shrunk.notify_waiters();
        }
    }

    /// Waits until fewer than `limit` jobs wait. Returns false if `stop` resolves first.
    async fn wait_below(&self, limit: usize, stop: impl std::future::Future<Output = ()>) -> bool {
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
type Done = (Completion, Option<Delivery>, u32);

impl Inner {
    /// Claims in flight at once. With a single run slot a second claim gains nothing and
    /// would let batches overtake each other, so jobs run strictly in claim order.
    ///
    /// A broker that hands out few messages per call (SQS: 10) needs more claims in flight to
    /// keep the worker busy: four, each of which receives up to twice the concurrency in
    /// several calls. (More would let a burst claim up to `(fetchers + 1) × concurrency` jobs
    /// that other workers could have run.)
    fn fetchers(&self) -> usize {
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
    fn receive_batch(&self) -> usize {
        match &self.queue {
            Some(q) => q.capabilities().max_batch.max(1),
            None => usize::MAX,
        }
    }

    fn claim_request(&self, limit: usize) -> ClaimRequest {
        ClaimRequest {
            queues: self.config.queues.clone(),
            limit,
            worker_id: self.config.worker_id.clone(),
            lease: self.config.lease,
        }
    }
}

/// A claimed job waiting for a run slot, with the claim slot it holds.
type Ready = (JobRecord, Option<Delivery>, OwnedSemaphorePermit);

/// One fetcher: claims while not shutting down; returns when graceful shutdown is requested.
///
/// `claimed` bounds the jobs claimed and not yet finished to `(fetchers + 1) × concurrency`, so
/// a buffer of claimed jobs is ready whenever a run slot frees and several claims can be in
/// flight while earlier batches run. A fetcher claims only when at least `concurrency` claim
/// slots are free (or the worker is idle), so each claim is a real batch instead of one job
/// per freed slot. Claimed jobs enter the running map at once, so heartbeats keep the leases of
/// buffered jobs too; they go to the runner in priority order.
async fn fetch_loop(
    inner: &Arc<Inner>,
    claimed_slots: &Arc<Semaphore>,
    ready: &mpsc::UnboundedSender<Ready>,
) {
    let concurrency = inner.config.concurrency;
    // A claim waits for room for `concurrency` jobs (an external queue that delivers fewer
    // messages per receive is asked several times per claim).
    let batch = concurrency as u32;
    let mut wake = inner.storage.subscribe();
    let mut rr = 0usize;
    let mut failures = 0u32;
    loop {
        // Claim only while the backlog of claimed jobs waiting to start is short.
        if !inner
            .backlog
            .wait_below(concurrency, inner.shutdown.graceful_requested())
            .await
        {
            return;
        }
        // Wait until a batch worth of claim slots is free, then take every free one.
        let first = tokio::select! {
            p = claimed_slots.clone().acquire_many_owned(batch) => p.expect("semaphore never closes"),
            _ = inner.shutdown.graceful_requested() => return,
        };
        let mut permits = vec![first];
        let extra = (claimed_slots.available_permits() as u32).min(batch);
        if extra > 0 {
            if let Ok(p) = claimed_slots.clone().try_acquire_many_owned(extra) {
                permits.push(p);
            }
        }
        let want = permits.iter().map(|p| p.num_permits()).sum::<usize>();
        let t_claim = std::time::Instant::now();
        let claimed = match &inner.queue {
            None => inner
                .storage
                .claim(&inner.claim_request(want))
                .await
                .map(|jobs| jobs.into_iter().map(|j| (j, None)).collect::<Vec<_>>()),
            Some(queue) => {
                let q = inner.config.queues[rr % inner.config.queues.len()].clone();
                rr += 1;
                receive_and_claim(inner, queue, &q, want).await
            }
        };
        let claimed = match claimed {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures += 1;
                let wait = (inner.config.poll_interval * failures).min(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in = ?wait, "claim failed; the worker keeps polling");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.shutdown.graceful_requested() => return,
                }
                continue;
            }
        };
        let got = claimed.len();
        tracing::trace!(
            want,
            got,
            us = t_claim.elapsed().as_micros() as u64,
            "claimed"
        );
        // One claim slot per claimed job travels with it; the rest go back.
        let mut claimed = claimed;
        claimed.sort_by(|(a, _), (b, _)| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        let mut free = merge(permits);
        inner.backlog.added(claimed.len());
        for (job, delivery) in claimed {
            let slot = free.split(1).expect("never claims more than free slots");
            inner.running.lock().expect("poisoned").insert(
                lease_of(&job),
                Running {
                    renewed: t_claim,
                    cancel: inner.shutdown.hard_token().child_token(),
                    user_cancel: Arc::new(AtomicBool::new(job.cancel_requested)),
                    delivery: delivery.clone(),
                },
            );
            let _ = ready.send((job, delivery, slot));
        }
        drop(free);
        if got < want && inner.queue.is_none() {
            // Idle: wait for a wake-up from the backend, the poll interval, or shutdown.
            tokio::select! {
                _ = wake.wait(inner.config.poll_interval) => {}
                _ = inner.shutdown.graceful_requested() => return,
            }
        }
    }
}

/// The lease a claimed job runs under.
fn lease_of(job: &JobRecord) -> LeaseRef {
    LeaseRef {
        id: job.id,
        token: job.lease_token.unwrap_or_default(),
    }
}

/// Merges permits of one semaphore into one.
fn merge(mut permits: Vec<OwnedSemaphorePermit>) -> OwnedSemaphorePermit {
    let mut first = permits.remove(0);
    for p in permits {
        first.merge(p);
    }
    first
}

/// External queue path: receive deliveries, claim their jobs in storage, settle the rest.
async fn receive_and_claim(
    inner: &Arc<Inner>,
    queue: &Arc<dyn Queue>,
    name: &str,
    want: usize,
) -> switchyard_core::Result<Vec<(JobRecord, Option<Delivery>)>> {
    // One queue: a long poll (interrupted by shutdown). Several: take turns at the poll pace.
    let wait = if inner.config.queues.len() == 1 {
        Duration::from_secs(20)
    } else {
        inner.config.poll_interval.min(Duration::from_secs(20))
    };
    let per_call = inner.receive_batch();
    let lease = inner.config.lease;
    let mut deliveries = tokio::select! {
        d = queue.receive(name, want, wait, lease) => d?,
        _ = inner.shutdown.graceful_requested() => return Ok(Vec::new()),
    };
    // A broker that hands out fewer than `want` messages per call (SQS: 10) and just filled
    // one is asked again at once, several calls side by side and none waiting, so that one
    // claim in storage covers them all. (Only the first call may wait: a waiting call that
    // found nothing would hold back what the others received.) Bundles may fill `want` in one
    // call.
    if deliveries.len() >= per_call && deliveries.len() < want {
        let left = want - deliveries.len();
        let more = (0..left.div_ceil(per_call)).map(|i| {
            let max = (left - i * per_call).min(per_call);
            queue.receive(name, max, Duration::ZERO, lease)
        });
        for r in futures::future::join_all(more).await {
            match r {
                Ok(d) => deliveries.extend(d),
                Err(e) => {
                    tracing::debug!(error = %e, "an extra receive failed; claiming what came")
                }
            }
        }
    }
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = deliveries.iter().map(|d| d.job_id).collect();
    let t_claim = std::time::Instant::now();
    let claimed = match inner
        .storage
        .claim_ids(&ids, &inner.claim_request(ids.len()))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // Give the messages back at once; nothing was claimed.
            for d in &deliveries {
                let _ = queue.nack(d, Duration::ZERO).await;
            }
            return Err(e);
        }
    };
    tracing::trace!(
        received = ids.len(),
        claimed = claimed.len(),
        us = t_claim.elapsed().as_micros() as u64,
        "claimed deliveries"
    );
    let mut by_id: HashMap<JobId, Delivery> = HashMap::new();
    for d in deliveries {
        // Two messages for one job: the extra one is a duplicate publish.
        if let Some(dup) = by_id.insert(d.job_id, d) {
            let _ = queue.ack(&[dup]).await;
        }
    }
    let mut out = Vec::with_capacity(claimed.len());
    for job in claimed {
        let d = by_id.remove(&job.id);
        out.push((job, d));
    }
    // Deliveries whose job could not be claimed: finished, running elsewhere, unknown (ack and
    // forget: storage is the source of truth) or not yet due (give back until it is).
    let mut stale = Vec::new();
    for (id, d) in by_id {
        match inner.storage.get(id).await {
            Ok(Some(job)) if job.state.is_pending() && job.run_at > Utc::now() => {
                let wait = (job.run_at - Utc::now()).to_std().unwrap_or_default();
                let _ = queue.nack(&d, wait).await;
            }
            Ok(Some(job)) if job.state.is_pending() => {
                let _ = queue.nack(&d, Duration::from_millis(100)).await;
            }
            Ok(_) => stale.push(d),
            Err(_) => {
                let _ = queue.nack(&d, Duration::from_secs(1)).await;
            }
        }
    }
    if !stale.is_empty() {
        let _ = queue.ack(&stale).await;
    }
    Ok(out)
}

/// Starts buffered jobs in order as run slots free up, until the fetchers stop; then waits for
/// every job to finish or be aborted. Job tasks live in a set owned
/// by this task, so a simulated crash (the worker task aborted) aborts them too.
async fn runner(
    inner: Arc<Inner>,
    mut ready: mpsc::UnboundedReceiver<Ready>,
    done: mpsc::UnboundedSender<Done>,
) {
    let slots = Arc::new(Semaphore::new(inner.config.concurrency));
    let mut jobs = JoinSet::new();
    loop {
        tokio::select! {
            item = ready.recv() => {
                let Some((job, delivery, slot)) = item else { break };
                // A hard shutdown while waiting for a slot releases the job unstarted.
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => Some(p.expect("semaphore never closes")),
                    _ = inner.shutdown.hard_requested() => None,
                };
                inner.backlog.started(inner.config.concurrency);
                jobs.spawn(run_job(inner.clone(), job, delivery, permit, slot, done.clone()));
            }
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    drain(&mut jobs).await;
}

/// After fetching stopped: waits for every job task. At hard shutdown (a second signal or the
/// shutdown timeout) each task records `Aborted` and returns.
async fn drain(jobs: &mut JoinSet<()>) {
    if !jobs.is_empty() {
        tracing::info!(running = jobs.len(), "draining running jobs");
    }
    while jobs.join_next().await.is_some() {}
}

fn attempt_error(job: &JobRecord, kind: &str, message: impl Into<String>) -> AttemptError {
    error_of_attempt(job.attempt, kind, message)
}

/// An attempt's error. NUL characters in the message become U+FFFD: PostgreSQL cannot store
/// them, and an error history is for people to read.
fn error_of_attempt(attempt: u32, kind: &str, message: impl Into<String>) -> AttemptError {
    let mut message = message.into();
    if message.contains('\0') {
        message = message.replace('\0', "\u{FFFD}");
    }
    AttemptError {
        attempt,
        at: Utc::now(),
        kind: kind.to_string(),
        message,
    }
}

fn failure(inner: &Inner, job: &JobRecord, e: &JobError) -> Outcome {
    let error = attempt_error(job, e.kind().as_str(), e.message());
    if e.is_retryable() && job.has_attempts_left() {
        let delay = inner.config.backoff.delay(job.attempt);
        Outcome::Retry {
            error,
            run_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
        }
    } else {
        Outcome::Failed { error }
    }
}

async fn run_job(
    inner: Arc<Inner>,
    job: JobRecord,
    delivery: Option<Delivery>,
    permit: Option<OwnedSemaphorePermit>,
    slot: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Done>,
) {
    let span = tracing::info_span!("job", kind = %job.kind, id = %job.id, attempt = job.attempt, queue = %job.queue);
    async move {
        let lease = lease_of(&job);
        let (cancel, user_cancel) = {
            let map = inner.running.lock().expect("poisoned");
            match map.get(&lease) {
                Some(r) => (r.cancel.clone(), r.user_cancel.clone()),
                // Registered at claim; never missing, but a job is not worth a panic here.
                None => (
                    inner.shutdown.hard_token().child_token(),
                    Arc::new(AtomicBool::new(job.cancel_requested)),
                ),
            }
        };
        let outcome = if permit.is_none() || inner.shutdown.is_hard() {
            // Hard shutdown before it started: given back without using up an attempt.
            Outcome::Released
        } else if user_cancel.load(Ordering::SeqCst) {
            // Cancelled before it started (a cancel requested during an earlier attempt, or
            // while it waited for a slot): it never runs.
            Outcome::Cancelled { error: None }
        } else if cancel.is_cancelled() {
            // Its lease was reported lost while it waited: another worker may have it. The
            // completion is refused as stale; the body does not run here.
            Outcome::Aborted {
                error: attempt_error(
                    &job,
                    "lease_expired",
                    "the job's lease was lost before it started",
                ),
            }
        } else {
            run_body(&inner, &job, cancel, &user_cancel).await
        };
        let _ = done.send((
            Completion {
                id: job.id,
                token: lease.token,
                outcome,
            },
            delivery,
            job.attempt,
        ));
        drop(permit);
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Runs one attempt's body under its timeout and turns its result into an outcome.
async fn run_body(
    inner: &Arc<Inner>,
    job: &JobRecord,
    cancel: CancellationToken,
    user_cancel: &AtomicBool,
) -> Outcome {
    let ctx = JobContext::new(job, cancel.clone());
    let body = match inner.registry.prepare(&job.kind, job.payload.clone(), ctx) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e.message(), "job cannot run");
            return Outcome::Failed {
                error: attempt_error(job, e.kind().as_str(), e.message()),
            };
        }
    };
    let exec = inner.executor.execute(body);
    let timed = async {
        match job.timeout() {
            Some(t) => tokio::time::timeout(t, exec).await.ok(),
            None => Some(exec.await),
        }
    };
    tokio::select! {
        biased;
        out = timed => match out {
            Some(Ok(result)) => Outcome::Succeeded { result },
            Some(Err(e)) if user_cancel.load(Ordering::SeqCst) => Outcome::Cancelled {
                error: Some(attempt_error(job, JobErrorKind::Cancelled.as_str(), e.message())),
            },
            Some(Err(e)) => {
                tracing::warn!(error = %e.message(), "job attempt failed");
                failure(inner, job, &e)
            }
            None => {
                cancel.cancel();
                let e = JobError::of_kind(
                    JobErrorKind::Timeout,
                    format!("job timed out after {:?}", job.timeout().unwrap_or_default()),
                    true,
                );
                tracing::warn!("job attempt timed out");
                failure(inner, job, &e)
            }
        },
        _ = inner.shutdown.hard_requested() => Outcome::Aborted {
            error: attempt_error(job, "aborted", "the worker shut down before the job finished; released for another attempt"),
        },
    }
}

/// Records completions in batches; retries while the storage is unavailable so nothing is
/// lost. A completion that can never be recorded (storage gone for good at hard shutdown)
/// leaves its job `running` until the lease expires and the rescuer takes it back.
///
/// A batch the storage refuses outright (an error that is not retryable) is recorded again one
/// completion at a time, so that one outcome the storage cannot store (say, a result with a
/// NUL character on PostgreSQL) does not hold up the others, or every later batch: that one is
/// recorded as a failed attempt saying why instead (see [`record_alone`]).
///
/// Broker acks run in the background (at most [`ACKS_IN_FLIGHT`] calls at once), so the next
/// batch is recorded while the last one's messages are being acked; they are awaited before
/// the completer returns. A lost ack only means a redelivery that the worker skips.
async fn completer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let max = inner.config.completion_batch.max(1);
    let mut acks = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let completions: Vec<Completion> = batch.iter().map(|(c, _, _)| c.clone()).collect();
        let t_complete = std::time::Instant::now();
        match record(&inner, &completions).await {
            Recorded::Done(statuses) => {
                tracing::trace!(
                    n = completions.len(),
                    us = t_complete.elapsed().as_micros() as u64,
                    "recorded completions"
                );
                warn_stale(&completions, &statuses);
            }
            Recorded::Refused(e) if completions.len() > 1 => {
                tracing::warn!(error = %e, jobs = completions.len(), "the storage refused a batch of completions; recording them one at a time");
                for (c, _, attempt) in &batch {
                    record_alone(&inner, c, *attempt).await;
                }
            }
            Recorded::Refused(_) => record_alone(&inner, &completions[0], batch[0].2).await,
            Recorded::GaveUp => {}
        }
        {
            let mut running = inner.running.lock().expect("poisoned");
            for c in &completions {
                running.remove(&LeaseRef {
                    id: c.id,
                    token: c.token,
                });
            }
        }
        if let Some(queue) = &inner.queue {
            let deliveries: Vec<Delivery> = batch.into_iter().filter_map(|(_, d, _)| d).collect();
            if !deliveries.is_empty() {
                while acks.len() >= ACKS_IN_FLIGHT {
                    acks.join_next().await;
                }
                let queue = queue.clone();
                acks.spawn(async move {
                    if let Err(e) = queue.ack(&deliveries).await {
                        tracing::warn!(error = %e, "acking deliveries failed; they will be delivered again and skipped");
                    }
                });
            }
        }
    }
    while acks.join_next().await.is_some() {}
}

/// What became of a call to record completions.
enum Recorded {
    /// Recorded; one status per completion.
    Done(Vec<CompletionStatus>),
    /// Refused with an error that is not retryable.
    Refused(switchyard_core::Error),
    /// Still failing at hard shutdown: left to the rescuer.
    GaveUp,
}

/// Records `completions` in one call, retrying with a growing pause while the error is
/// retryable (the storage unavailable), and giving up after five tries once a hard shutdown
/// has begun. After a hard shutdown each try gets [`HARD_SHUTDOWN_TRY`], so a storage that is
/// down (whose calls may take their full connection and response timeouts) cannot hold up the
/// process's exit for minutes.
async fn record(inner: &Inner, completions: &[Completion]) -> Recorded {
    let mut tries = 0u32;
    loop {
        let call = inner.storage.complete(completions);
        tokio::pin!(call);
        let cut_short = async {
            inner.shutdown.hard_requested().await;
            tokio::time::sleep(HARD_SHUTDOWN_TRY).await;
        };
        let result = tokio::select! {
            r = &mut call => r,
            _ = cut_short => Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Unavailable,
                format!("no answer within {HARD_SHUTDOWN_TRY:?} after the hard shutdown"),
            )),
        };
        match result {
            Ok(statuses) => return Recorded::Done(statuses),
            Err(e) if !e.is_retryable() => return Recorded::Refused(e),
            Err(e) => {
                tries += 1;
                if inner.shutdown.is_hard() && tries >= 5 {
                    tracing::error!(error = %e, jobs = completions.len(), "giving up recording completions at shutdown; the rescuer will re-run these jobs after their leases expire");
                    return Recorded::GaveUp;
                }
                let wait = Duration::from_millis(100 * u64::from(tries.min(50)));
                tracing::warn!(error = %e, retry_in = ?wait, "recording completions failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How long one try to record completions may take once a hard shutdown has begun.
const HARD_SHUTDOWN_TRY: Duration = Duration::from_secs(2);

/// Records one completion alone. If the storage refuses it for good, records the attempt as
/// failed (`unrecordable_outcome`, naming the outcome and the storage's error) instead, so the
/// job ends visibly rather than staying `running` and coming back after every lease expiry.
/// If even that is refused, the job is left to the rescuer.
async fn record_alone(inner: &Inner, c: &Completion, attempt: u32) {
    let e = match record(inner, std::slice::from_ref(c)).await {
        Recorded::Done(statuses) => return warn_stale(std::slice::from_ref(c), &statuses),
        Recorded::GaveUp => return,
        Recorded::Refused(e) => e,
    };
    let ended = match &c.outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "failed and was to be retried",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "was cancelled",
        Outcome::Aborted { .. } => "was aborted",
        Outcome::Released => "was released unstarted",
    };
    tracing::error!(id = %c.id, error = %e, "the storage refused this attempt's outcome; recording the attempt as failed instead");
    let failed = Completion {
        id: c.id,
        token: c.token,
        outcome: Outcome::Failed {
            error: error_of_attempt(
                attempt,
                "unrecordable_outcome",
                format!("the attempt {ended}, but the storage refused to record that: {e}"),
            ),
        },
    };
    match record(inner, std::slice::from_ref(&failed)).await {
        Recorded::Done(statuses) => warn_stale(std::slice::from_ref(&failed), &statuses),
        Recorded::GaveUp => {}
        Recorded::Refused(e) => {
            tracing::error!(id = %c.id, error = %e, "the storage refused the failure too; the job stays running until its lease expires and the rescuer takes it")
        }
    }
}

/// Logs the completions the storage found stale.
fn warn_stale(completions: &[Completion], statuses: &[CompletionStatus]) {
    for (c, s) in completions.iter().zip(statuses) {
        if *s == CompletionStatus::Stale {
            tracing::warn!(id = %c.id, "completion rejected: the job's lease was lost (it was rescued or finished elsewhere)");
        }
    }
}

/// Broker ack calls the completer keeps in flight while it records the next batches.
const ACKS_IN_FLIGHT: usize = 4;

/// Renews the leases of running jobs and relays cancel requests and lost leases to them.
///
/// While renewals fail (the storage unreachable), an attempt whose lease has run out since its
/// last renewal is stopped (its cancellation token fires): the rescuer may already have handed
/// the job to another worker, and two runs of one job at once are worse than one stopped run.
async fn heartbeater(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.heartbeat) => {}
            _ = stop.cancelled() => return,
        }
        let (leases, deliveries): (Vec<LeaseRef>, Vec<Delivery>) = {
            let running = inner.running.lock().expect("poisoned");
            (
                running.keys().copied().collect(),
                running
                    .values()
                    .filter_map(|r| r.delivery.clone())
                    .collect(),
            )
        };
        if leases.is_empty() {
            continue;
        }
        let sent = std::time::Instant::now();
        // A renewal still unanswered after a lease renews nothing: it counts as failed.
        let renewal = tokio::time::timeout(
            inner.config.lease,
            inner.storage.heartbeat(&leases, inner.config.lease),
        )
        .await
        .unwrap_or_else(|_| {
            Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Unavailable,
                "the renewal got no answer within a lease",
            ))
        });
        match renewal {
            Ok(statuses) => {
                let mut running = inner.running.lock().expect("poisoned");
                for (lease, status) in leases.iter().zip(statuses) {
                    let Some(r) = running.get_mut(lease) else {
                        continue;
                    };
                    match status {
                        LeaseStatus::Held { cancel_requested } => {
                            r.renewed = sent;
                            if cancel_requested {
                                if !r.user_cancel.swap(true, Ordering::SeqCst) {
                                    tracing::info!(id = %lease.id, "cancel requested: firing the job's cancellation token");
                                }
                                r.cancel.cancel();
                            }
                        }
                        LeaseStatus::Lost => {
                            tracing::warn!(id = %lease.id, "lease lost: stopping the attempt");
                            r.cancel.cancel();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; leases may expire");
                let running = inner.running.lock().expect("poisoned");
                for (lease, r) in running.iter() {
                    if r.renewed.elapsed() >= inner.config.lease && !r.cancel.is_cancelled() {
                        tracing::warn!(id = %lease.id, "lease ran out while the storage was unreachable: stopping the attempt (it may be rescued and run elsewhere)");
                        r.cancel.cancel();
                    }
                }
            }
        }
        if let (Some(queue), false) = (&inner.queue, deliveries.is_empty()) {
            if let Err(e) = queue.extend(&deliveries, inner.config.lease).await {
                tracing::warn!(error = %e, "extending message visibility failed");
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
