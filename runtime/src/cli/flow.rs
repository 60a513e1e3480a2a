//! Flow control commands: `queues` (counts with each queue's stored pause), `queues pause |
//! resume`, and the bulk actions `bulk cancel | retry` by filter.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde::Serialize;
use switchyard_core::{
    BulkReport, BulkRequest, Error, JobFilter, JobState, Partition, QueueCounts, QueueFlow,
    RateLimit, Result,
};

use super::output::{self, pad};
use super::Outcome;
use crate::client::Client;

/// `switchyard queues …`: change a queue's stored settings.
#[derive(Debug, Clone, Subcommand)]
pub enum QueuesCommand {
    /// Stop claiming the queue's jobs, on every worker within one poll (stored).
    Pause {
        /// The queue.
        #[arg(value_name = "QUEUE")]
        name: String,
    },
    /// Claim the queue's jobs again.
    Resume {
        /// The queue.
        #[arg(value_name = "QUEUE")]
        name: String,
    },
    /// Set or clear the queue's global limits (stored; every worker within one poll).
    Limit(LimitArgs),
}

/// `queues limit`: what to change; flags not given keep their stored value.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// The queue.
    #[arg(value_name = "QUEUE")]
    name: String,
    /// At most N jobs running at once across every worker (`none` clears it).
    #[arg(long, value_name = "N|none")]
    concurrency: Option<String>,
    /// At most N attempt starts per sliding window: `N/PERIOD`, e.g. `100/1s`, `2000/1m`
    /// (`none` clears it).
    #[arg(long, value_name = "N/PERIOD|none")]
    rate: Option<String>,
    /// What the limits count per: `none` (the whole queue), `kind`, or `payload.<field>`
    /// (each value of a top-level payload field, e.g. `payload.tenant`).
    #[arg(long)]
    partition: Option<String>,
}

/// `switchyard bulk …`: one action on every job a filter matches, up to a bound.
#[derive(Debug, Clone, Subcommand)]
pub enum BulkCommand {
    /// Cancel matching pending and running jobs (default states: all of them).
    Cancel(BulkArgs),
    /// Run matching finished jobs again (default states: failed, cancelled, dropped).
    Retry(BulkArgs),
}

/// The filter, bound and dry run of a bulk action.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// Only these states (comma-separated).
    #[arg(long, value_delimiter = ',')]
    state: Vec<String>,
    /// Only jobs of this queue.
    #[arg(long)]
    on: Option<String>,
    /// Only this kind.
    #[arg(long)]
    kind: Option<String>,
    /// At most this many jobs, oldest first (1 to 100000).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    bound: i64,
    /// Only report the jobs that would change.
    #[arg(long)]
    dry_run: bool,
}

/// One row of `queues --json`: the counts with every state, and the stored settings.
#[derive(Serialize)]
struct QueueRow {
    queue: String,
    counts: BTreeMap<JobState, u64>,
    paused: bool,
    concurrency: Option<u32>,
    rate: Option<RateLimit>,
    partition: Partition,
}

impl QueueRow {
    fn new(queue: String, counts: BTreeMap<JobState, u64>) -> Self {
        Self {
            queue,
            counts,
            paused: false,
            concurrency: None,
            rate: None,
            partition: Partition::None,
        }
    }

