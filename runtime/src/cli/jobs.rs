//! The commands on jobs: `enqueue`, `status`, `list`, `cancel` and `retry`, as text for a person
//! or, with `--json`, as JSON for a script.

use serde_json::json;
use switchyard_core::{
    CancelOutcome, EnqueueOutcome, Error, JobFilter, JobRecord, JobState, ListOrder, NewJob,
    Result, RetryOutcome,
};

use super::output::{self, pad};
use super::parse::{duration, job_id};
use super::Outcome;
use crate::client::Client;
use crate::job::EnqueueOptions;
use crate::registry::Registry;

/// The most jobs one `list` page holds (the storages' own cap).
const MAX_PAGE: i64 = 1000;

/// The payload argument: inline JSON, `@path`, or `@-` for standard input.
fn read_payload(arg: &str) -> Result<String> {
    let Some(path) = arg.strip_prefix('@') else {
        return Ok(arg.to_string());
    };
    let read = if path == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    read.map_err(|e| Error::invalid(format!("cannot read the payload from `{path}`: {e}")))
}

/// The `enqueue` payload argument as JSON.
pub(super) fn payload(arg: &str) -> Result<serde_json::Value> {
    let payload = read_payload(arg)?;
    serde_json::from_str(&payload).map_err(|e| {
        Error::invalid(format!(
            "the payload is not valid JSON ({e}); accepted: a JSON value such as '{{\"to\":\"a@b.c\"}}'"
        ))
    })
}

