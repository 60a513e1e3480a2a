//! The [`Storage`] trait: durable job records and every state change of a job.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admin::{HealthCheck, PendingMigration, SchemaStatus};
use crate::capability::StorageCapabilities;
use crate::error::Result;
use crate::flow::{BulkReport, BulkRequest, QueueFlow};
use crate::job::{AttemptError, JobId, JobRecord, JobState, NewJob};
use crate::schedule::{FireOutcome, ScheduleFire, ScheduleRecord};
use crate::wake::WakeSubscription;
use crate::workflow::{
    StepOutputs, WorkflowCancelReport, WorkflowDef, WorkflowId, WorkflowRecord, WorkflowStep,
};

/// What `enqueue` did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "id", rename_all = "snake_case")]
pub enum EnqueueOutcome {
    /// The job was stored under its own id.
    Inserted(JobId),
    /// A live job with the same unique key exists; this is its id and nothing was stored.
    Duplicate(JobId),
}

impl EnqueueOutcome {
    /// The id the caller should keep: the new job's, or the existing duplicate's.
    pub fn id(self) -> JobId {
        match self {
            EnqueueOutcome::Inserted(id) | EnqueueOutcome::Duplicate(id) => id,
        }
    }
}

/// A request to claim runnable jobs.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Only jobs on these queues.
    pub queues: Vec<String>,
    /// At most this many jobs.
    pub limit: usize,
    /// The claiming worker, stored on the job.
    pub worker_id: String,
    /// How long the lease lasts before it must be renewed.
    pub lease: Duration,
}

/// A running job's lease, as the worker holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The job.
    pub id: JobId,
    /// The token its claim returned.
    pub token: Uuid,
}

/// What a heartbeat found for one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// The lease was renewed. `cancel_requested`: a user asked to cancel the job.
    Held {
        /// A user asked to cancel the job.
        cancel_requested: bool,
    },
    /// The job is no longer running under this token (rescued, or finished elsewhere). The
    /// worker must stop the attempt; its completion would be rejected.
    Lost,
}

/// How one attempt ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with an optional result.
    Succeeded {
        /// Stored as the job's result.
        result: Option<serde_json::Value>,
    },
    /// Failed; run again at `run_at` (state `retrying`).
    Retry {
        /// The attempt's error, appended to the history.
        error: AttemptError,
        /// When the next attempt may start (backoff already applied).
        run_at: DateTime<Utc>,
    },
    /// Failed for good (state `failed`).
    Failed {
        /// The attempt's error, appended to the history.
        error: AttemptError,
    },
    /// Stopped because a user cancelled it (state `cancelled`).
    Cancelled {
        /// What the attempt reported, if anything.
        error: Option<AttemptError>,
    },
    /// The worker gave the job up (hard shutdown): back to `available` if attempts are left,
    /// else `dropped`.
    Aborted {
        /// Why it was given up.
        error: AttemptError,
    },
    /// The worker gives back a job it claimed but never started (hard shutdown while the job
    /// waited for a run slot): back to `available` with the claim's attempt undone, so a job on
    /// its last attempt is not dropped without having run.
    Released,
    /// The handler asked to run the job again at `run_at` without counting this attempt as a
    /// failure (snooze): `scheduled` at `run_at` with the claim's attempt undone; no error.
    Snoozed {
        /// When the job may run again.
        run_at: DateTime<Utc>,
    },
}

/// One finished attempt to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The job.
    pub id: JobId,
    /// The lease token of the attempt; fences the completion.
    pub token: Uuid,
    /// How it ended.
    pub outcome: Outcome,
}

/// Whether a completion was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionStatus {
    /// Recorded.
    Applied,
    /// Rejected: the job is no longer running under this token (its lease was lost and it was
    /// rescued, or it was finished by someone else). Nothing changed.
    Stale,
}

/// What `rescue_expired` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueReport {
    /// Jobs whose lease expired and that went back to `available`.
    pub retried: Vec<JobId>,
    /// Jobs whose lease expired with no attempts left, now `dropped`.
    pub dropped: Vec<JobId>,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "state", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job had not started; it is now `cancelled` and will never run.
    Cancelled,
    /// The job is running; its cancellation token fires at the worker's next heartbeat, and it
    /// ends `cancelled`.
    Requested,
    /// The job had already finished in this state; nothing changed.
    AlreadyFinished(JobState),
    /// No such job.
    NotFound,
}

