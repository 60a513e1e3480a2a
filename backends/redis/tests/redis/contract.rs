//! The storage contract exercised directly on Redis: URL and prefix errors, a job's whole life
//! cycle, listing page by page across states and queues, and prefixes isolating instances.

use std::time::Duration;

use chrono::Utc;
use switchyard_core::{
    CancelOutcome, ClaimRequest, Completion, CompletionStatus, EnqueueOutcome, ErrorKind,
    JobFilter, JobState, LeaseRef, LeaseStatus, ListOrder, NewJob, Outcome, RetryOutcome, Storage,
};
use switchyard_redis::{RedisConfig, RedisStorage};

use crate::support::{err, keys_of, req, storage, url};

#[tokio::test]
async fn bad_url_names_the_key_and_accepted_forms() {
    for bad in [
        "http://localhost",
        "redis:/nohost",
        "localhost:6379",
        "redis://h/x",
    ] {
        let e = RedisStorage::connect(RedisConfig::new(bad))
            .await
            .expect_err(bad);
        assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
        assert!(e.message().contains("`storage`"), "{e}");
        assert!(
            e.message().contains("redis://") && e.message().contains("rediss://"),
            "{e}"
        );
    }
    let e = RedisStorage::connect(RedisConfig::new(url()).with_prefix("a{b}"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("`prefix`"), "{e}");
    assert_eq!(switchyard_redis::URL_SCHEMES, &["redis", "rediss"]);
}

#[tokio::test]
async fn full_life_cycle_on_the_storage() {
    let s = storage().await;
    let q = "lifecycle";
    let a = NewJob::new("a", serde_json::json!({"n": 1})).with_queue(q);
    let b = NewJob::new("b", serde_json::json!({"n": 2}))
        .with_queue(q)
        .with_priority(5)
        .with_unique_key("k1")
        .with_timeout(Duration::from_secs(3))
        .with_tag("t");
    let dup = NewJob::new("b", serde_json::json!({}))
        .with_queue(q)
        .with_unique_key("k1");
    let later = NewJob::new("c", serde_json::json!(null))
        .with_queue(q)
        .with_delay(Duration::from_secs(3600));
    let out = s
        .enqueue(vec![a.clone(), b.clone(), dup.clone(), later.clone()])
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            EnqueueOutcome::Inserted(a.id),
            EnqueueOutcome::Inserted(b.id),
            EnqueueOutcome::Duplicate(b.id),
            EnqueueOutcome::Inserted(later.id),
        ]
    );
    let rb = s.get(b.id).await.unwrap().unwrap();
    assert_eq!(rb.state, JobState::Available);
    assert_eq!(rb.priority, 5);
    assert_eq!(rb.unique_key.as_deref(), Some("k1"));
    assert_eq!(rb.timeout_ms, Some(3000));
    assert_eq!(rb.tags, vec!["t".to_string()]);
    assert_eq!(
        s.get(later.id).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
    assert!(s.get(uuid::Uuid::now_v7()).await.unwrap().is_none());
    // Fields created empty at enqueue read as "none".
    let ra = s.get(a.id).await.unwrap().unwrap();
    assert_eq!(
        (
            ra.timeout_ms,
            ra.result,
            ra.unique_key,
            ra.started_at,
            ra.finished_at
        ),
        (None, None, None, None, None)
    );
    assert!(ra.lease_token.is_none() && ra.lease_expires_at.is_none() && ra.worker_id.is_none());

    // Priority first; the delayed job is not claimable.
    let claimed = s.claim(&req(q, 10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        claimed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![b.id, a.id]
    );
    for r in &claimed {
        assert_eq!(r.state, JobState::Running);
        assert_eq!(r.attempt, 1);
        assert_eq!(r.worker_id.as_deref(), Some("test-worker"));
        assert!(r.lease_token.is_some() && r.lease_expires_at.is_some());
    }
    assert_ne!(claimed[0].lease_token, claimed[1].lease_token);
    let lease_b = LeaseRef {
        id: b.id,
        token: claimed[0].lease_token.unwrap(),
    };
    let lease_a = LeaseRef {
        id: a.id,
        token: claimed[1].lease_token.unwrap(),
    };
    let wrong = LeaseRef {
        id: a.id,
        token: uuid::Uuid::new_v4(),
    };

    assert_eq!(s.cancel(a.id).await.unwrap(), CancelOutcome::Requested);
    let hb = s
        .heartbeat(&[lease_b, lease_a, wrong], Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        hb,
        vec![
            LeaseStatus::Held {
                cancel_requested: false
            },
            LeaseStatus::Held {
                cancel_requested: true
            },
            LeaseStatus::Lost
        ]
    );

    let done = s
        .complete(&[
            Completion {
                id: b.id,
                token: lease_b.token,
                outcome: Outcome::Succeeded {
                    result: Some(serde_json::json!({"ok": true})),
                },
            },
            Completion {
                id: a.id,
                token: wrong.token,
                outcome: Outcome::Succeeded { result: None },
            },
            Completion {
                id: a.id,
                token: lease_a.token,
                outcome: Outcome::Cancelled {
                    error: Some(err(1, "stopped")),
                },
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        done,
        vec![
            CompletionStatus::Applied,
            CompletionStatus::Stale,
            CompletionStatus::Applied
        ]
    );
    let rb = s.get(b.id).await.unwrap().unwrap();
    assert_eq!(rb.state, JobState::Completed);
    assert_eq!(rb.result, Some(serde_json::json!({"ok": true})));
    assert!(rb.finished_at.is_some() && rb.lease_token.is_none() && rb.worker_id.is_none());
    assert!(rb.lease_expires_at.is_none() && rb.started_at.is_some());
    // Its unique key's entry is gone (a completion reads `unique_key` only for jobs claimed
    // with one, which their lease token says).
    let held: bool = redis::cmd("HEXISTS")
        .arg(format!("{}unique", s.key_prefix()))
        .arg("k1")
        .query_async(&mut s.connection())
        .await
        .unwrap();
    assert!(
        !held,
        "the unique key k1 is still held after its job completed"
    );
    let ra = s.get(a.id).await.unwrap().unwrap();
    assert_eq!(ra.state, JobState::Cancelled);
    assert_eq!(ra.errors.len(), 1);

    // The unique key is free once its job finished.
    let again = NewJob::new("b", serde_json::json!({}))
        .with_queue(q)
        .with_unique_key("k1");
    assert_eq!(
        s.enqueue(vec![again.clone()]).await.unwrap(),
        vec![EnqueueOutcome::Inserted(again.id)]
    );
    // ... so retrying the old one conflicts while the new one is live.
    assert_eq!(s.retry(b.id).await.unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(s.cancel(again.id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(
        s.cancel(again.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobState::Cancelled)
    );
    assert_eq!(s.retry(b.id).await.unwrap(), RetryOutcome::Requeued);
    assert_eq!(
        s.retry(b.id).await.unwrap(),
        RetryOutcome::NotFinished(JobState::Available)
    );
    assert_eq!(
        s.retry(uuid::Uuid::now_v7()).await.unwrap(),
        RetryOutcome::NotFound
    );

    // Retry and failure paths.
    let r = s.claim(&req(q, 10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].id, b.id);
    assert_eq!(r[0].attempt, 2);
    let tok = r[0].lease_token.unwrap();
    let st = s
        .complete(&[Completion {
            id: b.id,
            token: tok,
            outcome: Outcome::Retry {
                error: err(2, "again"),
                run_at: Utc::now(),
            },
        }])
        .await
        .unwrap();
    assert_eq!(st, vec![CompletionStatus::Applied]);
    assert_eq!(
        s.get(b.id).await.unwrap().unwrap().state,
        JobState::Retrying
    );
    let r = s.claim(&req(q, 10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].attempt, 3);
    s.complete(&[Completion {
        id: b.id,
        token: r[0].lease_token.unwrap(),
        outcome: Outcome::Failed {
            error: err(3, "boom"),
        },
    }])
    .await
    .unwrap();
    let rb = s.get(b.id).await.unwrap().unwrap();
    assert_eq!(rb.state, JobState::Failed);
    assert_eq!(
        rb.errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        vec!["again", "boom"]
    );

    // Counts and list.
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].queue, q);
    assert_eq!(counts[0].counts.get(&JobState::Failed), Some(&1));
    assert_eq!(counts[0].counts.get(&JobState::Cancelled), Some(&2));
    assert_eq!(counts[0].counts.get(&JobState::Scheduled), Some(&1));
    let all = s.list(&JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let cancelled = s
        .list(&JobFilter {
            states: vec![JobState::Cancelled],
            order: ListOrder::Asc,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cancelled.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a.id, again.id]
    );
}

#[tokio::test]
async fn list_paginates_across_states_and_queues() {
    let s = storage().await;
    let mut ids = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..230 {
        let j = NewJob::new(
            if i % 2 == 0 { "even" } else { "odd" },
            serde_json::json!(i),
        )
        .with_queue(format!("q{}", i % 3));
        ids.push(j.id);
        jobs.push(j);
    }
    s.enqueue(jobs).await.unwrap();
    // Move some into other states.
    let claimed = s
        .claim(&ClaimRequest {
            queues: vec!["q0".into(), "q1".into()],
            limit: 40,
            worker_id: "w".into(),
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 40);
    for order in [ListOrder::Asc, ListOrder::Desc] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list(&JobFilter {
                    after,
                    limit: 17,
                    order,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.id);
            seen.extend(page.into_iter().map(|r| r.id));
        }
        let mut expected = ids.clone();
        if order == ListOrder::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    let odd_q1: Vec<_> = s
        .list(&JobFilter {
            queue: Some("q1".into()),
            kind: Some("odd".into()),
            limit: 1000,
            order: ListOrder::Asc,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let expected: Vec<_> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 1 && i % 2 == 1)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(odd_q1, expected);
    // Running jobs are listed and counted from the lease set, per queue and page by page.
    for q in ["q0", "q1", "q2"] {
        let mut expected: Vec<_> = claimed
            .iter()
            .filter(|r| r.queue == q)
            .map(|r| r.id)
            .collect();
        expected.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .list(&JobFilter {
                    queue: Some(q.into()),
                    states: vec![JobState::Running],
                    after,
                    limit: 7,
                    order: ListOrder::Asc,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page
                .iter()
                .all(|r| r.state == JobState::Running && r.queue == q));
            after = page.last().map(|r| r.id);
            seen.extend(page.into_iter().map(|r| r.id));
        }
        assert_eq!(seen, expected, "running jobs of {q}");
        let counts = s.counts().await.unwrap();
        let running = counts
            .iter()
            .find(|c| c.queue == q)
            .and_then(|c| c.counts.get(&JobState::Running).copied())
            .unwrap_or(0);
        assert_eq!(running as usize, expected.len(), "running count of {q}");
    }
    s.destroy().await.expect("destroy");
    assert!(keys_of(&s).await.is_empty(), "destroy left keys behind");
}

#[tokio::test]
async fn prefixes_isolate_instances() {
    let a = storage().await;
    let b = storage().await;
    let job = NewJob::new("k", serde_json::json!({})).with_unique_key("same");
    a.enqueue(vec![job.clone()]).await.unwrap();
    assert!(b.get(job.id).await.unwrap().is_none());
    assert!(b.counts().await.unwrap().is_empty());
    assert!(b.list(&JobFilter::default()).await.unwrap().is_empty());
    assert!(b
        .claim(&req("default", 10, Duration::from_secs(5)))
        .await
        .unwrap()
        .is_empty());
    // Same unique key, other instance: stored.
    let other = NewJob::new("k", serde_json::json!({})).with_unique_key("same");
    assert_eq!(
        b.enqueue(vec![other.clone()]).await.unwrap(),
        vec![EnqueueOutcome::Inserted(other.id)]
    );
    assert_eq!(
        a.claim(&req("default", 10, Duration::from_secs(5)))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(keys_of(&a)
        .await
        .iter()
        .all(|k| k.starts_with(a.key_prefix())));
}
