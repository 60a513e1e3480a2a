//! Helpers shared by the Redis test themes: connecting to the test server with a random
//! prefix, reading the instance's keys and lease set, claim requests, errors and completions,
//! and writing raw sorted-set entries.

use std::time::Duration;

use chrono::Utc;
use switchyard_conformance::random_prefix;
use switchyard_core::{AttemptError, ClaimRequest, Completion, CompletionStatus, Outcome, Storage};
use switchyard_redis::{RedisConfig, RedisStorage};

pub fn url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub async fn storage_with(config: RedisConfig) -> RedisStorage {
    let s = RedisStorage::connect(config)
        .await
        .expect("connect to Redis");
    s.migrate().await.expect("migrate");
    s
}

pub async fn storage() -> RedisStorage {
    storage_with(RedisConfig::new(url()).with_prefix(random_prefix())).await
}

/// Every key of this instance (SCAN, so it never blocks the server).
pub async fn keys_of(s: &RedisStorage) -> Vec<String> {
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

pub fn req(queue: &str, limit: usize, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        worker_id: "test-worker".into(),
        lease,
    }
}

pub fn err(attempt: u32, msg: &str) -> AttemptError {
    AttemptError {
        attempt,
        at: Utc::now(),
        kind: "error".into(),
        message: msg.into(),
    }
}

/// A success without result for each of `claimed`.
pub fn succeeded<'a>(
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
pub async fn run_some(
    s: &dyn Storage,
    queue: &str,
    limit: usize,
) -> Vec<switchyard_core::JobRecord> {
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
pub async fn zadd(
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

/// The lease set's members, each with its deadline.
pub async fn lease_set(s: &RedisStorage) -> Vec<(String, f64)> {
    redis::cmd("ZRANGE")
        .arg(format!("{}leases", s.key_prefix()))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut s.connection())
        .await
        .unwrap()
}
