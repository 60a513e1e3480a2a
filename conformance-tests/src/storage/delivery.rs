//! Delivery: delays (within and past the queue's native limit), priority order, queue
//! isolation, and exactly-once claims and runs.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{JobState, NewJob};
use switchyard_core::JobId;

use super::support::{claim, claim_req, enqueue1, job, ok_registry, succeed, LONG};
use crate::harness::{start_worker, wait_state, Probe, TestWorkerConfig};
use crate::support::{queue_name, skip};
use crate::{wait_for, Backend};

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

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_delivery_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            delayed_job_waits,
            delay_longer_than_lease,
            delay_past_native_limit,
            long_past_run_at_runs_at_once,
            priority_order,
            queues_are_isolated,
            concurrent_claims_never_overlap,
            workers_run_each_job_exactly_once,
        }
    };
}
