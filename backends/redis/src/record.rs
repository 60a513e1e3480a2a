//! How a job travels to and from Redis: the script arguments that write jobs and
//! completions ([`enqueue_args`], [`completion_args`]), and decoding a job hash or a claim
//! reply into a [`JobRecord`].

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use switchyard_core::{Completion, Error, JobRecord, JobState, NewJob, Outcome, Result};
use uuid::Uuid;

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A lease in milliseconds, at most 10^12 (about 31 years): scripts add it to the server's
/// clock and format the deadline as a 64-bit integer, which a longer one would overflow.
pub(crate) fn lease_ms(lease: Duration) -> u64 {
    (lease.as_millis() as u64).min(1_000_000_000_000)
}

/// The arguments of `lua/enqueue.lua` for `jobs` (after the prefix): their number, then ten
/// fields per job.
pub(crate) fn enqueue_args(jobs: &[NewJob]) -> Result<Vec<String>> {
    let mut args: Vec<String> = Vec::with_capacity(2 + jobs.len() * 10);
    args.push(jobs.len().to_string());
    for job in jobs {
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
    Ok(args)
}

/// The arguments of `lua/complete.lua` for `completions` (after the prefix): the finished
/// jobs' expiry in seconds, then id, token, outcome code and two outcome fields each.
pub(crate) fn completion_args(
    finished_ttl_secs: u64,
    completions: &[Completion],
) -> Result<Vec<String>> {
    let mut args: Vec<String> = Vec::with_capacity(1 + completions.len() * 5);
    args.push(finished_ttl_secs.to_string());
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
            Outcome::Snoozed { run_at } => ("Z", String::new(), millis(*run_at).to_string()),
        };
        args.push(code.to_string());
        args.push(a1);
        args.push(a2);
    }
    Ok(args)
}

/// An attempt's error as stored in the job hash.
fn error_json(e: &switchyard_core::AttemptError) -> Result<String> {
    Ok(serde_json::to_string(e)?)
}

fn corrupt(id: &str, field: &str, e: impl std::fmt::Display) -> Error {
    Error::corrupt(format!(
        "Redis job hash {id} has a bad `{field}` field: {e}"
    ))
}

/// The fields of a job hash that make up a [`JobRecord`], each `None` when absent.
#[derive(Default)]
struct Fields {
    id: Option<String>,
    kind: Option<String>,
    queue: Option<String>,
    payload: Option<String>,
    priority: Option<String>,
    state: Option<String>,
    attempt: Option<String>,
    max_attempts: Option<String>,
    run_at: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    lease_expires_at: Option<String>,
    lease_token: Option<String>,
    worker_id: Option<String>,
    errors: Option<String>,
    result: Option<String>,
    unique_key: Option<String>,
    cancel_requested: Option<String>,
    timeout_ms: Option<String>,
    tags: Option<String>,
}

/// Splits a `spec` field (kind, created_at, timeout_ms, tags and payload joined by NUL bytes,
/// see `spec` in `lua/prelude.lua`) into `f`.
fn unpack_spec(f: &mut Fields, spec: &str) -> Result<()> {
    let parts: Vec<&str> = spec.splitn(5, '\0').collect();
    let [kind, created_at, timeout_ms, tags, payload] = parts[..] else {
        let id = f.id.clone().unwrap_or_default();
        return Err(corrupt(
            &id,
            "spec",
            format!("{} parts where 5 were expected", parts.len()),
        ));
    };
    let s = |v: &str| Some(v.to_string());
    (f.kind, f.created_at, f.timeout_ms, f.tags, f.payload) =
        (s(kind), s(created_at), s(timeout_ms), s(tags), s(payload));
    Ok(())
}

