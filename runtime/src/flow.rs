//! Flow control the runtime applies: a
//! [`JobError::rate_limited`](switchyard_core::JobError::rate_limited) attempt pauses its
//! queue, for every worker, until the service's `retry_after` has passed; the limits
//! `[queues.<name>]` configures are stored at start where Storage has none (Storage wins).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use switchyard_core::{QueueFlow, RateLimit, Result, Storage};

/// Stores `paused_until = until` on `queue` unless it is already paused until later. A
/// read-modify-write of the queue's record: a concurrent change of its other settings (from
/// the CLI) may be overwritten with the values read here.
pub(crate) async fn pause_queue_until(
    storage: &dyn Storage,
    queue: &str,
    until: DateTime<Utc>,
) -> Result<()> {
    let mut flow = storage
        .queue_flows()
        .await?
        .into_iter()
        .find(|f| f.queue == queue)
        .unwrap_or_else(|| QueueFlow::new(queue));
    if flow.paused_until.is_some_and(|t| t >= until) {
        return Ok(());
    }
    flow.paused_until = Some(until);
    storage.set_queue_flow(&flow).await
}

/// A rate written `N/PERIOD`: `100/1s`, `5/250ms`, `2000/1m` (the period as a number of
/// seconds or a duration). The error says what is wrong, for the caller to prefix with its
/// key or flag.
pub(crate) fn parse_rate(text: &str) -> std::result::Result<RateLimit, String> {
    let bad =
        || format!("`{text}` is not a rate; give N/PERIOD (e.g. `100/1s`, `5/250ms`, `2000/1m`)");
    let (n, period) = text.split_once('/').ok_or_else(bad)?;
    let limit: u32 = n.trim().parse().map_err(|_| bad())?;
    let p = period.trim();
    let period = match p.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())?
        }
        Ok(_) => return Err(bad()),
        Err(_) => humantime::parse_duration(p).map_err(|_| bad())?,
    };
    Ok(RateLimit {
        limit,
        period_ms: period.as_millis().min(u128::from(u64::MAX)) as u64,
    })
}

/// The limits `[queues.<name>]` sets (`global_concurrency`, `rate_limit`, `partition`), as
/// the stored record they stand for; `None` when it sets none.
pub(crate) fn static_limits(queue: &str, q: &crate::config::QueueSection) -> Option<QueueFlow> {
    if q.global_concurrency.is_none() && q.rate_limit.is_none() {
        return None;
    }
    Some(QueueFlow {
        concurrency: q.global_concurrency,
        rate: q.rate_limit.as_deref().and_then(|r| parse_rate(r).ok()),
        partition: q
            .partition
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default(),
        ..QueueFlow::new(queue)
    })
}

/// At start: stores the limits the configuration sets for a queue that has no stored
/// settings; where Storage holds other values, logs the difference and keeps the stored ones
/// (Storage wins: `switchyard queues limit` changes them for every process).
pub(crate) async fn apply_static_limits(storage: Arc<dyn Storage>, wanted: Vec<QueueFlow>) {
    if wanted.is_empty() {
        return;
    }
    let stored = match storage.queue_flows().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the stored queue settings; the configured limits are not applied");
            return;
        }
    };
    for w in wanted {
        match stored.iter().find(|s| s.queue == w.queue) {
            None => {
                if let Err(e) = storage.set_queue_flow(&w).await {
                    tracing::warn!(queue = %w.queue, error = %e, "could not store the configured limits");
                }
            }
            Some(s)
                if (s.concurrency, s.rate, &s.partition)
                    != (w.concurrency, w.rate, &w.partition) =>
            {
                tracing::warn!(
                    queue = %w.queue,
                    configured = ?(w.concurrency, w.rate, &w.partition),
                    stored = ?(s.concurrency, s.rate, &s.partition),
                    "the configured limits of this queue differ from the stored ones; the stored ones apply (change them with `switchyard queues limit`)"
                );
            }
            Some(_) => {}
        }
    }
}
