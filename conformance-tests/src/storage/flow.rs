//! Flow control: stored pauses honoured by claims and workers, snoozes that give the attempt
//! back, and bulk cancel / retry by filter with a dry run and a bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use switchyard::{JobContext, JobError, JobState, Registry};
use switchyard_core::{
    BulkRequest, ErrorKind, JobFilter, Outcome, Partition, QueueFlow, RateLimit,
};

use super::support::{claim, claim_req, enqueue1, job, record, LONG};
use crate::harness::{start_worker, wait_state, TestWorkerConfig};
use crate::support::{queue_name, skip};
use crate::Backend;

fn paused(queue: &str) -> QueueFlow {
    QueueFlow {
        paused: true,
        ..QueueFlow::new(queue)
    }
}

/// A paused queue's jobs are not claimed (by `claim` or `claim_ids`) and keep their attempt;
/// other queues in the same claim are served; the pause is listed; resuming serves it again.
pub async fn paused_queue_is_not_claimed(b: Backend) {
    let (q, other) = (queue_name(), queue_name());
    let held = enqueue1(&b.storage, job("k", &q, json!({}))).await;
    let free = enqueue1(&b.storage, job("k", &other, json!({}))).await;
    b.storage.set_queue_flow(&paused(&q)).await.unwrap();
    let flows = b.storage.queue_flows().await.unwrap();
    let stored = flows
        .iter()
        .find(|f| f.queue == q)
        .expect("the pause is listed");
    assert!(stored.paused && stored.updated_at.is_some(), "{stored:?}");

    let mut req = claim_req(&q, 10, LONG);
    req.queues.push(other.clone());
    let got = b.storage.claim(&req).await.unwrap();
    assert_eq!(
        got.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![free],
        "a claim over a paused and an unpaused queue takes only the unpaused one's job"
    );
    assert!(
        b.storage
            .claim_ids(&[held], &claim_req(&q, 10, LONG))
            .await
            .unwrap()
            .is_empty(),
        "claim_ids took a paused queue's job"
    );
    let j = b.storage.get(held).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempt, j.errors.len()),
        (JobState::Available, 0, 0),
        "a held job keeps its attempt and records no error"
    );

    b.storage.set_queue_flow(&QueueFlow::new(&q)).await.unwrap();
    assert!(
        !b.storage
            .queue_flows()
            .await
            .unwrap()
            .iter()
            .any(|f| f.queue == q),
        "a resumed queue keeps no record"
    );
    let got = claim(&b.storage, &q, 10, LONG).await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![held]);
    let e = b
        .storage
        .set_queue_flow(&paused(""))
        .await
        .expect_err("a record without a queue name");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// A running worker (own queue or external queue) stops starting a paused queue's jobs and
/// starts them after a resume.
pub async fn worker_honours_pause_and_resume(b: Backend) {
    let q = queue_name();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let reg = Registry::new().register_fn("p", move |_, _| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    });
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let first = enqueue1(&b.storage, job("p", &q, json!({}))).await;
    wait_state(&b.storage, first, JobState::Completed, LONG).await;
    b.storage.set_queue_flow(&paused(&q)).await.unwrap();
    let held = enqueue1(&b.storage, job("p", &q, json!({}))).await;
    // Several worker polls (100 ms) and flow refreshes (500 ms): the job must not start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let j = b.storage.get(held).await.unwrap().unwrap();
    assert!(
        j.state.is_pending() && j.attempt == 0,
        "a paused queue's job was started: {:?} attempt {}",
        j.state,
        j.attempt
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    b.storage.set_queue_flow(&QueueFlow::new(&q)).await.unwrap();
    let j = wait_state(&b.storage, held, JobState::Completed, LONG).await;
    assert_eq!(j.attempt, 1, "the held job used exactly one attempt");
    w.stop().await;
}