    /// The `flow` column: `paused`, `conc=N`, `rate=N/Pms`, `by kind`, or `-`.
    fn flow(&self) -> String {
        let mut parts = Vec::new();
        if self.paused {
            parts.push("paused".to_string());
        }
        if let Some(n) = self.concurrency {
            parts.push(format!("conc={n}"));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate={}/{}ms", r.limit, r.period_ms));
        }
        if self.partition != Partition::None && (self.concurrency.is_some() || self.rate.is_some())
        {
            parts.push(match &self.partition {
                Partition::Payload(f) => format!("by payload.{f}"),
                _ => "by kind".to_string(),
            });
        }
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// `switchyard queues`: job counts per queue and state and whether the queue is paused (a
/// paused queue with no jobs is listed too); with `--json`
/// `[{"queue":…,"counts":{"available":N,…},"paused":false}]` with every state.
pub(super) async fn queues(client: &Client) -> Result<()> {
    let counts = client.counts().await?;
    let flows = client.storage().queue_flows().await?;
    let mut rows: BTreeMap<String, QueueRow> = BTreeMap::new();
    for QueueCounts { queue, counts } in counts {
        rows.insert(queue.clone(), QueueRow::new(queue, counts));
    }
    for f in flows {
        let row = rows
            .entry(f.queue.clone())
            .or_insert_with(|| QueueRow::new(f.queue.clone(), BTreeMap::new()));
        row.paused = f.paused;
        row.concurrency = f.concurrency;
        row.rate = f.rate;
        row.partition = f.partition;
    }
    let mut rows: Vec<QueueRow> = rows.into_values().collect();
    for r in &mut rows {
        for s in JobState::ALL {
            r.counts.entry(s).or_insert(0);
        }
    }
    if output::json() {
        return output::json_line(&rows);
    }
    let mut header = pad("queue", 20);
    for s in JobState::ALL {
        header.push_str(&format!("  {:>9}", s.as_str()));
    }
    header.push_str("  flow");
    output::line(header)?;
    for r in rows {
        let mut row = pad(&r.queue, 20);
        for s in JobState::ALL {
            row.push_str(&format!("  {:>9}", r.counts.get(&s).copied().unwrap_or(0)));
        }
        row.push_str("  ");
        row.push_str(&r.flow());
        output::line(row)?;
    }
    Ok(())
}

/// `switchyard queues pause | resume <queue>`: stores the pause; exit 1 when the queue was
/// already in that state. With `--json` `{"queue":…,"paused":…,"changed":…}`.
pub(super) async fn set_paused(client: &Client, cmd: QueuesCommand) -> Result<Outcome> {
    let (queue, paused) = match cmd {
        QueuesCommand::Limit(args) => return set_limits(client, args).await,
        QueuesCommand::Pause { name } => (name, true),
        QueuesCommand::Resume { name } => (name, false),
    };
    if queue.is_empty() {
        return Err(Error::invalid(
            "argument `QUEUE`: empty; give the name of a queue",
        ));
    }
    let storage = client.storage();
    let mut flow = storage
        .queue_flows()
        .await?
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| QueueFlow::new(&queue));
    let changed = flow.paused != paused;
    if changed {
        flow.paused = paused;
        storage.set_queue_flow(&flow).await?;
    }
    if output::json() {
        output::json_line(&serde_json::json!({
            "queue": queue, "paused": paused, "changed": changed,
        }))?;
    } else {
        let state = if paused { "paused" } else { "running" };
        if changed {
            output::line(format!("queue {queue}: {state}"))?;
        } else {
            output::line(format!("queue {queue}: already {state}"))?;
        }
    }
    Ok(if changed {
        Outcome::Done
    } else {
        Outcome::NothingChanged
    })
}

/// The stored record of `queue`, or its defaults.
async fn stored(client: &Client, queue: &str) -> Result<QueueFlow> {
    Ok(client
        .storage()
        .queue_flows()
        .await?
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| QueueFlow::new(queue)))
}

/// `--rate N/PERIOD`: e.g. `100/1s`, `5/250ms`, `2000/1m`.
fn parse_rate(text: &str) -> Result<RateLimit> {
    crate::flow::parse_rate(text).map_err(|why| Error::invalid(format!("flag `--rate`: {why}")))
}

