//! The completer: recording finished attempts in batches, one at a time when the storage refuses
//! a batch, and acking their broker messages in the background.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::{Completion, CompletionStatus, Delivery, LeaseRef, Outcome};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::run::error_of_attempt;
use super::state::{Done, Inner};

/// Records completions in batches; retries while the storage is unavailable so nothing is
/// lost. A completion that can never be recorded (storage gone for good at hard shutdown)
/// leaves its job `running` until the lease expires and the rescuer takes it back.
///
/// A batch the storage refuses outright (an error that is not retryable) is recorded again one
/// completion at a time, so that one outcome the storage cannot store (say, a result with a
/// NUL character on PostgreSQL) does not hold up the others, or every later batch: that one is
/// recorded as a failed attempt saying why instead (see [`record_alone`]).
///
/// Broker acks run in the background (at most [`ACKS_IN_FLIGHT`] calls at once), so the next
/// batch is recorded while the last one's messages are being acked; they are awaited before
/// the completer returns. A lost ack only means a redelivery that the worker skips.
pub(super) async fn completer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let max = inner.config.completion_batch.max(1);
    let mut acks = JoinSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let completions: Vec<Completion> = batch.iter().map(|(c, _, _)| c.clone()).collect();
        let t_complete = std::time::Instant::now();
        match record(&inner, &completions).await {
            Recorded::Done(statuses) => {
                tracing::trace!(
                    n = completions.len(),
                    us = t_complete.elapsed().as_micros() as u64,
                    "recorded completions"
                );
                warn_stale(&completions, &statuses);
            }
            Recorded::Refused(e) if completions.len() > 1 => {
                tracing::warn!(error = %e, jobs = completions.len(), "the storage refused a batch of completions; recording them one at a time");
                for (c, _, attempt) in &batch {
                    record_alone(&inner, c, *attempt).await;
                }
            }
            Recorded::Refused(_) => record_alone(&inner, &completions[0], batch[0].2).await,
            Recorded::GaveUp => {}
        }
        {
            let mut running = inner.running.lock().expect("poisoned");
            for c in &completions {
                running.remove(&LeaseRef {
                    id: c.id,
                    token: c.token,
                });
            }
        }
        if let Some(queue) = &inner.queue {
            let deliveries: Vec<Delivery> = batch.into_iter().filter_map(|(_, d, _)| d).collect();
            if !deliveries.is_empty() {
                while acks.len() >= ACKS_IN_FLIGHT {
                    acks.join_next().await;
                }
                let queue = queue.clone();
                acks.spawn(async move {
                    if let Err(e) = queue.ack(&deliveries).await {
                        tracing::warn!(error = %e, "acking deliveries failed; they will be delivered again and skipped");
                    }
                });
            }
        }
    }
    while acks.join_next().await.is_some() {}
}

/// What became of a call to record completions.
enum Recorded {
    /// Recorded; one status per completion.
    Done(Vec<CompletionStatus>),
    /// Refused with an error that is not retryable.
    Refused(switchyard_core::Error),
    /// Still failing at hard shutdown: left to the rescuer.
    GaveUp,
}

/// Records `completions` in one call, retrying with a growing pause while the error is
/// retryable (the storage unavailable), and giving up after five tries once a hard shutdown
/// has begun. After a hard shutdown each try gets [`HARD_SHUTDOWN_TRY`], so a storage that is
/// down (whose calls may take their full connection and response timeouts) cannot hold up the
/// process's exit for minutes.
async fn record(inner: &Inner, completions: &[Completion]) -> Recorded {
    let mut tries = 0u32;
    loop {
        let call = inner.storage.complete(completions);
        tokio::pin!(call);
        let cut_short = async {
            inner.shutdown.hard_requested().await;
            tokio::time::sleep(HARD_SHUTDOWN_TRY).await;
        };
        let result = tokio::select! {
            r = &mut call => r,
            _ = cut_short => Err(switchyard_core::Error::new(
                switchyard_core::ErrorKind::Unavailable,
                format!("no answer within {HARD_SHUTDOWN_TRY:?} after the hard shutdown"),
            )),
        };
        match result {
            Ok(statuses) => return Recorded::Done(statuses),
            Err(e) if !e.is_retryable() => return Recorded::Refused(e),
            Err(e) => {
                tries += 1;
                if inner.shutdown.is_hard() && tries >= 5 {
                    tracing::error!(error = %e, jobs = completions.len(), "giving up recording completions at shutdown; the rescuer will re-run these jobs after their leases expire");
                    return Recorded::GaveUp;
                }
                let wait = Duration::from_millis(100 * u64::from(tries.min(50)));
                tracing::warn!(error = %e, retry_in = ?wait, "recording completions failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How long one try to record completions may take once a hard shutdown has begun.
const HARD_SHUTDOWN_TRY: Duration = Duration::from_secs(2);

/// Records one completion alone. If the storage refuses it for good, records the attempt as
/// failed (`unrecordable_outcome`, naming the outcome and the storage's error) instead, so the
/// job ends visibly rather than staying `running` and coming back after every lease expiry.
/// If even that is refused, the job is left to the rescuer.
async fn record_alone(inner: &Inner, c: &Completion, attempt: u32) {
    let e = match record(inner, std::slice::from_ref(c)).await {
        Recorded::Done(statuses) => return warn_stale(std::slice::from_ref(c), &statuses),
        Recorded::GaveUp => return,
        Recorded::Refused(e) => e,
    };
    let ended = match &c.outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "failed and was to be retried",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "was cancelled",
        Outcome::Aborted { .. } => "was aborted",
        Outcome::Released => "was released unstarted",
        Outcome::Snoozed { .. } => "was snoozed",
    };
    tracing::error!(id = %c.id, error = %e, "the storage refused this attempt's outcome; recording the attempt as failed instead");
    let failed = Completion {
        id: c.id,
        token: c.token,
        outcome: Outcome::Failed {
            error: error_of_attempt(
                attempt,
                "unrecordable_outcome",
                format!("the attempt {ended}, but the storage refused to record that: {e}"),
            ),
        },
    };
    match record(inner, std::slice::from_ref(&failed)).await {
        Recorded::Done(statuses) => warn_stale(std::slice::from_ref(&failed), &statuses),
        Recorded::GaveUp => {}
        Recorded::Refused(e) => {
            tracing::error!(id = %c.id, error = %e, "the storage refused the failure too; the job stays running until its lease expires and the rescuer takes it")
        }
    }
}

/// Logs the completions the storage found stale.
fn warn_stale(completions: &[Completion], statuses: &[CompletionStatus]) {
    for (c, s) in completions.iter().zip(statuses) {
        if *s == CompletionStatus::Stale {
            tracing::warn!(id = %c.id, "completion rejected: the job's lease was lost (it was rescued or finished elsewhere)");
        }
    }
}

/// Broker ack calls the completer keeps in flight while it records the next batches.
const ACKS_IN_FLIGHT: usize = 4;
