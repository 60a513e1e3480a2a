//! The runner: starting claimed jobs as run slots free up, running each attempt under its
//! timeout and cancellation, and turning what came of it into an [`Outcome`] for the completer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use switchyard_core::{
    AttemptError, Completion, Delivery, JobContext, JobError, JobErrorKind, JobRecord, Outcome,
};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::state::{lease_of, Done, Inner, Ready};

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

fn attempt_error(job: &JobRecord, kind: &str, message: impl Into<String>) -> AttemptError {
    error_of_attempt(job.attempt, kind, message)
}

/// An attempt's error. NUL characters in the message become U+FFFD: PostgreSQL cannot store
/// them, and an error history is for people to read.
pub(super) fn error_of_attempt(
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
        at: Utc::now(),
        kind: kind.to_string(),
        message,
    }
}

fn failure(inner: &Inner, job: &JobRecord, e: &JobError) -> Outcome {
    let error = attempt_error(job, e.kind().as_str(), e.message());
    if e.is_retryable() && job.has_attempts_left() {
        let delay = inner.config.backoff.delay(job.attempt);
        Outcome::Retry {
            error,
            run_at: Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
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

/// Runs one attempt's body under its timeout and turns its result into an outcome.
async fn run_body(
    inner: &Arc<Inner>,
    job: &JobRecord,
    cancel: CancellationToken,
    user_cancel: &AtomicBool,
) -> Outcome {
    let ctx = JobContext::new(job, cancel.clone());
    let body = match inner.registry.prepare(&job.kind, job.payload.clone(), ctx) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e.message(), "job cannot run");
            return Outcome::Failed {
                error: attempt_error(job, e.kind().as_str(), e.message()),
            };
        }
    };
    let exec = inner.executor.execute(body);
    let timed = async {
        match job.timeout() {
            Some(t) => tokio::time::timeout(t, exec).await.ok(),
            None => Some(exec.await),
        }
    };
    tokio::select! {
        biased;
        out = timed => match out {
            Some(Ok(result)) => Outcome::Succeeded { result },
            Some(Err(e)) if user_cancel.load(Ordering::SeqCst) => Outcome::Cancelled {
                error: Some(attempt_error(job, JobErrorKind::Cancelled.as_str(), e.message())),
            },
            Some(Err(e)) => {
                tracing::warn!(error = %e.message(), "job attempt failed");
                failure(inner, job, &e)
            }
            None => {
                cancel.cancel();
                let e = JobError::of_kind(
                    JobErrorKind::Timeout,
                    format!("job timed out after {:?}", job.timeout().unwrap_or_default()),
                    true,
                );
                tracing::warn!("job attempt timed out");
                failure(inner, job, &e)
            }
        },
        _ = inner.shutdown.hard_requested() => Outcome::Aborted {
            error: attempt_error(job, "aborted", "the worker shut down before the job finished; released for another attempt"),
        },
    }
}
