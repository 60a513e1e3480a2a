//! Redis-specific tests: reliability under killed connections, bounded memory after a prune,
//! prefix isolation, URL errors, and the storage contract exercised directly.
//!
//! Needs a Redis server at `SWITCHYARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use switchyard::{Registry, Worker};
use switchyard_core::{
    AttemptError, CancelOutcome, ClaimRequest, Completion, CompletionStatus, EnqueueOutcome,
    ErrorKind, JobFilter, JobState, LeaseRef, LeaseStatus, ListOrder, NewJob, Outcome,
    RetryOutcome, Storage,
};
use switchyard_redis::{RedisConfig, RedisStorage};

fn url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn random_prefix() -> String {
    switchyard_conformance::random_prefix()
}

async fn storage_with(config: RedisConfig) -> RedisStorage {
    let s = RedisStorage::connect(config)
        .await
        .expect("connect to Redis");
    s.migrate().await.expect("migrate");
    s
}

async fn storage() -> RedisStorage {
    storage_with(RedisConfig::new(url()).with_prefix(random_prefix())).await
}

/// Every key of this instance (SCAN, so it never blocks the server).
async fn keys_of(s: &RedisStorage) -> Vec<String> {
    let mut conn = s.connection();
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", s.key_prefix()))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    out.sort();
    out
}

fn req(queue: &str, limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        worker_id: "test-worker".into(),
        lease,
    }
}

fn err(attempt: u32, msg: &str) -> AttemptError {
    AttemptError {
        attempt,
        at: Utc::now(),
        kind: "error".into(),
        message: msg.into(),
    }
}

/// A success without result for each of `claimed`.
fn succeeded<'a>(
    claimed: impl IntoIterator<Item = &'a switchyard_core::JobRecord>,
) -> Vec<Completion> {
    claimed
        .into_iter()
        .map(|j| Completion {
            id: j.id,
            token: j.lease_token.unwrap(),
            outcome: Outcome::Succeeded { result: None },
        })
        .collect()
}

/// Claims up to `limit` jobs of `queue` and records each as succeeded; returns them.
async fn run_some(s: &dyn Storage, queue: &str, limit: usize) -> Vec<switchyard_core::JobRecord> {
    let claimed = s
        .claim(&req(queue, limit, Duration::from_secs(30)))
        .await
        .unwrap();
    let statuses = s.complete(&succeeded(&claimed)).await.unwrap();
    assert!(statuses.iter().all(|st| *st == CompletionStatus::Applied));
    claimed
}

/// `ZADD {prefix}<key> score member`: writes what an older version (or a lost write) could
/// have left.
async fn zadd(
    s: &RedisStorage,
    key: &str,
    score: impl redis::ToRedisArgs,
    member: impl redis::ToRedisArgs,
) {
    let () = redis::cmd("ZADD")
        .arg(format!("{}{key}", s.key_prefix()))
        .arg(score)
        .arg(member)
        .query_async(&mut s.connection())
        .await
        .unwrap();
}

/// `DEL {prefix}<key>`.
async fn del(s: &RedisStorage, key: &str) {
    let () = redis::cmd("DEL")
        .arg(format!("{}{key}", s.key_prefix()))
        .query_async(&mut s.connection())
        .await
        .unwrap();
}

/// The schema version `migrate` wrote (`{prefix}meta`).
async fn schema_version(s: &RedisStorage) -> u32 {
    redis::cmd("HGET")
        .arg(format!("{}meta", s.key_prefix()))
        .arg("schema")
        .query_async(&mut s.connection())
        .await
        .unwrap()
}

/// Sets the schema version, as an older version's `migrate` left it.
async fn set_schema_version(s: &RedisStorage, v: u32) {
    let () = redis::cmd("HSET")
        .arg(format!("{}meta", s.key_prefix()))
        .arg("schema")
        .arg(v)
        .query_async(&mut s.connection())
        .await
        .unwrap();
}

/// The finish log's entries, head first.
async fn finish_log(s: &RedisStorage) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(format!("{}finlog", s.key_prefix()))
        .arg(0)
        .arg(-1)
        .query_async(&mut s.connection())
        .await
        .unwrap()
}

/// Claims and completes every available job of `queue`.
async fn run_all(s: &RedisStorage, queue: &str) {
    while !run_some(s, queue, 100).await.is_empty() {}
}

async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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

/// `migrate` takes an instance of schema version 1 to the current one: the per-queue
/// `running` indexes of version 1 are dropped, the `finished` sorted set becomes the finish
/// log (and prunes as before), the rest is kept.
#[tokio::test]
async fn migrate_from_version_1() {
    let s = storage().await;
    let ids: Vec<_> = (0..3)
        .map(|i| NewJob::new("k", serde_json::json!(i)).with_queue("q"))
        .collect();
    s.enqueue(ids).await.unwrap();
    let claimed = run_some(&s, "q", 2).await;
    // Rewrite what version 2 wrote into version 1's layout.
    let p = s.key_prefix().to_string();
    let log = finish_log(&s).await;
    assert_eq!(log.len(), 2, "{log:?}");
    for e in &log {
        let (at, member) = e.split_once('|').unwrap();
        zadd(&s, "finished", at, member).await;
    }
    del(&s, "finlog").await;
    set_schema_version(&s, 1).await;
    zadd(&s, "s:q:running", 0, "0195e0a1-0000-7000-8000-000000000000").await;
    s.migrate().await.unwrap();
    let keys = keys_of(&s).await;
    assert!(!keys.contains(&format!("{p}s:q:running")), "{keys:?}");
    assert!(!keys.contains(&format!("{p}finished")), "{keys:?}");
    assert!(keys.contains(&format!("{p}s:q:available")), "{keys:?}");
    let migrated = finish_log(&s).await;
    let mut expected = log.clone();
    expected.sort();
    let mut got = migrated.clone();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(schema_version(&s).await, 3);
    // The migrated entries prune the jobs they name, and only those.
    let pruned = s
        .prune(Utc::now() + chrono::Duration::seconds(1), 100)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    for j in &claimed {
        assert!(s.get(j.id).await.unwrap().is_none());
    }
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].counts.get(&JobState::Available), Some(&1));
    s.destroy().await.unwrap();
}

