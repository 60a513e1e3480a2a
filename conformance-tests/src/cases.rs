//! The conformance cases, one `pub async fn` per behaviour of SPEC §3. Each takes a fresh
//! [`Backend`] and panics with a message that says what broke.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard::{
    CancelOutcome, ErrorKind, Job, JobContext, JobError, JobFilter, JobState, ListOrder, NewJob,
    Registry, RetryOutcome,
};
use switchyard_core::{
    ClaimRequest, Completion, CompletionStatus, EnqueueOutcome, JobId, JobRecord, LeaseRef,
    LeaseStatus, Outcome, Storage,
};

use crate::harness::{start_worker, wait_state, Probe, TestWorkerConfig};
use crate::{wait_for, Backend};

const LONG: Duration = Duration::from_secs(20);

fn queue_name() -> String {
    format!("q{}", &crate::random_prefix()[1..9])
}

fn job(kind: &str, queue: &str, payload: serde_json::Value) -> NewJob {
    NewJob::new(kind, payload).with_queue(queue)
}

async fn enqueue1(s: &Arc<dyn Storage>, j: NewJob) -> JobId {
    s.enqueue(vec![j]).await.expect("enqueue")[0].id()
}

/// Claims up to `limit` jobs of `queue` directly in storage.
async fn claim(s: &Arc<dyn Storage>, queue: &str, limit: usize, lease: Duration) -> Vec<JobRecord> {
    s.claim(&claim_req(queue, limit, lease))
        .await
        .expect("claim")
}

/// Records a successful attempt with no result; panics unless it was applied.
async fn succeed(s: &Arc<dyn Storage>, id: JobId, token: uuid::Uuid) {
    record(s, id, token, Outcome::Succeeded { result: None }).await;
}

/// Records one attempt's outcome; panics unless it was applied.
async fn record(s: &Arc<dyn Storage>, id: JobId, token: uuid::Uuid, outcome: Outcome) {
    let done = s
        .complete(&[Completion { id, token, outcome }])
        .await
        .expect("complete");
    assert_eq!(done, vec![CompletionStatus::Applied], "job {id}");
}

fn claim_req(queue: &str, limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        worker_id: "conformance".to_string(),
        lease,
    }
}

/// A handler that records each run and succeeds.
fn ok_registry(kind: &str, probe: &Probe) -> Registry {
    let p = probe.clone();
    Registry::new().register_fn(kind, move |_payload, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            Ok(None)
        }
    })
}

fn skip(case: &str, why: &str) {
    eprintln!("SKIPPED {case}: {why}");
}

// ---------------------------------------------------------------- 1. enqueue and get

/// One job round-trips with every field; UUID v7 ids; state `available`.
pub async fn enqueue_and_get(b: Backend) {
    let q = queue_name();
    let new = job("email", &q, json!({"to": "a@example.com", "n": 1}))
        .with_priority(3)
        .with_max_attempts(7)
        .with_timeout(Duration::from_secs(9))
        .with_tag("welcome");
    let id = enqueue1(&b.storage, new.clone()).await;
    assert_eq!(id, new.id);
    assert_eq!(id.get_version_num(), 7, "ids are UUID v7");
    let got = b.storage.get(id).await.unwrap().expect("job exists");
    assert_eq!(got.kind, "email");
    assert_eq!(got.queue, q);
    assert_eq!(got.payload, json!({"to": "a@example.com", "n": 1}));
    assert_eq!(got.priority, 3);
    assert_eq!(got.max_attempts, 7);
    assert_eq!(got.timeout_ms, Some(9000));
    assert_eq!(got.tags, vec!["welcome".to_string()]);
    assert_eq!(got.state, JobState::Available);
    assert_eq!(got.attempt, 0);
    assert!(got.errors.is_empty() && got.result.is_none() && got.lease_token.is_none());
    assert!((Utc::now() - got.created_at).num_seconds().abs() < 30);
}