/// `Outcome::Snoozed`: `scheduled` at its time with the attempt given back and no error, not
/// claimable before it; a handler's `JobError::snooze` does the same through a worker, so a
/// job with one attempt can snooze and still run.
pub async fn snooze_gives_the_attempt_back(b: Backend) {
    let q = queue_name();
    let id = enqueue1(&b.storage, job("z", &q, json!({})).with_max_attempts(1)).await;
    let c = claim(&b.storage, &q, 1, LONG).await;
    assert_eq!(c.len(), 1);
    let later = Utc::now() + chrono::Duration::hours(1);
    record(
        &b.storage,
        id,
        c[0].lease_token.unwrap(),
        Outcome::Snoozed { run_at: later },
    )
    .await;
    let j = b.storage.get(id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempt, j.errors.len(), j.lease_token),
        (JobState::Scheduled, 0, 0, None),
        "a snoozed job waits with its attempt given back"
    );
    assert!(
        (j.run_at - later).num_milliseconds().abs() < 5,
        "run_at {} is the snooze time {later}",
        j.run_at
    );
    assert!(
        claim(&b.storage, &q, 1, LONG).await.is_empty(),
        "a snoozed job was claimed before its time"
    );

    let q = queue_name();
    // The first run snoozes; the second (attempt 1 again: the snooze gave it back) succeeds.
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let reg = Registry::new().register_fn("z", move |_, ctx: JobContext| {
        let r = r.clone();
        async move {
            assert_eq!(ctx.attempt, 1, "a snooze used up an attempt");
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(JobError::snooze(Duration::from_millis(200)));
            }
            Ok(Some(json!("ran")))
        }
    });
    let id = enqueue1(
        &b.storage,
        job("z", &q, json!({"snooze": true})).with_max_attempts(1),
    )
    .await;
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let j = wait_state(&b.storage, id, JobState::Completed, LONG).await;
    w.stop().await;
    assert_eq!(j.result, Some(json!("ran")));
    assert!(
        j.errors.is_empty(),
        "a snooze recorded an error: {:?}",
        j.errors
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the snoozed job ran again");
}

fn bulk(filter: JobFilter, bound: usize, dry_run: bool) -> BulkRequest {
    BulkRequest {
        filter,
        bound,
        dry_run,
    }
}

/// Bulk cancel and retry by filter: a dry run reports the oldest matches up to the bound and
/// changes nothing; a run changes exactly the matches; other kinds are untouched; bad
/// requests are refused.
pub async fn bulk_cancel_and_retry_by_filter(b: Backend) {
    if !b.storage.capabilities().can_list {
        return skip(
            "bulk_cancel_and_retry_by_filter",
            "the storage does not declare `can_list`",
        );
    }
    let q = queue_name();
    let mut a = Vec::new();
    for i in 0..5 {
        a.push(enqueue1(&b.storage, job("a", &q, json!({ "i": i }))).await);
    }
    let other = enqueue1(&b.storage, job("b", &q, json!({}))).await;
    let of_a = JobFilter {
        queue: Some(q.clone()),
        kind: Some("a".into()),
        ..JobFilter::default()
    };

    let dry = b
        .storage
        .cancel_where(&bulk(of_a.clone(), 3, true))
        .await
        .unwrap();
    assert_eq!(
        dry.ids,
        a[..3].to_vec(),
        "the oldest matches up to the bound"
    );
    assert!(dry.truncated && dry.dry_run && dry.changed == 0, "{dry:?}");
    for id in &a {
        let j = b.storage.get(*id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Available, "a dry run changed a job");
    }

    let done = b
        .storage
        .cancel_where(&bulk(of_a.clone(), 10, false))
        .await
        .unwrap();
    assert_eq!(done.ids, a, "every match");
    assert!(!done.truncated && done.changed == 5, "{done:?}");
    for id in &a {
        let j = b.storage.get(*id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Cancelled);
    }
    let j = b.storage.get(other).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Available, "another kind was cancelled");

    let dry = b
        .storage
        .retry_where(&bulk(of_a.clone(), 2, true))
        .await
        .unwrap();
    assert_eq!(dry.ids, a[..2].to_vec());
    assert!(dry.truncated && dry.changed == 0, "{dry:?}");
    let done = b
        .storage
        .retry_where(&bulk(of_a.clone(), 100, false))
        .await
        .unwrap();
    assert_eq!((done.ids.len(), done.changed), (5, 5), "{done:?}");
    for id in &a {
        let j = b.storage.get(*id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Available, "a bulk retry did not requeue");
    }

    let e = b
        .storage
        .cancel_where(&bulk(of_a.clone(), 0, true))
        .await
        .expect_err("bound 0");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let finished = JobFilter {
        states: vec![JobState::Completed],
        ..of_a
    };
    let e = b
        .storage
        .cancel_where(&bulk(finished, 5, true))
        .await
        .expect_err("cancel completed jobs");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

