//! [`SqliteStorage`]: the `Storage` implementation.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::async_trait;
use switchyard_core::{
    validate_new_job, AttemptError, CancelOutcome, ClaimRequest, Completion, CompletionStatus,
    DispatchItem, EnqueueOutcome, Error, ErrorKind, JobFilter, JobId, JobRecord, JobState,
    LeaseRef, LeaseStatus, ListOrder, NewJob, Outcome, QueueCounts, RescueReport, Result,
    RetryOutcome, Storage, StorageCapabilities, WakeHub, WakeSubscription,
};
use uuid::Uuid;

use crate::row::{decode, millis, COLUMNS};

/// Largest number of rows in one multi-row statement (SQLite's bound-parameter limit is 32,766;
/// enqueue binds 12 per row).
const CHUNK: usize = 500;
/// Rows per multi-row INSERT (12 parameters each).
const ENQUEUE_CHUNK: usize = 2000;

/// Settings of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db`, `sqlite:relative.db` or `sqlite::memory:`.
    pub url: String,
    /// Prepended to every table name (letters, digits, `_`; up to 32 characters).
    pub prefix: String,
    /// Reader connections (the writer is always one).
    pub readers: u32,
    /// How long a write waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// Largest payload accepted by `enqueue`.
    pub max_payload_bytes: usize,
}

impl SqliteConfig {
    /// Defaults for `url`: prefix `switchyard_`, 4 readers, 5 s busy timeout, 1 MiB payloads.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "switchyard_".to_string(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            max_payload_bytes: 1024 * 1024,
        }
    }

    /// Sets the table prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// Checks a table prefix: letters, digits and `_`, at most 32 characters.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
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

/// Maps a sqlx error to Switchyard's, naming the operation.
pub(crate) fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| {
        let kind = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ErrorKind::Unavailable
            }
            sqlx::Error::Database(d) if d.message().contains("locked") => ErrorKind::Unavailable,
            sqlx::Error::Database(d) if d.message().contains("no such table") => ErrorKind::Config,
            _ => ErrorKind::Internal,
        };
        let mut msg = format!("SQLite {what} failed");
        if kind == ErrorKind::Config {
            msg.push_str("; run `switchyard migrate` (or call `migrate()`) first");
        }
        Error::new(kind, msg).with_source(e)
    }
}

/// Switchyard storage on one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
    prefix: String,
    caps: StorageCapabilities,
    wake: WakeHub,
}