/// A batch is stored whole, one outcome per job in order.
pub async fn enqueue_batch(b: Backend) {
    let q = queue_name();
    let jobs: Vec<NewJob> = (0..250)
        .map(|i| job("batch", &q, json!({"n": i})))
        .collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    let out = b.storage.enqueue(jobs).await.unwrap();
    assert_eq!(out.len(), 250);
    for (o, id) in out.iter().zip(&ids) {
        assert_eq!(*o, EnqueueOutcome::Inserted(*id));
    }
    let j = b.storage.get(ids[137]).await.unwrap().unwrap();
    assert_eq!(j.payload, json!({"n": 137}));
    let counts = b.storage.counts().await.unwrap();
    let c = counts.iter().find(|c| c.queue == q).expect("queue counted");
    assert_eq!(c.counts.get(&JobState::Available), Some(&250));
}

/// An unknown id is `None`, not an error.
pub async fn get_unknown_is_none(b: Backend) {
    assert!(b.storage.get(uuid::Uuid::now_v7()).await.unwrap().is_none());
}

// ---------------------------------------------------------------- 2. delays

/// A delayed job is not delivered before its time and is delivered soon after.
pub async fn delayed_job_waits(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let run_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let id = enqueue1(&b.storage, job("later", &q, json!({})).with_run_at(run_at)).await;
    assert_eq!(
        b.storage.get(id).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    let w = start_worker(&b, ok_registry("later", &probe), TestWorkerConfig::new(&q)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(probe.count(), 0, "a delayed job ran before its time");
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    let started = done.started_at.expect("started_at");
    assert!(
        started >= run_at,
        "started {started} before run_at {run_at}"
    );
    assert_eq!(probe.count(), 1);
    w.stop().await;
}

/// A delay longer than the lease neither runs early nor twice, and no rescue touches it.
pub async fn delay_longer_than_lease(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.lease = Duration::from_millis(1200);
    cfg.heartbeat = Duration::from_millis(250);
    let run_at = Utc::now() + chrono::Duration::milliseconds(2500);
    let id = enqueue1(&b.storage, job("later", &q, json!({})).with_run_at(run_at)).await;
    let w = start_worker(&b, ok_registry("later", &probe), cfg).await;
    let done = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    assert!(done.started_at.unwrap() >= run_at);
    assert_eq!(done.attempt, 1, "one attempt, not rescued");
    assert!(done.errors.is_empty(), "errors: {:?}", done.errors);
    assert_eq!(probe.count(), 1);
    w.stop().await;
}

/// A delay past the queue's native limit waits in storage and is delivered when due.
pub async fn delay_past_native_limit(b: Backend) {
    let q = queue_name();
    let limit = match (&b.queue, b.max_native_delay) {
        (Some(queue), over) => over
            .or(queue.capabilities().max_native_delay)
            .unwrap_or_default(),
        (None, _) => Duration::ZERO,
    };
    if b.queue.is_some() && limit > Duration::from_secs(5) {
        return skip(
            "delay_past_native_limit",
            "the queue's native delay limit is above 5 s; set Backend::max_native_delay to test it quickly",
        );
    }
    let probe = Probe::default();
    let delay = limit + Duration::from_millis(2000);
    let run_at = Utc::now() + chrono::Duration::from_std(delay).unwrap();
    let id = enqueue1(&b.storage, job("far", &q, json!({})).with_run_at(run_at)).await;
    let w = start_worker(&b, ok_registry("far", &probe), TestWorkerConfig::new(&q)).await;
    let done = wait_state(&b.storage, id, JobState::Completed, LONG + delay).await;
    assert!(
        done.started_at.unwrap() >= run_at,
        "delivered before its time"
    );
    assert_eq!(probe.count(), 1);
    w.stop().await;
}

/// A `run_at` long past (any time before now, even before 1970) makes a job runnable at once.
pub async fn long_past_run_at_runs_at_once(b: Backend) {
    let q = queue_name();
    let past = chrono::DateTime::parse_from_rfc3339("1900-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let id = enqueue1(&b.storage, job("x", &q, json!({})).with_run_at(past)).await;
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Available);
    assert_eq!(j.run_at, past, "run_at is stored as given");
    let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    assert_eq!(
        c.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![id],
        "a job due in 1900 is claimed"
    );
    succeed(&b.storage, id, c[0].lease_token.unwrap()).await;
}

// ---------------------------------------------------------------- 3. priority, isolation

/// Higher priority is claimed first within a queue.
pub async fn priority_order(b: Backend) {
    let q = queue_name();
    let prios = [0i16, 5, -3, 10, 1];
    let mut ids = Vec::new();
    for p in prios {
        ids.push(enqueue1(&b.storage, job("p", &q, json!({"p": p})).with_priority(p)).await);
    }
    let mut expected: Vec<(i16, JobId)> = prios.iter().copied().zip(ids.iter().copied()).collect();
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    if b.queue.is_none() {
        let mut got = Vec::new();
        for _ in 0..prios.len() {
            let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
            assert_eq!(c.len(), 1);
            got.push(c[0].id);
        }
        assert_eq!(got, expected.iter().map(|e| e.1).collect::<Vec<_>>());
        // One batched claim returns the same order.
        let q2 = queue_name();
        for p in prios {
            enqueue1(&b.storage, job("p", &q2, json!({})).with_priority(p)).await;
        }
        let batch = claim(&b.storage, &q2, 10, Duration::from_secs(30)).await;
        let ps: Vec<i16> = batch.iter().map(|j| j.priority).collect();
        assert_eq!(ps, vec![10, 5, 1, 0, -3]);
        return;
    }
    let queue = b.queue.as_ref().unwrap();
    if !queue.capabilities().priorities {
        return skip(
            "priority_order",
            &format!(
                "the {} queue does not declare priority support",
                queue.name()
            ),
        );
    }
    let probe = Probe::default();
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 1;
    let w = start_worker(&b, ok_registry("p", &probe), cfg).await;
    wait_for("all prioritised jobs", LONG, || async {
        (probe.count() == prios.len()).then_some(())
    })
    .await;
    w.stop().await;
    assert_eq!(
        probe.order(),
        expected.iter().map(|e| e.1).collect::<Vec<_>>()
    );
}

/// A worker on one queue never takes another queue's jobs.
pub async fn queues_are_isolated(b: Backend) {
    let qa = queue_name();
    let qb = queue_name();
    let a = enqueue1(&b.storage, job("iso", &qa, json!({}))).await;
    let other = enqueue1(&b.storage, job("iso", &qb, json!({}))).await;
    let claimed = claim(&b.storage, &qa, 10, Duration::from_secs(30)).await;
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a]);
    let probe = Probe::default();
    let a2 = enqueue1(&b.storage, job("iso", &qa, json!({}))).await;
    let w = start_worker(&b, ok_registry("iso", &probe), TestWorkerConfig::new(&qa)).await;
    wait_state(&b.storage, a2, JobState::Completed, LONG).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop().await;
    assert_eq!(
        b.storage.get(other).await.unwrap().unwrap().state,
        JobState::Available,
        "a job of another queue was taken"
    );
    assert!(probe.runs_of(other).is_empty());
}

