//! `switchyard schedules`: list the stored schedules (next and last instant, last job and its
//! state), and pause, resume, trigger or remove one. Works on the storage directly, so it
//! sees every instance's schedules.

use chrono::SecondsFormat;
use serde_json::json;
use switchyard_core::schedule::{self, Schedule};
use switchyard_core::{EnqueueOutcome, Error, Result, Storage};

use super::output::{json, json_line, line, pad};
use super::Outcome;

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// `switchyard schedules [list]`.
pub(super) async fn list(storage: &dyn Storage) -> Result<Outcome> {
    let records = storage.list_schedules().await?;
    if !json() {
        line(format!(
            "{} {} {} {} {} {} LAST JOB",
            pad("ID", 20),
            pad("EXPR", 18),
            pad("TZ", 16),
            pad("STATE", 7),
            pad("NEXT", 21),
            pad("LAST FIRED", 21)
        ))?;
    }
    let mut rows = Vec::new();
    for r in records {
        let next = Schedule::new(r.def.clone())
            .ok()
            .and_then(|s| s.next_after(r.cursor));
        let last_state = match r.last_job {
            Some(id) => storage.get(id).await?.map(|j| j.state),
            None => None,
        };
        if json() {
            rows.push(json!({
                "id": r.def.id,
                "expr": r.def.expr,
                "tz": r.def.tz,
                "kind": r.def.job.kind,
                "queue": r.def.job.queue,
                "overlap": r.def.overlap,
                "catch_up": r.def.catch_up,
                "paused": r.paused,
                "next": next,
                "last_fired": r.last_fired,
                "last_job": r.last_job,
                "last_job_state": last_state,
            }));
        } else {
            let last = match (r.last_job, last_state) {
                (Some(id), Some(s)) => format!("{id} ({s})"),
                (Some(id), None) => format!("{id} (pruned)"),
                _ => "-".into(),
            };
            line(format!(
                "{} {} {} {} {} {} {last}",
                pad(&r.def.id, 20),
                pad(&r.def.expr, 18),
                pad(&r.def.tz, 16),
                pad(if r.paused { "paused" } else { "active" }, 7),
                pad(if r.paused { "-".into() } else { time(next) }, 21),
                pad(time(r.last_fired), 21),
            ))?;
        }
    }
    if json() {
        json_line(&rows)?;
    }
    Ok(Outcome::Done)
}

fn missing(id: &str) -> Error {
    Error::not_found(format!(
        "no schedule with id `{id}` (`switchyard schedules` lists them)"
    ))
}

/// `switchyard schedules pause|resume <id>`.
pub(super) async fn set_paused(storage: &dyn Storage, id: &str, paused: bool) -> Result<Outcome> {
    let was = storage.get_schedule(id).await?.ok_or_else(|| missing(id))?;
    if was.paused == paused {
        let state = if paused { "paused" } else { "active" };
        report(
            id,
            "unchanged",
            &format!("schedule `{id}` is already {state}; nothing changed"),
        )?;
        return Ok(Outcome::NothingChanged);
    }
    if !schedule::set_paused(storage, id, paused).await? {
        return Err(missing(id));
    }
    let (what, text) = if paused {
        ("paused", format!("paused schedule `{id}`"))
    } else {
        (
            "resumed",
            format!("resumed schedule `{id}`; missed instants follow its catch-up policy"),
        )
    };
    report(id, what, &text)?;
    Ok(Outcome::Done)
}

/// `switchyard schedules trigger <id>`.
pub(super) async fn trigger(storage: &dyn Storage, id: &str) -> Result<Outcome> {
    match schedule::trigger(storage, id).await? {
        None => Err(missing(id)),
        Some(o) => {
            let (what, job) = match o {
                EnqueueOutcome::Inserted(j) => ("triggered", j),
                EnqueueOutcome::Duplicate(j) => ("duplicate", j),
            };
            if json() {
                json_line(&json!({"id": id, "outcome": what, "job": job}))?;
            } else {
                line(format!(
                    "{what} schedule `{id}`: job {job} for its next instant, now"
                ))?;
            }
            Ok(if what == "duplicate" {
                Outcome::NothingChanged
            } else {
                Outcome::Done
            })
        }
    }
}

/// `switchyard schedules remove <id>`.
pub(super) async fn remove(storage: &dyn Storage, id: &str) -> Result<Outcome> {
    if !storage.remove_schedule(id).await? {
        return Err(missing(id));
    }
    report(
        id,
        "removed",
        &format!(
            "removed schedule `{id}` (an instance that declares it registers it again at start)"
        ),
    )?;
    Ok(Outcome::Done)
}

fn report(id: &str, outcome: &str, text: &str) -> Result<()> {
    if json() {
        json_line(&json!({"id": id, "outcome": outcome}))
    } else {
        line(text)
    }
}
