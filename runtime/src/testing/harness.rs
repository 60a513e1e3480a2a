//! The [`Harness`]: a real in-memory SQLite storage on a [`TestClock`], a registry, and the
//! helpers that enqueue, inspect and run jobs deterministically in the test's own task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_core::{
    AttemptError, ClaimRequest, Clock, Completion, Error, ErrorKind, Executor, JobContext,
    JobError, JobFilter, JobId, JobRecord, JobState, ListOrder, Outcome, Result, Storage,
    TestClock, TokioExecutor,
};
use switchyard_sqlite::{SqliteConfig, SqliteStorage};
use tokio_util::sync::CancellationToken;

use super::inline::InlineStorage;
use crate::backoff::Backoff;
use crate::client::Client;
use crate::job::Job;
use crate::registry::Registry;

/// Most attempts one `drain` runs before it stops with an error (a job that keeps enqueueing
/// jobs would otherwise drain forever).
pub const DRAIN_LIMIT: usize = 10_000;

/// How deep inline runs nest (a job enqueueing a job enqueueing a job …) before further
/// enqueues are only stored, to be drained.
const INLINE_DEPTH: usize = 32;

/// The states of a job that is waiting to run.
const PENDING: [JobState; 3] = [JobState::Available, JobState::Scheduled, JobState::Retrying];

/// What one attempt run by [`Harness::drain`] (or an inline enqueue) came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The job's id.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// Which attempt this was (1-based).
    pub attempt: u32,
    /// The job's state once the attempt was recorded: `completed`, `retrying` (due again at
    /// its backoff: advance the clock), `failed` or `cancelled`.
    pub state: JobState,
    /// The stored result, when it completed with one.
    pub result: Option<Value>,
    /// The attempt's error, when it failed.
    pub error: Option<AttemptError>,
}

impl Attempt {
    /// Whether the job completed.
    pub fn is_completed(&self) -> bool {
        self.state == JobState::Completed
    }

    /// The result decoded as `T` (`None` without a result or when it does not decode).
    pub fn output<T: DeserializeOwned>(&self) -> Option<T> {
        self.result
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
    }
}

/// Settings of a [`Harness`] before it is built.
pub struct HarnessBuilder {
    registry: Registry,
    inline: bool,
    backoff: Backoff,
    clock: Option<TestClock>,
    executor: Arc<dyn Executor>,
}

impl std::fmt::Debug for HarnessBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarnessBuilder")
            .field("registry", &self.registry)
            .field("inline", &self.inline)
            .field("backoff", &self.backoff)
            .field("clock", &self.clock)
            .finish()
    }
}

