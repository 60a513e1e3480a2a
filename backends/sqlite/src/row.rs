//! Decoding a `jobs` row into a [`JobRecord`].

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use switchyard_core::{Error, JobRecord, JobState, Result};
use uuid::Uuid;

/// The columns every query that returns jobs selects, in this order.
pub(crate) const COLUMNS: &str =
    "id, kind, queue, payload, priority, state, attempt, max_attempts, \
     run_at, created_at, started_at, finished_at, lease_expires_at, lease_token, worker_id, \
     errors, result, unique_key, cancel_requested, timeout_ms, tags";

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("SQLite row has a bad `{what}` column: {e}"))
}

pub(crate) fn decode(row: &SqliteRow) -> Result<JobRecord> {
    let get_json = |col: &str| -> Result<serde_json::Value> {
        let text: String = row.try_get(col).map_err(|e| corrupt(col, e))?;
        serde_json::from_str(&text).map_err(|e| corrupt(col, e))
    };
    let state: String = row.try_get("state").map_err(|e| corrupt("state", e))?;
    let result: Option<String> = row.try_get("result").map_err(|e| corrupt("result", e))?;
    let errors: String = row.try_get("errors").map_err(|e| corrupt("errors", e))?;
    let tags: String = row.try_get("tags").map_err(|e| corrupt("tags", e))?;
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = row.try_get(col).map_err(|e| corrupt(col, e))?;
        Ok(v.map(from_millis))
    };
    Ok(JobRecord {
        id: row.try_get::<Uuid, _>("id").map_err(|e| corrupt("id", e))?,
        kind: row.try_get("kind").map_err(|e| corrupt("kind", e))?,
        queue: row.try_get("queue").map_err(|e| corrupt("queue", e))?,
        payload: get_json("payload")?,
        priority: row
            .try_get::<i64, _>("priority")
            .map_err(|e| corrupt("priority", e))? as i16,
        state: state.parse::<JobState>()?,
        attempt: row
            .try_get::<i64, _>("attempt")
            .map_err(|e| corrupt("attempt", e))? as u32,
        max_attempts: row
            .try_get::<i64, _>("max_attempts")
            .map_err(|e| corrupt("max_attempts", e))? as u32,
        run_at: from_millis(row.try_get("run_at").map_err(|e| corrupt("run_at", e))?),
        created_at: from_millis(
            row.try_get("created_at")
                .map_err(|e| corrupt("created_at", e))?,
        ),
        started_at: opt_time("started_at")?,
        finished_at: opt_time("finished_at")?,
        lease_expires_at: opt_time("lease_expires_at")?,
        lease_token: row
            .try_get::<Option<Uuid>, _>("lease_token")
            .map_err(|e| corrupt("lease_token", e))?,
        worker_id: row
            .try_get("worker_id")
            .map_err(|e| corrupt("worker_id", e))?,
        errors: serde_json::from_str(&errors).map_err(|e| corrupt("errors", e))?,
        result: match result {
            Some(t) => Some(serde_json::from_str(&t).map_err(|e| corrupt("result", e))?),
            None => None,
        },
        unique_key: row
            .try_get("unique_key")
            .map_err(|e| corrupt("unique_key", e))?,
        cancel_requested: row
            .try_get::<i64, _>("cancel_requested")
            .map_err(|e| corrupt("cancel_requested", e))?
            != 0,
        timeout_ms: row
            .try_get::<Option<i64>, _>("timeout_ms")
            .map_err(|e| corrupt("timeout_ms", e))?
            .map(|v| v as u64),
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e))?,
    })
}
