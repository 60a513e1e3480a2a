//! [`RedisStorage`]: the `Storage` implementation: the struct, `connect`, the job
//! transitions (each one Lua script, see `scripts.rs`), and the trait impl, which hands
//! migrations to `migrate.rs`, listing and counts to `admin.rs` and the dispatcher's outbox
//! view to `dispatch.rs`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};
use switchyard_core::adapter::{applied_if, requeued_any, sort_claimed, validate_all, FlowCache};
use switchyard_core::{
    async_trait, AttemptError, CancelOutcome, ClaimRequest, Completion, CompletionStatus,
    DispatchItem, EnqueueOutcome, Error, ErrorKind, HealthCheck, JobFilter, JobId, JobRecord,
    LeaseRef, LeaseStatus, NewJob, Outcome, PendingMigration, QueueCounts, QueueFlow, RescueReport,
    Result, RetryOutcome, SchemaStatus, Storage, StorageCapabilities, WakeHub, WakeSubscription,
};
use uuid::Uuid;

use crate::admin;
use crate::checks;
use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::dispatch;
use crate::flow;
use crate::keys::{Keys, CHUNK};
use crate::listener::{self, Listener};
use crate::migrate;
use crate::record::{completion_args, decode_claimed, decode_flat, enqueue_args, lease_ms, millis};
use crate::schedules;
use crate::scripts::Scripts;
use switchyard_core::schedule::{FireOutcome, ScheduleFire, ScheduleRecord};