impl HarnessBuilder {
    /// Inline mode: every enqueue through [`Harness::client`] (a job's `ctx.client()`
    /// included) runs the jobs it inserted that are due before it returns. Off by default
    /// (manual mode: jobs wait for [`Harness::drain`]).
    pub fn inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// The retry backoff. Default: the worker's default without jitter (1 s, 2 s, 4 s, …), so
    /// a retry is due after exactly that much [`Harness::advance`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Uses `clock` (a clone of it keeps control) instead of a new one.
    pub fn clock(mut self, clock: TestClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The executor bodies run on (default: `TokioExecutor`, blocking jobs on the blocking
    /// pool).
    pub fn executor(mut self, executor: Arc<dyn Executor>) -> Self {
        self.executor = executor;
        self
    }

    /// Checks the registry (as a worker's start does: a missing state is an error naming its
    /// type), opens a private in-memory SQLite database on the clock and migrates it.
    pub async fn build(self) -> Result<Harness> {
        self.registry.validate()?;
        let clock = self.clock.unwrap_or_default();
        let sqlite =
            SqliteStorage::connect(SqliteConfig::new("sqlite::memory:").with_clock(clock.shared()))
                .await?;
        sqlite.migrate().await?;
        let storage: Arc<dyn Storage> = Arc::new(sqlite);
        let inline = self.inline;
        let registry = self.registry;
        let runner = Arc::new_cyclic(|weak| {
            let client_storage: Arc<dyn Storage> = if inline {
                Arc::new(InlineStorage {
                    inner: storage.clone(),
                    runner: weak.clone(),
                })
            } else {
                storage.clone()
            };
            let client = Client::new(client_storage).with_clock(clock.shared());
            Runner {
                storage,
                registry: registry.with_state(client.clone()),
                client,
                executor: self.executor,
                backoff: self.backoff,
                clock,
                depth: AtomicUsize::new(0),
            }
        });
        Ok(Harness { runner })
    }
}

/// What runs attempts for a harness (and for its inline client).
pub(super) struct Runner {
    storage: Arc<dyn Storage>,
    registry: Registry,
    client: Client,
    executor: Arc<dyn Executor>,
    backoff: Backoff,
    clock: TestClock,
    depth: AtomicUsize,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("registry", &self.registry)
            .field("clock", &self.clock)
            .finish()
    }
}

fn claim_request(queues: Vec<String>) -> ClaimRequest {
    ClaimRequest {
        queues,
        limit: 1,
        worker_id: "switchyard-testing".to_string(),
        // The clock stands still while a body runs, so the lease only has to outlast the
        // clock moves a body itself makes.
        lease: Duration::from_secs(24 * 3600),
    }
}

impl Runner {
    /// Runs one claimed job's attempt and records it, as a worker does.
    async fn run_one(&self, job: JobRecord) -> Result<Attempt> {
        let user_cancel = AtomicBool::new(job.cancel_requested);
        let outcome = if job.cancel_requested {
            Outcome::Cancelled { error: None }
        } else {
            crate::worker::attempt(
                &self.registry,
                self.executor.as_ref(),
                &self.backoff,
                Some(&self.clock as &dyn Clock),
                &job,
                CancellationToken::new(),
                &user_cancel,
            )
            .await
        };
        let (result, error) = match &outcome {
            Outcome::Succeeded { result } => (result.clone(), None),
            Outcome::Retry { error, .. }
            | Outcome::Failed { error }
            | Outcome::Aborted { error } => (None, Some(error.clone())),
            Outcome::Cancelled { error } => (None, error.clone()),
            _ => (None, None),
        };
        self.storage
            .complete(&[Completion {
                id: job.id,
                token: job.lease_token.unwrap_or_default(),
                outcome,
            }])
            .await?;
        let state = self
            .storage
            .get(job.id)
            .await?
            .map(|r| r.state)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("job {} vanished while it ran", job.id),
                )
            })?;
        Ok(Attempt {
            id: job.id,
            kind: job.kind,
            queue: job.queue,
            attempt: job.attempt,
            state,
            result,
            error,
        })
    }

    /// Inline mode: runs a just-inserted job if it is due.
    pub(super) async fn run_inline(&self, id: JobId, queue: String) -> Result<()> {
        if self.depth.load(Ordering::SeqCst) >= INLINE_DEPTH {
            tracing::warn!(%id, "inline runs nest {INLINE_DEPTH} deep; this job is only stored (drain runs it)");
            return Ok(());
        }
        let Some(job) = self
            .storage
            .claim_ids(&[id], &claim_request(vec![queue]))
            .await?
            .pop()
        else {
            // Not due yet (a delay): it waits for the clock and `drain`.
            return Ok(());
        };
        self.depth.fetch_add(1, Ordering::SeqCst);
        let ran = self.run_one(job).await;
        self.depth.fetch_sub(1, Ordering::SeqCst);
        ran.map(|_| ())
    }
}

/// A test harness for jobs: a private in-memory SQLite storage whose time is a [`TestClock`],
/// the registry under test (its state, plus the harness's [`Client`] for `ctx.client()`), and
/// helpers to enqueue, look at and run jobs deterministically, one at a time, in the test's
/// own task. See the [module docs](crate::testing) for examples.
#[derive(Debug)]
pub struct Harness {
    runner: Arc<Runner>,
}

impl Harness {
    /// A harness in manual mode: enqueued jobs wait until [`Harness::drain`]. Fails (kind
    /// `Config`) when the registry lacks an application state one of its jobs lists in
    /// `required_state`, naming the type, as a worker's start does.
    pub async fn new(registry: Registry) -> Result<Self> {
        Self::builder(registry).build().await
    }

    /// A harness in inline mode: an enqueue through [`Harness::client`] runs the job before it
    /// returns, so its outcome is visible with `client.get(id)` right after.
    pub async fn inline(registry: Registry) -> Result<Self> {
        Self::builder(registry).inline(true).build().await
    }

