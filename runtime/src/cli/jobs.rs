//! The commands on jobs: `enqueue`, `status`, `list`, `cancel` and `retry`, with the table
//! `list` prints.

use switchyard_core::{
    CancelOutcome, EnqueueOutcome, Error, JobFilter, JobState, ListOrder, NewJob, Result,
    RetryOutcome,
};

use crate::client::Client;
use crate::job::EnqueueOptions;

fn parse_id(id: &str) -> Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        Error::invalid(format!(
            "`{id}` is not a job id; accepted: a UUID such as 0192f0c1-7b1e-7c3a-9f00-3c2b1a0d9e8f"
        ))
    })
}

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

/// The `enqueue` options from the command line.
pub(super) fn enqueue_options(
    on: String,
    priority: i16,
    delay: Option<f64>,
    max_attempts: Option<u32>,
    unique_key: Option<String>,
    timeout: Option<f64>,
) -> Result<EnqueueOptions> {
    let mut opts = EnqueueOptions::new().queue(on).priority(priority);
    if let Some(d) = delay {
        opts = opts.delay(crate::config::secs("--delay", d)?);
    }
    if let Some(m) = max_attempts {
        opts = opts.max_attempts(m);
    }
    if let Some(k) = unique_key {
        opts = opts.unique_key(k);
    }
    if let Some(t) = timeout {
        opts = opts.timeout(crate::config::secs("--timeout", t)?);
    }
    Ok(opts)
}

/// `switchyard enqueue`: prints the new job's id (or the live duplicate's).
pub(super) async fn enqueue(client: &Client, job: NewJob, opts: EnqueueOptions) -> Result<()> {
    let out = client.enqueue_raw(vec![opts.apply(job)]).await?;
    match out[0] {
        EnqueueOutcome::Inserted(id) => println!("{id}"),
        EnqueueOutcome::Duplicate(id) => {
            println!("{id}");
            eprintln!("a live job with this unique key exists; its id is printed");
        }
    }
    Ok(())
}

/// `switchyard status`: one job as pretty JSON.
pub(super) async fn status(client: &Client, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    match client.get(id).await? {
        Some(job) => println!("{}", serde_json::to_string_pretty(&job)?),
        None => return Err(Error::not_found(format!("no job with id {id}"))),
    }
    Ok(())
}

/// The `list` filter from the command line.
pub(super) fn filter(
    state: &[String],
    on: Option<String>,
    kind: Option<String>,
    limit: usize,
    after: Option<&str>,
    asc: bool,
) -> Result<JobFilter> {
    let states = state
        .iter()
        .map(|s| s.parse::<JobState>())
        .collect::<Result<Vec<_>>>()?;
    Ok(JobFilter {
        states,
        queue: on,
        kind,
        after: after.map(parse_id).transpose()?,
        limit,
        order: if asc { ListOrder::Asc } else { ListOrder::Desc },
        ..JobFilter::default()
    })
}

/// `switchyard list`: a table, or JSON lines; names the next page's `--after` on stderr.
pub(super) async fn list(client: &Client, filter: &JobFilter, json: bool) -> Result<()> {
    let jobs = client.list(filter).await?;
    if json {
        for j in &jobs {
            println!("{}", serde_json::to_string(j)?);
        }
        return Ok(());
    }
    println!(
        "{:<36}  {:<10}  {:<12}  {:<20}  {:>7}  created",
        "id", "state", "queue", "kind", "attempt"
    );
    for j in &jobs {
        println!(
            "{:<36}  {:<10}  {:<12}  {:<20}  {:>3}/{:<3}  {}",
            j.id,
            j.state,
            j.queue,
            j.kind,
            j.attempt,
            j.max_attempts,
            j.created_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if jobs.len() == filter.page_size() {
        if let Some(last) = jobs.last() {
            eprintln!("more: --after {}", last.id);
        }
    }
    Ok(())
}

/// `switchyard cancel`.
pub(super) async fn cancel(client: &Client, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    match client.cancel(id).await? {
        CancelOutcome::Cancelled => println!("cancelled {id}"),
        CancelOutcome::Requested => {
            println!("cancel requested for running job {id}; it stops at its next heartbeat")
        }
        CancelOutcome::AlreadyFinished(s) => {
            println!("job {id} already finished as `{s}`; nothing changed")
        }
        CancelOutcome::NotFound => return Err(Error::not_found(format!("no job with id {id}"))),
    }
    Ok(())
}

/// `switchyard retry`.
pub(super) async fn retry(client: &Client, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    match client.retry(id).await? {
        RetryOutcome::Requeued => println!("job {id} is available again"),
        RetryOutcome::NotFinished(s) => {
            println!("job {id} is `{s}`, not finished; nothing changed")
        }
        RetryOutcome::NotFound => return Err(Error::not_found(format!("no job with id {id}"))),
    }
    Ok(())
}
