//! Cancel and retry by a user: pending, running, requeued and finished jobs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{CancelOutcome, JobContext, JobError, JobState, Registry, RetryOutcome};
use switchyard_core::Outcome;

use super::support::{claim, claim_req, enqueue1, job, ok_registry, record, succeed, LONG};
use crate::harness::{start_worker, wait_state, Probe, TestWorkerConfig};
use crate::support::queue_name;
use crate::Backend;

/// A cancelled scheduled or available job never runs.
pub async fn cancel_pending_never_runs(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let soon = Utc::now() + chrono::Duration::milliseconds(300);
    let scheduled = enqueue1(&b.storage, job("c", &q, json!({})).with_run_at(soon)).await;
    let available = enqueue1(&b.storage, job("c", &q, json!({}))).await;
    assert_eq!(
        b.storage.cancel(scheduled).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(
        b.storage.cancel(available).await.unwrap(),
        CancelOutcome::Cancelled
    );
    let marker = enqueue1(&b.storage, job("c", &q, json!({})).with_run_at(soon)).await;
    let w = start_worker(&b, ok_registry("c", &probe), TestWorkerConfig::new(&q)).await;
    // The marker was due at the same time as the cancelled job: once it ran, the cancelled
    // jobs had every chance to run too.
    wait_state(&b.storage, marker, JobState::Completed, LONG).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop().await;
    assert!(probe.runs_of(scheduled).is_empty(), "a cancelled job ran");
    assert!(probe.runs_of(available).is_empty(), "a cancelled job ran");
    for id in [scheduled, available] {
        let j = b.storage.get(id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Cancelled);
        assert!(j.finished_at.is_some());
    }
}

/// Cancelling a running job fires its token; it ends `cancelled`.
pub async fn cancel_running_fires_token(b: Backend) {
    let q = queue_name();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let reg = Registry::new().register_fn("long", move |_, ctx: JobContext| {
        let f = f.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => Ok(None),
                _ = ctx.cancelled() => {
                    f.store(true, Ordering::SeqCst);
                    Err(JobError::cancelled())
                }
            }
        }
    });
    let id = enqueue1(&b.storage, job("long", &q, json!({}))).await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    wait_state(&b.storage, id, JobState::Running, LONG).await;
    assert_eq!(
        b.storage.cancel(id).await.unwrap(),
        CancelOutcome::Requested
    );
    let j = wait_state(&b.storage, id, JobState::Cancelled, LONG).await;
    w.stop().await;
    assert!(
        fired.load(Ordering::SeqCst),
        "the job's cancellation token never fired"
    );
    assert!(j.finished_at.is_some());
    assert_eq!(j.attempt, 1);
}