    /// A harness with more settings (backoff, clock, executor, mode).
    pub fn builder(registry: Registry) -> HarnessBuilder {
        HarnessBuilder {
            registry,
            inline: false,
            backoff: Backoff {
                jitter: 0.0,
                ..Backoff::default()
            },
            clock: None,
            executor: Arc::new(TokioExecutor),
        }
    }

    /// The client on the harness's storage and clock (in inline mode, the one whose enqueues
    /// run jobs). Jobs get the same one as `ctx.client()`.
    pub fn client(&self) -> Client {
        self.runner.client.clone()
    }

    /// The harness's clock; clones share it.
    pub fn clock(&self) -> &TestClock {
        &self.runner.clock
    }

    /// The current test time.
    pub fn now(&self) -> DateTime<Utc> {
        self.runner.clock.now()
    }

    /// Moves the clock forward: delayed jobs and retries whose time has come become due for
    /// the next [`Harness::drain`].
    pub fn advance(&self, by: Duration) {
        self.runner.clock.advance(by);
    }

    /// The storage (the real SQLite one; in inline mode, without the inline runs).
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.runner.storage
    }

    /// The registry, with the harness's client in its state.
    pub fn registry(&self) -> &Registry {
        &self.runner.registry
    }

    /// A context as the harness's jobs get it (the registry's state and the harness's
    /// client), attempt 1, for calling a job's `run` directly.
    pub fn context(&self) -> JobContext {
        JobContext::for_test().with_state_map(self.runner.registry.state_map().clone())
    }

    /// Runs `job`'s body at once with [`Harness::context`], after a JSON round trip of its
    /// arguments (what storing it would do), and returns its typed output. Nothing is stored.
    pub async fn perform<J: Job>(&self, job: J) -> std::result::Result<J::Output, JobError> {
        let payload = serde_json::to_value(&job).map_err(|e| {
            JobError::permanent(format!(
                "the arguments of a `{}` job do not encode as JSON: {e}",
                J::KIND
            ))
        })?;
        let job: J = serde_json::from_value(payload).map_err(|e| {
            JobError::permanent(format!(
                "the arguments of a `{}` job do not decode back from their JSON: {e}",
                J::KIND
            ))
        })?;
        job.run(self.context().with_kind(J::KIND)).await
    }

    /// The waiting (available, scheduled or retrying) jobs of `kind`, oldest first.
    pub async fn enqueued_jobs(&self, kind: &str) -> Result<Vec<JobRecord>> {
        self.list_all(JobFilter {
            states: PENDING.to_vec(),
            kind: Some(kind.to_string()),
            ..JobFilter::default()
        })
        .await
    }

    /// The arguments of the waiting jobs of type `J`, oldest first.
    pub async fn enqueued<J: Job>(&self) -> Result<Vec<J>> {
        self.enqueued_as::<J>(J::KIND).await
    }

    /// The arguments of the waiting jobs of `kind`, decoded as `T` (for blocking jobs and
    /// `register_fn` kinds).
    pub async fn enqueued_as<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>> {
        self.enqueued_jobs(kind)
            .await?
            .into_iter()
            .map(|j| {
                serde_json::from_value(j.payload).map_err(|e| {
                    Error::invalid(format!(
                        "job {} of kind `{kind}` does not decode as {}: {e}",
                        j.id,
                        std::any::type_name::<T>()
                    ))
                })
            })
            .collect()
    }

    /// Asserts that a waiting job of type `J` matches `predicate`, and returns it.
    ///
    /// # Panics
    /// When none does, listing the waiting jobs of that kind (or, without any, the kinds that
    /// are waiting).
    pub async fn assert_enqueued<J: Job>(&self, predicate: impl Fn(&J) -> bool) -> J {
        let jobs = self.enqueued_jobs(J::KIND).await.expect("listing jobs");
        let shown: Vec<String> = jobs.iter().map(|j| j.payload.to_string()).collect();
        for j in jobs {
            if let Ok(job) = serde_json::from_value::<J>(j.payload) {
                if predicate(&job) {
                    return job;
                }
            }
        }
        if shown.is_empty() {
            panic!(
                "expected an enqueued `{}` job, but none is waiting; waiting kinds: {}",
                J::KIND,
                self.waiting_kinds().await
            );
        }
        panic!(
            "expected an enqueued `{}` job matching the predicate; the waiting ones are: {}",
            J::KIND,
            shown.join(", ")
        );
    }

    /// Asserts that no job of type `J` is waiting.
    ///
    /// # Panics
    /// When one is, showing their arguments.
    pub async fn assert_not_enqueued<J: Job>(&self) {
        let jobs = self.enqueued_jobs(J::KIND).await.expect("listing jobs");
        if !jobs.is_empty() {
            let shown: Vec<String> = jobs.iter().map(|j| j.payload.to_string()).collect();
            panic!(
                "expected no enqueued `{}` job, but {} are waiting: {}",
                J::KIND,
                jobs.len(),
                shown.join(", ")
            );
        }
    }

    async fn waiting_kinds(&self) -> String {
        let jobs = self
            .list_all(JobFilter {
                states: PENDING.to_vec(),
                ..JobFilter::default()
            })
            .await
            .unwrap_or_default();
        let mut kinds: Vec<String> = jobs.into_iter().map(|j| j.kind).collect();
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            "(none)".to_string()
        } else {
            kinds.join(", ")
        }
    }

    /// Runs every due job on every queue, one at a time in claim order (priority, then time,
    /// then id), until none is due — jobs that the drained ones enqueue included — and
    /// returns what each attempt came to. Retries and delayed jobs wait for the clock:
    /// [`Harness::advance`] it and drain again, or use [`Harness::drain_all`].
    ///
    /// Fails after [`DRAIN_LIMIT`] attempts (jobs that keep enqueueing jobs).
    pub async fn drain(&self) -> Result<Vec<Attempt>> {
        let mut out = Vec::new();
        self.drain_into(None, &mut out).await?;
        Ok(out)
    }

    /// [`Harness::drain`] for one queue.
    pub async fn drain_queue(&self, queue: &str) -> Result<Vec<Attempt>> {
        let mut out = Vec::new();
        self.drain_into(Some(queue), &mut out).await?;
        Ok(out)
    }

    /// Drains, then moves the clock to the next delayed job or retry and drains again, until
    /// nothing waits: every job runs to its end (completed, failed or cancelled). The clock
    /// is left at the last job's time.
    pub async fn drain_all(&self) -> Result<Vec<Attempt>> {
        let mut out = Vec::new();
        loop {
            self.drain_into(None, &mut out).await?;
            let waiting = self
                .list_all(JobFilter {
                    states: PENDING.to_vec(),
                    ..JobFilter::default()
                })
                .await?;
            match waiting.iter().map(|j| j.run_at).min() {
                Some(next) if next > self.now() => self.runner.clock.set(next),
                _ => return Ok(out),
            }
        }
    }

    async fn drain_into(&self, queue: Option<&str>, out: &mut Vec<Attempt>) -> Result<()> {
        loop {
            let queues = match queue {
                Some(q) => vec![q.to_string()],
                None => self
                    .runner
                    .storage
                    .counts()
                    .await?
                    .into_iter()
                    .map(|c| c.queue)
                    .collect(),
            };
            if queues.is_empty() {
                return Ok(());
            }
            let Some(job) = self
                .runner
                .storage
                .claim(&claim_request(queues))
                .await?
                .pop()
            else {
                return Ok(());
            };
            if out.len() >= DRAIN_LIMIT {
                return Err(Error::invalid(format!(
                    "drain ran {DRAIN_LIMIT} attempts and jobs keep coming (a job that always \
                     enqueues another?); stopped with job {} of kind `{}` claimed",
                    job.id, job.kind
                )));
            }
            out.push(self.runner.run_one(job).await?);
        }
    }

    async fn list_all(&self, mut filter: JobFilter) -> Result<Vec<JobRecord>> {
        filter.order = ListOrder::Asc;
        filter.limit = 1000;
        let mut all = Vec::new();
        loop {
            let page = self.runner.storage.list(&filter).await?;
            let n = page.len();
            filter.after = page.last().map(|j| j.id);
            all.extend(page);
            if n < 1000 {
                return Ok(all);
            }
        }
    }
}