/// `switchyard queues limit QUEUE [--concurrency N|none] [--rate N/PERIOD|none]
/// [--partition none|kind|payload.<field>]`: stores the limits (flags not given keep their stored value);
/// exit 1 when nothing changed. With `--json` the stored record
/// `{"queue":…,"paused":…,"concurrency":N|null,"rate":{"limit":N,"period_ms":P}|null,
/// "partition":"none"|"kind","changed":…}`.
async fn set_limits(client: &Client, args: LimitArgs) -> Result<Outcome> {
    if args.name.is_empty() {
        return Err(Error::invalid(
            "argument `QUEUE`: empty; give the name of a queue",
        ));
    }
    let before = stored(client, &args.name).await?;
    let mut flow = before.clone();
    if let Some(c) = &args.concurrency {
        flow.concurrency = match c.as_str() {
            "none" => None,
            n => Some(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::invalid(format!(
                    "flag `--concurrency`: `{n}` is not a limit; give 1 or more, or `none`"
                ))
            })?),
        };
    }
    if let Some(r) = &args.rate {
        flow.rate = match r.as_str() {
            "none" => None,
            text => Some(parse_rate(text)?),
        };
    }
    if let Some(p) = &args.partition {
        flow.partition = p
            .parse()
            .map_err(|e: Error| Error::invalid(format!("flag `--partition`: {}", e.message())))?;
    }
    let changed = (flow.concurrency, flow.rate, &flow.partition)
        != (before.concurrency, before.rate, &before.partition);
    if changed {
        client.storage().set_queue_flow(&flow).await?;
    }
    if output::json() {
        let mut v = serde_json::to_value(&flow)?;
        v["changed"] = serde_json::Value::Bool(changed);
        if let Some(o) = v.as_object_mut() {
            o.remove("updated_at");
        }
        output::json_line(&v)?;
    } else {
        let row = QueueRow {
            paused: flow.paused,
            concurrency: flow.concurrency,
            rate: flow.rate,
            partition: flow.partition.clone(),
            ..QueueRow::new(flow.queue.clone(), BTreeMap::new())
        };
        let note = if changed { "" } else { " (unchanged)" };
        output::line(format!("queue {}: {}{note}", flow.queue, row.flow()))?;
    }
    Ok(if changed {
        Outcome::Done
    } else {
        Outcome::NothingChanged
    })
}

/// `switchyard bulk cancel | retry`: prints the matched ids (one a line) and a summary on
/// stderr, or with `--json` the report `{"ids":[…],"changed":N,"truncated":…,"dry_run":…}`.
/// Exit 1 when a run (not a dry run) changed nothing.
pub(super) async fn bulk(client: &Client, cmd: BulkCommand) -> Result<Outcome> {
    let (name, args) = match &cmd {
        BulkCommand::Cancel(a) => ("cancel", a),
        BulkCommand::Retry(a) => ("retry", a),
    };
    if !(1..=switchyard_core::flow::MAX_BULK_BOUND as i64).contains(&args.bound) {
        return Err(Error::invalid(format!(
            "flag `--bound`: {} is out of range; accepted: 1 to {}",
            args.bound,
            switchyard_core::flow::MAX_BULK_BOUND
        )));
    }
    let states = args
        .state
        .iter()
        .map(|s| s.parse::<JobState>())
        .collect::<Result<Vec<_>>>()?;
    let req = BulkRequest {
        filter: JobFilter {
            states,
            queue: args.on.clone(),
            kind: args.kind.clone(),
            ..JobFilter::default()
        },
        bound: args.bound as usize,
        dry_run: args.dry_run,
    };
    let storage = client.storage();
    let report: BulkReport = match cmd {
        BulkCommand::Cancel(_) => storage.cancel_where(&req).await?,
        BulkCommand::Retry(_) => storage.retry_where(&req).await?,
    };
    if output::json() {
        output::json_line(&report)?;
    } else {
        for id in &report.ids {
            output::line(id)?;
        }
        let what = if report.dry_run {
            format!(
                "{name}: {} jobs match (dry run; nothing changed)",
                report.ids.len()
            )
        } else {
            format!(
                "{name}: {} of {} matched jobs changed",
                report.changed,
                report.ids.len()
            )
        };
        let more = if report.truncated {
            format!("; more match than --bound {}", args.bound)
        } else {
            String::new()
        };
        eprintln!("{what}{more}");
    }
    Ok(if report.dry_run || report.changed > 0 {
        Outcome::Done
    } else {
        Outcome::NothingChanged
    })
}
