//! Decoding a job hash into a [`JobRecord`].

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use switchyard_core::{Error, JobRecord, JobState, Result};
use uuid::Uuid;

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn corrupt(id: &str, field: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(format!(
        "Redis job hash {id} has a bad `{field}` field: {e}"
    ))
}

/// A job hash as returned by `HGETALL` (field, value, field, value, …).
pub(crate) fn decode_flat(flat: Vec<String>) -> Result<Option<JobRecord>> {
    if flat.is_empty() {
        return Ok(None);
    }
    let mut map = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    decode(map).map(Some)
}

/// A job hash as a map. A hash without `id` and `state` (a partial leftover) is corrupt.
///
/// An empty value means "none" (scripts create the fields a claim or a completion touches up
/// front, see `JOB_LAYOUT` in `lua/prelude.lua`), except for `unique_key`, which exists only
/// when set. The lease fields count only while the job is running: a finished job keeps its
/// last lease's.
pub(crate) fn decode(mut m: HashMap<String, String>) -> Result<JobRecord> {
    let id_text = m.get("id").cloned().unwrap_or_default();
    let idr = id_text.as_str();
    let unique_key = m.remove("unique_key");
    if m.get("state").map(String::as_str) != Some(JobState::Running.as_str()) {
        for f in ["lease_token", "lease_expires_at", "worker_id"] {
            m.remove(f);
        }
    }
    let mut take = |f: &str| m.remove(f).filter(|v| !v.is_empty());
    let req = |v: Option<String>, f: &str| v.ok_or_else(|| corrupt(idr, f, "missing"));
    let int = |v: Option<String>, f: &str| -> Result<Option<i64>> {
        v.map(|s| s.parse::<i64>().map_err(|e| corrupt(idr, f, e)))
            .transpose()
    };
    let json = |v: String, f: &str| -> Result<serde_json::Value> {
        serde_json::from_str(&v).map_err(|e| corrupt(idr, f, e))
    };
    let id = Uuid::parse_str(&req(take("id"), "id")?).map_err(|e| corrupt(idr, "id", e))?;
    let state: JobState = req(take("state"), "state")?.parse()?;
    let payload = json(req(take("payload"), "payload")?, "payload")?;
    let result = take("result").map(|r| json(r, "result")).transpose()?;
    let errors = serde_json::from_str(&take("errors").unwrap_or_else(|| "[]".into()))
        .map_err(|e| corrupt(idr, "errors", e))?;
    let tags = serde_json::from_str(&take("tags").unwrap_or_else(|| "[]".into()))
        .map_err(|e| corrupt(idr, "tags", e))?;
    let time = |v: Option<String>, f: &str| -> Result<Option<DateTime<Utc>>> {
        Ok(int(v, f)?.map(from_millis))
    };
    Ok(JobRecord {
        id,
        kind: req(take("kind"), "kind")?,
        queue: req(take("queue"), "queue")?,
        payload,
        priority: int(take("priority"), "priority")?.unwrap_or(0) as i16,
        state,
        attempt: int(take("attempt"), "attempt")?.unwrap_or(0) as u32,
        max_attempts: int(take("max_attempts"), "max_attempts")?.unwrap_or(1) as u32,
        run_at: time(take("run_at"), "run_at")?.unwrap_or_default(),
        created_at: time(take("created_at"), "created_at")?.unwrap_or_default(),
        started_at: time(take("started_at"), "started_at")?,
        finished_at: time(take("finished_at"), "finished_at")?,
        lease_expires_at: time(take("lease_expires_at"), "lease_expires_at")?,
        lease_token: take("lease_token")
            .map(|t| Uuid::parse_str(&t).map_err(|e| corrupt(idr, "lease_token", e)))
            .transpose()?,
        worker_id: take("worker_id"),
        errors,
        result,
        unique_key,
        cancel_requested: take("cancel_requested").as_deref() == Some("1"),
        timeout_ms: int(take("timeout_ms"), "timeout_ms")?.map(|v| v as u64),
        tags,
    })
}

/// The fields a claim script returns for each job after its id and token, in order (see
/// `CLAIM_FIELDS` in `lua/prelude.lua`), as they were before the claim.
const CLAIM_FIELDS: [&str; 15] = [
    "state",
    "attempt",
    "kind",
    "queue",
    "payload",
    "priority",
    "max_attempts",
    "run_at",
    "created_at",
    "errors",
    "result",
    "unique_key",
    "cancel_requested",
    "timeout_ms",
    "tags",
];

/// The reply of a claim script: `now`, the lease expiry, then per job its id, token and
/// [`CLAIM_FIELDS`]. Returns the claimed jobs as running records.
pub(crate) fn decode_claimed(
    reply: Vec<Option<String>>,
    worker_id: &str,
) -> Result<Vec<JobRecord>> {
    let bad = |what: &str| Error::corrupt(format!("Redis claim returned a bad {what}"));
    let mut it = reply.into_iter();
    let (Some(Some(now)), Some(Some(exp))) = (it.next(), it.next()) else {
        return Err(bad("reply"));
    };
    let rest: Vec<Option<String>> = it.collect();
    let per_job = 2 + CLAIM_FIELDS.len();
    if rest.len() % per_job != 0 {
        return Err(bad("reply length"));
    }
    let mut out = Vec::with_capacity(rest.len() / per_job);
    for job in rest.chunks(per_job) {
        let mut m: HashMap<String, String> = CLAIM_FIELDS
            .iter()
            .zip(&job[2..])
            .filter_map(|(f, v)| v.clone().map(|v| (f.to_string(), v)))
            .collect();
        let attempt = m
            .get("attempt")
            .and_then(|a| a.parse::<u32>().ok())
            .ok_or_else(|| bad("attempt"))?;
        let id = job[0].clone().ok_or_else(|| bad("id"))?;
        let token = job[1].clone().ok_or_else(|| bad("token"))?;
        for (k, v) in [
            ("id", id),
            ("state", "running".to_string()),
            ("attempt", (attempt + 1).to_string()),
            ("lease_token", token),
            ("lease_expires_at", exp.clone()),
            ("started_at", now.clone()),
            ("worker_id", worker_id.to_string()),
        ] {
            m.insert(k.to_string(), v);
        }
        m.remove("finished_at");
        out.push(decode(m)?);
    }
    Ok(out)
}