/// What `retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "state", rename_all = "snake_case")]
pub enum RetryOutcome {
    /// The finished job is `available` again (with one more attempt if it had used them all).
    Requeued,
    /// The job is not finished (it is in this state); nothing changed.
    NotFinished(JobState),
    /// No such job.
    NotFound,
}

/// Sort order of `list`, by id (which is creation order for UUID v7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListOrder {
    /// Oldest first.
    Asc,
    /// Newest first.
    #[default]
    Desc,
}

/// A filter for `list`. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobFilter {
    /// Jobs in any of these states.
    pub states: Vec<JobState>,
    /// Jobs on this queue.
    pub queue: Option<String>,
    /// Jobs of this kind.
    pub kind: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Keyset pagination: only jobs past this id in `order` (the last id of the previous page).
    pub after: Option<JobId>,
    /// Page size; 0 means 100. Backends cap it at 1,000.
    pub limit: usize,
    /// Sort order.
    pub order: ListOrder,
}

impl JobFilter {
    /// The page size to use: `limit`, defaulted and capped.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(1000),
        }
    }
}

/// Number of jobs per state on one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Jobs per state; states with no jobs may be absent.
    pub counts: BTreeMap<JobState, u64>,
}

/// A job that the dispatcher should publish to an external queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchItem {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its priority.
    pub priority: i16,
    /// When it becomes runnable.
    pub run_at: DateTime<Utc>,
}

