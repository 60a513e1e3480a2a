//! [`PostgresStorage`]: the `Storage` implementation.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use switchyard_core::{
    async_trait, validate_new_job, CancelOutcome, ClaimRequest, Completion, CompletionStatus,
    DispatchItem, EnqueueOutcome, Error, ErrorKind, JobFilter, JobId, JobRecord, JobState,
    LeaseRef, LeaseStatus, ListOrder, NewJob, Outcome, QueueCounts, RescueReport, Result,
    RetryOutcome, Storage, StorageCapabilities, WakeHub, WakeSubscription,
};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::listener::{self, ListenerStatus};
use crate::row::{columns, decode, tags_literal};
use crate::sql::Statements;
use crate::URL_SCHEMES;

/// Settings of the PostgreSQL backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database?sslmode=disable` (or `postgresql://…`).
    pub url: String,
    /// Prepended to every table name and to the notification channel (letters, digits, `_`;
    /// up to 32 characters), so several independent instances can share one database.
    pub prefix: String,
    /// Connections in the pool (the listener holds one more of its own).
    pub max_connections: u32,
    /// Whether to `LISTEN` for wake-ups. Turn it off behind PgBouncer in transaction mode
    /// (which cannot hold a `LISTEN`); workers then rely on polling alone.
    pub listen: bool,
    /// Largest payload, in bytes of its JSON encoding, accepted by `enqueue`.
    pub max_payload_bytes: usize,
    /// How long an operation waits for a free (or new) connection before failing with
    /// `Unavailable`.
    pub acquire_timeout: Duration,
    /// Whether the worker's hot path (claim, heartbeat, complete, rescue) waits for its commit
    /// to be flushed to disk. Off by default: those commits return before the WAL flush, which
    /// takes fsync latency off every claim and completion. A database crash may then forget the
    /// last few hundred milliseconds of them, so a job may run again (delivery is at-least-once
    /// anyway), but no job is ever lost: enqueue, cancel, retry and leadership always commit
    /// durably. Turn it on to make every write wait for the flush.
    pub synchronous_commit: bool,
}

impl PostgresConfig {
    /// Defaults for `url`: prefix `switchyard_`, 10 connections, listening on, 1 MiB payloads,
    /// 10 s acquire timeout, asynchronous commit on the worker's hot path.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard_".to_string(),
            max_connections: 10,
            listen: true,
            max_payload_bytes: 1024 * 1024,
            acquire_timeout: Duration::from_secs(10),
            synchronous_commit: false,
        }
    }

    /// Sets the table prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the pool size.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Turns `LISTEN` wake-ups on or off.
    pub fn with_listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the payload limit.
    pub fn with_max_payload_bytes(mut self, bytes: usize) -> Self {
        self.max_payload_bytes = bytes;
        self
    }

    /// Makes the worker's hot path wait for durable commits (see
    /// [`synchronous_commit`](Self::synchronous_commit)).
    pub fn with_synchronous_commit(mut self, yes: bool) -> Self {
        self.synchronous_commit = yes;
        self
    }

    /// Sets the acquire timeout.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }
}

/// Checks a table prefix: letters, digits and `_`, at most 32 characters.
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > 32
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::config(format!(
            "key `prefix`: `{prefix}` is not a valid table prefix; accepted: up to 32 letters, \
             digits or `_`"
        )));
    }
    Ok(())
}