/// The lease set's members, each with its deadline.
async fn lease_set(s: &RedisStorage) -> Vec<(String, f64)> {
    redis::cmd("ZRANGE")
        .arg(format!("{}leases", s.key_prefix()))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut s.connection())
        .await
        .unwrap()
}

/// `migrate` takes an instance of schema version 2, whose lease set names leases by bare job
/// id, to version 3 (`<id>|<token>`): running jobs keep their deadlines and go on to complete,
/// renew and be rescued; entries of jobs no longer running are dropped. A job hash in the
/// version 2 layout (kind, created_at, timeout_ms, tags and payload apart instead of packed in
/// `spec`) reads and claims as before.
#[tokio::test]
async fn migrate_from_version_2() {
    let s = storage().await;
    let p = s.key_prefix().to_string();
    let jobs: Vec<_> = (0..3)
        .map(|i| NewJob::new("k", serde_json::json!(i)).with_queue("q"))
        .collect();
    s.enqueue(jobs).await.unwrap();
    let old = NewJob::new("old-kind", serde_json::json!({"v": 2}))
        .with_queue("q2")
        .with_unique_key("u")
        .with_tag("t")
        .with_timeout(Duration::from_secs(9));
    s.enqueue(vec![old.clone()]).await.unwrap();
    let fresh = s.get(old.id).await.unwrap().unwrap();
    let mut c = s.connection();
    let key = format!("{p}job:{}", old.id);
    let () = redis::cmd("HDEL")
        .arg(&key)
        .arg("spec")
        .query_async(&mut c)
        .await
        .unwrap();
    let () = redis::cmd("HSET")
        .arg(&key)
        .arg(&[
            ("kind", "old-kind".to_string()),
            (
                "created_at",
                fresh.created_at.timestamp_millis().to_string(),
            ),
            ("timeout_ms", "9000".to_string()),
            ("tags", "[\"t\"]".to_string()),
            ("payload", "{\"v\":2}".to_string()),
        ])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(
        s.get(old.id).await.unwrap().unwrap(),
        fresh,
        "read in the old layout"
    );
    let claimed = s
        .claim(&req("q", 3, Duration::from_secs(30)))
        .await
        .unwrap();
    let [a, b, done] = &claimed[..] else {
        panic!("claimed {claimed:?}")
    };
    let applied = s.complete(&succeeded([done])).await.unwrap();
    assert_eq!(applied, vec![CompletionStatus::Applied]);
    let before = lease_set(&s).await;
    assert_eq!(before.len(), 2, "{before:?}");
    // Rewrite the lease set as version 2 wrote it, plus an entry for the finished job.
    del(&s, "leases").await;
    for (member, deadline) in &before {
        let id = member.split_once('|').unwrap().0;
        zadd(&s, "leases", deadline, id).await;
    }
    zadd(&s, "leases", 1, done.id.to_string()).await;
    set_schema_version(&s, 2).await;
    s.migrate().await.unwrap();
    let mut after = lease_set(&s).await;
    after.sort_by(|x, y| x.0.cmp(&y.0));
    let mut expected = before.clone();
    expected.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        after, expected,
        "each running job's lease, by id and token, same deadline"
    );
    for j in [a, b] {
        let member = format!("{}|{}", j.id, j.lease_token.unwrap());
        assert!(
            after.iter().any(|(m, _)| *m == member),
            "{member} in {after:?}"
        );
    }
    assert_eq!(schema_version(&s).await, 3);
    // Both migrated leases work: one completes, the other renews and is later rescued.
    let applied = s.complete(&succeeded([a])).await.unwrap();
    assert_eq!(applied, vec![CompletionStatus::Applied]);
    let held = s
        .heartbeat(
            &[LeaseRef {
                id: b.id,
                token: b.lease_token.unwrap(),
            }],
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![LeaseStatus::Held {
            cancel_requested: false
        }]
    );
    assert_eq!(lease_set(&s).await.len(), 1);
    let counts = s.counts().await.unwrap();
    assert_eq!(counts[0].counts.get(&JobState::Running), Some(&1));
    let report = s
        .rescue_expired(Utc::now() + chrono::Duration::seconds(60), 100)
        .await
        .unwrap();
    assert_eq!(report.retried, vec![b.id]);
    assert!(lease_set(&s).await.is_empty());
    // The job in the old layout claims with every field.
    let claimed = s
        .claim(&req("q2", 5, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let got = &claimed[0];
    assert_eq!(
        (
            &got.kind,
            &got.payload,
            &got.tags,
            got.timeout_ms,
            &got.unique_key
        ),
        (
            &fresh.kind,
            &fresh.payload,
            &fresh.tags,
            Some(9000),
            &Some("u".to_string())
        )
    );
    assert_eq!(got.created_at, fresh.created_at);
    assert_eq!(s.get(old.id).await.unwrap().unwrap(), *got);
    s.destroy().await.unwrap();
}

/// Stores a pending job hash by hand, as an older version could have left it (`fields` only),
/// in the ready set and available index of `queue`; returns its id.
async fn store_raw_job(s: &RedisStorage, queue: &str, fields: &[(&str, &str)]) -> uuid::Uuid {
    let p = s.key_prefix().to_string();
    let id = uuid::Uuid::now_v7();
    let run_at = Utc::now().timestamp_millis().to_string();
    let mut c = s.connection();
    let mut hset = redis::cmd("HSET");
    hset.arg(format!("{p}job:{id}"))
        .arg("id")
        .arg(id.to_string())
        .arg("run_at")
        .arg(&run_at);
    for (k, v) in fields {
        hset.arg(*k).arg(*v);
    }
    let () = hset.query_async(&mut c).await.unwrap();
    let () = redis::pipe()
        .cmd("ZADD")
        .arg(format!("{p}ready:{queue}"))
        .arg(0)
        .arg(format!("{run_at:0>13}|{id}"))
        .ignore()
        .cmd("ZADD")
        .arg(format!("{p}s:{queue}:available"))
        .arg(0)
        .arg(id.to_string())
        .ignore()
        .cmd("SADD")
        .arg(format!("{p}queues"))
        .arg(queue)
        .ignore()
        .query_async(&mut c)
        .await
        .unwrap();
    id
}

/// A job hash as the first versions wrote it (no `result`, `errors`, `tags`, `timeout_ms`,
/// `cancel_requested` or lease fields) claims with those as none, in the same batch as a
/// current one; a hash whose record does not decode is failed with the reason instead of
/// failing the batch, and nothing is left leased.
#[tokio::test]
async fn old_and_undecodable_job_hashes_in_a_claim() {
    let s = storage().await;
    let old = store_raw_job(
        &s,
        "q",
        &[
            ("kind", "k"),
            ("queue", "q"),
            ("payload", "{\"v\":1}"),
            ("priority", "0"),
            ("state", "available"),
            ("attempt", "0"),
            ("max_attempts", "3"),
            ("created_at", "1764400000000"),
        ],
    )
    .await;
    let broken = store_raw_job(
        &s,
        "q",
        &[
            ("spec", "k\x001764400000000\x00\x00[]\x00not json"),
            ("queue", "q"),
            ("priority", "0"),
            ("state", "available"),
            ("attempt", "0"),
            ("max_attempts", "3"),
        ],
    )
    .await;
    let current = NewJob::new("k", serde_json::json!(2)).with_queue("q");
    s.enqueue(vec![current.clone()]).await.unwrap();
    let claimed = s
        .claim(&req("q", 10, Duration::from_secs(30)))
        .await
        .unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|j| j.id).collect();
    ids.sort();
    let mut expected = vec![old, current.id];
    expected.sort();
    assert_eq!(ids, expected, "the undecodable job is not handed out");
    let o = claimed.iter().find(|j| j.id == old).unwrap();
    assert_eq!(o.payload, serde_json::json!({"v": 1}));
    assert_eq!(o.attempt, 1);
    assert!(o.result.is_none() && o.errors.is_empty() && o.tags.is_empty());
    assert!(o.timeout_ms.is_none() && o.unique_key.is_none() && !o.cancel_requested);
    assert_eq!(s.get(old).await.unwrap().unwrap(), *o);
    let b = redis::cmd("HMGET")
        .arg(format!("{}job:{broken}", s.key_prefix()))
        .arg("state")
        .arg("errors")
        .query_async::<(String, String)>(&mut s.connection())
        .await
        .unwrap();
    assert_eq!(b.0, "failed");
    assert!(
        b.1.contains("does not decode") && b.1.contains("payload"),
        "{}",
        b.1
    );
    let applied = s.complete(&succeeded(&claimed)).await.unwrap();
    assert!(applied.iter().all(|a| *a == CompletionStatus::Applied));
    assert!(lease_set(&s).await.is_empty(), "{:?}", lease_set(&s).await);
    s.destroy().await.unwrap();
}