/// Switchyard storage on one Redis server (or one slot of a Redis Cluster).
///
/// Cheap to clone: clones share one multiplexed connection, the scripts and the wake-up
/// listener.
#[derive(Clone)]
pub struct RedisStorage {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Arc<Conn>,
    /// The names of the instance's keys, all under `{prefix}:`.
    keys: Keys,
    scripts: Scripts,
    caps: StorageCapabilities,
    finished_ttl_secs: u64,
    wake: WakeHub,
    /// This handle's copy of the stored queue settings (pauses), read by claims.
    flow: FlowCache,
    _listener: Listener,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.inner.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    /// Connects to `config.url` and starts the wake-up listener. Does not migrate.
    ///
    /// A malformed URL or prefix is a `Config` error naming the key; an unreachable server is
    /// `Unavailable`; a server with a memory limit that may evict any key (`allkeys-*`) is a
    /// `Config` error, since it could delete pending jobs, and so is a Redis Cluster node that
    /// does not hold the prefix's slot (the error names the one that does); see
    /// `crate::checks`. Later calls reconnect by themselves.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let (client, conn) = connection::open(&config, "storage").await?;
        let keys = Keys::new(&config.prefix);
        checks::check_server(&conn.get(), &config, "storage", &keys.k("meta")).await?;
        let wake = WakeHub::new();
        let listener = listener::spawn(client, keys.k("wake"), wake.clone());
        let ttl = config.finished_ttl;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                scripts: Scripts::new(),
                caps: StorageCapabilities::full()
                    .with_max_payload_bytes(config.max_payload_bytes)
                    .with_cross_process_wakeups(true),
                // At most 1e12 s (about 31,700 years): Redis refuses an `EXPIRE` whose end in
                // milliseconds overflows, and the completion script sets it last. The
                // runtime's `MAX_REDIS_TTL_SECS` refuses larger configured values.
                finished_ttl_secs: if ttl.is_zero() {
                    0
                } else {
                    ttl.as_secs().clamp(1, 1_000_000_000_000)
                },
                wake,
                flow: FlowCache::new(),
                _listener: listener,
                keys,
            }),
        })
    }

    /// The start of every key of this instance, `{prefix}:`.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// A handle on the shared connection, for tests and tools.
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.get()
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.get()
    }

    /// Maps a failed `what` to Switchyard's error (reconnecting first after `READONLY`).
    fn err(&self, what: &'static str) -> impl Fn(redis::RedisError) -> Error + '_ {
        move |e| self.inner.conn.error(what, e)
    }

    /// What the workflow operations need.
    fn wf(&self) -> crate::workflow::Ctx<'_> {
        crate::workflow::Ctx {
            conn: &self.inner.conn,
            keys: &self.inner.keys,
            caps: &self.inner.caps,
            wake: &self.inner.wake,
        }
    }

    /// The key `{prefix}:<name>`.
    fn k(&self, name: &str) -> String {
        self.inner.keys.k(name)
    }

    /// A call of `script` with the key prefix as its first argument.
    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        self.inner.keys.invocation(script)
    }

    /// Runs an idempotent operation, trying again a few times while the connection is being
    /// re-established (see [`connection::retrying`]).
    async fn retrying<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        connection::retrying(&self.inner.conn, what, op).await
    }

    /// The stored queue settings as this handle's claims see them.
    async fn flows(&self) -> Result<Arc<switchyard_core::adapter::FlowSnapshot>> {
        self.inner
            .flow
            .current(|| flow::load(&self.inner.conn, &self.inner.keys))
            .await
    }

    /// Claims up to `limit` jobs of a queue with a concurrency limit (among `ids`, when
    /// given) with `lua/claim_limited.lua`.
    async fn claim_limited(
        &self,
        lq: &switchyard_core::adapter::LimitedQueue,
        req: &ClaimRequest,
        limit: usize,
        ids: Option<&[JobId]>,
    ) -> Result<Vec<JobRecord>> {
        let limit = limit.min(self.inner.caps.max_claim_batch);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&flow::CLAIM_LIMITED);
        inv.key(self.k("leases"))
            .key(self.k(&format!("ready:{}", lq.queue)))
            .key(self.k(&format!("sched:{}", lq.queue)));
        inv.arg(limit)
            .arg(lease_ms(req.lease))
            .arg(&req.worker_id)
            .arg(Uuid::new_v4().to_string())
            .arg(&lq.queue)
            .arg(lq.concurrency.map(|n| n.to_string()).unwrap_or_default())
            .arg(lq.partition.to_string())
            .arg(flow::LIMITED_SCAN)
            .arg(lq.rate.map(|r| r.limit.to_string()).unwrap_or_default())
            .arg(lq.rate.map(|r| r.period_ms).unwrap_or(0));
        for id in ids.unwrap_or_default() {
            inv.arg(id.to_string());
        }
        // Not retried, as `claim_inner`.
        let reply: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("claim (limited queue)"))?;
        let (claimed, undecodable) = decode_claimed(reply, &req.worker_id)?;
        if !undecodable.is_empty() {
            self.fail_undecodable(undecodable).await;
        }
        Ok(claimed)
    }

    async fn claim_inner(
        &self,
        req: &ClaimRequest,
        ids: Option<&[JobId]>,
    ) -> Result<Vec<JobRecord>> {
        let limit = req.limit.min(self.inner.caps.max_claim_batch);
        if req.queues.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let script = match ids {
            None => &self.inner.scripts.claim,
            Some(_) => &self.inner.scripts.claim_ids,
        };
        let mut inv = self.invocation(script);
        inv.key(self.k("leases"));
        if ids.is_none() {
            for q in &req.queues {
                inv.key(self.k(&format!("ready:{q}")));
                inv.key(self.k(&format!("sched:{q}")));
            }
        }
        inv.arg(limit)
            .arg(lease_ms(req.lease))
            .arg(&req.worker_id)
            .arg(Uuid::new_v4().to_string())
            .arg(req.queues.len());
        for q in &req.queues {
            inv.arg(q);
        }
        for id in ids.unwrap_or_default() {
            inv.arg(id.to_string());
        }
        // Not retried: if the reply is lost, the claimed jobs sit in the lease set and the
        // rescuer returns them once their lease expires.
        let reply: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("claim"))?;
        let (claimed, undecodable) = decode_claimed(reply, &req.worker_id)?;
        if !undecodable.is_empty() {
            self.fail_undecodable(undecodable).await;
        }
        Ok(claimed)
    }

    /// Fails claimed jobs whose stored record does not decode, naming why, instead of leaving
    /// them to be claimed and rescued until their attempts run out. (If this fails too, their
    /// leases expire and the rescuer takes them back.)
    async fn fail_undecodable(&self, jobs: Vec<crate::record::Undecodable>) {
        let now = Utc::now();
        let completions: Vec<Completion> = jobs
            .into_iter()
            .map(|j| {
                tracing::error!(
                    job = %j.id,
                    reason = %j.reason,
                    "a claimed job's stored record does not decode; failing it"
                );
                Completion {
                    id: j.id,
                    token: j.token,
                    outcome: Outcome::Failed {
                        error: AttemptError {
                            attempt: j.attempt,
                            at: now,
                            kind: "decode".into(),
                            message: format!(
                                "the job's stored record does not decode: {}",
                                j.reason
                            ),
                        },
                    },
                }
            })
            .collect();
        if let Err(e) = self.complete(&completions).await {
            tracing::warn!(error = %e, "could not fail undecodable jobs; their leases will expire");
        }
    }
}