/// Durable job records and the state machine of SPEC §2–§3.
///
/// # Contract (every method)
/// * Every state change is atomic: a reader sees a job before or after a change, never half of
///   it, and two concurrent changes of one job serialise.
/// * Times are the storage's own clock (`now` is taken inside the backend), except where a
///   method takes an explicit instant.
/// * Errors carry a portable [`ErrorKind`](crate::ErrorKind); a backend that cannot be reached
///   returns `Unavailable` and reconnects by itself on later calls.
/// * Running jobs are fenced by their lease token: a change that names a token applies only if
///   the job is still `running` under that token.
///
/// # Methods by area
///
/// | area | methods | relies on |
/// |---|---|---|
/// | identity | [`name`](Storage::name), [`capabilities`](Storage::capabilities), [`as_any`](Storage::as_any) | |
/// | schema | [`migrate`](Storage::migrate), [`destroy`](Storage::destroy), [`schema`](Storage::schema), [`pending_migrations`](Storage::pending_migrations), [`prefixes`](Storage::prefixes) | all but `migrate` may be unsupported |
/// | health | [`health_checks`](Storage::health_checks) | |
/// | records | [`enqueue`](Storage::enqueue), [`get`](Storage::get), [`cancel`](Storage::cancel), [`retry`](Storage::retry) | [`max_payload_bytes`](StorageCapabilities::max_payload_bytes) |
/// | delivery | [`claim`](Storage::claim), [`claim_ids`](Storage::claim_ids), [`subscribe`](Storage::subscribe) | [`priorities`](StorageCapabilities::priorities), [`max_claim_batch`](StorageCapabilities::max_claim_batch), [`cross_process_wakeups`](StorageCapabilities::cross_process_wakeups) |
/// | leases | [`heartbeat`](Storage::heartbeat), [`complete`](Storage::complete), [`rescue_expired`](Storage::rescue_expired) | |
/// | admin | [`list`](Storage::list), [`counts`](Storage::counts) | [`can_list`](StorageCapabilities::can_list) |
/// | maintenance | [`prune`](Storage::prune), [`try_lead`](Storage::try_lead), [`resign`](Storage::resign) | |
/// | workflows | [`enqueue_workflow`](Storage::enqueue_workflow), [`get_workflow`](Storage::get_workflow), [`list_workflows`](Storage::list_workflows), [`cancel_workflow`](Storage::cancel_workflow), [`retry_workflow`](Storage::retry_workflow), [`append_steps`](Storage::append_steps), [`step_outputs`](Storage::step_outputs) | the release of dependents happens inside [`complete`](Storage::complete), [`cancel`](Storage::cancel) and [`rescue_expired`](Storage::rescue_expired); all may be unsupported |
/// | outbox | [`due_for_dispatch`](Storage::due_for_dispatch), [`mark_dispatched`](Storage::mark_dispatched), [`take_for_dispatch`](Storage::take_for_dispatch) | an external [`Queue`](crate::Queue) |
/// | schedules | [`storage_now`](Storage::storage_now), [`list_schedules`](Storage::list_schedules), [`get_schedule`](Storage::get_schedule), [`put_schedule`](Storage::put_schedule), [`remove_schedule`](Storage::remove_schedule), [`fire_schedule`](Storage::fire_schedule) | defaults say `Unsupported`; SQLite, PostgreSQL and Redis implement them |
/// | flow | [`set_queue_flow`](Storage::set_queue_flow), [`queue_flows`](Storage::queue_flows), [`cancel_where`](Storage::cancel_where), [`retry_where`](Storage::retry_where) | bulk actions: [`can_list`](StorageCapabilities::can_list) |
///
/// The methods below appear in that order, each area under its own heading.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for messages and metrics (`sqlite`, `postgres`, `redis`).
    fn name(&self) -> &'static str;

    /// What the backend supports.
    fn capabilities(&self) -> StorageCapabilities;

    /// The concrete storage behind a `dyn Storage`, for what only some backends offer on their
    /// own type: the runtime's transactional enqueue (`Client::enqueue_tx`) downcasts this to
    /// `PostgresStorage` or `SqliteStorage` to join the caller's transaction. The default,
    /// `None`, says the backend has nothing of the kind; a backend that does returns
    /// `Some(self)`, and a wrapper around another storage returns the inner storage's answer.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    // ---- Schema: create, upgrade and remove an instance ----

    /// Creates or upgrades the schema (tables, indexes, scripts). Idempotent and safe to run
    /// from several processes at once.
    async fn migrate(&self) -> Result<()>;

    /// Deletes everything this instance keeps under its prefix — jobs, indexes, leadership
    /// locks and its record of applied migrations — so the prefix is as if never used:
    /// [`migrate`](Storage::migrate) starts it afresh. Irreversible. Stop the instance's
    /// workers first: afterwards their calls fail (SQL backends: no table) or, on Redis,
    /// quietly write parts of an instance nobody migrated. Other prefixes are not touched. For
    /// test suites and benchmarks that make throwaway instances, and for retiring one. The
    /// default says the backend cannot (`ErrorKind::Unsupported`); the conformance suite then
    /// skips its cleanup and the case that checks it.
    async fn destroy(&self) -> Result<()> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} storage cannot destroy an instance", self.name()),
        ))
    }

    /// The schema under the instance's prefix: the latest version applied (`None`: never
    /// migrated, or destroyed since) and the version [`migrate`](Storage::migrate) of this
    /// build brings it to. Only reads: it never creates a file, table or key, so a tool can
    /// ask it of a prefix that may be a typo. Read-only commands (`switchyard list`, `status`,
    /// `queues`, `doctor`) call it first and refuse a prefix without a schema instead of
    /// creating one. The default says the backend cannot tell (`ErrorKind::Unsupported`);
    /// callers then skip the check rather than guess.
    async fn schema(&self) -> Result<SchemaStatus> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} storage cannot report its schema version",
                self.name()
            ),
        ))
    }

    /// What [`migrate`](Storage::migrate) would apply now, in order, without applying
    /// anything (`switchyard migrate --dry-run`): empty when the schema is current. Only
    /// reads, like [`schema`](Storage::schema). The default says the backend cannot tell
    /// (`ErrorKind::Unsupported`).
    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!(
                "the {} storage cannot list its pending migrations",
                self.name()
            ),
        ))
    }

    /// The prefixes of the Switchyard instances with a schema in this database or on this
    /// server (this instance's own among them once migrated), sorted: for the "did you mean"
    /// of a tool that finds no schema under its prefix. Only reads. A backend whose search
    /// is a scan may stop after a bounded number of keys and miss some. The default says the
    /// backend cannot tell (`ErrorKind::Unsupported`).
    async fn prefixes(&self) -> Result<Vec<String>> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} storage cannot list its instances", self.name()),
        ))
    }

    /// The backend's own checks of its server for `switchyard doctor`: what makes jobs unsafe
    /// or slow on it (Redis persistence and eviction policy, the server's clock against this
    /// host's, …). Only reads; never fails: a check that cannot run is reported as a warning
    /// or failure with the reason. Details never contain a password. The default has none.
    async fn health_checks(&self) -> Vec<HealthCheck> {
        Vec::new()
    }

    // ---- Records: store a job, read it, and change it on a user's request ----

    /// Stores jobs, all or none, and returns one outcome per job in input order.
    ///
    /// Each job is validated with [`validate_new_job`](crate::adapter::validate_new_job) first; an
    /// invalid job (a payload over [`StorageCapabilities::max_payload_bytes`], an empty kind)
    /// fails the whole call with its error.
    /// A job whose `run_at` is in the future is `scheduled`, otherwise `available`.
    /// A job with a `unique_key` that matches a live (not finished) job is not stored; its
    /// outcome is `Duplicate(existing id)`. Two jobs with one key in the same call: the first
    /// wins. Enqueued jobs wake subscribed workers.
    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>>;

    /// The job with this id, or `None` when there is none (not an error).
    async fn get(&self, id: JobId) -> Result<Option<JobRecord>>;

    /// Cancels a job: pending → `cancelled` at once; running → the cancel flag is set and the
    /// worker's next heartbeat reports it; finished → reported, unchanged.
    async fn cancel(&self, id: JobId) -> Result<CancelOutcome>;

    /// Runs a finished job (`failed`, `cancelled`, `dropped`, `completed`) again: `available`
    /// now, cancel flag cleared, one more attempt allowed if it had used them all.
    async fn retry(&self, id: JobId) -> Result<RetryOutcome>;

    // ---- Delivery: hand runnable jobs to workers (the storage's own queue, or ids from an external one) ----

    /// Claims up to `req.limit` runnable jobs on `req.queues`: pending (`scheduled`, `available`
    /// or `retrying`) with `run_at <= now` and not cancelled. Order: priority descending, then
    /// `run_at`, then id. Each claimed job becomes `running` with `attempt + 1`, a fresh lease
    /// token, `lease_expires_at = now + req.lease`, `started_at = now` and `worker_id`.
    /// Concurrent claims never return the same job. Returns the claimed records, in that order
    /// ([`claim_order`](crate::adapter::claim_order)).
    ///
    /// Relies on [`StorageCapabilities::priorities`] (without it, priority is ignored) and
    /// returns at most [`StorageCapabilities::max_claim_batch`] jobs.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>>;

    /// Like [`claim`](Storage::claim), restricted to `ids` (deliveries from an external queue).
    /// Ids that are not runnable now (unknown, running, finished, not yet due) are skipped.
    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>>;

    /// A subscription to this backend's wake-ups for idle workers. Backends without wake-ups
    /// return [`WakeSubscription::polling_only`].
    fn subscribe(&self) -> WakeSubscription;

    // ---- Leases: renew a running attempt, record how it ended, rescue the abandoned ones ----

    /// Renews leases to `now + lease` for jobs still running under the given tokens, and
    /// reports per lease (input order) whether it is held and whether a cancel was requested.
    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>>;

    /// Records finished attempts, in one round trip where the backend allows. Each completion
    /// applies only if its job is `running` under its token; otherwise it is `Stale` and
    /// nothing changes. Returns one status per completion, in input order.
    ///
    /// * `Succeeded` → `completed`, result stored, `finished_at = now`.
    /// * `Retry` → `retrying` at `run_at`, error appended.
    /// * `Failed` → `failed`, error appended, `finished_at = now`.
    /// * `Cancelled` → `cancelled`, error appended if any, `finished_at = now`.
    /// * `Aborted` → `available` now if `attempt < max_attempts`, else `dropped`; error appended.
    /// * `Released` → `available` now with `attempt - 1` (the claim's attempt undone); no error.
    /// * `Snoozed` → `scheduled` at `run_at` with `attempt - 1`; no error.
    ///
    /// Every outcome clears the lease (token, expiry, worker).
    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>>;

    /// Rescues up to `limit` running jobs whose lease expired before `now`: back to `available`
    /// when attempts are left, else `dropped` (with `finished_at`), each with a `lease_expired`
    /// error naming the worker. A job that completed in the meantime is never touched.
    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport>;

    // ---- Admin: look at the jobs (`StorageCapabilities::can_list`) ----

    /// One page of jobs matching `filter`, in `filter.order`.
    ///
    /// Requires [`StorageCapabilities::can_list`]: a backend that declares it false should
    /// answer `ErrorKind::Unsupported`, and callers check the capability first.
    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>>;

    /// Job counts per state for every queue that has jobs, sorted by queue name.
    ///
    /// Requires [`StorageCapabilities::can_list`]: a backend that declares it false should
    /// answer `ErrorKind::Unsupported`, and callers check the capability first.
    async fn counts(&self) -> Result<Vec<QueueCounts>>;

    // ---- Maintenance: the leader's services (pruning, leadership) ----

    /// Deletes up to `limit` finished jobs whose `finished_at` is before `before`, with
    /// everything the backend keeps for them. Returns how many were deleted.
    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64>;

    /// Takes or renews the leadership lock `name` for `holder` for `ttl`. Returns whether
    /// `holder` holds it now. Exactly one holder holds a lock at a time; a lock whose holder
    /// stopped renewing it is free once its ttl passes.
    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Gives up the lock if `holder` holds it.
    async fn resign(&self, name: &str, holder: &str) -> Result<()>;

    // ---- Workflows: jobs that wait for other jobs (see `crate::workflow`) ----
    //
    // Contract of the backends that support them (every method below, and the release):
    // * Completing a step (`complete`, or `cancel`/`rescue_expired` finishing it) updates its
    //   dependents in the same atomic operation: a dependent whose dependencies are all done is
    //   `available` (or `scheduled` at its own `run_at`) when the call returns, exactly once even
    //   when two dependencies finish at the same instant.
    // * A dependency that ends `failed`, `cancelled` or `dropped` applies each dependent's
    //   `DepFailure` policy, transitively, so nothing of a workflow stays `blocked` once nothing
    //   can run. A step cancelled that way carries a `dependency_failed` error naming the
    //   upstream step.
    // * `prune` never deletes a step of a workflow that has an unfinished step; a finished
    //   workflow is deleted as a unit once its last step finished before the cutoff.

    /// Inserts a workflow atomically: its record, every step (as a job) and the edges between
    /// them. Validates first ([`WorkflowDef::validate`] and each job as `enqueue` does); an
    /// invalid workflow (a cycle, an unknown dependency, a duplicate step name, …) is a named
    /// `InvalidInput` error and nothing is stored. Steps without dependencies start
    /// `available`/`scheduled`, the others `blocked`. Returns the workflow's id.
    async fn enqueue_workflow(&self, workflow: WorkflowDef) -> Result<WorkflowId> {
        let _ = workflow;
        Err(workflows_unsupported(self.name()))
    }

    /// The workflow with this id and its steps' states, or `None`.
    async fn get_workflow(&self, id: WorkflowId) -> Result<Option<WorkflowRecord>> {
        let _ = id;
        Err(workflows_unsupported(self.name()))
    }

    /// Up to `limit` workflows (0 means 100), newest first, each with its steps.
    async fn list_workflows(&self, limit: usize) -> Result<Vec<WorkflowRecord>> {
        let _ = limit;
        Err(workflows_unsupported(self.name()))
    }

    /// Cancels a workflow: its steps that have not started become `cancelled` and never run;
    /// running ones get a cancel request (they end `cancelled` at their next heartbeat, or
    /// finish as they would), and no dependent is released afterwards. `NotFound` when there is
    /// no such workflow.
    async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowCancelReport> {
        let _ = id;
        Err(workflows_unsupported(self.name()))
    }

    /// Re-runs a workflow's steps that ended `failed`, `cancelled` or `dropped`, and through
    /// them their dependents: each such step is `available` again (one more attempt if it used
    /// them all) when its dependencies are completed, else `blocked`. Completed steps and
    /// their outputs are kept. Clears a user's cancel of the workflow. Returns how many steps
    /// were reset; `NotFound` when there is no such workflow.
    async fn retry_workflow(&self, id: WorkflowId) -> Result<u64> {
        let _ = id;
        Err(workflows_unsupported(self.name()))
    }

    /// Adds steps (and their edges) to an existing workflow, atomically: names must be new,
    /// dependencies may name existing or new steps, and the result must stay acyclic (checked
    /// with [`validate_steps`](crate::workflow::validate_steps)). A new step whose dependencies
    /// have all completed is runnable at once; one with a dependency that already ended
    /// without completing gets its policy applied at insert. Returns the new steps' job ids,
    /// in input order.
    async fn append_steps(
        &self,
        id: WorkflowId,
        steps: Vec<WorkflowStep>,
    ) -> Result<Vec<crate::JobId>> {
        let _ = (id, steps);
        Err(workflows_unsupported(self.name()))
    }

    /// The outputs (stored results) of the dependencies of the step run by `job`, by step
    /// name. Empty for a job that is not a workflow step or has no dependencies.
    async fn step_outputs(&self, job: crate::JobId) -> Result<StepOutputs> {
        let _ = job;
        Err(workflows_unsupported(self.name()))
    }

    // ---- Outbox: feed an external queue (used only when one is configured) ----

    /// Jobs to publish to an external queue: pending, not cancelled, runnable at or before
    /// `horizon`, and either never dispatched or dispatched before `stale_before` (a message
    /// that was lost gets published again). At most `limit`, earliest `run_at` first.
    async fn due_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>>;

    /// Records that these jobs were published (sets their dispatch time to now). Every change
    /// that makes a job runnable again (retry, rescue, abort, user retry) clears it.
    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()>;

    /// [`due_for_dispatch`](Storage::due_for_dispatch) and
    /// [`mark_dispatched`](Storage::mark_dispatched) of what it found, as one step: returns the
    /// jobs it marked, chosen and ordered as `due_for_dispatch` chooses and orders them
    /// (earliest `run_at` first, never-dispatched and lost ones alike). The dispatcher calls
    /// this; a backend that can find and mark in one statement or script overrides it to save
    /// a round trip and a second pass over the rows. Concurrent callers may both take a job (a
    /// duplicate publish is harmless), but a backend that can skip rows another caller is
    /// taking should. Not to be retried blindly: a call whose reply was lost has marked jobs
    /// nobody publishes until `stale_before` passes them.
    async fn take_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        let items = self.due_for_dispatch(horizon, stale_before, limit).await?;
        if !items.is_empty() {
            let ids: Vec<JobId> = items.iter().map(|i| i.id).collect();
            self.mark_dispatched(&ids).await?;
        }
        Ok(items)
    }

    // ---- Schedules: periodic jobs (cron), fired by any number of schedulers ----
    //
    // A schedule is a record keyed by its id (`ScheduleRecord`): its definition (stored as
    // given, compared as a whole), its paused flag, its cursor (every instant at or before it
    // is settled), the last instant fired and the last job, and a version that every write
    // bumps. The pure logic (which instants are due) is in `switchyard_core::schedule`; the
    // storage keeps the records and performs the one atomic firing step. The defaults say the
    // backend has no schedules (`ErrorKind::Unsupported`).

    /// The storage's own clock (PostgreSQL `clock_timestamp()`, Redis `TIME`, SQLite the
    /// configured clock), which schedulers plan with so that a host whose clock is off
    /// neither fires early nor twice. The default reads the host's clock.
    async fn storage_now(&self) -> Result<DateTime<Utc>> {
        Ok(Utc::now())
    }

    /// Every schedule, sorted by id.
    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        Err(no_schedules(self.name()))
    }

    /// The schedule `id`, or `None`.
    async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>> {
        Ok(self
            .list_schedules()
            .await?
            .into_iter()
            .find(|r| r.def.id == id))
    }

    /// Writes `record`'s definition, paused flag and cursor, by compare-and-set:
    /// `expected = None` inserts only if no schedule has the id; `Some(v)` updates only if
    /// the stored version is `v`. The stored version becomes `v + 1` (1 on insert);
    /// `last_fired` and `last_job` are written on insert and kept on update. Returns whether
    /// it wrote.
    async fn put_schedule(&self, record: &ScheduleRecord, expected: Option<u64>) -> Result<bool> {
        let _ = (record, expected);
        Err(no_schedules(self.name()))
    }

    /// Deletes schedule `id` (its jobs stay). Returns whether there was one.
    async fn remove_schedule(&self, id: &str) -> Result<bool> {
        let _ = id;
        Err(no_schedules(self.name()))
    }

    /// The firing step, atomic (one transaction or script): if schedule `fire.id` exists with
    /// version `fire.version`, then
    /// 1. unless the overlap policy holds them back (`skip`: the record's `last_job` is live;
    ///    `buffer_one`: it is pending), inserts `fire.jobs` as [`enqueue`](Storage::enqueue)
    ///    does (a live job holding a job's unique key makes it a `Duplicate`);
    /// 2. sets the cursor to `fire.cursor`, `last_fired` to `fire.fired_for` and `last_job`
    ///    to the last job's id (inserted or duplicate) when jobs went in, and bumps the version.
    ///
    /// Otherwise nothing changes and the answer is [`FireOutcome::Conflict`]. A crash at any
    /// point leaves either everything or nothing, so a tick is neither lost nor doubled.
    async fn fire_schedule(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        let _ = fire;
        Err(no_schedules(self.name()))
    }

    // ---- Flow: stored per-queue settings (pause) and bulk actions by filter ----

    /// Stores the flow settings of `flow.queue` (a record with only defaults removes the
    /// stored one), after [`check_flow`](crate::flow::check_flow). Every claim of every
    /// process honours the change within [`FLOW_REFRESH`](crate::adapter::FLOW_REFRESH) (this
    /// handle's at once): a paused queue's jobs are not claimed ([`claim`](Storage::claim) and
    /// [`claim_ids`](Storage::claim_ids) skip them; they stay pending with their attempts); a
    /// queue with a concurrency or rate limit is claimed with the limit checked in the same
    /// atomic step as the claim — per partition, at most `concurrency` jobs running with an
    /// unexpired lease and at most `rate.limit` claimed attempts in any window of
    /// `rate.period_ms`, skipping the jobs of full partitions — and held jobs stay pending
    /// with their attempts. The default says the backend has no flow control
    /// (`ErrorKind::Unsupported`).
    async fn set_queue_flow(&self, flow: &QueueFlow) -> Result<()> {
        let _ = flow;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("the {} storage has no stored queue settings", self.name()),
        ))
    }

    /// Every stored flow record, sorted by queue name (queues with defaults have none). The
    /// default: none.
    async fn queue_flows(&self) -> Result<Vec<QueueFlow>> {
        Ok(Vec::new())
    }

    /// Cancels up to `req.bound` jobs matching `req.filter` (default states: every pending
    /// and running one), oldest first, each as [`cancel`](Storage::cancel) would; a dry run
    /// only reports them. The default lists and cancels one by one (each atomic); a bound of 0
    /// or over [`MAX_BULK_BOUND`](crate::flow::MAX_BULK_BOUND), or a finished state in the
    /// filter, is `InvalidInput`. Requires [`StorageCapabilities::can_list`].
    async fn cancel_where(&self, req: &BulkRequest) -> Result<BulkReport> {
        crate::flow::bulk_by_listing(self, crate::flow::BulkAction::Cancel, req).await
    }

    /// Runs again up to `req.bound` finished jobs matching `req.filter` (default states:
    /// `failed`, `cancelled`, `dropped`; `completed` only when named), oldest first, each as
    /// [`retry`](Storage::retry) would; a dry run only reports them. Checks as
    /// [`cancel_where`](Storage::cancel_where) does. Requires
    /// [`StorageCapabilities::can_list`].
    async fn retry_where(&self, req: &BulkRequest) -> Result<BulkReport> {
        crate::flow::bulk_by_listing(self, crate::flow::BulkAction::Retry, req).await
    }
}

/// The error of the schedule methods' defaults.
fn no_schedules(name: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Unsupported,
        format!("the {name} storage keeps no schedules"),
    )
}

/// The error of a backend without workflows.
fn workflows_unsupported(name: &str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Unsupported,
        format!("the {name} storage does not support workflows"),
    )
}
