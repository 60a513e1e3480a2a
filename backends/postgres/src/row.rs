//! Decoding a `jobs` row into a [`JobRecord`].

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use switchyard_core::{AttemptError, Error, JobRecord, JobState, Result};
use uuid::Uuid;

/// The columns every query that returns jobs selects, in the order [`decode`] reads them,
/// each qualified with `alias` (e.g. `j.`).
pub(crate) fn columns(alias: &str) -> String {
    [
        "id",
        "kind",
        "queue",
        "payload",
        "priority",
        "state",
        "attempt",
        "max_attempts",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "lease_expires_at",
        "lease_token",
        "worker_id",
        "errors",
        "result",
        "unique_key",
        "cancel_requested",
        "timeout_ms",
        "tags",
    ]
    .iter()
    .map(|c| format!("{alias}{c}"))
    .collect::<Vec<_>>()
    .join(", ")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("PostgreSQL row has a bad `{what}` column: {e}"))
}

/// Reads column `i` (named `name` for messages).
fn col<'r, T>(row: &'r PgRow, i: usize, name: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(i).map_err(|e| corrupt(name, e))
}

/// Decodes a row selected with [`columns`]. Columns are read by position (no name lookups on
/// the hot path).
pub(crate) fn decode(row: &PgRow) -> Result<JobRecord> {
    let state: &str = col(row, 5, "state")?;
    let errors: Json<Vec<AttemptError>> = col(row, 15, "errors")?;
    Ok(JobRecord {
        id: col::<Uuid>(row, 0, "id")?,
        kind: col(row, 1, "kind")?,
        queue: col(row, 2, "queue")?,
        payload: col(row, 3, "payload")?,
        priority: col(row, 4, "priority")?,
        state: state.parse::<JobState>()?,
        attempt: col::<i32>(row, 6, "attempt")?.max(0) as u32,
        max_attempts: col::<i32>(row, 7, "max_attempts")?.max(0) as u32,
        run_at: col::<DateTime<Utc>>(row, 8, "run_at")?,
        created_at: col::<DateTime<Utc>>(row, 9, "created_at")?,
        started_at: col(row, 10, "started_at")?,
        finished_at: col(row, 11, "finished_at")?,
        lease_expires_at: col(row, 12, "lease_expires_at")?,
        lease_token: col(row, 13, "lease_token")?,
        worker_id: col(row, 14, "worker_id")?,
        errors: errors.0,
        result: col(row, 16, "result")?,
        unique_key: col(row, 17, "unique_key")?,
        cancel_requested: col(row, 18, "cancel_requested")?,
        timeout_ms: col::<Option<i64>>(row, 19, "timeout_ms")?.map(|v| v.max(0) as u64),
        tags: col(row, 20, "tags")?,
    })
}

/// Encodes tags as a PostgreSQL array literal (`{"a","b"}`), bound as one `text` per job and
/// cast to `text[]` in SQL (a ragged `text[][]` cannot be unnested).
pub(crate) fn tags_literal(tags: &[String]) -> String {
    let mut out = String::with_capacity(2 + tags.iter().map(|t| t.len() + 3).sum::<usize>());
    out.push('{');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for ch in tag.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_literal_escapes() {
        assert_eq!(tags_literal(&[]), "{}");
        assert_eq!(
            tags_literal(&["a".into(), "b c".into(), "q\"x\\y".into()]),
            r#"{"a","b c","q\"x\\y"}"#
        );
    }
}