#[async_trait]
impl Storage for RedisStorage {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> StorageCapabilities {
        self.inner.caps.clone()
    }

    async fn migrate(&self) -> Result<()> {
        migrate::migrate(&self.inner.conn, &self.inner.keys, &self.inner.scripts).await
    }

    async fn destroy(&self) -> Result<()> {
        migrate::destroy(&self.inner.conn, &self.inner.keys).await
    }

    async fn schema(&self) -> Result<SchemaStatus> {
        migrate::schema(&self.inner.conn, &self.inner.keys).await
    }

    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>> {
        migrate::pending(&self.inner.conn, &self.inner.keys, &self.inner.scripts).await
    }

    async fn prefixes(&self) -> Result<Vec<String>> {
        migrate::prefixes(&self.inner.conn).await
    }

    async fn health_checks(&self) -> Vec<HealthCheck> {
        checks::health_checks(&self.conn(), true).await
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        validate_all(&jobs, &self.inner.caps)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let args = enqueue_args(&jobs)?;
        // Retried on a dropped connection: a retry after a lost reply finds its own ids stored
        // (see below).
        let rows: Vec<(i64, String)> = self
            .retrying("enqueue", |mut c| {
                let mut inv = self.invocation(&self.inner.scripts.enqueue);
                inv.key(self.k("unique")).key(self.k("queues"));
                for a in &args {
                    inv.arg(a);
                }
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut any = false;
        for (job, (inserted, id)) in jobs.iter().zip(rows) {
            let id = Uuid::parse_str(&id).map_err(|e| {
                Error::corrupt(format!("Redis enqueue returned a bad id `{id}`: {e}"))
            })?;
            // A job whose own id is already stored was stored by this call's earlier try
            // (ids are fresh UUID v7s), so it counts as inserted.
            if inserted == 1 || id == job.id {
                any = true;
                out.push(EnqueueOutcome::Inserted(job.id));
            } else {
                out.push(EnqueueOutcome::Duplicate(id));
            }
        }
        if any {
            self.inner.wake.notify();
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let key = self.inner.keys.job(&id.to_string());
        let flat: Vec<String> = self
            .retrying("get job", |mut c| {
                let key = key.clone();
                async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
            })
            .await?;
        decode_flat(flat)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let flows = self.flows().await?;
        let plan = flows.plan(req);
        if plan.limited.is_empty() {
            return self.claim_inner(&plan.plain, None).await;
        }
        let mut out = self.claim_inner(&plan.plain, None).await?;
        for lq in &plan.limited {
            let left = req.limit.saturating_sub(out.len());
            out.extend(self.claim_limited(lq, req, left, None).await?);
        }
        sort_claimed(&mut out);
        Ok(out)
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let flows = self.flows().await?;
        let plan = flows.plan(req);
        let mut out = Vec::new();
        for lq in &plan.limited {
            for chunk in ids.chunks(CHUNK) {
                let left = req.limit.saturating_sub(out.len());
                out.extend(self.claim_limited(lq, req, left, Some(chunk)).await?);
            }
        }
        let req: &ClaimRequest = &plan.plain;
        for chunk in ids.chunks(CHUNK) {
            let mut r = req.clone();
            r.limit = chunk.len().min(req.limit.saturating_sub(out.len()));
            if r.limit == 0 {
                break;
            }
            out.extend(self.claim_inner(&r, Some(chunk)).await?);
        }
        sort_claimed(&mut out);
        Ok(out)
    }

    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>> {
        let mut out = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(CHUNK) {
            let codes: Vec<i64> = self
                .retrying("heartbeat", |mut c| {
                    let mut inv = self.invocation(&self.inner.scripts.heartbeat);
                    inv.key(self.k("leases")).arg(lease_ms(lease));
                    for l in chunk {
                        inv.arg(l.id.to_string()).arg(l.token.to_string());
                    }
                    async move { inv.invoke_async(&mut c).await }
                })
                .await?;
            out.extend(codes.into_iter().map(|c| match c {
                0 => LeaseStatus::Lost,
                c => LeaseStatus::Held {
                    cancel_requested: c == 2,
                },
            }));
        }
        Ok(out)
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
        let args = completion_args(self.inner.finished_ttl_secs, completions)?;
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        // Retried on a dropped connection: completions are fenced by token, so a second try
        // after a lost reply changes nothing (and reports those as stale).
        let codes: Vec<i64> = self
            .retrying("complete", |mut c| {
                let mut inv = self.invocation(&self.inner.scripts.complete);
                inv.key(self.k("leases"))
                    .key(self.k("finlog"))
                    .key(self.k("unique"));
                for a in &args {
                    inv.arg(a);
                }
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        let statuses: Vec<CompletionStatus> =
            codes.into_iter().map(|c| applied_if(c == 1)).collect();
        if requeued_any(completions, &statuses) {
            self.inner.wake.notify();
        }
        Ok(statuses)
    }

    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport> {
        if limit == 0 {
            return Ok(RescueReport::default());
        }
        let mut inv = self.invocation(&self.inner.scripts.rescue);
        inv.key(self.k("leases"))
            .key(self.k("finlog"))
            .key(self.k("unique"))
            .arg(millis(now))
            .arg(now.to_rfc3339_opts(SecondsFormat::Millis, true))
            .arg(limit)
            .arg(self.inner.finished_ttl_secs);
        let (retried, dropped): (Vec<String>, Vec<String>) = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("rescue"))?;
        let parse = |ids: Vec<String>| -> Result<Vec<JobId>> {
            ids.iter()
                .map(|s| {
                    Uuid::parse_str(s)
                        .map_err(|e| Error::corrupt(format!("bad job id `{s}` in leases: {e}")))
                })
                .collect()
        };
        let report = RescueReport {
            retried: parse(retried)?,
            dropped: parse(dropped)?,
        };
        if !report.retried.is_empty() {
            self.inner.wake.notify();
        }
        Ok(report)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let mut inv = self.invocation(&self.inner.scripts.cancel);
        inv.key(self.k("finlog"))
            .key(self.k("unique"))
            .arg(id.to_string())
            .arg(self.inner.finished_ttl_secs);
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("cancel"))?;
        Ok(match r.first().map(String::as_str) {
            Some("cancelled") => CancelOutcome::Cancelled,
            Some("requested") => CancelOutcome::Requested,
            Some("finished") => CancelOutcome::AlreadyFinished(
                r.get(1).map(String::as_str).unwrap_or_default().parse()?,
            ),
            _ => CancelOutcome::NotFound,
        })
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        let mut inv = self.invocation(&self.inner.scripts.retry);
        inv.key(self.k("unique")).arg(id.to_string());
        let r: Vec<String> = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("retry"))?;
        let outcome = match r.first().map(String::as_str) {
            Some("requeued") => RetryOutcome::Requeued,
            Some("not_finished") => {
                RetryOutcome::NotFinished(r.get(1).map(String::as_str).unwrap_or_default().parse()?)
            }
            Some("conflict") => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "job {id} cannot be retried: live job {} holds its unique key",
                        r.get(1).map(String::as_str).unwrap_or("?")
                    ),
                )
                .set_retryable(false))
            }
            _ => RetryOutcome::NotFound,
        };
        if outcome == RetryOutcome::Requeued {
            self.inner.wake.notify();
        }
        Ok(outcome)
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        admin::list(&self.inner.conn, &self.inner.keys, filter).await
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        admin::counts(&self.inner.conn, &self.inner.keys).await
    }

    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let n: u64 = self
            .retrying("prune", |mut c| {
                let mut inv = self.invocation(&self.inner.scripts.prune);
                inv.key(self.k("finlog"))
                    .key(self.k("queues"))
                    .key(self.k("leases"))
                    .arg(millis(before))
                    .arg(limit);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        // Workflows go as a unit, once every step finished before the cutoff.
        let rest = limit.saturating_sub(n as usize);
        Ok(n + crate::workflow::prune(&self.wf(), before, rest).await?)
    }

    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut inv = self.invocation(&self.inner.scripts.lead);
        inv.key(self.k(&format!("lead:{name}")))
            .arg(holder)
            .arg((ttl.as_millis() as u64).max(1));
        let held: i64 = inv
            .invoke_async(&mut self.conn())
            .await
            .map_err(self.err("leadership"))?;
        Ok(held == 1)
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        let key = self.k(&format!("lead:{name}"));
        self.retrying("resign leadership", |mut c| {
            let mut inv = self.invocation(&self.inner.scripts.resign);
            inv.key(&key).arg(holder);
            async move { inv.invoke_async::<i64>(&mut c).await }
        })
        .await?;
        Ok(())
    }

    async fn due_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        dispatch::due_for_dispatch(
            &self.inner.conn,
            &self.inner.keys,
            horizon,
            stale_before,
            limit,
        )
        .await
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        let script = &self.inner.scripts.dispatched;
        dispatch::mark_dispatched(&self.inner.conn, &self.inner.keys, script, ids).await
    }

    // ---- Schedules ----

    async fn storage_now(&self) -> Result<DateTime<Utc>> {
        schedules::now(&self.inner.conn).await
    }

    async fn list_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        schedules::list(&self.inner.conn, &self.inner.keys).await
    }

    async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>> {
        schedules::get(&self.inner.conn, &self.inner.keys, id).await
    }

    async fn put_schedule(&self, record: &ScheduleRecord, expected: Option<u64>) -> Result<bool> {
        schedules::put(&self.inner.conn, &self.inner.keys, record, expected).await
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool> {
        schedules::remove(&self.inner.conn, &self.inner.keys, id).await
    }

    async fn fire_schedule(&self, fire: &ScheduleFire) -> Result<FireOutcome> {
        let i = &self.inner;
        schedules::fire(&i.conn, &i.keys, &i.caps, &i.wake, fire).await
    }

    fn subscribe(&self) -> WakeSubscription {
        self.inner.wake.subscribe()
    }

    // ---- Workflows ----

    async fn enqueue_workflow(
        &self,
        workflow: switchyard_core::WorkflowDef,
    ) -> Result<switchyard_core::WorkflowId> {
        crate::workflow::enqueue_workflow(&self.wf(), workflow).await
    }

    async fn get_workflow(
        &self,
        id: switchyard_core::WorkflowId,
    ) -> Result<Option<switchyard_core::WorkflowRecord>> {
        crate::workflow::get_workflow(&self.wf(), id).await
    }

    async fn list_workflows(&self, limit: usize) -> Result<Vec<switchyard_core::WorkflowRecord>> {
        crate::workflow::list_workflows(&self.wf(), limit).await
    }

    async fn cancel_workflow(
        &self,
        id: switchyard_core::WorkflowId,
    ) -> Result<switchyard_core::WorkflowCancelReport> {
        crate::workflow::cancel_workflow(&self.wf(), id).await
    }

    async fn retry_workflow(&self, id: switchyard_core::WorkflowId) -> Result<u64> {
        crate::workflow::retry_workflow(&self.wf(), id).await
    }

    async fn append_steps(
        &self,
        id: switchyard_core::WorkflowId,
        steps: Vec<switchyard_core::WorkflowStep>,
    ) -> Result<Vec<JobId>> {
        crate::workflow::append_steps(&self.wf(), id, steps).await
    }

    async fn step_outputs(&self, job: JobId) -> Result<switchyard_core::StepOutputs> {
        crate::workflow::step_outputs(&self.wf(), job).await
    }

    // ---- Flow ----

    async fn set_queue_flow(&self, queue_flow: &QueueFlow) -> Result<()> {
        switchyard_core::flow::check_flow(queue_flow)?;
        flow::store(&self.inner.conn, &self.inner.keys, queue_flow).await?;
        self.inner.flow.invalidate();
        Ok(())
    }

    async fn queue_flows(&self) -> Result<Vec<QueueFlow>> {
        flow::load(&self.inner.conn, &self.inner.keys).await
    }
}
