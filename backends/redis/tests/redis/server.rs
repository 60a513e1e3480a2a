//! Server settings and topologies on private servers: an eviction policy that could delete
//! jobs, a server turned replica, a Redis Cluster, and a server out of memory.

use std::time::Duration;

use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{ErrorKind, JobState, NewJob, Storage};
use switchyard_redis::{RedisConfig, RedisStorage};

use crate::private_server::{private_cluster, PrivateRedis};
use crate::support::{run_some, storage_with};

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
        async move { (client_id(s).await != before).then_some(()) }
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
