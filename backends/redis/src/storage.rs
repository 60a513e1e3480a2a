//! [`RedisStorage`]: the `Storage` implementation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};
use switchyard_core::{
    async_trait, validate_new_job, AttemptError, CancelOutcome, ClaimRequest, Completion,
    CompletionStatus, DispatchItem, EnqueueOutcome, Error, ErrorKind, JobFilter, JobId, JobRecord,
    JobState, LeaseRef, LeaseStatus, ListOrder, NewJob, Outcome, QueueCounts, RescueReport, Result,
    RetryOutcome, Storage, StorageCapabilities, WakeHub, WakeSubscription,
};
use uuid::Uuid;

use crate::checks;
use crate::config::RedisConfig;
use crate::connection::{self, Conn};
use crate::listener::{self, Listener};
use crate::record::{decode_claimed, decode_flat, from_millis, millis};
use crate::scripts::Scripts;

/// Most ids one `claim_ids`, `mark_dispatched` or `list` round trip handles.
const CHUNK: usize = 1000;
/// The schema version written by `migrate`. Version 2 dropped the per-queue `running` state
/// indexes (the lease set lists running jobs) and replaced the `finished` sorted set with the
/// `finlog` list. Version 3 names each lease in the lease set as `<id>|<token>` instead of
/// the bare id.
const SCHEMA_VERSION: u32 = 3;

/// One step of the version 1 → 2 migration: moves the first thousand members of the
/// `finished` sorted set (`<state>|<id>|<queue>` scored by finish time) to the end of the
/// finish log as `<finished_at>|<state>|<id>|<queue>`. Returns how many moved.
const MIGRATE_FINISHED_STEP: &str = r"
local m = redis.call('ZRANGE', KEYS[1], 0, 999, 'WITHSCORES')
if #m == 0 then return 0 end
local out = {}
for i = 1, #m, 2 do out[#out + 1] = string.format('%.0f', tonumber(m[i + 1])) .. '|' .. m[i] end
redis.call('RPUSH', KEYS[2], unpack(out))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #out - 1)
return #out
";

/// A lease in milliseconds, at most 10^12 (about 31 years): scripts add it to the server's
/// clock and format the deadline as a 64-bit integer, which a longer one would overflow.
fn lease_ms(lease: Duration) -> u64 {
    (lease.as_millis() as u64).min(1_000_000_000_000)
}

/// The version 2 → 3 migration: rewrites each bare-id member of the lease set as
/// `<id>|<lease token>` with the same deadline, and drops those whose job is not running.
/// ARGV: the key prefix. Returns how many members it rewrote. (The lease set holds running
/// jobs only, a few per worker slot, so one atomic call takes them all.)
const MIGRATE_LEASES: &str = r"
local m = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local n = 0
for i = 1, #m, 2 do
  local id = m[i]
  if not string.find(id, '|', 1, true) then
    redis.call('ZREM', KEYS[1], id)
    local f = redis.call('HMGET', ARGV[1] .. 'job:' .. id, 'state', 'lease_token')
    if f[1] == 'running' and f[2] and f[2] ~= '' then
      redis.call('ZADD', KEYS[1], m[i + 1], id .. '|' .. f[2])
    end
    n = n + 1
  end