/// The URL with its password (in the user info or a `password=` query value) replaced by
/// `***`, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The query keys of a PostgreSQL URL that sqlx understands (`PgConnectOptions::from_str`),
/// besides `options[name]`.
const PG_URL_KEYS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Parses a `postgres://` / `postgresql://` URL into connect options.
fn parse_url(url: &str) -> Result<PgConnectOptions> {
    let bad = |why: &str| {
        Error::config(format!(
            "key `storage`: `{}` is not a valid PostgreSQL URL ({why}); accepted: \
             postgres://user:password@host:port/database?sslmode=disable or \
             postgresql://user:password@host:port/database",
            redact(url)
        ))
    };
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if !URL_SCHEMES.contains(&scheme.as_str()) {
        return Err(bad("the scheme must be postgres:// or postgresql://"));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    // sqlx only logs a warning for a query key it does not know, so a misspelt `sslmode` or a
    // `?prefix=` meant for the `prefix` setting would pass silently.
    for (k, _) in parsed.query_pairs() {
        let known =
            PG_URL_KEYS.contains(&k.as_ref()) || (k.starts_with("options[") && k.ends_with(']'));
        if !known {
            return Err(bad(&format!(
                "query key `{k}` is not one sqlx reads (it would be ignored): remove it; \
                 accepted: {}, options[name]",
                PG_URL_KEYS.join(", ")
            )));
        }
    }
    PgConnectOptions::from_str(url)
        .map_err(|e| bad("its options are not understood").with_source(e))
}

/// Whether the error means the connection is gone (terminated backend, reset socket, server
/// shutting down) before the statement could run, so running it again on another connection is
/// safe.
fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

fn classify(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => ErrorKind::Unavailable,
        sqlx::Error::Database(d) => match d.code().as_deref() {
            Some(c) if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                ErrorKind::Unavailable
            }
            Some("40001" | "40P01" | "55P03") => ErrorKind::Conflict,
            Some("42P01") => ErrorKind::Config,
            _ => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// Maps a sqlx error to Switchyard's, naming the operation.
pub(crate) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| {
        let kind = classify(&e);
        let mut msg = format!("PostgreSQL {what} failed");
        if kind == ErrorKind::Config {
            msg.push_str("; run `switchyard migrate` (or call `migrate()`) first");
        }
        Error::new(kind, msg).with_source(e)
    }
}

/// How many times an operation is re-run after its connection was found dead (each dead pooled
/// connection fails once and is then discarded by the pool).
const RECONNECT_ATTEMPTS: usize = 4;

/// Runs `op`, re-running it on a fresh connection when the one it got had been lost.
async fn retrying<T, F, Fut>(what: &'static str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < RECONNECT_ATTEMPTS && is_connection_lost(&e) => {
                attempt += 1;
                tracing::debug!(error = %e, what, attempt, "postgres connection lost; retrying");
            }
            Err(e) => return Err(db_err(what)(e)),
        }
    }
}

/// Switchyard storage on one PostgreSQL database.
///
/// Cheap to clone: clones share the pool, the listener and the wake-ups. The listener stops
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    prefix: String,
    sql: Statements,
    caps: StorageCapabilities,
    wake: WakeHub,
    listener: Option<JoinHandle<()>>,
    listener_status: Arc<ListenerStatus>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.abort();
        }
    }
}

/// The per-job columns of an enqueue, as arrays bound to one statement.
struct EnqueueArrays<'a> {
    ids: Vec<Uuid>,
    kinds: Vec<&'a str>,
    queues: Vec<&'a str>,
    payloads: Vec<Json<&'a serde_json::Value>>,
    priorities: Vec<i16>,
    max_attempts: Vec<i32>,
    run_ats: Vec<Option<DateTime<Utc>>>,
    unique_keys: Vec<Option<&'a str>>,
    timeouts: Vec<Option<i64>>,
    tags: Vec<String>,
}

impl<'a> EnqueueArrays<'a> {
    fn new<'j>(jobs: impl ExactSizeIterator<Item = &'j NewJob>) -> Self
    where
        'j: 'a,
    {
        let n = jobs.len();
        let mut a = Self {
            ids: Vec::with_capacity(n),
            kinds: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            max_attempts: Vec::with_capacity(n),
            run_ats: Vec::with_capacity(n),
            unique_keys: Vec::with_capacity(n),
            timeouts: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
        };
        for job in jobs {
            a.ids.push(job.id);
            a.kinds.push(&job.kind);
            a.queues.push(&job.queue);
            a.payloads.push(Json(&job.payload));
            a.priorities.push(job.priority);
            a.max_attempts
                .push(i32::try_from(job.max_attempts).unwrap_or(i32::MAX));
            a.run_ats.push(job.run_at);
            a.unique_keys.push(job.unique_key.as_deref());
            a.timeouts
                .push(job.timeout_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX)));
            a.tags.push(tags_literal(&job.tags));
        }
        a
    }
}

