//! Leases: renewing running attempts ([`heartbeat`]), recording how attempts ended
//! ([`complete`]), and rescuing the jobs whose lease ran out ([`rescue_expired`]). Every
//! statement is fenced by the lease token, so a stale attempt changes nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use switchyard_core::adapter::{completion_statuses, lease_statuses, requeued_any};
use switchyard_core::{
    Completion, CompletionStatus, LeaseRef, LeaseStatus, Outcome, RescueReport, Result,
};
use uuid::Uuid;

use crate::connection::Db;
use crate::error::retrying;
use crate::sql::millis_f64;

/// `Storage::heartbeat`: one statement for every lease.
pub(crate) async fn heartbeat(
    db: &Db,
    leases: &[LeaseRef],
    lease: Duration,
) -> Result<Vec<LeaseStatus>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, pool) = (&db.sql, &db.pool);
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
    Ok(lease_statuses(leases, &found))
}

/// `Storage::complete`: every outcome in one statement; an applied abort or release wakes
/// workers in every process.
pub(crate) async fn complete(db: &Db, completions: &[Completion]) -> Result<Vec<CompletionStatus>> {
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
            Outcome::Snoozed { run_at } => ("snoozed", None, None, Some(*run_at)),
        };
        outcomes.push(outcome);
        results.push(result.map(Json));
        errors.push(error.map(Json));
        run_ats.push(run_at);
    }
    let (sql, pool) = (&db.sql, &db.pool);
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
    let statuses = completion_statuses(completions, &applied);
    if requeued_any(completions, &statuses) {
        db.announce().await;
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
    if limit == 0 {
        return Ok(RescueReport::default());
    }
    let (sql, pool) = (&db.sql, &db.pool);
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
        db.announce().await;
    }
    Ok(report)
}