/// A job hash as returned by `HGETALL` (field, value, field, value, …); `None` when the hash
/// does not exist. Fields the record does not show (`dispatched_at`) are skipped. Reads both
/// layouts: the `spec` field of schema 3 and the separate fields of earlier schemas.
pub(crate) fn decode_flat(flat: Vec<String>) -> Result<Option<JobRecord>> {
    if flat.is_empty() {
        return Ok(None);
    }
    let mut f = Fields::default();
    let mut spec = None;
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let slot = match k.as_str() {
            "spec" => &mut spec,
            "id" => &mut f.id,
            "kind" => &mut f.kind,
            "queue" => &mut f.queue,
            "payload" => &mut f.payload,
            "priority" => &mut f.priority,
            "state" => &mut f.state,
            "attempt" => &mut f.attempt,
            "max_attempts" => &mut f.max_attempts,
            "run_at" => &mut f.run_at,
            "created_at" => &mut f.created_at,
            "started_at" => &mut f.started_at,
            "finished_at" => &mut f.finished_at,
            "lease_expires_at" => &mut f.lease_expires_at,
            "lease_token" => &mut f.lease_token,
            "worker_id" => &mut f.worker_id,
            "errors" => &mut f.errors,
            "result" => &mut f.result,
            "unique_key" => &mut f.unique_key,
            "cancel_requested" => &mut f.cancel_requested,
            "timeout_ms" => &mut f.timeout_ms,
            "tags" => &mut f.tags,
            _ => continue,
        };
        *slot = Some(v);
    }
    if let Some(spec) = spec {
        unpack_spec(&mut f, &spec)?;
    }
    decode(f).map(Some)
}

/// A job hash's fields as a record. A hash without `id` and `state` (a partial leftover) is
/// corrupt.
///
/// An empty value means "none" (scripts create the fields a claim or a completion touches up
/// front, see `JOB_LAYOUT` in `lua/prelude.lua`), except for `unique_key`, which exists only
/// when set. The lease fields count only while the job is running: a finished job keeps its
/// last lease's.
fn decode(mut f: Fields) -> Result<JobRecord> {
    let idr = f.id.clone().unwrap_or_default();
    let idr = idr.as_str();
    let present = |v: Option<String>| v.filter(|v| !v.is_empty());
    let req =
        |v: Option<String>, name: &str| present(v).ok_or_else(|| corrupt(idr, name, "missing"));
    let int = |v: Option<String>, name: &str| -> Result<Option<i64>> {
        present(v)
            .map(|s| s.parse::<i64>().map_err(|e| corrupt(idr, name, e)))
            .transpose()
    };
    let time = |v: Option<String>, name: &str| -> Result<Option<DateTime<Utc>>> {
        Ok(int(v, name)?.map(from_millis))
    };
    let json = |v: &str, name: &str| -> Result<serde_json::Value> {
        serde_json::from_str(v).map_err(|e| corrupt(idr, name, e))
    };
    let id = Uuid::parse_str(&req(f.id.take(), "id")?).map_err(|e| corrupt(idr, "id", e))?;
    let state: JobState = req(f.state.take(), "state")?.parse()?;
    if state != JobState::Running {
        f.lease_token = None;
        f.lease_expires_at = None;
        f.worker_id = None;
    }
    let payload = json(&req(f.payload.take(), "payload")?, "payload")?;
    let result = present(f.result.take())
        .map(|r| json(&r, "result"))
        .transpose()?;
    let errors = match present(f.errors.take()) {
        Some(e) => serde_json::from_str(&e).map_err(|e| corrupt(idr, "errors", e))?,
        None => Vec::new(),
    };
    let tags = match present(f.tags.take()) {
        Some(t) => serde_json::from_str(&t).map_err(|e| corrupt(idr, "tags", e))?,
        None => Vec::new(),
    };
    Ok(JobRecord {
        id,
        kind: req(f.kind.take(), "kind")?,
        queue: req(f.queue.take(), "queue")?,
        payload,
        priority: int(f.priority.take(), "priority")?.unwrap_or(0) as i16,
        state,
        attempt: int(f.attempt.take(), "attempt")?.unwrap_or(0) as u32,
        max_attempts: int(f.max_attempts.take(), "max_attempts")?.unwrap_or(1) as u32,
        run_at: time(f.run_at.take(), "run_at")?.unwrap_or_default(),
        created_at: time(f.created_at.take(), "created_at")?.unwrap_or_default(),
        started_at: time(f.started_at.take(), "started_at")?,
        finished_at: time(f.finished_at.take(), "finished_at")?,
        lease_expires_at: time(f.lease_expires_at.take(), "lease_expires_at")?,
        lease_token: present(f.lease_token.take())
            .map(|t| Uuid::parse_str(&t).map_err(|e| corrupt(idr, "lease_token", e)))
            .transpose()?,
        worker_id: present(f.worker_id.take()),
        errors,
        result,
        unique_key: f.unique_key.take(),
        cancel_requested: f.cancel_requested.as_deref() == Some("1"),
        timeout_ms: int(f.timeout_ms.take(), "timeout_ms")?.map(|v| v as u64),
        tags,
    })
}

