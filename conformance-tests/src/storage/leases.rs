//! Leases: heartbeats renew them, an expired one is rescued (or dropped with no attempts
//! left), a lost one fences its worker out, and a reclaimed job runs under its new one.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{JobContext, JobState, Registry};
use switchyard_core::{Completion, CompletionStatus, LeaseRef, LeaseStatus, Outcome};

use super::support::{claim, enqueue1, job, LONG};
use crate::harness::{start_worker, wait_state, Probe, TestWorkerConfig};
use crate::support::queue_name;
use crate::{wait_for, Backend};

/// A job running longer than its lease keeps it through heartbeats: one attempt, no rescue.
pub async fn heartbeat_renews_lease(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let p = probe.clone();
    let reg = Registry::new().register_fn("slow", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            tokio::time::sleep(Duration::from_millis(3000)).await;
            Ok(Some(json!("done")))
        }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.lease = Duration::from_millis(1200);
    cfg.heartbeat = Duration::from_millis(250);
    let id = enqueue1(&b.storage, job("slow", &q, json!({}))).await;
    let w = start_worker(&b, reg, cfg).await;
    let running = wait_state(&b.storage, id, JobState::Running, LONG).await;
    let first_expiry = running.lease_expires_at.unwrap();
    let renewed = wait_for("the lease to be renewed", LONG, || async {
        let j = b.storage.get(id).await.unwrap().unwrap();
        (j.state == JobState::Running && j.lease_expires_at.unwrap() > first_expiry).then_some(j)
    })
    .await;
    assert!(renewed.lease_expires_at.unwrap() > first_expiry);
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    w.stop().await;
    assert_eq!(done.attempt, 1);
    assert_eq!(done.result, Some(json!("done")));
    assert_eq!(
        probe.count(),
        1,
        "the job ran twice: its lease was not renewed"
    );
}

/// When a worker dies mid-job, the job is rescued after its lease expires and runs again.
pub async fn dead_worker_jobs_are_rescued(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let p = probe.clone();
    let reg = Registry::new().register_fn("hang", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            if ctx.attempt == 1 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(None)
        }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.lease = Duration::from_millis(1000);
    cfg.heartbeat = Duration::from_millis(250);
    cfg.rescuer = false;
    let id = enqueue1(&b.storage, job("hang", &q, json!({}))).await;
    let w = start_worker(&b, reg.clone(), cfg.clone()).await;
    wait_state(&b.storage, id, JobState::Running, LONG).await;
    wait_for("the job to start", LONG, || async {
        (probe.count() == 1).then_some(())
    })
    .await;
    w.kill().await.stop().await;
    // A second worker with a rescuer takes over.
    cfg.rescuer = true;
    let w2 = start_worker(&b, reg, cfg).await;
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    w2.stop().await;
    assert_eq!(done.attempt, 2);
    assert_eq!(done.errors.len(), 1);
    assert_eq!(done.errors[0].kind, "lease_expired");
    assert_eq!(done.errors[0].attempt, 1);
    assert_eq!(probe.count(), 2);
}