// ---------------------------------------------------------------- 4. exactly once

/// Concurrent claims never hand out the same job twice.
pub async fn concurrent_claims_never_overlap(b: Backend) {
    let q = queue_name();
    let jobs: Vec<NewJob> = (0..200).map(|i| job("c", &q, json!({"i": i}))).collect();
    b.storage.enqueue(jobs).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = b.storage.clone();
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = s
                    .claim(&claim_req(&q, 7, Duration::from_secs(60)))
                    .await
                    .unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(n, all.len(), "a job was claimed twice");
    assert_eq!(n, 200, "every job claimed");
}

/// N workers over M jobs: every job runs exactly once when nothing fails.
pub async fn workers_run_each_job_exactly_once(b: Backend) {
    let q = queue_name();
    let probe = Probe::default();
    let jobs: Vec<NewJob> = (0..300).map(|i| job("once", &q, json!({"i": i}))).collect();
    let ids: Vec<JobId> = jobs.iter().map(|j| j.id).collect();
    b.storage.enqueue(jobs).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let mut cfg = TestWorkerConfig::new(&q);
        cfg.concurrency = 8;
        workers.push(start_worker(&b, ok_registry("once", &probe), cfg).await);
    }
    wait_for("300 jobs to run", LONG * 2, || async {
        (probe.count() >= 300).then_some(())
    })
    .await;
    for id in &ids {
        wait_state(&b.storage, *id, JobState::Completed, LONG).await;
    }
    for w in workers {
        w.stop().await;
    }
    let per = probe.per_job();
    assert_eq!(per.len(), 300);
    assert!(per.values().all(|&n| n == 1), "some job ran more than once");
}