fn millis_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl PostgresStorage {
    /// Connects to the database at `config.url` and, when `config.listen` is on, starts the
    /// wake-up listener. Does not migrate. Must be called inside a Tokio runtime.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        check_prefix(&config.prefix)?;
        let options = parse_url(&config.url)?;
        let pool_options = options
            .clone()
            .application_name(&format!("switchyard {}", config.prefix));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            // A worker uses a few connections at once (fetchers, completer, heartbeater): keep
            // them open so the first claims after start or an idle spell do not pay a connect.
            .min_connections(config.max_connections.clamp(1, 3))
            .acquire_timeout(config.acquire_timeout)
            // A dead connection fails its next statement, which `retrying` runs again on
            // another; sqlx tests every connection when it comes back to the pool. Testing it
            // again on every acquire would cost one extra round trip per operation.
            .test_before_acquire(false)
            .connect_with(pool_options)
            .await
            .map_err(|e| {
                Error::unavailable(
                    format!("cannot connect to PostgreSQL at `{}`", redact(&config.url)),
                    e,
                )
            })?;
        let sql = Statements::new(&config.prefix, config.synchronous_commit);
        let wake = WakeHub::new();
        let listener_status = Arc::new(ListenerStatus::default());
        let listener = config.listen.then(|| {
            listener::spawn(
                options.application_name(&format!("switchyard-listen {}", config.prefix)),
                sql.channel.clone(),
                wake.clone(),
                listener_status.clone(),
            )
        });
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                prefix: config.prefix,
                sql,
                caps: StorageCapabilities::full()
                    .with_max_payload_bytes(config.max_payload_bytes)
                    .with_transactional_enqueue(true)
                    .with_cross_process_wakeups(config.listen),
                wake,
                listener,
                listener_status,
            }),
        })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The connection pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The `LISTEN`/`NOTIFY` channel of this instance (`{prefix}jobs`).
    pub fn channel(&self) -> &str {
        &self.inner.sql.channel
    }

    /// Whether the wake-up listener is subscribed right now (always false with `listen = false`).
    pub fn listener_connected(&self) -> bool {
        self.inner.listener_status.connected.load(Ordering::SeqCst)
    }

    /// How many times the wake-up listener has connected and subscribed (1 after start-up,
    /// more after each reconnection).
    pub fn listener_connects(&self) -> u64 {
        self.inner.listener_status.connects.load(Ordering::SeqCst)
    }

    /// Enqueues jobs on the caller's own connection, typically inside the caller's
    /// transaction, so the jobs exist if and only if that transaction commits:
    ///
    /// ```no_run
    /// # async fn demo(storage: switchyard_postgres::PostgresStorage) -> Result<(), Box<dyn std::error::Error>> {
    /// use switchyard_core::NewJob;
    /// let mut tx = storage.pool().begin().await?; // or your own pool's transaction
    /// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
    /// storage
    ///     .enqueue_in(&mut tx, vec![NewJob::new("send_receipt", serde_json::json!({"order": 42}))])
    ///     .await?;
    /// tx.commit().await?; // the job becomes visible to workers here, and only here
    /// # Ok(()) }
    /// ```
    ///
    /// Behaves like [`Storage::enqueue`] (validation, unique keys, outcomes). Workers listening
    /// on the channel are woken when the transaction commits (PostgreSQL delivers `NOTIFY` at
    /// commit, and drops it on rollback); with `listen = false` they find the jobs at their
    /// next poll. The connection may be any connection to the same database, e.g. a
    /// transaction from the application's own pool.
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<EnqueueOutcome>> {
        for job in &jobs {
            validate_new_job(job, &self.inner.caps)?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.insert_jobs(conn, &jobs)
            .await
            .map_err(db_err("enqueue"))
    }

    /// Inserts `jobs` on `conn` and resolves unique-key duplicates. When the live job holding a
    /// key finishes between the insert and the look-up, the job is inserted again (a few
    /// rounds at most).
    async fn insert_jobs(
        &self,
        conn: &mut PgConnection,
        jobs: &[NewJob],
    ) -> sqlx::Result<Vec<EnqueueOutcome>> {
        let sql = &self.inner.sql;
        let mut outcomes: Vec<Option<EnqueueOutcome>> = vec![None; jobs.len()];
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        for _round in 0..4 {
            let a = EnqueueArrays::new(pending.iter().map(|&i| &jobs[i]));
            let (ids, _notified): (Vec<Uuid>, i64) = sqlx::query_as(&sql.enqueue)
                .bind(&a.ids)
                .bind(&a.kinds)
                .bind(&a.queues)
                .bind(&a.payloads)
                .bind(&a.priorities)
                .bind(&a.max_attempts)
                .bind(&a.run_ats)
                .bind(&a.unique_keys)
                .bind(&a.timeouts)
                .bind(&a.tags)
                .bind(&sql.channel)
                .fetch_one(&mut *conn)
                .await?;
            let inserted: HashSet<Uuid> = ids.into_iter().collect();
            let mut lookup = Vec::new();
            for &i in &pending {
                let job = &jobs[i];
                if inserted.contains(&job.id) {
                    outcomes[i] = Some(EnqueueOutcome::Inserted(job.id));
                } else if job.unique_key.is_some() {
                    lookup.push(i);
                } else {
                    // The id exists already.
                    outcomes[i] = Some(EnqueueOutcome::Duplicate(job.id));
                }
            }
            if lookup.is_empty() {
                break;
            }
            let keys: Vec<&str> = lookup
                .iter()
                .filter_map(|&i| jobs[i].unique_key.as_deref())
                .collect();
            let holders: HashMap<String, Uuid> = sqlx::query_as(&sql.find_unique)
                .bind(&keys)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
            pending.clear();
            for i in lookup {
                let key = jobs[i].unique_key.as_deref().unwrap_or_default();
                match holders.get(key) {
                    Some(&id) => outcomes[i] = Some(EnqueueOutcome::Duplicate(id)),
                    None => pending.push(i),
                }
            }
            if pending.is_empty() {
                break;
            }
        }
        Ok(outcomes
            .into_iter()
            .zip(jobs)
            .map(|(o, job)| o.unwrap_or(EnqueueOutcome::Duplicate(job.id)))
            .collect())
    }

    async fn claim_rows(
        &self,
        req: &ClaimRequest,
        ids: Option<&[JobId]>,
    ) -> Result<Vec<JobRecord>> {
        if req.queues.is_empty() || req.limit == 0 {
            return Ok(Vec::new());
        }
        let sql = &self.inner.sql;
        let pool = &self.inner.pool;
        let limit = req.limit.min(self.inner.caps.max_claim_batch) as i64;
        let lease = millis_f64(req.lease);
        let worker = req.worker_id.as_str();
        let mut queues: Vec<&str> = req.queues.iter().map(String::as_str).collect();
        queues.sort_unstable();
        queues.dedup();
        let queues = &queues;
        let rows = match ids {
            Some(ids) => {
                retrying("claim", move || {
                    sqlx::query(&sql.claim_ids)
                        .bind(queues)
                        .bind(limit)
                        .bind(lease)
                        .bind(worker)
                        .bind(ids)
                        .fetch_all(pool)
                })
                .await?
            }
            None if queues.len() == 1 => {
                retrying("claim", move || {
                    sqlx::query(&sql.claim_one_queue)
                        .bind(queues[0])
                        .bind(limit)
                        .bind(lease)
                        .bind(worker)
                        .fetch_all(pool)
                })
                .await?
            }
            None => {
                retrying("claim", move || {
                    sqlx::query(&sql.claim_many_queues)
                        .bind(queues)
                        .bind(limit)
                        .bind(lease)
                        .bind(worker)
                        .fetch_all(pool)
                })
                .await?
            }
        };
        let mut out = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        // RETURNING order is unspecified: restore claim order.
        out.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Tells listeners in every process that jobs may be runnable (rare paths: rescue, retry,
    /// abort). A failure only delays workers until their next poll.
    async fn announce(&self) {
        self.inner.wake.notify();
        let res = sqlx::query(&self.inner.sql.notify)
            .bind(&self.inner.sql.channel)
            .execute(&self.inner.pool)
            .await;
        if let Err(error) = res {
            tracing::debug!(%error, "postgres pg_notify failed; workers will poll");
        }
    }

    /// Runs a dispatch query (`$1` horizon, `$2` stale-before, `$3` limit) that returns
    /// `(id, queue, priority, run_at)` rows; earliest `run_at` first. A query that changes
    /// rows is not retried on a lost connection: its first run may have committed.
    async fn dispatch_items(
        &self,
        what: &'static str,
        sql: &str,
        (horizon, stale_before, limit): (DateTime<Utc>, DateTime<Utc>, usize),
        retry: bool,
    ) -> Result<Vec<DispatchItem>> {
        let pool = &self.inner.pool;
        let limit = limit as i64;
        let run = move || {
            sqlx::query_as::<_, (Uuid, String, i16, DateTime<Utc>)>(sql)
                .bind(horizon)
                .bind(stale_before)
                .bind(limit)
                .fetch_all(pool)
        };
        let rows = if retry {
            retrying(what, run).await?
        } else {
            run().await.map_err(db_err(what))?
        };
        let mut items: Vec<DispatchItem> = rows
            .into_iter()
            .map(|(id, queue, priority, run_at)| DispatchItem {
                id,
                queue,
                priority,
                run_at,
            })
            .collect();
        items.sort_by(|a, b| a.run_at.cmp(&b.run_at).then(a.id.cmp(&b.id)));
        Ok(items)
    }

    /// The `list` query for `filter`.
    fn list_query<'a>(&self, filter: &'a JobFilter) -> QueryBuilder<'a, Postgres> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {} FROM {} WHERE true",
            columns(""),
            self.inner.sql.jobs
        ));
        if !filter.states.is_empty() {
            let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            qb.push(" AND state = ANY(").push_bind(states).push(")");
        }
        if let Some(q) = &filter.queue {
            qb.push(" AND queue = ").push_bind(q);
        }
        if let Some(k) = &filter.kind {
            qb.push(" AND kind = ").push_bind(k);
        }
        if let Some(t) = filter.created_after {
            qb.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = filter.created_before {
            qb.push(" AND created_at < ").push_bind(t);
        }
        let (cmp, dir) = match filter.order {
            ListOrder::Asc => (">", "ASC"),
            ListOrder::Desc => ("<", "DESC"),
        };
        if let Some(after) = filter.after {
            qb.push(format!(" AND id {cmp} ")).push_bind(after);
        }
        qb.push(format!(" ORDER BY id {dir} LIMIT "))
            .push_bind(filter.page_size() as i64);
        qb
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> StorageCapabilities {
        self.inner.caps.clone()
    }

    async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.inner.pool, &self.inner.prefix).await
    }

    async fn destroy(&self) -> Result<()> {
        crate::migrate::drop_all(&self.inner.pool, &self.inner.prefix).await
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        for job in &jobs {
            validate_new_job(job, &self.inner.caps)?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let pool = &self.inner.pool;
        let this = self;
        let jobs_ref = &jobs;
        let out = if jobs.iter().any(|j| j.unique_key.is_some()) {
            // Duplicates are resolved with a look-up (and possibly another insert): one
            // transaction keeps the whole call all-or-none.
            retrying("enqueue", move || async move {
                let mut tx = pool.begin().await?;
                let out = this.insert_jobs(&mut tx, jobs_ref).await?;
                tx.commit().await?;
                Ok(out)
            })
            .await?
        } else {
            // One statement, committed on its own: one round trip.
            retrying("enqueue", move || async move {
                let mut conn = pool.acquire().await?;
                this.insert_jobs(&mut conn, jobs_ref).await
            })
            .await?
        };
        if out.iter().any(|o| matches!(o, EnqueueOutcome::Inserted(_))) {
            self.inner.wake.notify();
        }
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let row = retrying("get job", move || {
            sqlx::query(&sql.get).bind(id).fetch_optional(pool)
        })
        .await?;
        row.as_ref().map(decode).transpose()
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        self.claim_rows(req, None).await
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(self.inner.caps.max_claim_batch) {
            let mut r = req.clone();
            r.limit = chunk.len();
            out.extend(self.claim_rows(&r, Some(chunk)).await?);
        }
        Ok(out)
    }

    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let ids: Vec<Uuid> = leases.iter().map(|l| l.id).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
        let (ids, tokens) = (&ids, &tokens);
        let lease_ms = millis_f64(lease);
        let rows: Vec<(Uuid, Uuid, bool)> = retrying("heartbeat", move || {
            sqlx::query_as(&sql.heartbeat)
                .bind(ids)
                .bind(tokens)
                .bind(lease_ms)
                .fetch_all(pool)
        })
        .await?;
        let found: HashMap<(Uuid, Uuid), bool> = rows
            .into_iter()
            .map(|(id, token, c)| ((id, token), c))
            .collect();
        Ok(leases
            .iter()
            .map(|l| match found.get(&(l.id, l.token)) {
                Some(&cancel_requested) => LeaseStatus::Held { cancel_requested },
                None => LeaseStatus::Lost,
            })
            .collect())
    }

    async fn complete(&self, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let n = completions.len();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut outcomes: Vec<&'static str> = Vec::with_capacity(n);
        let mut results: Vec<Option<Json<&serde_json::Value>>> = Vec::with_capacity(n);
        let mut errors = Vec::with_capacity(n);
        let mut run_ats: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
        for c in completions {
            ids.push(c.id);
            tokens.push(c.token);
            let (outcome, result, error, run_at) = match &c.outcome {
                Outcome::Succeeded { result } => ("completed", result.as_ref(), None, None),
                Outcome::Retry { error, run_at } => ("retrying", None, Some(error), Some(*run_at)),
                Outcome::Failed { error } => ("failed", None, Some(error), None),
                Outcome::Cancelled { error } => ("cancelled", None, error.as_ref(), None),
                Outcome::Aborted { error } => ("aborted", None, Some(error), None),
                Outcome::Released => ("released", None, None, None),
            };
            outcomes.push(outcome);
            results.push(result.map(Json));
            errors.push(error.map(Json));
            run_ats.push(run_at);
        }
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let args = (&ids, &tokens, &outcomes, &results, &errors, &run_ats);
        let applied: Vec<(Uuid, Uuid)> = retrying("complete", move || {
            sqlx::query_as(&sql.complete)
                .bind(args.0)
                .bind(args.1)
                .bind(args.2)
                .bind(args.3)
                .bind(args.4)
                .bind(args.5)
                .fetch_all(pool)
        })
        .await?;
        let applied: HashSet<(Uuid, Uuid)> = applied.into_iter().collect();
        let statuses: Vec<CompletionStatus> = completions
            .iter()
            .map(|c| {
                if applied.contains(&(c.id, c.token)) {
                    CompletionStatus::Applied
                } else {
                    CompletionStatus::Stale
                }
            })
            .collect();
        if completions.iter().zip(&statuses).any(|(c, s)| {
            *s == CompletionStatus::Applied
                && matches!(c.outcome, Outcome::Aborted { .. } | Outcome::Released)
        }) {
            self.announce().await;
        }
        Ok(statuses)
    }

    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport> {
        if limit == 0 {
            return Ok(RescueReport::default());
        }
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let at = &at;
        let limit = limit as i64;
        let rows: Vec<(Uuid, String)> = retrying("rescue", move || {
            sqlx::query_as(&sql.rescue)
                .bind(now)
                .bind(limit)
                .bind(at)
                .fetch_all(pool)
        })
        .await?;
        let mut report = RescueReport::default();
        for (id, state) in rows {
            if state == "dropped" {
                report.dropped.push(id);
            } else {
                report.retried.push(id);
            }
        }
        if !report.retried.is_empty() {
            self.announce().await;
        }
        Ok(report)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let state: Option<String> = retrying("cancel", move || async move {
            let mut tx = pool.begin().await?;
            let state: Option<String> = sqlx::query_scalar(&sql.lock_state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            match state.as_deref() {
                Some("scheduled" | "available" | "retrying") => {
                    sqlx::query(&sql.cancel_pending)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some("running") => {
                    sqlx::query(&sql.cancel_running)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
            tx.commit().await?;
            Ok(state)
        })
        .await?;
        Ok(match state {
            None => CancelOutcome::NotFound,
            Some(s) => match s.parse::<JobState>()? {
                st if st.is_pending() => CancelOutcome::Cancelled,
                JobState::Running => CancelOutcome::Requested,
                st => CancelOutcome::AlreadyFinished(st),
            },
        })
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let res = retrying("retry", move || async move {
            let mut tx = pool.begin().await?;
            let state: Option<String> = sqlx::query_scalar(&sql.lock_state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some("completed" | "failed" | "cancelled" | "dropped") = state.as_deref() {
                sqlx::query(&sql.retry).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(state)
        })
        .await;
        let state = match res {
            Ok(state) => state,
            Err(e)
                if std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<sqlx::Error>())
                    .and_then(|s| s.as_database_error())
                    .is_some_and(|d| d.is_unique_violation()) =>
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("job {id} cannot be retried: another live job holds its unique key"),
                )
                .set_retryable(false));
            }
            Err(e) => return Err(e),
        };
        let outcome = match state {
            None => RetryOutcome::NotFound,
            Some(s) => match s.parse::<JobState>()? {
                st if st.is_finished() => RetryOutcome::Requeued,
                st => RetryOutcome::NotFinished(st),
            },
        };
        if outcome == RetryOutcome::Requeued {
            self.announce().await;
        }
        Ok(outcome)
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        // A QueryBuilder cannot be re-run after `build`, so a lost connection rebuilds it; at
        // most RECONNECT_ATTEMPTS times, as `retrying` does, then the error is reported.
        let mut attempt = 0;
        let rows = loop {
            match self
                .list_query(filter)
                .build()
                .fetch_all(&self.inner.pool)
                .await
            {
                Ok(rows) => break rows,
                Err(e) if attempt < RECONNECT_ATTEMPTS && is_connection_lost(&e) => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "postgres connection lost; retrying list");
                }
                Err(e) => return Err(db_err("list")(e)),
            }
        };
        rows.iter().map(decode).collect()
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let rows: Vec<(String, String, i64)> =
            retrying("count", move || sqlx::query_as(&sql.counts).fetch_all(pool)).await?;
        let mut out: Vec<QueueCounts> = Vec::new();
        for (queue, state, n) in rows {
            if out.last().map(|c| &c.queue) != Some(&queue) {
                out.push(QueueCounts {
                    queue,
                    ..Default::default()
                });
            }
            if let Some(last) = out.last_mut() {
                last.counts.insert(state.parse()?, n.max(0) as u64);
            }
        }
        Ok(out)
    }

    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let limit = limit as i64;
        let res = retrying("prune", move || {
            sqlx::query(&sql.prune)
                .bind(before)
                .bind(limit)
                .execute(pool)
        })
        .await?;
        Ok(res.rows_affected())
    }

    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        let ttl = millis_f64(ttl);
        let row: Option<String> = retrying("leadership", move || {
            sqlx::query_scalar(&sql.try_lead)
                .bind(name)
                .bind(holder)
                .bind(ttl)
                .fetch_optional(pool)
        })
        .await?;
        Ok(row.as_deref() == Some(holder))
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        retrying("resign leadership", move || {
            sqlx::query(&sql.resign)
                .bind(name)
                .bind(holder)
                .execute(pool)
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
        let sql = &self.inner.sql.due_for_dispatch;
        let args = (horizon, stale_before, limit);
        self.dispatch_items("find jobs to dispatch", sql, args, true)
            .await
    }

    async fn take_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        let sql = &self.inner.sql.take_for_dispatch;
        let args = (horizon, stale_before, limit);
        self.dispatch_items("take jobs to dispatch", sql, args, false)
            .await
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (sql, pool) = (&self.inner.sql, &self.inner.pool);
        retrying("mark dispatched", move || {
            sqlx::query(&sql.mark_dispatched).bind(ids).execute(pool)
        })
        .await?;
        Ok(())
    }

    fn subscribe(&self) -> WakeSubscription {
        self.inner.wake.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("postgres://h/db?user=app&password=hunter2&sslmode=disable"),
            "postgres://h/db?user=app&password=***&sslmode=disable"
        );
        let e =
            parse_url("postgres://h/db?user=app&password=hunter2&connect_timeout=5").unwrap_err();
        assert!(e.message().contains("connect_timeout"), "{e}");
        assert!(!e.message().contains("hunter2"), "{e}");
        assert_eq!(redact("nonsense"), "nonsense");
    }

    #[test]
    fn bad_urls_name_the_key_and_the_forms() {
        for url in ["mysql://h/db", "postgres//h", "", "postgres://u:pw@[::1/db"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains("key `storage`"), "{e}");
            assert!(e.message().contains("postgresql://"), "{e}");
            assert!(!e.message().contains("pw@"), "{e}");
        }
        assert!(parse_url("postgresql://postgres@127.0.0.1:5432/test?sslmode=disable").is_ok());
    }

    /// A query key sqlx would ignore (with only a log line) is an error naming it.
    #[test]
    fn unknown_query_keys_are_errors() {
        for (url, key) in [
            ("postgres://h/db?prefix=jobs", "`prefix`"),
            (
                "postgres://h/db?sslmode=disable&ssl_mode=require",
                "`ssl_mode`",
            ),
        ] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}");
            assert!(e.message().contains(key), "{url}: {e}");
            assert!(e.message().contains("sslmode"), "{e}");
        }
        for url in [
            "postgres://u:pw@h:5432/db?sslmode=disable&application_name=app",
            "postgres://h/db?options[statement_timeout]=5s&statement-cache-capacity=10",
        ] {
            assert!(parse_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn bad_prefix_is_a_config_error() {
        assert_eq!(
            check_prefix("bad-prefix").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(check_prefix("switchyard_").is_ok());
    }

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<PostgresStorage>();
        check::<PostgresConfig>();
    }
}
