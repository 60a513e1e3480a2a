//! Failures: retries with backoff, non-retryable errors, panics, timeouts, and jobs the worker
//! cannot run or record (unknown kind, unstorable outcome, undecodable payload).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard::{Job, JobContext, JobError, JobState, Registry};
use switchyard_core::JobId;

use super::support::{enqueue1, job, ok_registry, LONG};
use crate::harness::{start_worker, wait_state, Probe, TestWorkerConfig};
use crate::support::queue_name;
use crate::{wait_for, Backend};

/// Failures retry with exponential backoff, one persisted counter, then `failed` with history.
pub async fn retries_back_off_then_fail(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let p = probe.clone();
    let reg = Registry::new().register_fn("flaky", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            Err(JobError::retryable(format!("boom {}", ctx.attempt)))
        }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.backoff.base = Duration::from_millis(300);
    let id = enqueue1(&b.storage, job("flaky", &q, json!({})).with_max_attempts(3)).await;
    let w = start_worker(&b, reg, cfg).await;
    let failed = wait_state(&b.storage, id, JobState::Failed, LONG).await;
    w.stop().await;
    assert_eq!(failed.attempt, 3);
    assert_eq!(failed.errors.len(), 3);
    let msgs: Vec<&str> = failed.errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, vec!["boom 1", "boom 2", "boom 3"]);
    assert_eq!(
        failed.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(failed.finished_at.is_some());
    let runs = probe.runs_of(id);
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Backoff: 300 ms after the first failure, 600 ms after the second (no jitter here).
    let gap1 = runs[1].1 - runs[0].1;
    let gap2 = runs[2].1 - runs[1].1;
    assert!(
        gap1 >= Duration::from_millis(280),
        "retried after {gap1:?}, backoff ignored"
    );
    assert!(
        gap2 >= Duration::from_millis(580),
        "retried after {gap2:?}, backoff not exponential"
    );
}

/// A non-retryable error fails the job at once, whatever attempts are left.
pub async fn non_retryable_error_fails_at_once(b: Backend) {
    let q = queue_name();
    let reg = Registry::new().register_fn("fatal", |_, _| async {
        Err(JobError::permanent("card declined"))
    });
    let id = enqueue1(&b.storage, job("fatal", &q, json!({})).with_max_attempts(5)).await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let failed = wait_state(&b.storage, id, JobState::Failed, LONG).await;
    w.stop().await;
    assert_eq!(failed.attempt, 1);
    assert_eq!(failed.errors.len(), 1);
    assert_eq!(failed.errors[0].message, "card declined");
}

/// A panic is an error: recorded, retried.
pub async fn panic_is_an_error(b: Backend) {
    let q = queue_name();
    let reg = Registry::new().register_fn("panicky", |_, ctx: JobContext| async move {
        if ctx.attempt == 1 {
            panic!("kaboom");
        }
        Ok(None)
    });
    let id = enqueue1(&b.storage, job("panicky", &q, json!({}))).await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    w.stop().await;
    assert_eq!(done.attempt, 2);
    assert_eq!(done.errors[0].kind, "panic");
    assert!(done.errors[0].message.contains("kaboom"));
}

/// A timeout is an error: the attempt is stopped and recorded as `timeout`.
pub async fn timeout_is_an_error(b: Backend) {
    let q = queue_name();
    let fired = Arc::new(AtomicBool::new(false));
    let f = fired.clone();
    let reg = Registry::new().register_fn("sleepy", move |_, ctx: JobContext| {
        let f = f.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = ctx.cancelled() => f.store(true, Ordering::SeqCst),
            }
            Ok(None)
        }
    });
    let id = enqueue1(
        &b.storage,
        job("sleepy", &q, json!({}))
            .with_timeout(Duration::from_millis(200))
            .with_max_attempts(1),
    )
    .await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let failed = wait_state(&b.storage, id, JobState::Failed, LONG).await;
    w.stop().await;
    assert_eq!(failed.errors.len(), 1);
    assert_eq!(failed.errors[0].kind, "timeout");
    assert!(failed.errors[0].message.contains("timed out"));
}