/// A job whose lease expires with no attempts left is `dropped`, never stuck in `running`.
pub async fn rescue_drops_exhausted_jobs(b: Backend) {
    let q = queue_name();
    let last = enqueue1(&b.storage, job("x", &q, json!({})).with_max_attempts(1)).await;
    let more = enqueue1(&b.storage, job("x", &q, json!({})).with_max_attempts(3)).await;
    let claimed = claim(&b.storage, &q, 10, Duration::from_millis(200)).await;
    assert_eq!(claimed.len(), 2);
    // Not expired yet: nothing to rescue.
    let early = b.storage.rescue_expired(Utc::now(), 100).await.unwrap();
    assert!(early.retried.is_empty() && early.dropped.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = b.storage.rescue_expired(Utc::now(), 100).await.unwrap();
    assert_eq!(report.dropped, vec![last]);
    assert_eq!(report.retried, vec![more]);
    let d = b.storage.get(last).await.unwrap().unwrap();
    assert_eq!(d.state, JobState::Dropped);
    assert!(d.finished_at.is_some() && d.lease_token.is_none());
    assert_eq!(d.errors[0].kind, "lease_expired");
    let r = b.storage.get(more).await.unwrap().unwrap();
    assert_eq!(r.state, JobState::Available);
    assert_eq!(r.attempt, 1);
}

/// A worker whose lease was lost cannot complete the job, renew its lease, or fail it.
pub async fn stale_worker_completion_is_rejected(b: Backend) {
    let q = queue_name();
    let id = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let first = claim(&b.storage, &q, 1, Duration::from_millis(150)).await;
    let stale = first[0].lease_token.expect("a claim sets a lease token");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let report = b.storage.rescue_expired(Utc::now(), 100).await.unwrap();
    assert_eq!(report.retried, vec![id]);
    let second = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    let fresh = second[0].lease_token.unwrap();
    assert_ne!(stale, fresh);
    assert_eq!(second[0].attempt, 2);
    let hb = b
        .storage
        .heartbeat(
            &[LeaseRef { id, token: stale }, LeaseRef { id, token: fresh }],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(hb[0], LeaseStatus::Lost);
    assert_eq!(
        hb[1],
        LeaseStatus::Held {
            cancel_requested: false
        }
    );
    let st = b
        .storage
        .complete(&[Completion {
            id,
            token: stale,
            outcome: Outcome::Succeeded {
                result: Some(json!("stale")),
            },
        }])
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::Stale]);
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(
        j.state,
        JobState::Running,
        "a stale completion changed the job"
    );
    // The stale and the fresh attempt in one batch: each gets its own status.
    let st = b
        .storage
        .complete(&[
            Completion {
                id,
                token: stale,
                outcome: Outcome::Succeeded {
                    result: Some(json!("stale")),
                },
            },
            Completion {
                id,
                token: fresh,
                outcome: Outcome::Succeeded {
                    result: Some(json!("fresh")),
                },
            },
        ])
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::Stale, CompletionStatus::Applied]);
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.result, Some(json!("fresh")));
    // Rescue never touches a completed job, even with a stale clock far in the future.
    let later = Utc::now() + chrono::Duration::hours(1);
    let r = b.storage.rescue_expired(later, 100).await.unwrap();
    assert!(!r.retried.contains(&id) && !r.dropped.contains(&id));
    assert_eq!(
        b.storage.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
}

/// A job whose running attempt lost its lease (rescued) and that the same worker then claims
/// again runs under its new lease: the old attempt's refused completion does not take the
/// new attempt's lease out of the heartbeats, and the new attempt completes.
pub async fn reclaimed_job_keeps_its_new_lease(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let release = Arc::new([tokio::sync::Notify::new(), tokio::sync::Notify::new()]);
    let (p, r) = (probe.clone(), release.clone());
    let reg = Registry::new().register_fn("slow", move |_, ctx: JobContext| {
        let (p, r) = (p.clone(), r.clone());
        async move {
            p.record(ctx.id, ctx.attempt);
            // Ignores its cancellation token, as a body stuck in a blocking call would.
            r[(ctx.attempt as usize - 1).min(1)].notified().await;
            Ok(None)
        }
    });
    let id = enqueue1(&b.storage, job("slow", &q, json!({})).with_max_attempts(5)).await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    wait_for("the first attempt to start", LONG, || async {
        (probe.count() == 1).then_some(())
    })
    .await;
    // The storage takes the lease back, as after a long stall, and the job is claimed again.
    let report = b
        .storage
        .rescue_expired(Utc::now() + chrono::Duration::hours(1), 100)
        .await
        .unwrap();
    assert_eq!(report.retried, vec![id]);
    wait_for("the second attempt to start", LONG, || async {
        (probe.count() == 2).then_some(())
    })
    .await;
    release[0].notify_one();
    // The first attempt's completion is refused; the second's lease is still renewed.
    let first = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!((first.state, first.attempt), (JobState::Running, 2));
    let lease = first.lease_expires_at.unwrap();
    wait_for("the second attempt's lease to be renewed", LONG, || async {
        let j = b.storage.get(id).await.unwrap().unwrap();
        (j.lease_expires_at.unwrap() > lease + chrono::Duration::milliseconds(500)).then_some(())
    })
    .await;
    release[1].notify_one();
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    assert_eq!(done.attempt, 2);
    w.stop().await;
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_lease_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            heartbeat_renews_lease,
            dead_worker_jobs_are_rescued,
            rescue_drops_exhausted_jobs,
            stale_worker_completion_is_rejected,
            reclaimed_job_keeps_its_new_lease,
        }
    };
}
