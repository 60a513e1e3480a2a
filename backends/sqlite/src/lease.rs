//! Leases: renewing running attempts ([`heartbeat`]), recording how attempts ended
//! ([`complete`]), and rescuing the jobs whose lease ran out ([`rescue_expired`]). Every
//! statement is fenced by the lease token, so a stale attempt changes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite};
use switchyard_core::adapter::{completion_statuses, lease_statuses, requeued_any};
use switchyard_core::{
    AttemptError, Completion, CompletionStatus, LeaseRef, LeaseStatus, Outcome, RescueReport,
    Result,
};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::db_err;
use crate::row::millis;
use crate::sql::{Statements, CHUNK};

/// `Storage::heartbeat`: one statement per [`CHUNK`] leases.
pub(crate) async fn heartbeat(
    db: &Db,
    leases: &[LeaseRef],
    lease: Duration,
) -> Result<Vec<LeaseStatus>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let mut found = HashMap::new();
    for chunk in leases.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(&db.sql.heartbeat);
        qb.push_bind(millis(db.now()) + lease.as_millis() as i64);
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
            .fetch_all(&db.writer)
            .await
            .map_err(db_err("heartbeat"))?;
        for r in rows {
            let id: Uuid = r.get(0);
            let token: Uuid = r.get(1);
            let cancel: i64 = r.get(2);
            found.insert((id, token), cancel != 0);
        }
    }
    Ok(lease_statuses(leases, &found))
}

/// `Storage::complete`: successes in batches of one statement each (no transaction when all
/// are successes), every other outcome one statement each, in one transaction; an applied
/// abort or release wakes workers.
pub(crate) async fn complete(db: &Db, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let now = millis(db.now());
    let mut applied = HashSet::new();
    // Successes with distinct ids go in batches; a repeated id (a stale and a fresh attempt
    // of one job in the same call) is recorded on its own, so its status names its token.
    let mut seen = HashSet::new();
    let (successes, repeats): (Vec<&Completion>, Vec<&Completion>) = completions
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Succeeded { .. }))
        .partition(|c| seen.insert(c.id));
    // The hot path: a batch of successes is one statement with one JSON parameter, so
    // its SQL never changes and stays prepared. Without other outcomes, no transaction.
    if successes.len() == completions.len() && successes.len() <= CHUNK * 2 {
        applied.extend(complete_successes(&db.sql, &successes, now, &db.writer).await?);
        if crate::workflow::in_use() {
            db.wake.notify(); // workflows: released dependents
        }
        return Ok(completion_statuses(completions, &applied));
    }
    let mut tx = db.writer.begin().await.map_err(db_err("begin complete"))?;
    for chunk in successes.chunks(CHUNK * 2) {
        applied.extend(complete_successes(&db.sql, chunk, now, &mut *tx).await?);
    }
    for c in repeats {
        applied.extend(complete_successes(&db.sql, &[c], now, &mut *tx).await?);
    }
    // Everything else, one statement each (failures are the rare path).
    for c in completions {
        let sql = &db.sql;
        let (statement, error, run_at) = match &c.outcome {
            Outcome::Succeeded { .. } => continue,
            Outcome::Retry { error, run_at } => (&sql.complete_retry, Some(error), Some(*run_at)),
            Outcome::Failed { error } => (&sql.complete_failed, Some(error), None),
            Outcome::Cancelled { error } => (&sql.complete_cancelled, error.as_ref(), None),
            Outcome::Aborted { error } => (&sql.complete_aborted, Some(error), None),
            // A released job never started: the statement undoes the claim's attempt.
            Outcome::Released => (&sql.complete_released, None, None),
            Outcome::Snoozed { run_at } => (&sql.complete_snoozed, None, Some(*run_at)),
        };
        let err_json = error.map(error_json).transpose()?;
        let ok: Option<Uuid> = sqlx::query_scalar(statement)
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
    let statuses = completion_statuses(completions, &applied);
    // Workflows: a completion may have released dependents.
    if requeued_any(completions, &statuses) || crate::workflow::in_use() {
        db.wake.notify();
    }
    Ok(statuses)
}

/// `Storage::rescue_expired`: jobs whose lease ran out become available again (or dropped
/// when no attempt is left); a retried one wakes workers.
pub(crate) async fn rescue_expired(
    db: &Db,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<RescueReport> {
    let rows = sqlx::query(&db.sql.rescue)
        .bind(millis(now))
        .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .bind(limit as i64)
        .fetch_all(&db.writer)
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
        db.wake.notify();
    }
    Ok(report)
}

/// Records successful attempts in one statement: the batch travels as one JSON array of
/// `{i: id hex, t: token hex, r: result JSON text}`. The ids in `batch` must be distinct;
/// returns the (id, token) pairs that applied.
async fn complete_successes<'e, E>(
    sql: &Statements,
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
    let ids: Vec<Uuid> = sqlx::query_scalar(&sql.complete_successes)
        .bind(now)
        .bind(serde_json::Value::Array(items).to_string())
        .fetch_all(executor)
        .await
        .map_err(db_err("complete"))?;
    // Ids are distinct within a batch (see `complete`), so each names its token.
    let tokens: HashMap<Uuid, Uuid> = batch.iter().map(|c| (c.id, c.token)).collect();
    Ok(ids.into_iter().map(|id| (id, tokens[&id])).collect())
}

/// An attempt's error as the JSON text the `errors` column appends.
fn error_json(e: &AttemptError) -> Result<String> {
    Ok(serde_json::to_string(e)?)
}
