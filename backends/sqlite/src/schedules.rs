//! The schedules area (cron): records in `{prefix}schedules`, and the firing step, one write
//! transaction that checks the version, applies the overlap policy, inserts the jobs and
//! advances the cursor.

use chrono::{DateTime, Utc};
use sqlx::Row;
use switchyard_core::adapter::validate_all;
use switchyard_core::schedule::{FireOutcome, Overlap, ScheduleFire, ScheduleRecord};
use switchyard_core::{EnqueueOutcome, Error, JobState, Result};
use uuid::Uuid;

use crate::connection::Db;
use crate::enqueue::insert_in;
use crate::error::db_err;
use crate::row::{from_millis, millis};

const COLUMNS: &str = "def, paused, cursor_at, last_fired, last_job, version";

fn decode(row: &sqlx::sqlite::SqliteRow) -> Result<ScheduleRecord> {
    let def: String = row.try_get("def").map_err(db_err("read schedule"))?;
    let def = serde_json::from_str(&def)
        .map_err(|e| Error::corrupt(format!("a stored schedule definition does not parse: {e}")))?;
    let paused: i64 = row.try_get("paused").map_err(db_err("read schedule"))?;
    let cursor: i64 = row.try_get("cursor_at").map_err(db_err("read schedule"))?;
    let last_fired: Option<i64> = row.try_get("last_fired").map_err(db_err("read schedule"))?;
    let last_job: Option<Uuid> = row.try_get("last_job").map_err(db_err("read schedule"))?;
    let version: i64 = row.try_get("version").map_err(db_err("read schedule"))?;
    Ok(ScheduleRecord {
        def,
        paused: paused != 0,
        cursor: from_millis(cursor),
        last_fired: last_fired.map(from_millis),
        last_job,
        version: version as u64,
    })
}

pub(crate) fn now(db: &Db) -> DateTime<Utc> {
    db.now()
}

pub(crate) async fn list(db: &Db) -> Result<Vec<ScheduleRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {}schedules ORDER BY id",
        db.prefix
    ))
    .fetch_all(&db.reader)
    .await
    .map_err(db_err("list schedules"))?;
    rows.iter().map(decode).collect()
}

pub(crate) async fn get(db: &Db, id: &str) -> Result<Option<ScheduleRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM {}schedules WHERE id = ?",
        db.prefix
    ))
    .bind(id)
    .fetch_optional(&db.reader)
    .await
    .map_err(db_err("get schedule"))?;
    row.as_ref().map(decode).transpose()
}

pub(crate) async fn put(db: &Db, r: &ScheduleRecord, expected: Option<u64>) -> Result<bool> {
    let def = serde_json::to_string(&r.def)?;
    let done = match expected {
        None => sqlx::query(&format!(
            "INSERT INTO {}schedules (id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 1) \
             ON CONFLICT (id) DO NOTHING",
            db.prefix
        ))
        .bind(&r.def.id)
        .bind(def)
        .bind(r.paused as i64)
        .bind(millis(r.cursor))
        .bind(r.last_fired.map(millis))
        .bind(r.last_job)
        .execute(&db.writer)
        .await
        .map_err(db_err("insert schedule"))?,
        Some(v) => sqlx::query(&format!(
            "UPDATE {}schedules SET def = ?, paused = ?, cursor_at = ?, version = version + 1 \
             WHERE id = ? AND version = ?",
            db.prefix
        ))
        .bind(def)
        .bind(r.paused as i64)
        .bind(millis(r.cursor))
        .bind(&r.def.id)
        .bind(v as i64)
        .execute(&db.writer)
        .await
        .map_err(db_err("update schedule"))?,
    };
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn remove(db: &Db, id: &str) -> Result<bool> {
    let done = sqlx::query(&format!("DELETE FROM {}schedules WHERE id = ?", db.prefix))
        .bind(id)
        .execute(&db.writer)
        .await
        .map_err(db_err("remove schedule"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn fire(db: &Db, f: &ScheduleFire) -> Result<FireOutcome> {
    validate_all(&f.jobs, &db.caps)?;
    let mut tx = db.writer.begin().await.map_err(db_err("begin fire"))?;
    let row: Option<(i64, Option<Uuid>)> = sqlx::query_as(&format!(
        "SELECT version, last_job FROM {}schedules WHERE id = ?",
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
            let state: Option<String> =
                sqlx::query_scalar(&format!("SELECT state FROM {}jobs WHERE id = ?", db.prefix))
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
        insert_in(db, &mut tx, &f.jobs).await?
    };
    let new_last = jobs.last().map(|o: &EnqueueOutcome| o.id());
    sqlx::query(&format!(
        "UPDATE {}schedules SET cursor_at = ?, version = ?, \
         last_fired = COALESCE(?, last_fired), last_job = COALESCE(?, last_job) WHERE id = ?",
        db.prefix
    ))
    .bind(millis(f.cursor))
    .bind(version + 1)
    .bind(new_last.and(f.fired_for).map(millis))
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