impl SqliteStorage {
    /// Opens (creating if missing) the database at `config.url`. Does not migrate.
    pub async fn connect(config: SqliteConfig) -> Result<Self> {
        check_prefix(&config.prefix)?;
        // `sqlite://` or `sqlite:` alone would open a private temporary database per
        // connection: jobs would vanish as soon as they were stored.
        let path = config
            .url
            .strip_prefix("sqlite://")
            .or_else(|| config.url.strip_prefix("sqlite:"))
            .unwrap_or(&config.url);
        if path.split('?').next().unwrap_or_default().is_empty() {
            return Err(Error::config(format!(
                "key `storage`: `{}` names no database file; accepted: sqlite://path/to/file.db, \
                 sqlite:file.db, sqlite::memory:",
                config.url
            )));
        }
        let opts = SqliteConnectOptions::from_str(&config.url)
            .map_err(|e| {
                Error::config(format!(
                    "key `storage`: `{}` is not a valid SQLite URL; accepted: \
                     sqlite://path/to/file.db, sqlite:file.db, sqlite::memory:",
                    config.url
                ))
                .with_source(e)
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.busy_timeout)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        let in_memory = config.url.contains(":memory:") || config.url.contains("mode=memory");
        // The one writer connection is never recycled: an in-memory database lives only as long
        // as its connection (sqlx's default 30-minute lifetime and 10-minute idle timeout would
        // silently swap it for an empty one), and a file's writer gains nothing from it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(|e| {
                Error::unavailable(format!("cannot open SQLite database `{}`", config.url), e)
            })?;
        // An in-memory database exists only on its one connection: read through the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(config.readers.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts.read_only(true))
                .await
                .map_err(|e| {
                    Error::unavailable(format!("cannot open SQLite database `{}`", config.url), e)
                })?
        };
        Ok(Self {
            writer,
            reader,
            prefix: config.prefix,
            caps: StorageCapabilities::full().with_max_payload_bytes(config.max_payload_bytes),
            wake: WakeHub::new(),
        })
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The writer pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    fn t(&self, table: &str) -> String {
        format!("{}{}", self.prefix, table)
    }

    /// Inserts jobs in one multi-row statement, skipping ids and live unique keys that exist;
    /// returns the ids inserted.
    async fn insert_jobs<'e, E>(
        &self,
        jobs: &[NewJob],
        now: DateTime<Utc>,
        executor: E,
    ) -> Result<Vec<Uuid>>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "INSERT OR IGNORE INTO {} (id, kind, queue, payload, priority, state, \
             max_attempts, run_at, created_at, unique_key, timeout_ms, tags) ",
            self.t("jobs")
        ));
        let mut encoded = Vec::with_capacity(jobs.len());
        for job in jobs {
            encoded.push((
                serde_json::to_string(&job.payload)?,
                serde_json::to_string(&job.tags)?,
            ));
        }
        qb.push_values(jobs.iter().zip(encoded), |mut b, (job, (payload, tags))| {
            let run_at = job.run_at.unwrap_or(now);
            let state = if run_at > now {
                JobState::Scheduled
            } else {
                JobState::Available
            };
            b.push_bind(job.id)
                .push_bind(job.kind.clone())
                .push_bind(job.queue.clone())
                .push_bind(payload)
                .push_bind(job.priority as i64)
                .push_bind(state.as_str())
                .push_bind(job.max_attempts as i64)
                .push_bind(millis(run_at))
                .push_bind(millis(now))
                .push_bind(job.unique_key.clone())
                .push_bind(job.timeout_ms.map(|t| t as i64))
                .push_bind(tags);
        });
        qb.push(" RETURNING id");
        qb.build_query_scalar()
            .fetch_all(executor)
            .await
            .map_err(db_err("enqueue"))
    }

    /// Records successful attempts in one statement: the batch travels as one JSON array of
    /// `{i: id hex, t: token hex, r: result JSON text}`. The ids in `batch` must be distinct;
    /// returns the (id, token) pairs that applied.
    async fn complete_successes<'e, E>(
        &self,
        batch: &[&Completion],
        now: i64,
        executor: E,
    ) -> Result<Vec<(Uuid, Uuid)>>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut items = Vec::with_capacity(batch.len());
        for c in batch {
            let result = match &c.outcome {
                Outcome::Succeeded { result: Some(r) } => Some(serde_json::to_string(r)?),
                _ => None,
            };
            items.push(serde_json::json!({
                "i": c.id.simple().to_string(),
                "t": c.token.simple().to_string(),
                "r": result,
            }));
        }
        let jobs = self.t("jobs");
        let ids: Vec<Uuid> = sqlx::query_scalar(&format!(
            "UPDATE {jobs} SET state = 'completed', result = c.r, finished_at = ?1, \
               lease_token = NULL, lease_expires_at = NULL, worker_id = NULL \
             FROM (SELECT unhex(value ->> 'i') AS i, unhex(value ->> 't') AS t, value ->> 'r' AS r \
                   FROM json_each(?2)) AS c \
             WHERE {jobs}.id = c.i AND {jobs}.lease_token = c.t AND {jobs}.state = 'running' \
             RETURNING {jobs}.id"
        ))
        .bind(now)
        .bind(serde_json::Value::Array(items).to_string())
        .fetch_all(executor)
        .await
        .map_err(db_err("complete"))?;
        // Ids are distinct within a batch (see `complete`), so each names its token.
        let tokens: std::collections::HashMap<Uuid, Uuid> =
            batch.iter().map(|c| (c.id, c.token)).collect();
        Ok(ids.into_iter().map(|id| (id, tokens[&id])).collect())
    }

    async fn claim_where(
        &self,
        req: &ClaimRequest,
        ids: Option<&[JobId]>,
    ) -> Result<Vec<JobRecord>> {
        if req.queues.is_empty() || req.limit == 0 {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let jobs = self.t("jobs");
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "UPDATE {jobs} SET state = 'running', attempt = attempt + 1, lease_token = \
             randomblob(16), started_at = "
        ));
        qb.push_bind(millis(now));
        qb.push(", lease_expires_at = ");
        qb.push_bind(millis(now) + req.lease.as_millis() as i64);
        qb.push(", worker_id = ");
        qb.push_bind(&req.worker_id);
        qb.push(format!(
            " WHERE id IN (SELECT id FROM {jobs} WHERE state IN ('scheduled', 'available', \
             'retrying') AND run_at <= "
        ));
        qb.push_bind(millis(now));
        qb.push(" AND queue IN (");
        let mut sep = qb.separated(", ");
        for q in &req.queues {
            sep.push_bind(q);
        }
        qb.push(")");
        if let Some(ids) = ids {
            qb.push(" AND id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            qb.push(")");
        }
        qb.push(" ORDER BY priority DESC, run_at, id LIMIT ");
        qb.push_bind(req.limit.min(self.caps.max_claim_batch) as i64);
        qb.push(format!(") RETURNING {COLUMNS}"));
        let rows = qb
            .build()
            .fetch_all(&self.writer)
            .await
            .map_err(db_err("claim"))?;
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
}