/// Refuses a kind that no handler is registered under, when the binary has a registry (its
/// own workers would fail the job as `unknown_kind`), unless `allow_unknown` is set.
pub(super) fn check_kind(
    kind: &str,
    registry: Option<&Registry>,
    allow_unknown: bool,
) -> Result<()> {
    if kind.is_empty() {
        return Err(Error::invalid(
            "the job kind is empty; accepted: the name a handler is registered under",
        ));
    }
    let Some(registry) = registry else {
        return Ok(());
    };
    if allow_unknown || registry.contains(kind) {
        return Ok(());
    }
    let mut kinds = registry.kinds();
    kinds.sort_unstable();
    let known = if kinds.is_empty() {
        "none".to_string()
    } else {
        kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(Error::invalid(format!(
        "no handler is registered for kind `{kind}` in this binary, so its workers would fail \
         the job as `unknown_kind`; registered: {known} (pass --allow-unknown-kind to enqueue \
         it for workers in another binary)"
    )))
}

/// The `enqueue` options from the command line.
pub(super) fn enqueue_options(
    on: String,
    priority: i16,
    delay: Option<&str>,
    max_attempts: Option<u32>,
    unique_key: Option<String>,
    timeout: Option<&str>,
) -> Result<EnqueueOptions> {
    let mut opts = EnqueueOptions::new().queue(on).priority(priority);
    if let Some(d) = delay {
        opts = opts.delay(duration("--delay", d)?);
    }
    if let Some(m) = max_attempts {
        if m == 0 {
            return Err(Error::invalid(
                "flag `--max-attempts`: 0 is not accepted; accepted: 1 or more",
            ));
        }
        opts = opts.max_attempts(m);
    }
    if let Some(k) = unique_key {
        opts = opts.unique_key(k);
    }
    if let Some(t) = timeout {
        let t = duration("--timeout", t)?;
        if t.is_zero() {
            return Err(Error::invalid(
                "flag `--timeout`: 0 would time every attempt out at once; accepted: a duration \
                 above 0 such as 30s or 5m (leave the flag out for no per-attempt timeout)",
            ));
        }
        opts = opts.timeout(t);
    }
    Ok(opts)
}

/// `switchyard enqueue`: prints the new job's id (or the live duplicate's); with `--json`
/// `{"id":…,"duplicate":false}`.
pub(super) async fn enqueue(client: &Client, job: NewJob, opts: EnqueueOptions) -> Result<Outcome> {
    let out = client.enqueue_raw(vec![opts.apply(job)]).await?;
    let (id, duplicate) = match out[0] {
        EnqueueOutcome::Inserted(id) => (id, false),
        EnqueueOutcome::Duplicate(id) => (id, true),
    };
    if output::json() {
        output::json_line(&json!({ "id": id, "duplicate": duplicate }))?;
    } else {
        output::line(id)?;
        if duplicate {
            eprintln!("a live job with this unique key exists; its id is printed");
        }
    }
    Ok(Outcome::Done)
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

fn short_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `switchyard status`: one job, as labelled lines; with `--json` the whole record on one line.
pub(super) async fn status(client: &Client, id: &str) -> Result<Outcome> {
    let id = job_id(id)?;
    let Some(job) = client.get(id).await? else {
        return Err(Error::not_found(format!("no job with id {id}")));
    };
    if output::json() {
        output::json_line(&job)?;
        return Ok(Outcome::Done);
    }
    for l in status_lines(&job)? {
        output::line(l)?;
    }
    Ok(Outcome::Done)
}

fn status_lines(job: &JobRecord) -> Result<Vec<String>> {
    let mut lines = vec![
        format!("id:           {}", job.id),
        format!("kind:         {}", job.kind),
        format!("queue:        {}", job.queue),
        format!("state:        {}", job.state),
        format!("attempt:      {} of {}", job.attempt, job.max_attempts),
        format!("priority:     {}", job.priority),
        format!("created:      {}", time(job.created_at)),
        format!("run at:       {}", time(job.run_at)),
    ];
    if let Some(t) = job.started_at {
        lines.push(format!("started:      {}", time(t)));
    }
    if let Some(t) = job.finished_at {
        lines.push(format!("finished:     {}", time(t)));
    }
    if let Some(t) = job.lease_expires_at {
        lines.push(format!("lease until:  {}", time(t)));
    }
    if let Some(w) = &job.worker_id {
        lines.push(format!("worker:       {w}"));
    }
    if let Some(k) = &job.unique_key {
        lines.push(format!("unique key:   {k}"));
    }
    if let Some(ms) = job.timeout_ms {
        lines.push(format!(
            "timeout:      {}",
            humantime::format_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if job.cancel_requested {
        lines.push("cancel:       requested".to_string());
    }
    if !job.tags.is_empty() {
        lines.push(format!("tags:         {}", job.tags.join(", ")));
    }
    lines.push(format!(
        "payload:      {}",
        serde_json::to_string(&job.payload)?
    ));
    if let Some(r) = &job.result {
        lines.push(format!("result:       {}", serde_json::to_string(r)?));
    }
    for e in &job.errors {
        lines.push(format!(
            "error:        attempt {} at {}: {}: {}",
            e.attempt,
            time(e.at),
            e.kind,
            e.message
        ));
    }
    Ok(lines)
}

/// The `list` filter from the command line.
pub(super) fn filter(
    state: &[String],
    on: Option<String>,
    kind: Option<String>,
    limit: i64,
    after: Option<&str>,
    asc: bool,
) -> Result<JobFilter> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid(format!(
            "flag `--limit`: {limit} is out of range; accepted: 1 to {MAX_PAGE}"
        )));
    }
    let states = state
        .iter()
        .map(|s| s.parse::<JobState>())
        .collect::<Result<Vec<_>>>()?;
    Ok(JobFilter {
        states,
        queue: on,
        kind,
        after: after.map(job_id).transpose()?,
        // Checked above: 1 to 1000.
        limit: limit as usize,
        order: if asc { ListOrder::Asc } else { ListOrder::Desc },
        ..JobFilter::default()
    })
}

/// `switchyard list`: a table, and the next page's `--after` on stderr; with `--json` one
/// object `{"jobs":[…],"next_after":"<id>"|null}`.
pub(super) async fn list(client: &Client, filter: &JobFilter) -> Result<Outcome> {
    // One job more than the page tells whether another page follows; a full page of the
    // storages' largest size, which cannot ask for one more, is taken to have a next page.
    let page = filter.page_size();
    let mut probe = filter.clone();
    probe.limit = page + 1;
    let mut jobs = client.list(&probe).await?;
    let more = jobs.len() > page || (jobs.len() == page && page >= MAX_PAGE as usize);
    jobs.truncate(page);
    let next_after = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    if output::json() {
        output::json_line(&json!({ "jobs": jobs, "next_after": next_after }))?;
        return Ok(Outcome::Done);
    }
    output::line(format!(
        "{}  {}  {}  {}  {:>7}  {}  run at / finished",
        pad("id", 36),
        pad("state", 9),
        pad("queue", 12),
        pad("kind", 20),
        "attempt",
        pad("created", 20)
    ))?;
    for j in &jobs {
        let when = j.finished_at.unwrap_or(j.run_at);
        output::line(format!(
            "{}  {}  {}  {}  {:>7}  {}  {}",
            j.id,
            pad(j.state, 9),
            pad(&j.queue, 12),
            pad(&j.kind, 20),
            format!("{}/{}", j.attempt, j.max_attempts),
            short_time(j.created_at),
            short_time(when)
        ))?;
    }
    if let Some(id) = next_after {
        eprintln!("more: --after {id}");
    }
    Ok(Outcome::Done)
}

/// `switchyard cancel`: "nothing changed" (exit 1) for a job that had already finished.
pub(super) async fn cancel(client: &Client, id: &str) -> Result<Outcome> {
    let id = job_id(id)?;
    let (outcome, state, text) = match client.cancel(id).await? {
        CancelOutcome::Cancelled => ("cancelled", None, format!("cancelled {id}")),
        CancelOutcome::Requested => (
            "requested",
            None,
            format!("cancel requested for running job {id}; it stops at its next heartbeat"),
        ),
        CancelOutcome::AlreadyFinished(s) => (
            "already_finished",
            Some(s),
            format!("job {id} already finished as `{s}`; nothing changed"),
        ),
        CancelOutcome::NotFound => return Err(Error::not_found(format!("no job with id {id}"))),
    };
    report(id, outcome, state, text)
}

/// `switchyard retry`: "nothing changed" (exit 1) for a job that is not finished.
pub(super) async fn retry(client: &Client, id: &str) -> Result<Outcome> {
    let id = job_id(id)?;
    let (outcome, state, text) = match client.retry(id).await? {
        RetryOutcome::Requeued => ("requeued", None, format!("job {id} is available again")),
        RetryOutcome::NotFinished(s) => (
            "not_finished",
            Some(s),
            format!("job {id} is `{s}`, not finished; nothing changed"),
        ),
        RetryOutcome::NotFound => return Err(Error::not_found(format!("no job with id {id}"))),
    };
    report(id, outcome, state, text)
}

/// Prints what `cancel` or `retry` did; an outcome with the job's `state` changed nothing.
/// With `--json`: `{"id":…,"outcome":…,"changed":bool,"state":…}`.
fn report(id: uuid::Uuid, outcome: &str, state: Option<JobState>, text: String) -> Result<Outcome> {
    let changed = state.is_none();
    if output::json() {
        output::json_line(&json!({
            "id": id,
            "outcome": outcome,
            "changed": changed,
            "state": state,
        }))?;
    } else {
        output::line(text)?;
    }
    Ok(if changed {
        Outcome::Done
    } else {
        Outcome::NothingChanged
    })
}