fn limited(queue: &str, limit: u32, partition: Partition) -> QueueFlow {
    QueueFlow {
        concurrency: Some(limit),
        partition,
        ..QueueFlow::new(queue)
    }
}

/// GC1 by claims: with a concurrency limit L, no claim — several at once included — takes a
/// job while L hold a valid lease; a finished job frees its slot; `claim_ids` obeys it too;
/// the limit is listed and a limit of 0 is refused.
pub async fn concurrency_limit_caps_claims(b: Backend) {
    let q = queue_name();
    b.storage
        .set_queue_flow(&limited(&q, 2, Partition::None))
        .await
        .unwrap();
    let stored = b.storage.queue_flows().await.unwrap();
    let f = stored
        .iter()
        .find(|f| f.queue == q)
        .expect("the limit is listed");
    assert_eq!(
        (f.concurrency, f.partition.clone(), f.paused),
        (Some(2), Partition::None, false)
    );
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(enqueue1(&b.storage, job("c", &q, json!({}))).await);
    }
    // Eight claims at once (PostgreSQL: eight connections) take two jobs between them.
    let claims = (0..8).map(|_| {
        let s = b.storage.clone();
        let q = q.clone();
        async move { s.claim(&claim_req(&q, 10, LONG)).await.unwrap() }
    });
    let got: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        got.len(),
        2,
        "concurrent claims took {} jobs under a limit of 2",
        got.len()
    );
    assert!(
        claim(&b.storage, &q, 10, LONG).await.is_empty(),
        "a full queue gave a job"
    );
    let rest: Vec<_> = ids
        .iter()
        .copied()
        .filter(|id| got.iter().all(|j| j.id != *id))
        .collect();
    assert!(
        b.storage
            .claim_ids(&rest, &claim_req(&q, 10, LONG))
            .await
            .unwrap()
            .is_empty(),
        "claim_ids exceeded the limit"
    );
    record(
        &b.storage,
        got[0].id,
        got[0].lease_token.unwrap(),
        Outcome::Succeeded { result: None },
    )
    .await;
    let next = b
        .storage
        .claim_ids(&rest, &claim_req(&q, 10, LONG))
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "a freed slot takes exactly one job");
    for id in &rest {
        let j = b.storage.get(*id).await.unwrap().unwrap();
        if j.id != next[0].id {
            assert_eq!(
                (j.state, j.attempt),
                (JobState::Available, 0),
                "a held job keeps its attempt"
            );
        }
    }
    let e = b
        .storage
        .set_queue_flow(&limited(&q, 0, Partition::None))
        .await
        .expect_err("limit 0");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