/// One status per completion, in input order. `applied` holds (id, token) pairs, so a stale
/// and a fresh completion of one job in the same batch are told apart.
fn statuses(
    completions: &[Completion],
    applied: &std::collections::HashSet<(Uuid, Uuid)>,
) -> Vec<CompletionStatus> {
    completions
        .iter()
        .map(|c| {
            if applied.contains(&(c.id, c.token)) {
                CompletionStatus::Applied
            } else {
                CompletionStatus::Stale
            }
        })
        .collect()
}

fn error_json(e: &AttemptError) -> Result<String> {
    Ok(serde_json::to_string(e)?)
}

#[async_trait]
impl Storage for SqliteStorage {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> StorageCapabilities {
        self.caps.clone()
    }

    async fn migrate(&self) -> Result<()> {
        crate::migrate::run(&self.writer, &self.prefix).await
    }

    async fn destroy(&self) -> Result<()> {
        crate::migrate::drop_all(&self.writer, &self.prefix).await
    }

    async fn enqueue(&self, jobs: Vec<NewJob>) -> Result<Vec<EnqueueOutcome>> {
        for job in &jobs {
            validate_new_job(job, &self.caps)?;
        }
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let table = self.t("jobs");
        // Without unique keys, a job that is not inserted can only be a repeat of its own id,
        // so one statement (no transaction) settles a whole batch.
        if jobs.len() <= ENQUEUE_CHUNK && jobs.iter().all(|j| j.unique_key.is_none()) {
            let inserted: std::collections::HashSet<Uuid> = self
                .insert_jobs(&jobs, now, &self.writer)
                .await?
                .into_iter()
                .collect();
            self.wake.notify();
            return Ok(jobs
                .iter()
                .map(|j| {
                    if inserted.contains(&j.id) {
                        EnqueueOutcome::Inserted(j.id)
                    } else {
                        EnqueueOutcome::Duplicate(j.id)
                    }
                })
                .collect());
        }
        let mut inserted = std::collections::HashSet::with_capacity(jobs.len());
        let mut tx = self.writer.begin().await.map_err(db_err("begin enqueue"))?;
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            inserted.extend(self.insert_jobs(chunk, now, &mut *tx).await?);
        }
        let mut out = Vec::with_capacity(jobs.len());
        for job in &jobs {
            if inserted.contains(&job.id) {
                out.push(EnqueueOutcome::Inserted(job.id));
                continue;
            }
            // Not inserted: a live job holds its unique key, or the id exists already.
            let existing: Option<Uuid> = match &job.unique_key {
                Some(key) => sqlx::query_scalar(&format!(
                    "SELECT id FROM {table} WHERE unique_key = ? AND state IN ('scheduled', \
                     'available', 'running', 'retrying')"
                ))
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("find unique job"))?,
                None => None,
            };
            out.push(EnqueueOutcome::Duplicate(existing.unwrap_or(job.id)));
        }
        tx.commit().await.map_err(db_err("commit enqueue"))?;
        self.wake.notify();
        Ok(out)
    }

    async fn get(&self, id: JobId) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} WHERE id = ?",
            self.t("jobs")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err("get job"))?;
        row.as_ref().map(decode).transpose()
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        self.claim_where(req, None).await
    }

    async fn claim_ids(&self, ids: &[JobId], req: &ClaimRequest) -> Result<Vec<JobRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut r = req.clone();
            r.limit = chunk.len();
            out.extend(self.claim_where(&r, Some(chunk)).await?);
        }
        Ok(out)
    }

    async fn heartbeat(&self, leases: &[LeaseRef], lease: Duration) -> Result<Vec<LeaseStatus>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = std::collections::HashMap::new();
        for chunk in leases.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("UPDATE {} SET lease_expires_at = ", self.t("jobs")));
            qb.push_bind(millis(Utc::now()) + lease.as_millis() as i64);
            qb.push(" WHERE state = 'running' AND (id, lease_token) IN (VALUES ");
            let mut sep = qb.separated(", ");
            for l in chunk {
                sep.push("(");
                sep.push_bind_unseparated(l.id);
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(l.token);
                sep.push_unseparated(")");
            }
            qb.push(") RETURNING id, lease_token, cancel_requested");
            let rows = qb
                .build()
                .fetch_all(&self.writer)
                .await
                .map_err(db_err("heartbeat"))?;
            for r in rows {
                let id: Uuid = r.get(0);
                let token: Uuid = r.get(1);
                let cancel: i64 = r.get(2);
                found.insert((id, token), cancel != 0);
            }
        }
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
        let now = millis(Utc::now());
        let jobs = self.t("jobs");
        let mut applied = std::collections::HashSet::new();
        // Successes with distinct ids go in batches; a repeated id (a stale and a fresh attempt
        // of one job in the same call) is recorded on its own, so its status names its token.
        let mut seen = std::collections::HashSet::new();
        let (successes, repeats): (Vec<&Completion>, Vec<&Completion>) = completions
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
            .partition(|c| seen.insert(c.id));
        // The hot path: a batch of successes is one statement with one JSON parameter, so
        // its SQL never changes and stays prepared. Without other outcomes, no transaction.
        if successes.len() == completions.len() && successes.len() <= CHUNK * 2 {
            applied.extend(
                self.complete_successes(&successes, now, &self.writer)
                    .await?,
            );
            return Ok(statuses(completions, &applied));
        }
        let mut tx = self
            .writer
            .begin()
            .await
            .map_err(db_err("begin complete"))?;
        for chunk in successes.chunks(CHUNK * 2) {
            applied.extend(self.complete_successes(chunk, now, &mut *tx).await?);
        }
        for c in repeats {
            applied.extend(self.complete_successes(&[c], now, &mut *tx).await?);
        }
        // Everything else, one statement each (failures are the rare path).
        for c in completions {
            let (state_sql, error, run_at) = match &c.outcome {
                Outcome::Succeeded { .. } => continue,
                Outcome::Retry { error, run_at } => ("'retrying'", Some(error), Some(*run_at)),
                Outcome::Failed { error } => ("'failed'", Some(error), None),
                Outcome::Cancelled { error } => ("'cancelled'", error.as_ref(), None),
                Outcome::Aborted { error } => (
                    "CASE WHEN attempt < max_attempts THEN 'available' ELSE 'dropped' END",
                    Some(error),
                    None,
                ),
                Outcome::Released => ("'available'", None, None),
            };
            // A released job never started: the claim's attempt is undone.
            let attempt_sql = if matches!(c.outcome, Outcome::Released) {
                "MAX(attempt - 1, 0)"
            } else {
                "attempt"
            };
            let sql = format!(
                "UPDATE {jobs} SET state = {state_sql}, attempt = {attempt_sql}, \
                 errors = CASE WHEN ?1 IS NULL THEN errors ELSE json_insert(errors, '$[#]', json(?1)) END, \
                 run_at = COALESCE(?2, run_at), \
                 finished_at = CASE WHEN {state_sql} IN ('failed', 'cancelled', 'dropped') THEN ?3 ELSE NULL END, \
                 dispatched_at = NULL, lease_token = NULL, lease_expires_at = NULL, worker_id = NULL \
                 WHERE id = ?4 AND lease_token = ?5 AND state = 'running' RETURNING id"
            );
            let err_json = error.map(error_json).transpose()?;
            let ok: Option<Uuid> = sqlx::query_scalar(&sql)
                .bind(err_json)
                .bind(run_at.map(millis))
                .bind(now)
                .bind(c.id)
                .bind(c.token)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("complete"))?;
            if let Some(id) = ok {
                applied.insert((id, c.token));
            }
        }
        tx.commit().await.map_err(db_err("commit complete"))?;
        if completions
            .iter()
            .any(|c| matches!(c.outcome, Outcome::Aborted { .. } | Outcome::Released))
        {
            self.wake.notify();
        }
        Ok(statuses(completions, &applied))
    }

    async fn rescue_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<RescueReport> {
        let jobs = self.t("jobs");
        let sql = format!(
            "UPDATE {jobs} SET \
               state = CASE WHEN attempt < max_attempts THEN 'available' ELSE 'dropped' END, \
               finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE ?1 END, \
               errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', ?2, \
                 'kind', 'lease_expired', 'message', 'lease expired: worker ' || \
                 COALESCE(worker_id, '?') || ' stopped renewing it (crashed or stalled)')), \
               lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, dispatched_at = NULL \
             WHERE id IN (SELECT id FROM {jobs} WHERE state = 'running' AND lease_expires_at < ?1 \
               LIMIT ?3) \
             RETURNING id, state"
        );
        let rows = sqlx::query(&sql)
            .bind(millis(now))
            .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .bind(limit as i64)
            .fetch_all(&self.writer)
            .await
            .map_err(db_err("rescue"))?;
        let mut report = RescueReport::default();
        for r in rows {
            let id: Uuid = r.get(0);
            let state: String = r.get(1);
            if state == "dropped" {
                report.dropped.push(id);
            } else {
                report.retried.push(id);
            }
        }
        if !report.retried.is_empty() {
            self.wake.notify();
        }
        Ok(report)
    }

    async fn cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let jobs = self.t("jobs");
        let now = millis(Utc::now());
        let mut tx = self.writer.begin().await.map_err(db_err("begin cancel"))?;
        let done: Option<String> = sqlx::query_scalar(&format!(
            "UPDATE {jobs} SET \
               state = CASE WHEN state = 'running' THEN state ELSE 'cancelled' END, \
               cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE cancel_requested END, \
               finished_at = CASE WHEN state = 'running' THEN finished_at ELSE ?1 END \
             WHERE id = ?2 AND state IN ('scheduled', 'available', 'retrying', 'running') \
             RETURNING state"
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err("cancel"))?;
        let outcome = match done.as_deref() {
            Some("running") => CancelOutcome::Requested,
            Some(_) => CancelOutcome::Cancelled,
            None => {
                let state: Option<String> =
                    sqlx::query_scalar(&format!("SELECT state FROM {jobs} WHERE id = ?"))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("cancel"))?;
                match state {
                    Some(s) => CancelOutcome::AlreadyFinished(s.parse()?),
                    None => CancelOutcome::NotFound,
                }
            }
        };
        tx.commit().await.map_err(db_err("commit cancel"))?;
        Ok(outcome)
    }

    async fn retry(&self, id: JobId) -> Result<RetryOutcome> {
        let jobs = self.t("jobs");
        let mut tx = self.writer.begin().await.map_err(db_err("begin retry"))?;
        let done: Option<Uuid> = sqlx::query_scalar(&format!(
            "UPDATE {jobs} SET state = 'available', run_at = ?1, finished_at = NULL, \
               cancel_requested = 0, dispatched_at = NULL, \
               max_attempts = MAX(max_attempts, attempt + 1) \
             WHERE id = ?2 AND state IN ('completed', 'failed', 'cancelled', 'dropped') \
             RETURNING id"
        ))
        .bind(millis(Utc::now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| {
            // The unique index refuses a second live job with the same key.
            if e.as_database_error()
                .is_some_and(|d| d.message().contains("UNIQUE"))
            {
                Error::new(
                    ErrorKind::Conflict,
                    format!("job {id} cannot be retried: another live job holds its unique key"),
                )
                .set_retryable(false)
            } else {
                db_err("retry")(e)
            }
        })?;
        let outcome = match done {
            Some(_) => RetryOutcome::Requeued,
            None => {
                let state: Option<String> =
                    sqlx::query_scalar(&format!("SELECT state FROM {jobs} WHERE id = ?"))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err("retry"))?;
                match state {
                    Some(s) => RetryOutcome::NotFinished(s.parse()?),
                    None => RetryOutcome::NotFound,
                }
            }
        };
        tx.commit().await.map_err(db_err("commit retry"))?;
        if outcome == RetryOutcome::Requeued {
            self.wake.notify();
        }
        Ok(outcome)
    }

    async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM {} WHERE 1 = 1",
            self.t("jobs")
        ));
        if !filter.states.is_empty() {
            qb.push(" AND state IN (");
            let mut sep = qb.separated(", ");
            for s in &filter.states {
                sep.push_bind(s.as_str());
            }
            qb.push(")");
        }
        if let Some(q) = &filter.queue {
            qb.push(" AND queue = ").push_bind(q);
        }
        if let Some(k) = &filter.kind {
            qb.push(" AND kind = ").push_bind(k);
        }
        if let Some(t) = filter.created_after {
            qb.push(" AND created_at >= ").push_bind(millis(t));
        }
        if let Some(t) = filter.created_before {
            qb.push(" AND created_at < ").push_bind(millis(t));
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
        let rows = qb
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(db_err("list"))?;
        rows.iter().map(decode).collect()
    }

    async fn counts(&self) -> Result<Vec<QueueCounts>> {
        let rows = sqlx::query(&format!(
            "SELECT queue, state, COUNT(*) FROM {} GROUP BY queue, state ORDER BY queue",
            self.t("jobs")
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err("count"))?;
        let mut out: Vec<QueueCounts> = Vec::new();
        for r in rows {
            let queue: String = r.get(0);
            let state: String = r.get(1);
            let n: i64 = r.get(2);
            if out.last().map(|c| &c.queue) != Some(&queue) {
                out.push(QueueCounts {
                    queue,
                    ..Default::default()
                });
            }
            if let Some(last) = out.last_mut() {
                last.counts.insert(state.parse()?, n as u64);
            }
        }
        Ok(out)
    }

    async fn prune(&self, before: DateTime<Utc>, limit: usize) -> Result<u64> {
        let jobs = self.t("jobs");
        let res = sqlx::query(&format!(
            "DELETE FROM {jobs} WHERE id IN (SELECT id FROM {jobs} WHERE finished_at IS NOT NULL \
             AND finished_at < ? AND state IN ('completed', 'failed', 'cancelled', 'dropped') \
             LIMIT ?)"
        ))
        .bind(millis(before))
        .bind(limit as i64)
        .execute(&self.writer)
        .await
        .map_err(db_err("prune"))?;
        Ok(res.rows_affected())
    }

    async fn try_lead(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = millis(Utc::now());
        let row: Option<String> = sqlx::query_scalar(&format!(
            "INSERT INTO {t} (name, holder, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE {t}.holder = excluded.holder OR {t}.expires_at < ?4 \
             RETURNING holder",
            t = self.t("leaders")
        ))
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .map_err(db_err("leadership"))?;
        Ok(row.as_deref() == Some(holder))
    }

    async fn resign(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE name = ? AND holder = ?",
            self.t("leaders")
        ))
        .bind(name)
        .bind(holder)
        .execute(&self.writer)
        .await
        .map_err(db_err("resign leadership"))?;
        Ok(())
    }

    async fn due_for_dispatch(
        &self,
        horizon: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DispatchItem>> {
        let rows = sqlx::query(&format!(
            "SELECT id, queue, priority, run_at FROM {} \
             WHERE state IN ('scheduled', 'available', 'retrying') AND run_at <= ? \
               AND (dispatched_at IS NULL OR dispatched_at < ?) \
             ORDER BY run_at LIMIT ?",
            self.t("jobs")
        ))
        .bind(millis(horizon))
        .bind(millis(stale_before))
        .bind(limit as i64)
        .fetch_all(&self.writer)
        .await
        .map_err(db_err("find jobs to dispatch"))?;
        Ok(rows
            .iter()
            .map(|r| DispatchItem {
                id: r.get(0),
                queue: r.get(1),
                priority: r.get::<i64, _>(2) as i16,
                run_at: crate::row::from_millis(r.get(3)),
            })
            .collect())
    }

    async fn mark_dispatched(&self, ids: &[JobId]) -> Result<()> {
        let now = millis(Utc::now());
        for chunk in ids.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("UPDATE {} SET dispatched_at = ", self.t("jobs")));
            qb.push_bind(now).push(" WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            qb.push(")");
            qb.build()
                .execute(&self.writer)
                .await
                .map_err(db_err("mark dispatched"))?;
        }
        Ok(())
    }

    fn subscribe(&self) -> WakeSubscription {
        self.wake.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's connection is kept for the life of the storage: closing it would drop an
    /// in-memory database and every job in it.
    #[tokio::test]
    async fn the_writer_connection_is_never_recycled() {
        let s = SqliteStorage::connect(SqliteConfig::new("sqlite::memory:"))
            .await
            .unwrap();
        let o = s.writer.options();
        assert_eq!(o.get_max_lifetime(), None);
        assert_eq!(o.get_idle_timeout(), None);
    }
}
