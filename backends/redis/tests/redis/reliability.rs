//! Reliability: a lost claim reply and stale lease entries, connections killed mid-job,
//! wake-ups across processes, and attempts stopped once their lease runs out unrenewed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use switchyard::{Registry, Worker};
use switchyard_conformance::{random_prefix, wait_for};
use switchyard_core::{JobFilter, JobState, NewJob, Storage};
use switchyard_redis::{RedisConfig, RedisStorage};

use crate::private_server::PrivateRedis;
use crate::support::{keys_of, lease_set, req, storage, storage_with, url, zadd};

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

/// Lease set entries left by an earlier lease of a job that runs again under a new one, or a
/// bare-id entry of schema 2 beside the current one (as a lost write or an older build could
/// leave), are dropped by the rescuer: the job's current lease is neither rescued nor counted
/// twice.
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
                (c.len() == 1 && c[0].counts.get(&JobState::Completed) == Some(&(n as u64)))
                    .then_some(())
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
        (started.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    wait_for(
        "the attempt to be stopped after its lease ran out",
        Duration::from_secs(20),
        || async { (stopped.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    handle.abort().await;
}
