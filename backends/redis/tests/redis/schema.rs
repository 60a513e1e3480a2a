//! Schema migrations and damaged records: `migrate` from versions 1 and 2, job hashes in
//! older layouts or that do not decode, and blank number fields in a batch.

use std::time::Duration;

use chrono::Utc;
use switchyard_core::{
    Completion, CompletionStatus, JobState, LeaseRef, LeaseStatus, NewJob, Outcome, RetryOutcome,
    Storage,
};
use switchyard_redis::RedisStorage;

use crate::support::{err, keys_of, lease_set, req, run_some, storage, succeeded, zadd};

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