end
return n
";

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
    /// `{prefix}:` — every key starts with it.
    p: String,
    scripts: Scripts,
    caps: StorageCapabilities,
    finished_ttl_secs: u64,
    wake: WakeHub,
    _listener: Listener,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("prefix", &self.inner.p)
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
        let probe = format!("{{{}}}:meta", config.prefix);
        checks::check_server(&conn.get(), &config, "storage", &probe).await?;
        let p = format!("{{{}}}:", config.prefix);
        let wake = WakeHub::new();
        let listener = listener::spawn(client, format!("{p}wake"), wake.clone());
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
                _listener: listener,
                p,
            }),
        })
    }

    /// The start of every key of this instance, `{prefix}:`.
    pub fn key_prefix(&self) -> &str {
        &self.inner.p
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

    fn k(&self, name: &str) -> String {
        format!("{}{name}", self.inner.p)
    }

    fn job_key(&self, id: &str) -> String {
        format!("{}job:{id}", self.inner.p)
    }

    fn state_key(&self, queue: &str, state: JobState) -> String {
        format!("{}s:{queue}:{}", self.inner.p, state.as_str())
    }

    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.arg(&self.inner.p);
        inv
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

    async fn get_many(&self, ids: &[String]) -> Result<Vec<JobRecord>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<Vec<String>> = self
                .retrying("get jobs", |mut c| {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.cmd("HGETALL").arg(self.job_key(id));
                    }
                    async move { pipe.query_async(&mut c).await }
                })
                .await?;
            for row in rows {
                // A hash that expired (finished_ttl) before the pruner ran is skipped.
                out.extend(decode_flat(row)?);
            }
        }
        Ok(out)
    }

    /// The running jobs as (id, queue): the lease set names them (running jobs have no
    /// per-queue state index, see `reindex` in `lua/prelude.lua`), their hashes give their
    /// queue. Stale lease entries (jobs no longer running, or running under another lease)
    /// are left out.
    async fn running_jobs(&self) -> Result<Vec<(String, String)>> {
        let leases = self.k("leases");
        let members: Vec<String> = self
            .retrying("read the lease set", |mut c| {
                let leases = leases.clone();
                async move {
                    redis::cmd("ZRANGE")
                        .arg(leases)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        // A member is `<id>|<token>` (see LEASES in `lua/prelude.lua`).
        let leases: Vec<(&str, &str)> = members
            .iter()
            .map(|m| m.split_once('|').unwrap_or((m, "")))
            .collect();
        let mut out = Vec::with_capacity(leases.len());
        for chunk in leases.chunks(CHUNK) {
            let rows: Vec<(Option<String>, Option<String>, Option<String>)> = self
                .retrying("read running jobs", |mut c| {
                    let mut pipe = redis::pipe();
                    for (id, _) in chunk {
                        pipe.cmd("HMGET")
                            .arg(self.job_key(id))
                            .arg("state")
                            .arg("queue")
                            .arg("lease_token");
                    }
                    async move { pipe.query_async(&mut c).await }
                })
                .await?;
            for ((id, token), (state, queue, current)) in chunk.iter().zip(rows) {
                if let (Some("running"), Some(q)) = (state.as_deref(), queue) {
                    if current.as_deref() == Some(*token) {
                        out.push((id.to_string(), q));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn queues(&self) -> Result<Vec<String>> {
        let key = self.k("queues");
        let mut queues: Vec<String> = self
            .retrying("list queues", |mut c| {
                let key = key.clone();
                async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await }
            })
            .await?;
        queues.sort();
        Ok(queues)
    }
}

fn error_json(e: &switchyard_core::AttemptError) -> Result<String> {
    Ok(serde_json::to_string(e)?)
}

fn matches(filter: &JobFilter, r: &JobRecord) -> bool {
    (filter.states.is_empty() || filter.states.contains(&r.state))
        && filter.queue.as_ref().map_or(true, |q| &r.queue == q)
        && filter.kind.as_ref().map_or(true, |k| &r.kind == k)
        && filter.created_after.map_or(true, |t| r.created_at >= t)
        && filter.created_before.map_or(true, |t| r.created_at < t)
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
        let mut conn = self.conn();
        for script in self.inner.scripts.all() {
            script
                .load_async(&mut conn)
                .await
                .map_err(self.err("load scripts"))?;
        }
        let meta = self.k("meta");
        let current: Option<u32> = redis::cmd("HGET")
            .arg(&meta)
            .arg("schema")
            .query_async(&mut conn)
            .await
            .map_err(self.err("read schema version"))?;
        if let Some(v) = current.filter(|v| *v > SCHEMA_VERSION) {
            return Err(Error::config(format!(
                "Redis keys under `{}` have schema version {v}, newer than this build's \
                 {SCHEMA_VERSION}; upgrade switchyard-redis",
                self.inner.p
            )));
        }
        if current == Some(1) {
            // Version 2 keeps finished jobs in a finish log (a list) instead of a sorted set:
            // the entries move over in finishing order, a thousand per atomic step.
            let step = Script::new(MIGRATE_FINISHED_STEP);
            loop {
                let moved: i64 = step
                    .key(self.k("finished"))
                    .key(self.k("finlog"))
                    .invoke_async(&mut conn)
                    .await
                    .map_err(self.err("move finished jobs to the finish log"))?;
                if moved == 0 {
                    break;
                }
            }
            // Version 2 lists running jobs by the lease set alone: the per-queue `running`
            // indexes of version 1 are dropped.
            let stale: Vec<String> = self
                .queues()
                .await?
                .iter()
                .map(|q| self.state_key(q, JobState::Running))
                .collect();
            for chunk in stale.chunks(CHUNK) {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async(&mut conn)
                    .await
                    .map_err(self.err("drop the version 1 running indexes"))?;
            }
        }
        if matches!(current, Some(1 | 2)) {
            // Version 3 names each lease by job id and token.
            let _: i64 = Script::new(MIGRATE_LEASES)
                .key(self.k("leases"))
                .arg(&self.inner.p)
                .invoke_async(&mut conn)
                .await
                .map_err(self.err("name the lease set's leases by token"))?;
        }
        let () = redis::cmd("HSET")
            .arg(&meta)
            .arg("schema")
            .arg(SCHEMA_VERSION)
            .query_async(&mut conn)
            .await
            .map_err(self.err("write schema version"))?;
        Ok(())
    }

    async fn destroy(&self) -> Result<()> {
        // Every key of the instance starts with `{prefix}:` (prefixes are letters, digits,
        // `_`, `-` and `.`, so the pattern matches nothing else).
        let pattern = format!("{}*", self.inner.p);
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(self.err("scan keys to destroy"))?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(self.err("unlink keys"))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        for job in &jobs {
            validate_new_job(job, &self.inner.caps)?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<String> = Vec::with_capacity(2 + jobs.len() * 10);
        args.push(jobs.len().to_string());
        for job in &jobs {
            args.push(job.id.to_string());
            args.push(job.kind.clone());
            args.push(job.queue.clone());
            args.push(serde_json::to_string(&job.payload)?);
            args.push(job.priority.to_string());
            args.push(job.max_attempts.to_string());
            args.push(
                job.run_at
                    .map(|t| millis(t).to_string())
                    .unwrap_or_default(),
            );
            args.push(match &job.unique_key {
                Some(k) => format!("+{k}"),
                None => "-".to_string(),
            });
            args.push(job.timeout_ms.map(|t| t.to_string()).unwrap_or_default());
            args.push(serde_json::to_string(&job.tags)?);
        }
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
        let key = self.job_key(&id.to_string());
        let flat: Vec<String> = self
            .retrying("get job", |mut c| {
                let key = key.clone();
                async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
            })
            .await?;
        decode_flat(flat)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        self.claim_inner(req, None).await
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut r = req.clone();
            r.limit = chunk.len().min(req.limit.saturating_sub(out.len()));
            if r.limit == 0 {
                break;
            }
            out.extend(self.claim_inner(&r, Some(chunk)).await?);
        }
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
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
        let mut args: Vec<String> = Vec::with_capacity(1 + completions.len() * 5);
        args.push(self.inner.finished_ttl_secs.to_string());
        for c in completions {
            args.push(c.id.to_string());
            args.push(c.token.to_string());
            let (code, a1, a2) = match &c.outcome {
                Outcome::Succeeded { result } => (
                    "S",
                    match result {
                        Some(r) => format!("+{}", serde_json::to_string(r)?),
                        None => "-".to_string(),
                    },
                    String::new(),
                ),
                Outcome::Retry { error, run_at } => {
                    ("R", error_json(error)?, millis(*run_at).to_string())
                }
                Outcome::Failed { error } => ("F", error_json(error)?, String::new()),
                Outcome::Cancelled { error } => (
                    "C",
                    match error {
                        Some(e) => format!("+{}", error_json(e)?),
                        None => "-".to_string(),
                    },
                    String::new(),
                ),
                Outcome::Aborted { error } => ("A", error_json(error)?, String::new()),
                Outcome::Released => ("L", String::new(), String::new()),
            };
            args.push(code.to_string());
            args.push(a1);
            args.push(a2);
        }
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
        if completions
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Aborted { .. } | Outcome::Released))
        {
            self.inner.wake.notify();
        }
        Ok(codes
            .into_iter()
            .map(|c| {
                if c == 1 {
                    CompletionStatus::Applied
                } else {
                    CompletionStatus::Stale
                }
            })
            .collect())
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
        let page = filter.page_size();
        let queues = match &filter.queue {
            Some(q) => vec![q.clone()],
            None => self.queues().await?,
        };
        let states: Vec<JobState> = if filter.states.is_empty() {
            JobState::ALL.to_vec()
        } else {
            filter.states.clone()
        };
        let desc = filter.order == ListOrder::Desc;
        // Running jobs have no per-queue index: the lease set names them all (a few per
        // worker slot); those of the listed queues are read once and ordered here.
        let mut running: Vec<String> = Vec::new();
        if states.contains(&JobState::Running) {
            running = self
                .running_jobs()
                .await?
                .into_iter()
                .filter(|(_, q)| queues.contains(q))
                .map(|(id, _)| id)
                .collect();
            running.sort();
            if desc {
                running.reverse();
            }
        }
        let keys: Vec<String> = queues
            .iter()
            .flat_map(|q| states.iter().map(move |s| (q, *s)))
            .filter(|(_, s)| *s != JobState::Running)
            .map(|(q, s)| self.state_key(q, s))
            .collect();
        let batch = page.max(50);
        let mut cursor = filter.after.map(|id| id.to_string());
        let mut out = Vec::with_capacity(page);
        while !keys.is_empty() || !running.is_empty() {
            // The next `batch` ids of every index past the cursor (each index is a
            // lexicographic sorted set of ids, and UUID v7 ids sort by creation).
            let mut lists: Vec<Vec<String>> = if keys.is_empty() {
                Vec::new()
            } else {
                self.retrying("list", |mut c| {
                    let mut pipe = redis::pipe();
                    let start = match (&cursor, desc) {
                        (Some(c), _) => format!("({c}"),
                        (None, false) => "-".to_string(),
                        (None, true) => "+".to_string(),
                    };
                    for k in &keys {
                        if desc {
                            pipe.cmd("ZREVRANGEBYLEX").arg(k).arg(&start).arg("-");
                        } else {
                            pipe.cmd("ZRANGEBYLEX").arg(k).arg(&start).arg("+");
                        }
                        pipe.arg("LIMIT").arg(0).arg(batch);
                    }
                    async move { pipe.query_async(&mut c).await }
                })
                .await?
            };
            if !running.is_empty() {
                let past = |id: &&String| match &cursor {
                    None => true,
                    Some(c) if desc => id.as_str() < c.as_str(),
                    Some(c) => id.as_str() > c.as_str(),
                };
                lists.push(running.iter().filter(past).take(batch).cloned().collect());
            }
            // Merged order is complete only up to the nearest last id of a full list.
            let bound = lists
                .iter()
                .filter(|l| l.len() == batch)
                .filter_map(|l| l.last().cloned())
                .reduce(|a, b| if desc { a.max(b) } else { a.min(b) });
            let mut ids: Vec<String> = lists
                .into_iter()
                .flatten()
                .filter(|id| match &bound {
                    None => true,
                    Some(b) if desc => id >= b,
                    Some(b) => id <= b,
                })
                .collect();
            ids.sort();
            ids.dedup();
            if desc {
                ids.reverse();
            }
            for r in self.get_many(&ids).await? {
                if matches(filter, &r) {
                    out.push(r);
                    if out.len() == page {
                        return Ok(out);
                    }
                }
            }
            match bound {
                Some(b) => cursor = Some(b),
                None => break,
            }
        }
        Ok(out)
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        use std::collections::BTreeMap;
        let queues = self.queues().await?;
        let mut by_queue: BTreeMap<String, BTreeMap<JobState, u64>> = BTreeMap::new();
        let indexed: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| *s != JobState::Running)
            .collect();
        for chunk in queues.chunks(CHUNK / indexed.len()) {
            let n: Vec<u64> = self
                .retrying("count", |mut c| {
                    let mut pipe = redis::pipe();
                    for q in chunk {
                        for s in &indexed {
                            pipe.cmd("ZCARD").arg(self.state_key(q, *s));
                        }
                    }
                    async move { pipe.query_async(&mut c).await }
                })
                .await?;
            for (q, per_state) in chunk.iter().zip(n.chunks(indexed.len())) {
                let counts = by_queue.entry(q.clone()).or_default();
                for (s, n) in indexed.iter().zip(per_state) {
                    if *n > 0 {
                        counts.insert(*s, *n);
                    }
                }
            }
        }
        for (_, q) in self.running_jobs().await? {
            *by_queue
                .entry(q)
                .or_default()
                .entry(JobState::Running)
                .or_default() += 1;
        }
        Ok(by_queue
            .into_iter()
            .filter(|(_, counts)| !counts.is_empty())
            .map(|(queue, counts)| QueueCounts { queue, counts })
            .collect())
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
        Ok(n)
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Candidates: the front of every ready set and the schedule up to the horizon.
        let queues = self.queues().await?;
        let scan = (limit * 4).max(100);
        let lists: Vec<Vec<String>> = self
            .retrying("find jobs to dispatch", |mut c| {
                let mut pipe = redis::pipe();
                for q in &queues {
                    pipe.cmd("ZRANGE")
                        .arg(self.k(&format!("ready:{q}")))
                        .arg(0)
                        .arg(scan - 1);
                    pipe.cmd("ZRANGEBYSCORE")
                        .arg(self.k(&format!("sched:{q}")))
                        .arg("-inf")
                        .arg(millis(horizon))
                        .arg("LIMIT")
                        .arg(0)
                        .arg(scan);
                }
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        let mut seen = HashSet::new();
        let ids: Vec<String> = lists
            .into_iter()
            .flatten()
            .map(|m| match m.split_once('|') {
                Some((_, id)) => id.to_string(),
                None => m,
            })
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let stale = millis(stale_before);
        let mut items = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let rows: Vec<Vec<Option<String>>> = self
                .retrying("find jobs to dispatch", |mut c| {
                    let mut pipe = redis::pipe();
                    for id in chunk {
                        pipe.cmd("HMGET").arg(self.job_key(id)).arg(&[
                            "state",
                            "queue",
                            "priority",
                            "run_at",
                            "dispatched_at",
                        ]);
                    }
                    async move { pipe.query_async(&mut c).await }
                })
                .await?;
            for (id, f) in chunk.iter().zip(rows) {
                let get = |i: usize| f.get(i).cloned().flatten();
                let pending = get(0)
                    .and_then(|s| s.parse::<JobState>().ok())
                    .is_some_and(JobState::is_pending);
                let run_at = get(3).and_then(|s| s.parse::<i64>().ok());
                let dispatched = get(4).and_then(|s| s.parse::<i64>().ok());
                let (Some(queue), Some(run_at), Ok(id)) = (get(1), run_at, Uuid::parse_str(id))
                else {
                    continue;
                };
                if pending && run_at <= millis(horizon) && dispatched.map_or(true, |d| d < stale) {
                    items.push(DispatchItem {
                        id,
                        queue,
                        priority: get(2).and_then(|s| s.parse().ok()).unwrap_or(0),
                        run_at: from_millis(run_at),
                    });
                }
            }
        }
        items.sort_by(|a, b| a.run_at.cmp(&b.run_at).then(a.id.cmp(&b.id)));
        items.truncate(limit);
        Ok(items)
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        for chunk in ids.chunks(CHUNK) {
            self.retrying("mark dispatched", |mut c| {
                let mut inv = self.invocation(&self.inner.scripts.dispatched);
                for id in chunk {
                    inv.arg(id.to_string());
                }
                async move { inv.invoke_async::<i64>(&mut c).await }
            })
            .await?;
        }
        Ok(())
    }

    fn subscribe(&self) -> WakeSubscription {
        self.inner.wake.subscribe()
    }
}