/// How many NUL-separated values a claim script returns for each job (see `claim_one` in
/// `lua/prelude.lua`): state, attempt, queue, priority, max_attempts, run_at, errors, result,
/// unique_key, cancel_requested as they were before the claim, the five parts of `spec` (kind,
/// created_at, timeout_ms, tags, payload), then its id and its token.
const CLAIMED_WIDTH: usize = 17;

/// A claimed job whose stored record does not decode (a hash corrupted, or written by an
/// older version with a value it no longer accepts): its lease, to fail it with the reason.
#[derive(Debug)]
pub(crate) struct Undecodable {
    pub id: Uuid,
    pub token: Uuid,
    pub attempt: u32,
    pub reason: String,
}

/// The reply of a claim script: `now`, the lease expiry, then one string per job holding
/// [`CLAIMED_WIDTH`] values joined by NUL bytes. Returns the claimed jobs as running records,
/// and apart those that do not decode (each entry ends with the job's id and token, which
/// hold no NUL, so those are known even when the rest is not).
pub(crate) fn decode_claimed(
    reply: Vec<String>,
    worker_id: &str,
) -> Result<(Vec<JobRecord>, Vec<Undecodable>)> {
    let bad = |what: &str| Error::corrupt(format!("Redis claim returned a bad {what}"));
    let mut it = reply.into_iter();
    let (Some(now), Some(exp)) = (it.next(), it.next()) else {
        return Err(bad("reply"));
    };
    let mut out = Vec::with_capacity(it.len());
    let mut undecodable = Vec::new();
    for job in it {
        let v: Vec<&str> = job.split('\0').collect();
        let [.., id, token] = v[..] else {
            return Err(bad("job entry"));
        };
        let (Ok(uid), Ok(utoken)) = (Uuid::parse_str(id), Uuid::parse_str(token)) else {
            return Err(bad(&format!("job entry ending `{id}`, `{token}`")));
        };
        match decode_claimed_one(&v, &now, &exp, worker_id) {
            Ok(record) => out.push(record),
            Err(e) => undecodable.push(Undecodable {
                id: uid,
                token: utoken,
                attempt: v[1].parse::<u32>().map_or(1, |a| a + 1),
                reason: e.to_string(),
            }),
        }
    }
    Ok((out, undecodable))
}

/// One job entry of a claim reply, split on NUL bytes, as a running record.
fn decode_claimed_one(v: &[&str], now: &str, exp: &str, worker_id: &str) -> Result<JobRecord> {
    let [_state_before, attempt, queue, priority, max_attempts, run_at, errors, result, unique_key, cancel_requested, kind, created_at, timeout_ms, tags, payload, id, token] =
        v[..]
    else {
        return Err(Error::corrupt(format!(
            "Redis job hash {} has {} claim values where {CLAIMED_WIDTH} were expected (a NUL \
             character in its kind, queue or unique key?)",
            v[v.len() - 2],
            v.len()
        )));
    };
    // A blank attempt counts as none so far, as the claim script counted it.
    let attempt = match attempt {
        "" => 0,
        a => a.parse::<u32>().map_err(|e| corrupt(id, "attempt", e))?,
    };
    let s = |v: &str| Some(v.to_string());
    // The token tells whether the job has a unique key (see `token` in the prelude), so an
    // empty one is told apart from none.
    let unique = token
        .as_bytes()
        .get(32)
        .is_some_and(|b| matches!(b, b'8'..=b'9' | b'a'..=b'f'));
    decode(Fields {
        id: s(id),
        lease_token: s(token),
        state: Some(JobState::Running.as_str().to_string()),
        attempt: Some((attempt + 1).to_string()),
        kind: s(kind),
        queue: s(queue),
        payload: s(payload),
        priority: s(priority),
        max_attempts: s(max_attempts),
        run_at: s(run_at),
        created_at: s(created_at),
        errors: s(errors),
        result: s(result),
        unique_key: unique.then(|| unique_key.to_string()),
        cancel_requested: s(cancel_requested),
        timeout_ms: s(timeout_ms),
        tags: s(tags),
        lease_expires_at: Some(exp.to_string()),
        started_at: Some(now.to_string()),
        worker_id: Some(worker_id.to_string()),
        finished_at: None,
    })
}
