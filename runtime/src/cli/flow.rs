//! Flow control commands: `queues` (counts with each queue's stored pause), `queues pause |
//! resume`, and the bulk actions `bulk cancel | retry` by filter.

use std::collections::BTreeMap;

use clap::Subcommand;
use serde::Serialize;
use switchyard_core::{
    BulkReport, BulkRequest, Error, JobFilter, JobState, QueueCounts, QueueFlow, Result,
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

/// One row of `queues --json`: the counts with every state, and the stored pause.
#[derive(Serialize)]
struct QueueRow {
    queue: String,
    counts: BTreeMap<JobState, u64>,
    paused: bool,
}

/// `switchyard queues`: job counts per queue and state and whether the queue is paused (a
/// paused queue with no jobs is listed too); with `--json`
/// `[{"queue":…,"counts":{"available":N,…},"paused":false}]` with every state.
pub(super) async fn queues(client: &Client) -> Result<()> {
    let counts = client.counts().await?;
    let flows = client.storage().queue_flows().await?;
    let mut rows: BTreeMap<String, QueueRow> = BTreeMap::new();
    for QueueCounts { queue, counts } in counts {
        rows.insert(
            queue.clone(),
            QueueRow {
                queue,
                counts,
                paused: false,
            },
        );
    }
    for f in flows {
        rows.entry(f.queue.clone())
            .or_insert_with(|| QueueRow {
                queue: f.queue.clone(),
                counts: BTreeMap::new(),
                paused: false,
            })
            .paused = f.paused;
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
        row.push_str(if r.paused { "  paused" } else { "  -" });
        output::line(row)?;
    }
    Ok(())
}

/// `switchyard queues pause | resume <queue>`: stores the pause; exit 1 when the queue was
/// already in that state. With `--json` `{"queue":…,"paused":…,"changed":…}`.
pub(super) async fn set_paused(client: &Client, cmd: QueuesCommand) -> Result<Outcome> {
    let (queue, paused) = match cmd {
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