// ---------------------------------------------------------------- 5. leases

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

// ---------------------------------------------------------------- 6. retries

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

// ---------------------------------------------------------------- 7. cancel

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

// ---------------------------------------------------------------- 8. unique keys

/// A second enqueue with the key of a live job returns the first id; a finished job frees it.
pub async fn unique_key_returns_first(b: Backend) {
    let q = queue_name();
    let key = format!("report-{}", uuid::Uuid::now_v7());
    let first = enqueue1(
        &b.storage,
        job("r", &q, json!({"v": 1})).with_unique_key(&key),
    )
    .await;
    let dup = job("r", &q, json!({"v": 2})).with_unique_key(&key);
    let dup_id = dup.id;
    let out = b.storage.enqueue(vec![dup]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Duplicate(first)]);
    assert!(
        b.storage.get(dup_id).await.unwrap().is_none(),
        "the duplicate was stored"
    );
    // Two with one key in one batch: the first wins.
    let key2 = format!("k2-{}", uuid::Uuid::now_v7());
    let a = job("r", &q, json!({})).with_unique_key(&key2);
    let a_id = a.id;
    let c = job("r", &q, json!({})).with_unique_key(&key2);
    let out = b.storage.enqueue(vec![a, c]).await.unwrap();
    assert_eq!(
        out,
        vec![
            EnqueueOutcome::Inserted(a_id),
            EnqueueOutcome::Duplicate(a_id)
        ]
    );
    // While running, still a duplicate; once completed, the key is free.
    let claimed = claim(&b.storage, &q, 10, Duration::from_secs(30)).await;
    let mine = claimed.iter().find(|j| j.id == first).expect("claimed");
    let out = b
        .storage
        .enqueue(vec![job("r", &q, json!({})).with_unique_key(&key)])
        .await
        .unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Duplicate(first)]);
    succeed(&b.storage, first, mine.lease_token.unwrap()).await;
    let again = job("r", &q, json!({})).with_unique_key(&key);
    let again_id = again.id;
    let out = b.storage.enqueue(vec![again]).await.unwrap();
    assert_eq!(out, vec![EnqueueOutcome::Inserted(again_id)]);
}

// ---------------------------------------------------------------- 9. list and count

/// List filters by state, queue, kind and time, pages without gaps or overlaps, both orders.
pub async fn list_filter_and_paginate(b: Backend) {
    if !b.storage.capabilities().can_list {
        return skip(
            "list_filter_and_paginate",
            "the storage does not declare `can_list`",
        );
    }
    let qa = queue_name();
    let qb = queue_name();
    let mut a_ids = Vec::new();
    for i in 0..15 {
        a_ids.push(enqueue1(&b.storage, job("alpha", &qa, json!({"i": i}))).await);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t_mid = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut b_ids = Vec::new();
    for i in 0..10 {
        b_ids.push(enqueue1(&b.storage, job("beta", &qb, json!({"i": i}))).await);
    }
    for id in &b_ids[..4] {
        b.storage.cancel(*id).await.unwrap();
    }
    let f = |states: Vec<JobState>, queue: Option<&str>, kind: Option<&str>| JobFilter {
        states,
        queue: queue.map(str::to_string),
        kind: kind.map(str::to_string),
        ..JobFilter::default()
    };
    let by_queue = b.storage.list(&f(vec![], Some(&qa), None)).await.unwrap();
    assert_eq!(by_queue.len(), 15);
    assert!(by_queue.iter().all(|j| j.queue == qa));
    let cancelled = b
        .storage
        .list(&f(vec![JobState::Cancelled], Some(&qb), None))
        .await
        .unwrap();
    let mut got: Vec<JobId> = cancelled.iter().map(|j| j.id).collect();
    got.sort();
    let mut want = b_ids[..4].to_vec();
    want.sort();
    assert_eq!(got, want);
    let beta_avail = b
        .storage
        .list(&f(vec![JobState::Available], None, Some("beta")))
        .await
        .unwrap();
    assert!(beta_avail.iter().filter(|j| j.queue == qb).count() == 6);
    // Time filter.
    let mut later = f(vec![], Some(&qa), None);
    later.created_after = Some(t_mid);
    assert!(b.storage.list(&later).await.unwrap().is_empty());
    let mut earlier = f(vec![], Some(&qa), None);
    earlier.created_before = Some(t_mid);
    assert_eq!(b.storage.list(&earlier).await.unwrap().len(), 15);
    // Pagination, oldest first, pages of 6: 6 + 6 + 3, in id order.
    for order in [ListOrder::Asc, ListOrder::Desc] {
        let mut page = f(vec![], Some(&qa), None);
        page.limit = 6;
        page.order = order;
        let mut seen = Vec::new();
        loop {
            let p = b.storage.list(&page).await.unwrap();
            assert!(p.len() <= 6);
            if p.is_empty() {
                break;
            }
            page.after = Some(p.last().unwrap().id);
            seen.extend(p.into_iter().map(|j| j.id));
        }
        let mut expected = a_ids.clone();
        expected.sort();
        if order == ListOrder::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "pagination in {order:?} order");
    }
}