/// GC3: a slot is a lease. A holder that stops renewing (a killed worker) frees its slot when
/// the lease expires, before any rescue.
pub async fn concurrency_slot_frees_with_the_lease(b: Backend) {
    let q = queue_name();
    b.storage
        .set_queue_flow(&limited(&q, 1, Partition::None))
        .await
        .unwrap();
    let first = enqueue1(&b.storage, job("c", &q, json!({}))).await;
    let second = enqueue1(&b.storage, job("c", &q, json!({}))).await;
    let held = claim(&b.storage, &q, 5, Duration::from_millis(400)).await;
    assert_eq!(held.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first]);
    assert!(claim(&b.storage, &q, 5, LONG).await.is_empty());
    let got = crate::wait_for("the expired lease's slot to free", LONG, || async {
        let c = claim(&b.storage, &q, 5, LONG).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(got.iter().map(|j| j.id).collect::<Vec<_>>(), vec![second]);
}

/// GC5: with a limit per kind, the jobs of a full kind do not hold back another kind's jobs
/// queued behind them.
pub async fn full_partition_does_not_block_others(b: Backend) {
    let q = queue_name();
    b.storage
        .set_queue_flow(&limited(&q, 1, Partition::Kind))
        .await
        .unwrap();
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(enqueue1(&b.storage, job("a", &q, json!({}))).await);
    }
    let later = enqueue1(&b.storage, job("b", &q, json!({}))).await;
    let got = claim(&b.storage, &q, 10, LONG).await;
    let mut ids: Vec<_> = got.iter().map(|j| j.id).collect();
    ids.sort();
    let mut want = vec![a[0], later];
    want.sort();
    assert_eq!(
        ids, want,
        "one job of each kind: the oldest `a` and the `b` behind the a's"
    );
    assert!(
        claim(&b.storage, &q, 10, LONG).await.is_empty(),
        "both kinds are full"
    );
}

/// GC1–GC2 with workers: three workers on one limited queue never run more than L jobs at
/// once, reach L, and finish the backlog.
pub async fn workers_never_exceed_the_concurrency_limit(b: Backend) {
    let q = queue_name();
    b.storage
        .set_queue_flow(&limited(&q, 2, Partition::None))
        .await
        .unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let reg = Registry::new().register_fn("c", move |_, _| {
        let (r, p) = (r.clone(), p.clone());
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(None)
        }
    });
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(enqueue1(&b.storage, job("c", &q, json!({}))).await);
    }
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 4;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(start_worker(&b, reg.clone(), cfg.clone()).await);
    }
    for id in &ids {
        let j = wait_state(&b.storage, *id, JobState::Completed, LONG).await;
        assert_eq!(j.attempt, 1, "a limited job used more than one attempt");
    }
    for w in workers {
        w.stop().await;
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} jobs ran at once under a limit of 2");
    assert_eq!(peak, 2, "the limit's capacity was never used in full");
}

fn rated(queue: &str, limit: u32, period_ms: u64, partition: Partition) -> QueueFlow {
    QueueFlow {
        rate: Some(RateLimit { limit, period_ms }),
        partition,
        ..QueueFlow::new(queue)
    }
}

