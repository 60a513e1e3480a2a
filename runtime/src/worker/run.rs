//! The runner: starting claimed jobs as run slots free up, running each attempt under its
//! timeout and cancellation, and turning what came of it into an [`Outcome`] for the completer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use switchyard_core::{
    AttemptError, Clock, Completion, Delivery, Executor, JobError, JobErrorKind, JobRecord, Outcome,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::state::{lease_of, Done, Inner, Ready};
use crate::backoff::Backoff;
use crate::registry::Registry;

/// Starts buffered jobs in order as run slots free up, until the fetchers stop; then waits for
/// every job to finish or be aborted. Job tasks live in a set owned
/// by this task, so a simulated crash (the worker task aborted) aborts them too.
pub(super) async fn runner(
    inner: Arc<Inner>,
    mut ready: mpsc::UnboundedReceiver<Ready>,
    done: mpsc::UnboundedSender<Done>,
) {
    let slots = Arc::new(Semaphore::new(inner.config.concurrency));
    let mut jobs = JoinSet::new();
    loop {
        tokio::select! {
            item = ready.recv() => {
                let Some((job, delivery, slot)) = item else { break };
                // A hard shutdown while waiting for a slot releases the job unstarted.
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => Some(p.expect("semaphore never closes")),
                    _ = inner.shutdown.hard_requested() => None,
                };
                inner.backlog.started(inner.config.concurrency);
                jobs.spawn(run_job(inner.clone(), job, delivery, permit, slot, done.clone()));
            }
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    drain(&mut jobs).await;
}

/// After fetching stopped: waits for every job task. At hard shutdown (a second signal or the
/// shutdown timeout) each task records `Aborted` and returns.
async fn drain(jobs: &mut JoinSet<()>) {
    if !jobs.is_empty() {
        tracing::info!(running = jobs.len(), "draining running jobs");
    }
    while jobs.join_next().await.is_some() {}
}

fn attempt_error(
    job: &JobRecord,
    at: DateTime<Utc>,
    kind: &str,
    message: impl Into<String>,
) -> AttemptError {
    error_at(at, job.attempt, kind, message)
}

/// An attempt's error, now. NUL characters in the message become U+FFFD: PostgreSQL cannot
/// store them, and an error history is for people to read.
pub(super) fn error_of_attempt(
    attempt: u32,
    kind: &str,
    message: impl Into<String>,
) -> AttemptError {
    error_at(Utc::now(), attempt, kind, message)
}

fn error_at(
    at: DateTime<Utc>,
    attempt: u32,
    kind: &str,
    message: impl Into<String>,
) -> AttemptError {
    let mut message = message.into();
    if message.contains('\0') {
        message = message.replace('\0', "\u{FFFD}");
    }
    AttemptError {
        attempt,
        at,
        kind: kind.to_string(),
        message,
    }
}

fn now_of(clock: Option<&dyn Clock>) -> DateTime<Utc> {
    match clock {
        Some(c) => c.now(),
        None => Utc::now(),
    }
}

fn failure(backoff: &Backoff, clock: Option<&dyn Clock>, job: &JobRecord, e: &JobError) -> Outcome {
    let now = now_of(clock);
    let error = attempt_error(job, now, e.kind().as_str(), e.message());
    if e.is_retryable() && job.has_attempts_left() {
        let delay = backoff.delay(job.attempt);
        Outcome::Retry {
            error,
            run_at: now + chrono::Duration::from_std(delay).unwrap_or_default(),
        }
    } else {
        Outcome::Failed { error }
    }
}

async fn run_job(
    inner: Arc<Inner>,
    job: JobRecord,
    delivery: Option<Delivery>,
    permit: Option<OwnedSemaphorePermit>,
    slot: OwnedSemaphorePermit,
    done: mpsc::UnboundedSender<Done>,
) {
    let span = tracing::info_span!("job", kind = %job.kind, id = %job.id, attempt = job.attempt, queue = %job.queue);
    async move {
        let lease = lease_of(&job);
        let (cancel, user_cancel) = {
            let map = inner.running.lock().expect("poisoned");
            match map.get(&lease) {
                Some(r) => (r.cancel.clone(), r.user_cancel.clone()),
                // Registered at claim; never missing, but a job is not worth a panic here.
                None => (
                    inner.shutdown.hard_token().child_token(),
                    Arc::new(AtomicBool::new(job.cancel_requested)),
                ),
            }
        };
        let outcome = if permit.is_none() || inner.shutdown.is_hard() {
            // Hard shutdown before it started: given back without using up an attempt.
            Outcome::Released
        } else if user_cancel.load(Ordering::SeqCst) {
            // Cancelled before it started (a cancel requested during an earlier attempt, or
            // while it waited for a slot): it never runs.
            Outcome::Cancelled { error: None }
        } else if cancel.is_cancelled() {
            // Its lease was reported lost while it waited: another worker may have it. The
            // completion is refused as stale; the body does not run here.
            Outcome::Aborted {
                error: attempt_error(
                    &job,
                    inner.now(),
                    "lease_expired",
                    "the job's lease was lost before it started",
                ),
            }
        } else {
            run_body(&inner, &job, cancel, &user_cancel).await
        };
        // From here on a renewal that finds the lease gone is the completion recorded first,
        // not a lost lease (see the heartbeater).
        if let Some(r) = inner.running.lock().expect("poisoned").get_mut(&lease) {
            r.finished = true;
        }
        let _ = done.send((
            Completion {
                id: job.id,
                token: lease.token,
                outcome,
            },
            delivery,
            job.attempt,
        ));
        drop(permit);
        drop(slot);
    }
    .instrument(span)
    .await
}

/// Runs one attempt's body under its timeout, or records it aborted at a hard shutdown.
async fn run_body(
    inner: &Arc<Inner>,
    job: &JobRecord,
    cancel: CancellationToken,
    user_cancel: &AtomicBool,
) -> Outcome {
    let run = attempt_and_pause(
        &inner.registry,
        inner.executor.as_ref(),
        &inner.config.backoff,
        inner.clock.as_deref(),
        job,
        cancel,
        user_cancel,
    );
    tokio::select! {
        biased;
        (outcome, pause) = run => {
            if let Some(until) = pause {
                if let Err(e) = crate::flow::pause_queue_until(inner.storage.as_ref(), &job.queue, until).await {
                    tracing::warn!(error = %e, queue = %job.queue, "could not pause the rate-limited queue");
                }
            }
            outcome
        }
        _ = inner.shutdown.hard_requested() => Outcome::Aborted {
            error: attempt_error(job, inner.now(), "aborted", "the worker shut down before the job finished; released for another attempt"),
        },
    }
}

/// [`attempt_and_pause`] without the pause: the outcome only (`switchyard::testing`).
#[cfg(feature = "sqlite")]
pub(crate) async fn attempt(
    registry: &Registry,
    executor: &dyn Executor,
    backoff: &Backoff,
    clock: Option<&dyn Clock>,
    job: &JobRecord,
    cancel: CancellationToken,
    user_cancel: &AtomicBool,
) -> Outcome {
    attempt_and_pause(registry, executor, backoff, clock, job, cancel, user_cancel)
        .await
        .0
}

/// Runs one attempt of a claimed job: prepares it through the registry (decoding its payload,
/// attaching the registry's state), runs the body on `executor` under the job's timeout, and
/// turns what came of it into an outcome: success, a retry at a backoff counted from `clock`,
/// a failure, a snooze or a cancellation; and when the handler returned
/// [`JobError::rate_limited`](switchyard_core::JobError::rate_limited), until when its queue
/// is to be paused. What the worker and `switchyard::testing` share.
pub(crate) async fn attempt_and_pause(
    registry: &Registry,
    executor: &dyn Executor,
    backoff: &Backoff,
    clock: Option<&dyn Clock>,
    job: &JobRecord,
    cancel: CancellationToken,
    user_cancel: &AtomicBool,
) -> (Outcome, Option<DateTime<Utc>>) {
    let body = match registry.prepare_job(job, cancel.clone()) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e.message(), "job cannot run");
            return (
                Outcome::Failed {
                    error: attempt_error(job, now_of(clock), e.kind().as_str(), e.message()),
                },
                None,
            );
        }
    };
    let exec = executor.execute(body);
    let timed = match job.timeout() {
        Some(t) => tokio::time::timeout(t, exec).await.ok(),
        None => Some(exec.await),
    };
    let outcome = match timed {
        // Workflows: an output over the step-output limit fails the attempt, by name.
        Some(Ok(result)) => match crate::workflow::oversize(&result) {
            None => Outcome::Succeeded { result },
            Some(message) => Outcome::Failed {
                error: attempt_error(
                    job,
                    now_of(clock),
                    crate::workflow::OUTPUT_TOO_LARGE,
                    &message,
                ),
            },
        },
        Some(Err(e)) if user_cancel.load(Ordering::SeqCst) => Outcome::Cancelled {
            error: Some(attempt_error(
                job,
                now_of(clock),
                JobErrorKind::Cancelled.as_str(),
                e.message(),
            )),
        },
        Some(Err(e)) if e.snooze_for().is_some() => {
            let delay = e.snooze_for().unwrap_or_default();
            let run_at = now_of(clock) + chrono::Duration::from_std(delay).unwrap_or_default();
            if e.pauses_queue() {
                tracing::info!(?delay, queue = %job.queue, "rate limited; pausing the queue");
                return (Outcome::Snoozed { run_at }, Some(run_at));
            }
            tracing::debug!(?delay, "job snoozed");
            Outcome::Snoozed { run_at }
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e.message(), "job attempt failed");
            failure(backoff, clock, job, &e)
        }
        None => {
            cancel.cancel();
            let e = JobError::of_kind(
                JobErrorKind::Timeout,
                format!(
                    "job timed out after {:?}",
                    job.timeout().unwrap_or_default()
                ),
                true,
            );
            tracing::warn!("job attempt timed out");
            failure(backoff, clock, job, &e)
        }
    };
    (outcome, None)
}
