//! Bounded memory: a prune returns the key count to its base, finished jobs expire, the pruner
//! skips stale finish log entries and forgets empty queues, and the runtime sets the expiry of
//! finished jobs from configuration.

use std::time::Duration;

use chrono::Utc;
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{
    CancelOutcome, ClaimRequest, Completion, EnqueueOutcome, JobFilter, JobState, NewJob, Outcome,
    RetryOutcome, Storage,
};
use switchyard_redis::{RedisConfig, RedisStorage};

use crate::support::{err, keys_of, req, run_some, storage, storage_with, url};

/// Claims and completes every available job of `queue`.
async fn run_all(s: &RedisStorage, queue: &str) {
    while !run_some(s, queue, 100).await.is_empty() {}
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
            async move { s.get(job.id).await.unwrap().is_none().then_some(()) }
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