/// Lease set entries left by an earlier lease of a job that runs again under a new one, or a
/// bare-id entry of schema 2 beside the current one (as a lost write or an older build could
/// leave), are dropped by the rescuer: the job's current lease is neither rescued nor counted
/// twice.
/// Blanks number fields of a job's hash, as a hand edit or a damaged record could.
async fn blank_fields(s: &RedisStorage, id: uuid::Uuid, fields: &[&str]) {
    let mut hset = redis::cmd("HSET");
    hset.arg(format!("{}job:{id}", s.key_prefix()));
    for f in fields {
        hset.arg(*f).arg("");
    }
    let () = hset.query_async(&mut s.connection()).await.unwrap();
}

/// A job hash whose number fields are blank is handled without a script error in a
/// completion batch, a rescue and a retry: the scripts write before they finish, and Redis
/// keeps a failing script's earlier writes, so an error would leave the other jobs of the
/// batch half-done (and a rescue failing on one hash would stop rescuing every job).
#[tokio::test]
async fn blank_number_fields_never_half_apply_a_batch() {
    let s = storage().await;
    let q = "q";
    let enqueue = |n: i32| {
        NewJob::new("k", serde_json::json!(n))
            .with_queue(q)
            .with_max_attempts(3)
    };
    s.enqueue(vec![enqueue(1), enqueue(2)]).await.unwrap();
    let claimed = s.claim(&req(q, 2, Duration::from_secs(30))).await.unwrap();
    let (a, b) = (&claimed[0], &claimed[1]);
    blank_fields(&s, b.id, &["max_attempts", "priority", "attempt"]).await;
    let done = s
        .complete(&[
            succeeded([a]).remove(0),
            Completion {
                id: b.id,
                token: b.lease_token.unwrap(),
                outcome: Outcome::Aborted {
                    error: err(1, "shutdown"),
                },
            },
        ])
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionStatus::Applied; 2]);
    assert_eq!(
        s.get(a.id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    assert_eq!(
        s.get(b.id).await.unwrap().unwrap().state,
        JobState::Dropped,
        "with no readable attempt limit, an aborted job is dropped, not requeued for ever"
    );
    assert!(lease_set(&s).await.is_empty(), "both leases are released");
    assert_eq!(
        finish_log(&s).await.len(),
        2,
        "both jobs are in the finish log"
    );

    // A rescue batch: the damaged job's lease expired first.
    s.enqueue(vec![enqueue(3)]).await.unwrap();
    let c = s.claim(&req(q, 1, Duration::from_millis(1))).await.unwrap();
    s.enqueue(vec![enqueue(4)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let d = s.claim(&req(q, 1, Duration::from_millis(1))).await.unwrap();
    blank_fields(
        &s,
        c[0].id,
        &["max_attempts", "priority", "attempt", "run_at"],
    )
    .await;
    let report = s
        .rescue_expired(Utc::now() + chrono::Duration::seconds(1), 100)
        .await
        .expect("a rescue does not fail on a damaged hash");
    assert_eq!(report.dropped, vec![c[0].id]);
    assert_eq!(report.retried, vec![d[0].id]);
    assert!(lease_set(&s).await.is_empty());
    let again = s.claim(&req(q, 10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        again.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![d[0].id],
        "the rescued job is claimable again"
    );

    // A retry of the damaged, dropped job runs it again.
    assert_eq!(s.retry(c[0].id).await.unwrap(), RetryOutcome::Requeued);
    let retried = s.claim(&req(q, 10, Duration::from_secs(30))).await.unwrap();
    assert_eq!(
        retried.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![c[0].id]
    );
}

#[tokio::test]
async fn a_stale_lease_entry_never_rescues_the_current_lease() {
    let s = storage().await;
    let job = NewJob::new("k", serde_json::json!({})).with_queue("q");
    s.enqueue(vec![job.clone()]).await.unwrap();
    let claimed = s
        .claim(&req("q", 1, Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let current = format!("{}|{}", job.id, claimed[0].lease_token.unwrap());
    let stale = format!("{}|{}", job.id, uuid::Uuid::new_v4());
    // Also a bare-id entry, as a process of schema 2 renewing the lease would write.
    zadd(&s, "leases", 1, &stale).await;
    zadd(&s, "leases", 2, job.id.to_string()).await;
    let running = |s: RedisStorage| async move {
        let counts = s.counts().await.unwrap();
        counts[0].counts.get(&JobState::Running).copied()
    };
    assert_eq!(
        running(s.clone()).await,
        Some(1),
        "the stale entry is not counted"
    );
    let report = s.rescue_expired(Utc::now(), 100).await.unwrap();
    assert!(
        report.retried.is_empty() && report.dropped.is_empty(),
        "{report:?}"
    );
    let leases: Vec<String> = lease_set(&s).await.into_iter().map(|(m, _)| m).collect();
    assert_eq!(leases, vec![current]);
    let r = s.get(job.id).await.unwrap().unwrap();
    assert_eq!(r.state, JobState::Running);
    assert_eq!(r.lease_token, claimed[0].lease_token);
    s.destroy().await.unwrap();
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

/// A long run does not grow Redis: after a prune, the instance's key count is back to its base.
#[tokio::test]
async fn prune_returns_key_count_to_base() {
    let s = storage().await;
    let base = keys_of(&s).await;
    assert_eq!(base.len(), 1, "only the schema marker: {base:?}");
    for round in 0..3 {
        let jobs: Vec<NewJob> = (0..300)
            .map(|i| {
                let j = NewJob::new("k", serde_json::json!({"i": i}))
                    .with_queue(format!("q{}", i % 4))
                    .with_max_attempts(1);
                if i % 10 == 0 {
                    j.with_unique_key(format!("u{round}-{i}"))
                } else {
                    j
                }
            })
            .collect();
        let cancel_me =
            NewJob::new("k", serde_json::json!({})).with_delay(Duration::from_secs(600));
        s.enqueue(jobs).await.unwrap();
        s.enqueue(vec![cancel_me.clone()]).await.unwrap();
        assert_eq!(
            s.cancel(cancel_me.id).await.unwrap(),
            CancelOutcome::Cancelled
        );
        let queues: Vec<String> = (0..4).map(|i| format!("q{i}")).collect();
        let mut n = 0;
        loop {
            let claimed = s
                .claim(&ClaimRequest {
                    queues: queues.clone(),
                    limit: 64,
                    worker_id: "w".into(),
                    lease: Duration::from_secs(30),
                })
                .await
                .unwrap();
            if claimed.is_empty() {
                break;
            }
            let completions: Vec<Completion> = claimed
                .iter()
                .map(|r| {
                    n += 1;
                    Completion {
                        id: r.id,
                        token: r.lease_token.unwrap(),
                        outcome: match n % 3 {
                            0 => Outcome::Succeeded {
                                result: Some(serde_json::json!(n)),
                            },
                            1 => Outcome::Failed {
                                error: err(1, "no"),
                            },
                            _ => Outcome::Aborted {
                                error: err(1, "shutdown"),
                            },
                        },
                    }
                })
                .collect();
            s.complete(&completions).await.unwrap();
        }
        assert_eq!(n, 300);
        assert!(keys_of(&s).await.len() > 300);
        let pruned = s
            .prune(Utc::now() + chrono::Duration::seconds(5), 10_000)
            .await
            .unwrap();
        assert_eq!(pruned, 301);
        assert_eq!(keys_of(&s).await, base, "round {round}");
        assert!(s.counts().await.unwrap().is_empty());
    }
}

/// Finished hashes expire by themselves (safety net); their index entries go at the next prune.
#[tokio::test]
async fn finished_jobs_expire_and_prune_cleans_their_indexes() {
    let s = storage_with(
        RedisConfig::new(url())
            .with_prefix(random_prefix())
            .with_finished_ttl(Duration::from_secs(1)),
    )
    .await;
    let base = keys_of(&s).await;
    let job = NewJob::new("k", serde_json::json!({}));
    s.enqueue(vec![job.clone()]).await.unwrap();
    assert_eq!(run_some(&s, "default", 1).await.len(), 1);
    let s2 = s.clone();
    wait_for(
        "the finished hash to expire",
        Duration::from_secs(5),
        move || {
            let s = s2.clone();
            async move { s.get(job.id).await.unwrap().is_none() }
        },
    )
    .await;
    assert!(s.list(&JobFilter::default()).await.unwrap().is_empty());
    assert_eq!(
        s.prune(Utc::now() + chrono::Duration::seconds(5), 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(keys_of(&s).await, base);
}

/// A claim whose reply never reached its worker (the process died right after) strands
/// nothing: the jobs sit in the lease set and the rescuer brings them back.
#[tokio::test]
async fn lost_claim_reply_is_rescued() {
    let s = storage().await;
    let job = NewJob::new("k", serde_json::json!({})).with_max_attempts(2);
    s.enqueue(vec![job.clone()]).await.unwrap();
    let lost = s
        .claim(&req("default", 5, Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(lost.len(), 1);
    drop(lost);
    assert!(s
        .claim(&req("default", 5, Duration::from_secs(5)))
        .await
        .unwrap()
        .is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = s.rescue_expired(Utc::now(), 100).await.unwrap();
    assert_eq!(report.retried, vec![job.id]);
    let again = s
        .claim(&req("default", 5, Duration::from_millis(100)))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = s.rescue_expired(Utc::now(), 100).await.unwrap();
    assert_eq!(report.dropped, vec![job.id]);
    let r = s.get(job.id).await.unwrap().unwrap();
    assert_eq!(r.state, JobState::Dropped);
    assert_eq!(r.errors.len(), 2);
    assert_eq!(r.errors[0].kind, "lease_expired");
    assert!(
        r.errors[0].message.contains("test-worker"),
        "{}",
        r.errors[0].message
    );
}

/// The id of the storage's connection (asked on it; it may be reconnecting after a kill).
async fn client_id(s: &RedisStorage) -> i64 {
    for _ in 0..100 {
        let id: redis::RedisResult<i64> = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut s.connection())
            .await;
        if let Ok(id) = id {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the storage's connection never came back");
}

/// Kills one client connection; returns how many were killed.
async fn kill_client(admin: &RedisStorage, id: i64) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin.connection())
        .await
        .unwrap_or(0)
}

/// The worker's connection is killed (`CLIENT KILL`) again and again while jobs run: every job
/// still completes exactly once, nothing is left running or leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connection_mid_job_loses_nothing() {
    let prefix = random_prefix();
    let worker_storage = storage_with(RedisConfig::new(url()).with_prefix(&prefix)).await;
    let admin = storage_with(RedisConfig::new(url()).with_prefix(&prefix)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let n = 200;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("slow", serde_json::json!({ "i": i })))
        .collect();
    admin.enqueue(jobs).await.unwrap();

    let counter = runs.clone();
    let registry = Registry::new().register_fn("slow", move |_payload, _ctx| {
        let counter = counter.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            counter.fetch_add(1, Ordering::SeqCst);
            switchyard_core::JobOutput::Ok(None)
        }
    });
    let handle = Worker::new(Arc::new(worker_storage.clone()), registry)
        .concurrency(8)
        .lease(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(100))
        .start();

    // Kill the worker's connection five times while jobs run.
    let mut killed = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = client_id(&worker_storage).await;
        killed += kill_client(&admin, id).await;
    }
    assert!(killed >= 1, "the worker's connection was killed");
    let a = admin.clone();
    wait_for(
        "every job to complete",
        Duration::from_secs(60),
        move || {
            let a = a.clone();
            async move {
                let c = a.counts().await.unwrap();
                c.len() == 1 && c[0].counts.get(&JobState::Completed) == Some(&(n as u64))
            }
        },
    )
    .await;
    handle.stop().await;
    // Nothing is running or leased; nothing ran twice unless its lease was lost.
    let leases: u64 = redis::cmd("ZCARD")
        .arg(format!("{}leases", admin.key_prefix()))
        .query_async(&mut admin.connection())
        .await
        .unwrap();
    assert_eq!(leases, 0);
    assert!(runs.load(Ordering::SeqCst) >= n);
    let jobs = admin
        .list(&JobFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), n);
    assert!(jobs.iter().all(|j| j.state == JobState::Completed));
    admin.destroy().await.expect("destroy");
    assert!(keys_of(&admin).await.is_empty(), "destroy left keys behind");
}

/// Enqueueing in one process wakes an idle worker in another (Pub/Sub), well before its
/// polling interval.
#[tokio::test]
async fn wakeups_cross_processes() {
    let prefix = random_prefix();
    let a = storage_with(RedisConfig::new(url()).with_prefix(&prefix)).await;
    let b = storage_with(RedisConfig::new(url()).with_prefix(&prefix)).await;
    assert!(b.capabilities().cross_process_wakeups);
    let mut sub = b.subscribe();
    // Let the listener subscribe (it notifies once when it does).
    sub.wait(Duration::from_millis(500)).await;
    let waiter = tokio::spawn(async move { sub.wait(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.enqueue(vec![NewJob::new("k", serde_json::json!({}))])
        .await
        .unwrap();
    assert!(waiter.await.unwrap(), "the other instance was woken");
}

/// A finished job run again by `retry` keeps its old finish log entry, which the pruner then
/// skips: the job is pruned only after it finishes again, by the new entry.
#[tokio::test]
async fn prune_skips_the_old_entry_of_a_retried_job() {
    let s = storage().await;
    let id = match s
        .enqueue(vec![NewJob::new("k", serde_json::json!(1)).with_queue("q")])
        .await
        .unwrap()[0]
    {
        EnqueueOutcome::Inserted(id) => id,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(run_some(&s, "q", 1).await.len(), 1);
    assert_eq!(s.retry(id).await.unwrap(), RetryOutcome::Requeued);
    assert_eq!(
        s.get(id).await.unwrap().expect("still there").state,
        JobState::Available
    );
    // Finished again, in the same state: a cutoff between the two finishes reaches the old
    // entry only, which names a finish the job no longer has, so nothing is pruned.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(run_some(&s, "q", 1).await.len(), 1);
    assert_eq!(s.prune(between, 100).await.unwrap(), 0);
    assert_eq!(
        s.get(id).await.unwrap().expect("still there").state,
        JobState::Completed
    );
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(s.prune(later, 100).await.unwrap(), 1);
    assert!(s.get(id).await.unwrap().is_none());
    s.destroy().await.unwrap();
}

/// Entries that delete nothing (a retried job's old entry) do not use up a prune's `limit`,
/// so pruning until a call deletes fewer than `limit` deletes everything due.
#[tokio::test]
async fn stale_entries_do_not_use_up_the_prune_limit() {
    let s = storage().await;
    let jobs: Vec<NewJob> = (0..4)
        .map(|i| NewJob::new("k", serde_json::json!(i)).with_queue("q"))
        .collect();
    let first = jobs[0].id;
    s.enqueue(jobs).await.unwrap();
    // One at a time, so the first job's entry heads the finish log.
    for _ in 0..4 {
        run_some(&s, "q", 1).await;
    }
    assert_eq!(s.retry(first).await.unwrap(), RetryOutcome::Requeued);
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(
        s.prune(later, 3).await.unwrap(),
        3,
        "three jobs past the stale entry"
    );
    assert_eq!(s.prune(later, 3).await.unwrap(), 0);
    let left = s
        .list(&JobFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, first);
    s.destroy().await.unwrap();
}

/// Prune forgets a queue left without jobs even while another queue runs a job, and never
/// forgets a queue that runs one.
#[tokio::test]
async fn prune_forgets_empty_queues_but_not_running_ones() {
    let s = storage().await;
    let jobs: Vec<NewJob> = ["a", "a", "b"]
        .iter()
        .map(|q| NewJob::new("k", serde_json::json!(1)).with_queue(*q))
        .collect();
    s.enqueue(jobs).await.unwrap();
    // Queue a: one job finished, one still running. Queue b: its only job finished.
    run_some(&s, "a", 1).await;
    let running = s
        .claim(&req("a", 1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    run_all(&s, "b").await;
    let later = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(s.prune(later, 100).await.unwrap(), 2);
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}queues", s.key_prefix()))
        .query_async(&mut s.connection())
        .await
        .unwrap();
    assert_eq!(
        queues,
        vec!["a".to_string()],
        "b is forgotten, a runs a job"
    );
    let counts = s.counts().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].queue, "a");
    assert_eq!(counts[0].counts.get(&JobState::Running), Some(&1));
    s.destroy().await.unwrap();
}

/// The runtime gives the Redis storage the configured expiry of finished jobs: the pruner's
/// retention plus a day, or `redis.finished_ttl_secs` when set.
#[tokio::test]
async fn runtime_sets_the_finished_ttl_from_configuration() {
    use figment::providers::{Format, Serialized, Toml};
    use figment::Figment;

    for (section, expected) in [
        ("[pruner]\nretention_secs = 3600\n", 3600 + 24 * 3600),
        (
            "[pruner]\nretention_secs = 3600\n[redis]\nfinished_ttl_secs = 7200\n",
            7200,
        ),
    ] {
        let prefix = random_prefix();
        let toml = format!("storage = \"{}\"\nprefix = \"{prefix}\"\n{section}", url());
        let config = switchyard::Config::from_figment(
            Figment::from(Serialized::defaults(switchyard::Config::default()))
                .merge(Toml::string(&toml)),
        )
        .unwrap();
        let sy = switchyard::Switchyard::connect(config)
            .await
            .expect("connect from configuration");
        let s = sy.storage().clone();
        let job = NewJob::new("k", serde_json::json!({}));
        s.enqueue(vec![job.clone()]).await.unwrap();
        assert_eq!(run_some(s.as_ref(), "default", 1).await.len(), 1);
        let conn = RedisStorage::connect(RedisConfig::new(url()).with_prefix(&prefix))
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{{{prefix}}}:job:{}", job.id))
            .query_async(&mut conn.connection())
            .await
            .unwrap();
        assert!(
            (expected - 60..=expected).contains(&ttl),
            "{section}: TTL {ttl}, expected about {expected}"
        );
        s.destroy().await.unwrap();
    }
}

/// A private Redis server (`redis-server` on a free loopback port, no persistence, in a temp
/// directory), killed on drop; for settings the shared test server must not have. Needs the
/// `redis-server` binary, which the test services install.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    async fn start(args: &[&str]) -> Self {
        // Another process may take the probed port before redis-server binds it: then it
        // exits at once, and a new port is tried.
        for _ in 0..5 {
            // At most 55535: a cluster node also binds its port + 10000.
            let port = loop {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                if port <= 55535 {
                    break port;
                }
            };
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(args)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start redis-server (installed with the test services)");
            // Owned from here, so a failed wait below still kills the process.
            let mut server = Self {
                child,
                url: format!("redis://127.0.0.1:{port}"),
                _dir: dir,
            };
            let client = redis::Client::open(server.url.as_str()).unwrap();
            let start = std::time::Instant::now();
            loop {
                if client.get_multiplexed_async_connection().await.is_ok() {
                    return server;
                }
                if let Some(status) = server.child.try_wait().unwrap() {
                    eprintln!("redis-server on port {port} exited ({status}); another port");
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server on port {port} did not start within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that may evict any key when full could delete pending jobs: the storage refuses
/// it, naming the setting and what is accepted; the queue (whose lost messages are published
/// again) and a `volatile-*` policy (only finished jobs' hashes have an expiry) are accepted.
#[tokio::test]
async fn a_server_that_evicts_any_key_is_refused() {
    let lru =
        PrivateRedis::start(&["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]).await;
    let e = RedisStorage::connect(RedisConfig::new(&lru.url))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message().contains("allkeys-lru")
            && e.message().contains("noeviction")
            && e.message().contains("key `storage`"),
        "{e}"
    );
    switchyard_redis::RedisQueue::connect(RedisConfig::new(&lru.url))
        .await
        .expect("the queue only warns");
    drop(lru);
    let volatile =
        PrivateRedis::start(&["--maxmemory", "100mb", "--maxmemory-policy", "volatile-lru"]).await;
    let s = RedisStorage::connect(RedisConfig::new(&volatile.url))
        .await
        .expect("volatile-* only warns");
    s.migrate().await.unwrap();
    let job = NewJob::new("k", serde_json::json!({}));
    s.enqueue(vec![job.clone()]).await.unwrap();
    assert!(s.get(job.id).await.unwrap().is_some());
}

/// A failover that turns the server into a replica while the connection stays open: calls
/// fail `Unavailable` (retryable) instead of an internal error, the storage replaces its
/// connection, and once a primary answers again (here: the replica promoted) jobs go through.
#[tokio::test]
async fn a_server_turned_replica_is_unavailable_then_heals() {
    let primary = PrivateRedis::start(&[]).await;
    let port = primary.url.rsplit(':').next().unwrap().to_string();
    let replica = PrivateRedis::start(&["--replicaof", "127.0.0.1", &port]).await;
    let s = RedisStorage::connect(RedisConfig::new(&replica.url).with_prefix(random_prefix()))
        .await
        .unwrap();
    let client_id = |s: RedisStorage| async move {
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async::<i64>(&mut s.connection())
            .await
            .unwrap()
    };
    let before = client_id(s.clone()).await;
    let e = s
        .enqueue(vec![NewJob::new("k", serde_json::json!({}))])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("read-only replica"), "{e}");
    let s2 = s.clone();
    wait_for("a new connection", Duration::from_secs(5), move || {
        let s = s2.clone();
        async move { client_id(s).await != before }
    })
    .await;
    let direct = redis::Client::open(replica.url.as_str()).unwrap();
    let () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut direct.get_multiplexed_async_connection().await.unwrap())
        .await
        .unwrap();
    s.migrate().await.unwrap();
    let job = NewJob::new("k", serde_json::json!({}));
    s.enqueue(vec![job.clone()]).await.unwrap();
    assert_eq!(
        s.get(job.id).await.unwrap().unwrap().state,
        JobState::Available
    );
}

/// Three private `redis-server`s made one Redis Cluster (`redis-cli --cluster create`), each
/// holding a third of the slots.
async fn private_cluster() -> Vec<PrivateRedis> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            PrivateRedis::start(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .await,
        );
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| n.url.trim_start_matches("redis://").to_string())
        .collect();
    let out = std::process::Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("run redis-cli (installed with the test services)");
    assert!(out.status.success(), "cluster create: {out:?}");
    for n in &nodes {
        let client = redis::Client::open(n.url.as_str()).unwrap();
        wait_for("the cluster to be up", Duration::from_secs(20), move || {
            let client = client.clone();
            async move {
                let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            }
        })
        .await;
    }
    nodes
}

/// On Redis Cluster the storage runs on the node that holds its prefix's slot; pointed at any
/// other node it refuses with a `Config` error naming the node to use.
#[tokio::test]
async fn on_a_cluster_the_node_holding_the_slot_runs_jobs_and_others_name_it() {
    let nodes = private_cluster().await;
    let prefix = random_prefix();
    let mut holder = None;
    let mut named = Vec::new();
    for n in &nodes {
        match RedisStorage::connect(RedisConfig::new(&n.url).with_prefix(&prefix)).await {
            Ok(s) => {
                assert!(holder.is_none(), "two nodes accepted the prefix");
                holder = Some((s, n.url.clone()));
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{e}");
                assert!(
                    e.message().contains("key `storage`") && e.message().contains(&prefix),
                    "{e}"
                );
                named.push(e.message().to_string());
            }
        }
    }
    let (s, url) = holder.expect("one node holds the slot");
    let addr = url.trim_start_matches("redis://");
    assert_eq!(named.len(), 2);
    for m in &named {
        assert!(m.contains(addr), "names the holder {addr}: {m}");
    }
    s.migrate().await.unwrap();
    let job = NewJob::new("k", serde_json::json!({"on": "cluster"}));
    s.enqueue(vec![job.clone()]).await.unwrap();
    let done = run_some(&s, "default", 10).await;
    assert_eq!(done.len(), 1);
    assert_eq!(
        s.get(job.id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    s.destroy().await.unwrap();
}

/// A server out of memory (`maxmemory` reached, `noeviction`) refuses whole calls: an
/// enqueue fails `Unavailable` with an error that says so and what to do, stores none of its
/// jobs, and works again once there is room.
#[tokio::test]
async fn a_server_out_of_memory_refuses_whole_calls_and_recovers() {
    let server =
        PrivateRedis::start(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]).await;
    let s = storage_with(RedisConfig::new(&server.url).with_prefix(random_prefix())).await;
    let batch = |n: usize| -> Vec<NewJob> {
        (0..n)
            .map(|i| NewJob::new("k", serde_json::json!({ "i": i, "pad": "x".repeat(1000) })))
            .collect()
    };
    let mut stored = 0u64;
    let err = loop {
        match s.enqueue(batch(200)).await {
            Ok(out) => stored += out.len() as u64,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "never ran out of memory");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message().contains("out of memory") && err.message().contains("maxmemory"),
        "{err}"
    );
    let counts = s.counts().await.unwrap();
    let available: u64 = counts
        .iter()
        .filter_map(|c| c.counts.get(&JobState::Available))
        .sum();
    assert_eq!(
        available, stored,
        "the refused call stored none of its jobs"
    );
    let mut c = s.connection();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    s.enqueue(batch(200)).await.unwrap();
    assert_eq!(run_some(&s, "default", 10).await.len(), 10);
}

/// While the storage is unreachable, a running attempt whose lease runs out without a renewal
/// is stopped (its cancellation token fires): by then the rescuer may have handed the job to
/// another worker. The server here is a private one, killed mid-job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_is_stopped_once_its_lease_runs_out_unrenewed() {
    let mut server = PrivateRedis::start(&[]).await;
    let s = storage_with(RedisConfig::new(server.url.clone()).with_prefix(random_prefix())).await;
    s.enqueue(vec![
        NewJob::new("long", serde_json::json!({})).with_queue("default")
    ])
    .await
    .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let (st, sp) = (started.clone(), stopped.clone());
    let registry = Registry::new().register_fn("long", move |_, ctx| {
        let (st, sp) = (st.clone(), sp.clone());
        async move {
            st.fetch_add(1, Ordering::SeqCst);
            ctx.cancelled().await;
            sp.fetch_add(1, Ordering::SeqCst);
            Err(switchyard::JobError::retryable("stopped"))
        }
    });
    let handle = Worker::new(Arc::new(s.clone()), registry)
        .lease(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(200))
        .shutdown_timeout(Duration::from_millis(300))
        .start();
    wait_for("the job to start", Duration::from_secs(20), || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    wait_for(
        "the attempt to be stopped after its lease ran out",
        Duration::from_secs(20),
        || async { stopped.load(Ordering::SeqCst) == 1 },
    )
    .await;
    handle.abort().await;
}
