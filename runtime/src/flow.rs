//! Flow control the runtime applies on a handler's behalf: a
//! [`JobError::rate_limited`](switchyard_core::JobError::rate_limited) attempt pauses its
//! queue, for every worker, until the service's `retry_after` has passed.

use chrono::{DateTime, Utc};
use switchyard_core::{QueueFlow, Result, Storage};

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