/// A cancel requested while a job runs outlives the attempt: when the attempt comes back to
/// pending (aborted at shutdown, retried after an error, rescued), the next claim — by queue or
/// by id, as an external queue's delivery does — returns the job with `cancel_requested`, so
/// the worker ends it `cancelled` instead of leaving it pending for ever or running it again.
pub async fn cancel_request_survives_a_requeue(b: Backend) {
    let s = &b.storage;
    let q = queue_name();
    let lease = Duration::from_secs(30);
    let error = |kind: &str| switchyard_core::AttemptError {
        attempt: 1,
        at: Utc::now(),
        kind: kind.into(),
        message: "given back".into(),
    };
    for (how, outcome) in [
        (
            "aborted",
            Outcome::Aborted {
                error: error("aborted"),
            },
        ),
        (
            "retried",
            Outcome::Retry {
                error: error("error"),
                run_at: Utc::now() - chrono::Duration::seconds(1),
            },
        ),
    ] {
        let id = enqueue1(s, job("x", &q, json!({})).with_max_attempts(5)).await;
        let first = claim(s, &q, 1, lease).await;
        assert_eq!(first.len(), 1, "{how}: the job is claimed");
        assert_eq!(s.cancel(id).await.unwrap(), CancelOutcome::Requested);
        record(s, id, first[0].lease_token.unwrap(), outcome).await;
        let again = s.claim_ids(&[id], &claim_req(&q, 1, lease)).await.unwrap();
        assert_eq!(
            again.len(),
            1,
            "{how}: a job whose running attempt was {how} after a cancel request must be \
             claimable by id (the worker then cancels it), not pending for ever"
        );
        assert!(
            again[0].cancel_requested,
            "{how}: the cancel request is kept across the requeue"
        );
        let token = again[0].lease_token.unwrap();
        record(s, id, token, Outcome::Cancelled { error: None }).await;
        assert_eq!(s.get(id).await.unwrap().unwrap().state, JobState::Cancelled);
    }
    // The same through the storage's own claim: a rescued attempt.
    let id = enqueue1(s, job("x", &q, json!({})).with_max_attempts(5)).await;
    assert_eq!(claim(s, &q, 1, Duration::from_millis(1)).await.len(), 1);
    assert_eq!(s.cancel(id).await.unwrap(), CancelOutcome::Requested);
    let report = s
        .rescue_expired(Utc::now() + chrono::Duration::seconds(1), 100)
        .await
        .unwrap();
    assert!(report.retried.contains(&id), "the expired lease is rescued");
    let again = claim(s, &q, 1, lease).await;
    assert_eq!(again.len(), 1, "the rescued job is claimable");
    assert!(
        again[0].cancel_requested,
        "the cancel request is kept across the rescue"
    );
    // A worker that claims such a job ends it `cancelled` without running it.
    let aborted = Outcome::Aborted {
        error: error("aborted"),
    };
    record(s, id, again[0].lease_token.unwrap(), aborted).await;
    let probe = Probe::default();
    let w = start_worker(&b, ok_registry("x", &probe), TestWorkerConfig::new(&q)).await;
    let j = wait_state(s, id, JobState::Cancelled, LONG).await;
    w.stop().await;
    assert_eq!(
        probe.count(),
        0,
        "a job cancelled before it started never runs"
    );
    assert_eq!(j.attempt, 3);
}

/// Cancelling a finished job says so and changes nothing; an unknown id is `NotFound`.
pub async fn cancel_finished_says_so(b: Backend) {
    let q = queue_name();
    let id = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    succeed(&b.storage, id, c[0].lease_token.unwrap()).await;
    assert_eq!(
        b.storage.cancel(id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Completed)
    );
    assert_eq!(
        b.storage.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    assert_eq!(
        b.storage.cancel(uuid::Uuid::now_v7()).await.unwrap(),
        CancelOutcome::NotFound
    );
}

/// A failed job can be retried by a user; live jobs cannot.
pub async fn retry_finished_job(b: Backend) {
    let q = queue_name();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let reg = Registry::new().register_fn("once_bad", move |_, _| {
        let c = c2.clone();
        async move {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(JobError::permanent("first run fails"))
            } else {
                Ok(Some(json!("second run ok")))
            }
        }
    });
    let id = enqueue1(
        &b.storage,
        job("once_bad", &q, json!({})).with_max_attempts(1),
    )
    .await;
    let live = enqueue1(
        &b.storage,
        job("once_bad", &q, json!({})).with_run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    assert_eq!(
        b.storage.retry(live).await.unwrap(),
        RetryOutcome::NotFinished(JobState::Scheduled)
    );
    assert_eq!(
        b.storage.retry(uuid::Uuid::now_v7()).await.unwrap(),
        RetryOutcome::NotFound
    );
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    wait_state(&b.storage, id, JobState::Failed, LONG).await;
    assert_eq!(b.storage.retry(id).await.unwrap(), RetryOutcome::Requeued);
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    w.stop().await;
    assert_eq!(done.attempt, 2, "a retried job gets one more attempt");
    assert_eq!(done.result, Some(json!("second run ok")));
    assert_eq!(done.errors.len(), 1, "the history is kept");
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_cancel_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            cancel_pending_never_runs,
            cancel_running_fires_token,
            cancel_request_survives_a_requeue,
            cancel_finished_says_so,
            retry_finished_job,
        }
    };
}
