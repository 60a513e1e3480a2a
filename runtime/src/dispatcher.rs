//! The dispatcher (seed 004): Storage is the outbox of an external queue. It marks due jobs
//! (new, retried, delayed, rescued) dispatched and then publishes them in batches. A duplicate
//! publish is harmless because every claim is fenced in Storage. A job delayed past the queue's
//! native limit waits in Storage until it comes within that limit.
//!
//! Why mark first: a worker can receive, run and fail a job (recording a retry, which clears the
//! mark) before the publish call that carried it returns; a mark written after the publish would
//! then hide the retry until `redispatch_after`. A message published after the mark is a valid
//! hint for whatever state the job has by then. Messages whose publish fails are kept and
//! published again before anything new is scanned; only a crash in that window leaves them to
//! the `redispatch_after` backstop, so nothing is ever lost.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use switchyard_core::{Queue, QueueMessage, Storage};

use crate::shutdown::Shutdown;

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Longest wait between scans when no wake-up arrives.
    pub poll_interval: Duration,
    /// Most jobs published per scan.
    pub batch: usize,
    /// Overrides the queue's native delay limit (lower only; for tests and cautious setups).
    pub max_native_delay: Option<Duration>,
    /// A job dispatched this long ago and still not claimed is published again (its message
    /// may have been lost). Must exceed the longest native delay plus the lease.
    pub redispatch_after: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            batch: 500,
            max_native_delay: None,
            redispatch_after: Duration::from_secs(30 * 60),
        }
    }
}

/// Publishes one batch of due jobs. Returns how many were published. On a publish error the
/// unpublished jobs stay marked and are published again after `redispatch_after`; [`run`] keeps
/// them and retries at once instead.
pub async fn dispatch_once(
    storage: &dyn Storage,
    queue: &dyn Queue,
    config: &DispatcherConfig,
) -> switchyard_core::Result<usize> {
    dispatch_step(storage, queue, config, &mut Vec::new()).await
}

/// Publishes `messages` in one call (the adapter cuts them into broker batches, calls several
/// at once and packs ids into bundles); on error, leaves them all in `messages` to publish
/// again (a duplicate is harmless: claims are fenced).
async fn publish_all(
    queue: &dyn Queue,
    messages: &mut Vec<QueueMessage>,
) -> switchyard_core::Result<()> {
    queue.publish(messages).await?;
    messages.clear();
    Ok(())
}

/// One step: publish what an earlier step could not, else scan, mark and publish.
async fn dispatch_step(
    storage: &dyn Storage,
    queue: &dyn Queue,
    config: &DispatcherConfig,
    unpublished: &mut Vec<QueueMessage>,
) -> switchyard_core::Result<usize> {
    if !unpublished.is_empty() {
        let n = unpublished.len();
        publish_all(queue, unpublished).await?;
        return Ok(n);
    }
    let caps = queue.capabilities();
    let native = match (caps.max_native_delay, config.max_native_delay) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or_default(),
    };
    let now = Utc::now();
    let horizon = now + chrono::Duration::from_std(native).unwrap_or_default();
    let stale = now - chrono::Duration::from_std(config.redispatch_after).unwrap_or_default();
    let mut items = storage
        .take_for_dispatch(horizon, stale, config.batch)
        .await?;
    if items.is_empty() {
        return Ok(0);
    }
    // Published earliest first (a FIFO queue keeps this order within a group).
    items.sort_by(|a, b| a.run_at.cmp(&b.run_at).then(a.id.cmp(&b.id)));
    let messages: Vec<QueueMessage> = items
        .iter()
        .map(|i| QueueMessage {
            job_id: i.id,
            queue: i.queue.clone(),
            priority: i.priority,
            delay: (i.run_at - now).to_std().unwrap_or_default().min(native),
        })
        .collect();
    let n = messages.len();
    *unpublished = messages;
    publish_all(queue, unpublished).await?;
    Ok(n)
}

/// Runs the dispatcher until graceful shutdown. Jobs it marked but could not publish yet are
/// tried once more on the way out (for at most [`LAST_PUBLISH`]), so they do not wait for
/// `redispatch_after`; what still fails does.
pub async fn run(
    storage: Arc<dyn Storage>,
    queue: Arc<dyn Queue>,
    config: DispatcherConfig,
    shutdown: Shutdown,
) {
    let mut wake = storage.subscribe();
    let mut failures = 0u32;
    let mut unpublished = Vec::new();
    loop {
        if shutdown.is_graceful() {
            break;
        }
        match dispatch_step(storage.as_ref(), queue.as_ref(), &config, &mut unpublished).await {
            Ok(n) if n == config.batch => {
                // A full batch: more may be due at once (shutdown is checked first).
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, unpublished = unpublished.len(), "dispatch failed; unpublished jobs are retried");
            }
        }
        let wait = if failures > 0 {
            (config.poll_interval * failures).min(Duration::from_secs(5))
        } else {
            config.poll_interval
        };
        tokio::select! {
            _ = wake.wait(wait) => {}
            _ = shutdown.graceful_requested() => break,
        }
    }
    if !unpublished.is_empty() {
        let n = unpublished.len();
        match tokio::time::timeout(LAST_PUBLISH, publish_all(queue.as_ref(), &mut unpublished))
            .await
        {
            Ok(Ok(())) => tracing::debug!(jobs = n, "published the last marked jobs at shutdown"),
            _ => tracing::warn!(
                jobs = unpublished.len(),
                redispatch_after = ?config.redispatch_after,
                "marked jobs left unpublished at shutdown; they are dispatched again after `redispatch_after`"
            ),
        }
    }
}

/// How long the dispatcher tries to publish what it marked, once shutdown is requested.
const LAST_PUBLISH: Duration = Duration::from_secs(5);