/// RL3, RL4, RL7: a rate limit per kind gives each kind its own budget; a job held back
/// stays `available` with its attempt and no error, by `claim` and `claim_ids`; the window
/// ages out and the budget comes back; a bad limit is refused.
pub async fn rate_limit_partitions_and_held_jobs(b: Backend) {
    let q = queue_name();
    b.storage
        .set_queue_flow(&rated(&q, 3, 700, Partition::Kind))
        .await
        .unwrap();
    let f = b.storage.queue_flows().await.unwrap();
    let f = f
        .iter()
        .find(|f| f.queue == q)
        .expect("the limit is listed");
    assert_eq!(
        f.rate,
        Some(RateLimit {
            limit: 3,
            period_ms: 700
        })
    );
    let mut all = Vec::new();
    for kind in ["a", "b"] {
        for _ in 0..5 {
            all.push(enqueue1(&b.storage, job(kind, &q, json!({}))).await);
        }
    }
    let got = claim(&b.storage, &q, 20, LONG).await;
    let per_kind = |kind: &str| got.iter().filter(|j| j.kind == kind).count();
    assert_eq!(
        (per_kind("a"), per_kind("b")),
        (3, 3),
        "each kind gets its own budget of 3"
    );
    assert!(
        claim(&b.storage, &q, 20, LONG).await.is_empty(),
        "over budget"
    );
    let held: Vec<_> = all
        .iter()
        .copied()
        .filter(|id| got.iter().all(|j| j.id != *id))
        .collect();
    assert!(
        b.storage
            .claim_ids(&held, &claim_req(&q, 20, LONG))
            .await
            .unwrap()
            .is_empty(),
        "claim_ids went over budget"
    );
    for id in &held {
        let j = b.storage.get(*id).await.unwrap().unwrap();
        assert_eq!(
            (j.state, j.attempt, j.errors.len()),
            (JobState::Available, 0, 0),
            "a throttled job keeps its attempt and records no error"
        );
    }
    // Finishing jobs does not give budget back: the window counts starts.
    for j in &got {
        record(
            &b.storage,
            j.id,
            j.lease_token.unwrap(),
            Outcome::Succeeded { result: None },
        )
        .await;
    }
    assert!(
        claim(&b.storage, &q, 20, LONG).await.is_empty(),
        "finishing refunded a start"
    );
    let more = crate::wait_for("the window to age out", LONG, || async {
        let c = claim(&b.storage, &q, 20, LONG).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(
        more.len(),
        4,
        "the rest (2 of each kind) once the window passed: {more:?}"
    );
    let e = b
        .storage
        .set_queue_flow(&rated(&q, 0, 1000, Partition::None))
        .await
        .expect_err("limit 0");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("1 to 86400000 ms"), "{e}");
}

/// RL1, RL2: three workers on one queue limited to N starts per period P: in every sliding
/// interval of length P there are at most N attempt starts (the stored `started_at`), and,
/// on the storage's own queue, the backlog drains at no less than 80 % of N/P. (With an
/// external queue a refused delivery waits for its redelivery, so the drain is only
/// reported: the dispatcher does not yet publish by budget.)
pub async fn workers_respect_a_strict_sliding_window(b: Backend) {
    const N: usize = 8;
    const P_MS: i64 = 600;
    const JOBS: usize = 40;
    let q = queue_name();
    b.storage
        .set_queue_flow(&rated(&q, N as u32, P_MS as u64, Partition::None))
        .await
        .unwrap();
    let reg = Registry::new().register_fn("r", |_, _| async { Ok(None) });
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(enqueue1(&b.storage, job("r", &q, json!({}))).await);
    }
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 8;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(start_worker(&b, reg.clone(), cfg.clone()).await);
    }
    let mut starts = Vec::new();
    for id in &ids {
        let j = wait_state(&b.storage, *id, JobState::Completed, LONG).await;
        assert_eq!(j.attempt, 1);
        starts.push(j.started_at.expect("started_at"));
    }
    for w in workers {
        w.stop().await;
    }
    starts.sort();
    for (i, s) in starts.iter().enumerate() {
        let end = *s + chrono::Duration::milliseconds(P_MS);
        let inside = starts[i..].iter().take_while(|t| **t < end).count();
        assert!(
            inside <= N,
            "{inside} starts in the {P_MS} ms from {s} under a limit of {N}: {starts:?}"
        );
    }
    // JOBS / N windows, the first at once: the ideal span is (JOBS / N - 1) periods.
    let span = (starts[JOBS - 1] - starts[0]).num_milliseconds();
    let ideal = (JOBS / N - 1) as i64 * P_MS;
    if b.queue.is_some() {
        eprintln!(
            "workers_respect_a_strict_sliding_window: through the external queue the backlog \
             took {span} ms to start ({}% of the full rate); utilisation is checked on the \
             storage's own queue only",
            ideal * 100 / span.max(1)
        );
        return;
    }
    assert!(
        span * 8 <= ideal * 10,
        "the backlog took {span} ms to start; at the full rate it takes {ideal} ms (under 80 %)"
    );
}

