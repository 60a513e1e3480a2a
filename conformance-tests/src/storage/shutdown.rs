//! Shutdown: graceful drains, hard releases and gives back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard::{JobContext, JobState, Registry};
use switchyard_core::{Completion, CompletionStatus, Outcome};

use super::support::{claim, enqueue1, job, LONG};
use crate::harness::{start_worker, wait_state, TestWorkerConfig};
use crate::support::queue_name;
use crate::{wait_for, Backend};

/// Graceful shutdown stops fetching and lets running jobs finish.
pub async fn graceful_shutdown_drains(b: Backend) {
    let q = queue_name();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let reg = Registry::new().register_fn("drain", move |_, _| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(Some(json!("finished")))
        }
    });
    let id = enqueue1(&b.storage, job("drain", &q, json!({}))).await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    wait_state(&b.storage, id, JobState::Running, LONG).await;
    wait_for("the job to start", LONG, || async {
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let t0 = Instant::now();
    w.stop().await;
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(
        j.state,
        JobState::Completed,
        "graceful shutdown did not let the job finish"
    );
    assert_eq!(j.result, Some(json!("finished")));
    assert!(
        t0.elapsed() < Duration::from_secs(9),
        "shutdown waited for its timeout"
    );
    // Nothing is fetched after shutdown.
    let after = enqueue1(&b.storage, job("drain", &q, json!({}))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.storage.get(after).await.unwrap().unwrap().state,
        JobState::Available
    );
}

/// Past the shutdown timeout, running jobs are aborted and released: retried later, or
/// `dropped` when no attempts are left. Nothing stays `running`.
pub async fn hard_shutdown_releases_jobs(b: Backend) {
    let q = queue_name();
    let reg = Registry::new().register_fn("stuck", |_, ctx: JobContext| async move {
        if ctx.attempt == 1 {
            // Ignores its cancellation token on purpose.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(Some(json!("second attempt")))
    });
    let again = enqueue1(&b.storage, job("stuck", &q, json!({})).with_max_attempts(3)).await;
    let last = enqueue1(&b.storage, job("stuck", &q, json!({})).with_max_attempts(1)).await;
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.shutdown_timeout = Duration::from_millis(300);
    let w = start_worker(&b, reg.clone(), cfg.clone()).await;
    wait_state(&b.storage, again, JobState::Running, LONG).await;
    wait_state(&b.storage, last, JobState::Running, LONG).await;
    w.stop().await;
    let released = b.storage.get(again).await.unwrap().unwrap();
    assert_eq!(
        released.state,
        JobState::Available,
        "an aborted job was not released"
    );
    assert_eq!(released.errors[0].kind, "aborted");
    let dropped = b.storage.get(last).await.unwrap().unwrap();
    assert_eq!(dropped.state, JobState::Dropped);
    assert!(dropped.finished_at.is_some());
    // A new worker runs the released job.
    let w2 = start_worker(&b, reg, cfg).await;
    let done = wait_state(&b.storage, again, JobState::Completed, LONG).await;
    w2.stop().await;
    assert_eq!(done.attempt, 2);
    assert_eq!(done.result, Some(json!("second attempt")));
}

/// At a hard shutdown, a job the worker claimed but had not started (it waited for a run
/// slot) is given back with its attempt undone: on its last attempt it is not dropped without
/// having run. (`Outcome::Released`; stale releases are refused like any completion.)
pub async fn hard_shutdown_gives_back_unstarted_jobs(b: Backend) {
    let q = queue_name();
    let reg = Registry::new().register_fn("stuck", |payload, ctx: JobContext| async move {
        if ctx.attempt == 1 && payload["stuck"] == json!(true) {
            // Ignores its cancellation token on purpose.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Ok(None)
    });
    let running = enqueue1(
        &b.storage,
        job("stuck", &q, json!({ "stuck": true }))
            .with_max_attempts(3)
            .with_priority(1),
    )
    .await;
    let waiting = enqueue1(
        &b.storage,
        job("stuck", &q, json!({ "stuck": false })).with_max_attempts(1),
    )
    .await;
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 1;
    cfg.shutdown_timeout = Duration::from_millis(300);
    let w = start_worker(&b, reg.clone(), cfg.clone()).await;
    wait_state(&b.storage, running, JobState::Running, LONG).await;
    // Claimed into the worker's buffer while the only run slot is taken.
    wait_state(&b.storage, waiting, JobState::Running, LONG).await;
    w.stop().await;
    let given_back = b.storage.get(waiting).await.unwrap().unwrap();
    assert_eq!(
        (given_back.state, given_back.attempt),
        (JobState::Available, 0),
        "an unstarted job is given back with its attempt undone, not dropped"
    );
    assert!(given_back.errors.is_empty(), "{:?}", given_back.errors);
    let w2 = start_worker(&b, reg, cfg).await;
    let done = wait_state(&b.storage, waiting, JobState::Completed, LONG).await;
    w2.stop().await;
    assert_eq!(done.attempt, 1);

    // In storage: a release applies once, under the job's current lease.
    let id = enqueue1(&b.storage, job("x", &q, json!({})).with_max_attempts(1)).await;
    let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    assert_eq!(c[0].id, id);
    let release = Completion {
        id,
        token: c[0].lease_token.unwrap(),
        outcome: Outcome::Released,
    };
    let done = b
        .storage
        .complete(std::slice::from_ref(&release))
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::Applied]);
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempt, j.lease_token),
        (JobState::Available, 0, None)
    );
    let done = b.storage.complete(&[release]).await.unwrap();
    assert_eq!(done, vec![CompletionStatus::Stale]);
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_shutdown_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            graceful_shutdown_drains,
            hard_shutdown_releases_jobs,
            hard_shutdown_gives_back_unstarted_jobs,
        }
    };
}
