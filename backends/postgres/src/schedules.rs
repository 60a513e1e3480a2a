//! The schedules area (cron): records in `{prefix}schedules`, and the firing step, one
//! transaction that locks the row, checks the version, applies the overlap policy, inserts
//! the jobs and advances the cursor.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::Row;
use switchyard_core::adapter::validate_all;
use switchyard_core::schedule::{FireOutcome, Overlap, ScheduleDef, ScheduleFire, ScheduleRecord};
use switchyard_core::{EnqueueOutcome, JobState, Result};
use uuid::Uuid;

use crate::connection::Db;
use crate::enqueue::enqueue_in;
use crate::error::{db_err, retrying};

const COLUMNS: &str = "def, paused, cursor_at, last_fired, last_job, version";

fn decode(row: &sqlx::postgres::PgRow) -> sqlx::Result<ScheduleRecord> {
    let def: Json<ScheduleDef> = row.try_get("def")?;
    let version: i64 = row.try_get("version")?;
    Ok(ScheduleRecord {
        def: def.0,
        paused: row.try_get("paused")?,
        cursor: row.try_get("cursor_at")?,
        last_fired: row.try_get("last_fired")?,
        last_job: row.try_get("last_job")?,
        version: version as u64,
    })
}

pub(crate) async fn now(db: &Db) -> Result<DateTime<Utc>> {
    retrying("read the clock", || async {
        sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&db.pool)
            .await
    })
    .await
}

pub(crate) async fn list(db: &Db) -> Result<Vec<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM {}schedules ORDER BY id", db.prefix);
    retrying("list schedules", || async {
        let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
        rows.iter().map(decode).collect()
    })
    .await
}

pub(crate) async fn get(db: &Db, id: &str) -> Result<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM {}schedules WHERE id = $1", db.prefix);
    retrying("get schedule", || async {
        let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
        row.as_ref().map(decode).transpose()
    })
    .await
}

pub(crate) async fn put(db: &Db, r: &ScheduleRecord, expected: Option<u64>) -> Result<bool> {
    let done = match expected {
        None => sqlx::query(&format!(
            "INSERT INTO {}schedules (id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 1) \
             ON CONFLICT (id) DO NOTHING",
            db.prefix
        ))
        .bind(&r.def.id)
        .bind(Json(&r.def))
        .bind(r.paused)
        .bind(r.cursor)
        .bind(r.last_fired)
        .bind(r.last_job)
        .execute(&db.pool)
        .await
        .map_err(db_err("insert schedule"))?,
        Some(v) => sqlx::query(&format!(
            "UPDATE {}schedules SET def = $1, paused = $2, cursor_at = $3, \
             version = version + 1 WHERE id = $4 AND version = $5",
            db.prefix
        ))
        .bind(Json(&r.def))
        .bind(r.paused)
        .bind(r.cursor)
        .bind(&r.def.id)
        .bind(v as i64)
        .execute(&db.pool)
        .await
        .map_err(db_err("update schedule"))?,
    };
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn remove(db: &Db, id: &str) -> Result<bool> {
    let done = sqlx::query(&format!("DELETE FROM {}schedules WHERE id = $1", db.prefix))
        .bind(id)
        .execute(&db.pool)
        .await
        .map_err(db_err("remove schedule"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn fire(db: &Db, f: &ScheduleFire) -> Result<FireOutcome> {
    validate_all(&f.jobs, &db.caps)?;
    let mut tx = db.pool.begin().await.map_err(db_err("begin fire"))?;
    // A scheduler whose step is cut off (its future dropped, its process frozen) must not hold
    // the schedule's row lock for long: the server ends a transaction left idle.
    sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '5s'")
        .execute(&mut *tx)
        .await
        .map_err(db_err("begin fire"))?;
    let row: Option<(i64, Option<Uuid>)> = sqlx::query_as(&format!(
        "SELECT version, last_job FROM {}schedules WHERE id = $1 FOR UPDATE",
        db.prefix
    ))
    .bind(&f.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err("read schedule"))?;
    let Some((version, last_job)) = row.filter(|(v, _)| *v as u64 == f.version) else {
        return Ok(FireOutcome::Conflict);
    };
    let held_back = match (f.overlap, last_job) {
        (Overlap::Allow, _) | (_, None) => false,
        (policy, Some(job)) => {
            let state: Option<String> = sqlx::query_scalar(&format!(
                "SELECT state FROM {}jobs WHERE id = $1",
                db.prefix
            ))
            .bind(job)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("read the schedule's last job"))?;
            let state = state.and_then(|s| s.parse::<JobState>().ok());
            match (policy, state) {
                (_, None) => false,
                (Overlap::Skip, Some(s)) => !s.is_finished(),
                (_, Some(s)) => s.is_pending(),
            }
        }
    };
    let jobs = if held_back || f.jobs.is_empty() {
        Vec::new()
    } else {
        enqueue_in(db, &mut tx, f.jobs.clone()).await?
    };
    let new_last = jobs.last().map(|o: &EnqueueOutcome| o.id());
    sqlx::query(&format!(
        "UPDATE {}schedules SET cursor_at = $1, version = $2, \
         last_fired = COALESCE($3, last_fired), last_job = COALESCE($4, last_job) WHERE id = $5",
        db.prefix
    ))
    .bind(f.cursor)
    .bind(version + 1)
    .bind(new_last.and(f.fired_for))
    .bind(new_last)
    .bind(&f.id)
    .execute(&mut *tx)
    .await
    .map_err(db_err("advance schedule"))?;
    tx.commit().await.map_err(db_err("commit fire"))?;
    if jobs
        .iter()
        .any(|o| matches!(o, EnqueueOutcome::Inserted(_)))
    {
        db.wake.notify();
    }
    Ok(FireOutcome::Fired { jobs, held_back })
}