/// RL5: a handler's `JobError::rate_limited(d)` gives the attempt back (no error, the job
/// runs again after `d`) and pauses the whole queue until then: a job enqueued meanwhile
/// starts only once `d` has passed.
pub async fn rate_limited_handler_pauses_the_queue(b: Backend) {
    let q = queue_name();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let reg = Registry::new().register_fn("api", move |_, _| {
        let r = r.clone();
        async move {
            if r.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(JobError::rate_limited(Duration::from_millis(1200)));
            }
            Ok(None)
        }
    });
    let w = start_worker(&b, reg, TestWorkerConfig::new(&q)).await;
    let first = enqueue1(&b.storage, job("api", &q, json!({})).with_max_attempts(1)).await;
    let snoozed = wait_state(&b.storage, first, JobState::Scheduled, LONG).await;
    assert_eq!(
        (snoozed.attempt, snoozed.errors.len()),
        (0, 0),
        "the attempt was given back"
    );
    let until = crate::wait_for("the queue's pause to be stored", LONG, || async {
        b.storage
            .queue_flows()
            .await
            .unwrap()
            .iter()
            .find(|f| f.queue == q)
            .and_then(|f| f.paused_until)
    })
    .await;
    assert!(until > Utc::now(), "paused until {until}, already past");
    let second = enqueue1(&b.storage, job("api", &q, json!({}))).await;
    let j = wait_state(&b.storage, second, JobState::Completed, LONG).await;
    let started = j.started_at.expect("started_at");
    assert!(
        started >= until - chrono::Duration::milliseconds(50),
        "a job of the paused queue started at {started}, before the pause ended at {until}"
    );
    let j = wait_state(&b.storage, first, JobState::Completed, LONG).await;
    assert_eq!((j.attempt, j.errors.len()), (1, 0));
    w.stop().await;
}

/// RL3 / GC5 by a payload field: `partition = payload.tenant` gives each value of the field
/// (a string, a number, or absent) its own rate budget and its own concurrency slots.
pub async fn payload_field_partitions_are_independent(b: Backend) {
    let q = queue_name();
    let by_tenant: Partition = "payload.tenant".parse().unwrap();
    b.storage
        .set_queue_flow(&rated(&q, 2, 60_000, by_tenant.clone()))
        .await
        .unwrap();
    let tenants = [
        json!("a"),
        json!("a"),
        json!("a"),
        json!("b"),
        json!("b"),
        json!("b"),
    ];
    let mut ids = Vec::new();
    for t in tenants.iter().chain([json!(7), json!(7), json!(7)].iter()) {
        ids.push(enqueue1(&b.storage, job("t", &q, json!({ "tenant": t }))).await);
    }
    let anonymous = enqueue1(&b.storage, job("t", &q, json!({ "other": 1 }))).await;
    let got = claim(&b.storage, &q, 50, LONG).await;
    let count = |v: serde_json::Value| got.iter().filter(|j| j.payload["tenant"] == v).count();
    assert_eq!(
        (count(json!("a")), count(json!("b")), count(json!(7))),
        (2, 2, 2),
        "each tenant gets its own budget of 2: {got:?}"
    );
    assert!(
        got.iter().any(|j| j.id == anonymous),
        "a job without the field has the budget of the empty value"
    );
    assert_eq!(got.len(), 7);
    assert!(claim(&b.storage, &q, 50, LONG).await.is_empty());

    let q = queue_name();
    b.storage
        .set_queue_flow(&QueueFlow {
            concurrency: Some(1),
            partition: by_tenant,
            ..QueueFlow::new(&q)
        })
        .await
        .unwrap();
    for t in ["x", "x", "y"] {
        enqueue1(&b.storage, job("t", &q, json!({ "tenant": t }))).await;
    }
    let got = claim(&b.storage, &q, 50, LONG).await;
    let mut seen: Vec<String> = got
        .iter()
        .map(|j| j.payload["tenant"].as_str().unwrap_or("").to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, vec!["x", "y"], "one running job per tenant");
}

/// This file's cases, for [`conformance_suite!`](crate::conformance_suite): a new case is its
/// function above plus its name here. Calls `$then!` with `$args` followed by the names.
#[doc(hidden)]
#[macro_export]
macro_rules! storage_flow_cases {
    ($then:ident!($($args:tt)*)) => {
        $crate::$then! { $($args)*
            paused_queue_is_not_claimed,
            worker_honours_pause_and_resume,
            snooze_gives_the_attempt_back,
            bulk_cancel_and_retry_by_filter,
            concurrency_limit_caps_claims,
            concurrency_slot_frees_with_the_lease,
            full_partition_does_not_block_others,
            workers_never_exceed_the_concurrency_limit,
            rate_limit_partitions_and_held_jobs,
            workers_respect_a_strict_sliding_window,
            rate_limited_handler_pauses_the_queue,
            payload_field_partitions_are_independent,
        }
    };
}