/// An unknown kind fails the job with a reason that names it and what is handled.
pub async fn unknown_kind_fails_clearly(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let id = enqueue1(&b.storage, job("no_such_kind", &q, json!({}))).await;
    let w = start_worker(
        &b,
        ok_registry("known_kind", &probe),
        TestWorkerConfig::new(&q),
    )
    .await;
    let failed = wait_state(&b.storage, id, JobState::Failed, LONG).await;
    w.stop().await;
    assert_eq!(failed.attempt, 1, "an unknown kind is not retried");
    assert_eq!(failed.errors[0].kind, "unknown_kind");
    let msg = &failed.errors[0].message;
    assert!(
        msg.contains("no_such_kind") && msg.contains("known_kind"),
        "{msg}"
    );
    assert_eq!(failed.payload, json!({}), "the payload is kept");
}

/// An outcome the storage cannot store (a result holding a NUL character, which PostgreSQL's
/// jsonb refuses) never holds up the worker: that job ends — completed where the storage can
/// store it, else `failed` with an `unrecordable_outcome` error that says so — and the jobs
/// recorded with it and after it complete. A NUL in an error message is stored as U+FFFD.
pub async fn unstorable_outcome_never_blocks_the_worker(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let reg = ok_registry("ok", &probe)
        .register_fn("nul_result", |_, _| async {
            Ok(Some(json!({ "text": "a\u{0}b" })))
        })
        .register_fn("nul_error", |_, _| async {
            Err(JobError::permanent("broke at \u{0} here"))
        });
    let nul_result = enqueue1(&b.storage, job("nul_result", &q, json!({}))).await;
    let nul_error = enqueue1(&b.storage, job("nul_error", &q, json!({}))).await;
    let ok: Vec<JobId> = b
        .storage
        .enqueue((0..20).map(|i| job("ok", &q, json!({ "i": i }))).collect())
        .await
        .unwrap()
        .iter()
        .map(|o| o.id())
        .collect();
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    for id in &ok {
        wait_state(&b.storage, *id, JobState::Completed, LONG).await;
    }
    let ended = wait_for("the NUL-result job to end", LONG, || async {
        let j = b.storage.get(nul_result).await.unwrap().unwrap();
        j.state.is_finished().then_some(j)
    })
    .await;
    match ended.state {
        JobState::Completed => assert_eq!(ended.result, Some(json!({ "text": "a\u{0}b" }))),
        JobState::Failed => {
            let e = ended.errors.last().unwrap();
            assert_eq!(e.kind, "unrecordable_outcome");
            assert!(
                e.message.contains("succeeded") && e.message.contains("refused"),
                "{}",
                e.message
            );
        }
        other => panic!("the NUL-result job ended `{other}`"),
    }
    let failed = wait_state(&b.storage, nul_error, JobState::Failed, LONG).await;
    assert_eq!(failed.errors[0].message, "broke at \u{FFFD} here");
    // The worker still records what comes after.
    let later = enqueue1(&b.storage, job("ok", &q, json!({}))).await;
    wait_state(&b.storage, later, JobState::Completed, LONG).await;
    w.stop().await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Typed {
    n: u32,
}

impl Job for Typed {
    const KIND: &'static str = "typed";
    type Output = u32;
    async fn run(self, _ctx: JobContext) -> Result<u32, JobError> {
        Ok(self.n * 2)
    }
}

/// A payload that does not decode fails with the decode error; a good one runs typed.
pub async fn undecodable_payload_fails_clearly(b: Backend) {
    let q = queue_name();
    let bad = enqueue1(&b.storage, job("typed", &q, json!({"n": "not a number"}))).await;
    let good = enqueue1(&b.storage, job("typed", &q, json!({"n": 21}))).await;
    let w = start_worker(
        &b,
        Registry::new().register::<Typed>(),
        TestWorkerConfig::new(&q),
    )
    .await;
    let failed = wait_state(&b.storage, bad, JobState::Failed, LONG).await;
    let ok = wait_state(&b.storage, good, JobState::Completed, LONG).await;
    w.stop().await;
    assert_eq!(failed.attempt, 1);
    assert_eq!(failed.errors[0].kind, "decode");
    let msg = &failed.errors[0].message;
    assert!(
        msg.contains("does not decode") && msg.contains("typed"),
        "{msg}"
    );
    assert_eq!(
        failed.payload,
        json!({"n": "not a number"}),
        "the payload is kept"
    );
    assert_eq!(ok.result, Some(json!(42)));
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_failure_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            retries_back_off_then_fail,
            non_retryable_error_fails_at_once,
            panic_is_an_error,
            timeout_is_an_error,
            unknown_kind_fails_clearly,
            unstorable_outcome_never_blocks_the_worker,
            undecodable_payload_fails_clearly,
        }
    };
}