/// Counts per state and queue.
pub async fn counts_by_state_and_queue(b: Backend) {
    let qa = queue_name();
    let qb = queue_name();
    for _ in 0..3 {
        enqueue1(&b.storage, job("x", &qa, json!({}))).await;
    }
    let c = enqueue1(&b.storage, job("x", &qa, json!({}))).await;
    b.storage.cancel(c).await.unwrap();
    enqueue1(
        &b.storage,
        job("x", &qb, json!({})).with_run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    claim(&b.storage, &qa, 1, Duration::from_secs(30)).await;
    let counts = b.storage.counts().await.unwrap();
    let a = counts.iter().find(|c| c.queue == qa).expect("queue a");
    assert_eq!(a.counts.get(&JobState::Available), Some(&2));
    assert_eq!(a.counts.get(&JobState::Running), Some(&1));
    assert_eq!(a.counts.get(&JobState::Cancelled), Some(&1));
    let bq = counts.iter().find(|c| c.queue == qb).expect("queue b");
    assert_eq!(bq.counts.get(&JobState::Scheduled), Some(&1));
    assert_eq!(bq.counts.values().sum::<u64>(), 1);
}

// ---------------------------------------------------------------- 10. prune, leadership

/// Prune deletes finished jobs older than the retention, and nothing else.
pub async fn prune_finished(b: Backend) {
    let q = queue_name();
    let done = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let cancelled = enqueue1(
        &b.storage,
        job("x", &q, json!({})).with_run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let c = claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    succeed(&b.storage, done, c[0].lease_token.unwrap()).await;
    b.storage.cancel(cancelled).await.unwrap();
    let waiting = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    let running = enqueue1(&b.storage, job("x", &q, json!({}))).await;
    claim(&b.storage, &q, 1, Duration::from_secs(30)).await;
    // Retention not reached: nothing goes.
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(b.storage.prune(past, 100).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let n = b
        .storage
        .prune(Utc::now() + chrono::Duration::seconds(1), 100)
        .await
        .unwrap();
    assert!(n >= 2, "pruned {n}");
    assert!(b.storage.get(done).await.unwrap().is_none());
    assert!(b.storage.get(cancelled).await.unwrap().is_none());
    assert!(
        b.storage.get(waiting).await.unwrap().is_some(),
        "a pending job was pruned"
    );
    assert!(
        b.storage.get(running).await.unwrap().is_some(),
        "a running job was pruned"
    );
    let counts = b.storage.counts().await.unwrap();
    let cq = counts.iter().find(|c| c.queue == q).expect("queue");
    assert_eq!(cq.counts.values().sum::<u64>(), 2);
}

/// Exactly one holder owns a leadership lock; it expires when its holder stops renewing it.
pub async fn leadership_is_exclusive_and_expires(b: Backend) {
    let name = format!("lock-{}", uuid::Uuid::now_v7());
    let ttl = Duration::from_millis(600);
    assert!(b.storage.try_lead(&name, "a", ttl).await.unwrap());
    assert!(!b.storage.try_lead(&name, "b", ttl).await.unwrap());
    assert!(
        b.storage.try_lead(&name, "a", ttl).await.unwrap(),
        "the holder renews"
    );
    // Many contenders at once: exactly one wins a free lock.
    let free = format!("free-{}", uuid::Uuid::now_v7());
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = b.storage.clone();
        let free = free.clone();
        tasks.push(tokio::spawn(async move {
            s.try_lead(&free, &format!("c{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
    // The holder dies: the lock is free after its ttl.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        b.storage.try_lead(&name, "b", ttl).await.unwrap(),
        "an expired lock is free"
    );
    assert!(!b.storage.try_lead(&name, "a", ttl).await.unwrap());
    b.storage.resign(&name, "b").await.unwrap();
    assert!(
        b.storage.try_lead(&name, "a", ttl).await.unwrap(),
        "a resigned lock is free"
    );
}

/// The job ids of dispatch items, in their order.
fn ids_of(items: &[switchyard_core::DispatchItem]) -> Vec<JobId> {
    items.iter().map(|d| d.id).collect()
}

/// Storage as the outbox of an external queue (seed 004): the dispatcher's view of due jobs,
/// its mark, the lost-message backstop, and the claim of delivered ids.
pub async fn outbox_dispatch_view(b: Backend) {
    let s = &b.storage;
    let (qx, qy) = (queue_name(), queue_name());
    let now = Utc::now();
    let a = job("k", &qx, json!({}));
    let later = job("k", &qy, json!({}))
        .with_priority(3)
        .with_run_at(now + chrono::Duration::seconds(5));
    let far = job("k", &qx, json!({})).with_run_at(now + chrono::Duration::hours(1));
    s.enqueue(vec![a.clone(), later.clone(), far.clone()])
        .await
        .unwrap();
    let horizon = now + chrono::Duration::seconds(30);
    let stale = now - chrono::Duration::minutes(5);
    let due = s.due_for_dispatch(horizon, stale, 10).await.unwrap();
    assert_eq!(
        ids_of(&due),
        vec![a.id, later.id],
        "due within the horizon, earliest first; the far one waits in storage"
    );
    assert_eq!((due[1].queue.as_str(), due[1].priority), (qy.as_str(), 3));
    // Looking does not mark; taking does, once, in the same order.
    let taken = ids_of(&s.take_for_dispatch(horizon, stale, 10).await.unwrap());
    assert_eq!(taken, vec![a.id, later.id], "taken earliest first");
    assert!(s
        .take_for_dispatch(horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .due_for_dispatch(horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    // Published long enough ago and still pending: its message may be lost, publish again,
    // ordered with never-published jobs by due time (neither kind starves the other).
    let lost = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.due_for_dispatch(horizon, lost, 10).await.unwrap().len(),
        2
    );
    let newer = job("k", &qx, json!({})).with_run_at(now + chrono::Duration::seconds(10));
    enqueue1(s, newer.clone()).await;
    let retaken = ids_of(&s.take_for_dispatch(horizon, lost, 10).await.unwrap());
    assert_eq!(retaken, vec![a.id, later.id, newer.id]);
    let lost = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.take_for_dispatch(horizon, lost, 1).await.unwrap().len(),
        1,
        "the limit holds"
    );
    // `mark_dispatched` ignores unknown ids.
    s.mark_dispatched(&[far.id, uuid::Uuid::now_v7()])
        .await
        .unwrap();
    let far_horizon = now + chrono::Duration::hours(2);
    assert!(s
        .due_for_dispatch(far_horizon, stale, 10)
        .await
        .unwrap()
        .is_empty());
    // A delivered id is claimed only when runnable; a retry makes it due for dispatch again.
    let req = ClaimRequest {
        queues: vec![qx.clone(), qy.clone()],
        ..claim_req(&qx, 10, LONG)
    };
    let claimed = s.claim_ids(&[later.id, a.id, far.id], &req).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.id]);
    assert_eq!(
        (claimed[0].state, claimed[0].attempt),
        (JobState::Running, 1)
    );
    let error = switchyard_core::AttemptError {
        attempt: 1,
        at: Utc::now(),
        kind: "error".into(),
        message: "boom".into(),
    };
    let done = s
        .complete(&[Completion {
            id: a.id,
            token: claimed[0].lease_token.expect("token"),
            outcome: Outcome::Retry {
                error,
                run_at: Utc::now(),
            },
        }])
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::Applied]);
    let due = s.due_for_dispatch(horizon, stale, 10).await.unwrap();
    assert_eq!(ids_of(&due), vec![a.id]);
}

/// `destroy` removes everything of the instance: after it, `migrate` gives an empty instance
/// (no jobs, no counts, no held locks), and a second `destroy` is harmless.
pub async fn destroy_then_migrate_is_empty(b: Backend) {
    let s = &b.storage;
    let q = queue_name();
    let ids: Vec<JobId> = s
        .enqueue((0..3).map(|i| job("k", &q, json!({ "i": i }))).collect())
        .await
        .unwrap()
        .iter()
        .map(|o| o.id())
        .collect();
    let running = claim(s, &q, 1, LONG).await;
    assert_eq!(running.len(), 1);
    let lock = format!("lock-{}", uuid::Uuid::now_v7());
    assert!(s.try_lead(&lock, "a", LONG).await.unwrap());

    match s.destroy().await {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            return skip(
                "destroy_then_migrate_is_empty",
                "the storage cannot destroy",
            );
        }
        r => r.expect("destroy"),
    }
    s.destroy().await.expect("destroy twice");
    s.migrate().await.expect("migrate after destroy");
    for id in &ids {
        assert!(s.get(*id).await.unwrap().is_none(), "job {id} survived");
    }
    assert!(s.counts().await.unwrap().is_empty(), "counts survived");
    let all = s.list(&JobFilter::default()).await.unwrap();
    assert!(all.is_empty(), "list still finds {} jobs", all.len());
    assert!(
        s.try_lead(&lock, "b", LONG).await.unwrap(),
        "the leadership lock survived"
    );
    // The instance works again.
    let id = enqueue1(s, job("k", &q, json!({}))).await;
    let again = claim(s, &q, 10, LONG).await;
    assert_eq!(again.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);
}

// ---------------------------------------------------------------- 11. bad input

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

/// An oversized payload is rejected at enqueue with the limit named, and nothing is stored.
pub async fn oversized_payload_rejected(b: Backend) {
    let q = queue_name();
    let limit = b.storage.capabilities().max_payload_bytes;
    let big = "x".repeat(limit + 1);
    let ok = job("x", &q, json!({}));
    let ok_id = ok.id;
    let err = b
        .storage
        .enqueue(vec![ok, job("x", &q, json!({ "blob": big }))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    assert!(
        b.storage.get(ok_id).await.unwrap().is_none(),
        "a partial batch was stored"
    );
}

/// A NUL character in a kind, queue, unique key or tag is refused at enqueue with the field
/// named, alike on every backend, and nothing of the batch is stored.
pub async fn nul_in_names_rejected(b: Backend) {
    let q = queue_name();
    let bad = [
        ("kind", job("bad\0kind", &q, json!({}))),
        ("queue", job("x", &format!("{q}\0"), json!({}))),
        (
            "unique key",
            job("x", &q, json!({})).with_unique_key("a\0b"),
        ),
        ("tag", job("x", &q, json!({})).with_tag("t\0")),
    ];
    for (what, bad) in bad {
        let ok = job("x", &q, json!({}));
        let ok_id = ok.id;
        let err = b.storage.enqueue(vec![ok, bad]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("{what} containing a NUL")),
            "{err}"
        );
        assert!(
            b.storage.get(ok_id).await.unwrap().is_none(),
            "{what}: a partial batch was stored"
        );
    }
}

// ---------------------------------------------------------------- 12. shutdown

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
