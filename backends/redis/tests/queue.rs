//! The conformance suites with Redis as the external queue (`RedisQueue`): the queue-level
//! cases on Redis alone, then the end-to-end cases for SQLite, PostgreSQL and Redis storage ×
//! the Redis queue. Needs Redis at `SWITCHYARD_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`) and PostgreSQL at `SWITCHYARD_TEST_POSTGRES_URL`. Every case gets
//! its own random prefix, used by both the storage and the queue.

use std::sync::Arc;

use switchyard_conformance::fixtures::redis_url as url;
use switchyard_conformance::{random_prefix, Backend};
use switchyard_core::{Queue, Storage};
use switchyard_redis::{RedisConfig, RedisQueue};

async fn redis_queue(prefix: &str) -> Arc<dyn Queue> {
    Arc::new(
        RedisQueue::connect(RedisConfig::new(url()).with_prefix(prefix))
            .await
            .expect("connect to Redis"),
    )
}

async fn queue() -> Arc<dyn Queue> {
    redis_queue(&random_prefix()).await
}

/// A migrated SQLite storage with `prefix`, in a file named after it and `name`, and the
/// file's path.
async fn sqlite_storage(
    prefix: &str,
    name: &str,
) -> (switchyard_sqlite::SqliteStorage, std::path::PathBuf) {
    use switchyard_sqlite::{SqliteConfig, SqliteStorage};
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{prefix}{name}.db"));
    let storage = SqliteStorage::connect(
        SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix),
    )
    .await
    .expect("open sqlite");
    storage.migrate().await.expect("migrate");
    (storage, path)
}

switchyard_conformance::queue_conformance_suite!(queue);
// `redis_storage`, not `redis`: this file uses the `redis` crate.
switchyard_conformance::storage_matrix_suite!(
    redis_queue,
    modules = (sqlite, postgres, redis_storage)
);

/// The worker's queue connection is killed (`CLIENT KILL`) again and again while jobs run
/// through the Redis queue (SQLite storage): every job completes, and the queue ends empty —
/// nothing in flight is stranded (an ack lost with a connection only means a redelivery,
/// which the storage's claim fences and the worker acks).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_queue_connection_loses_nothing() {
    use std::time::Duration;
    use switchyard::Registry;
    use switchyard_conformance::harness::{start_worker, TestWorkerConfig};
    use switchyard_core::{JobState, NewJob};

    let prefix = random_prefix();
    let (storage, path) = sqlite_storage(&prefix, "redisq-kill").await;
    let queue = RedisQueue::connect(RedisConfig::new(url()).with_prefix(&prefix))
        .await
        .expect("connect to Redis");
    let admin = RedisQueue::connect(RedisConfig::new(url()).with_prefix(&prefix))
        .await
        .expect("connect to Redis");
    let b = Backend::with_queue(Arc::new(storage), Arc::new(queue.clone()));
    let n = 200;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("slow", serde_json::json!({ "i": i })).with_queue("q"))
        .collect();
    b.storage.enqueue(jobs).await.unwrap();
    let registry = Registry::new().register_fn("slow", |_, _| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(None)
    });
    let mut cfg = TestWorkerConfig::new("q");
    cfg.concurrency = 8;
    let worker = start_worker(&b, registry, cfg).await;

    let mut killed = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id: i64 = loop {
            match redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut queue.connection())
                .await
            {
                Ok(id) => break id,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        killed += redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async::<i64>(&mut admin.connection())
            .await
            .unwrap_or(0);
    }
    assert!(killed >= 1, "the queue's connection was killed");
    let storage = b.storage.clone();
    switchyard_conformance::wait_for("every job to complete", Duration::from_secs(60), || {
        let storage = storage.clone();
        async move {
            let c = storage.counts().await.unwrap();
            (c.len() == 1 && c[0].counts.get(&JobState::Completed) == Some(&(n as u64)))
                .then_some(())
        }
    })
    .await;
    // Acks lost with a killed connection come back after the 2 s lease, are fenced and acked.
    let p = admin.key_prefix().to_string();
    switchyard_conformance::wait_for("the queue to be empty", Duration::from_secs(30), || {
        let mut c = admin.connection();
        let p = p.clone();
        async move {
            let mut total = 0u64;
            for part in ["ready", "delayed", "inflight"] {
                let n: u64 = redis::cmd("ZCARD")
                    .arg(format!("{p}q:{part}"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                total += n;
            }
            (total == 0).then_some(())
        }
    })
    .await;
    worker.stop().await;
    b.queue.as_ref().unwrap().destroy().await.unwrap();
    b.storage.destroy().await.unwrap();
    let _ = std::fs::remove_file(path);
}

/// `queue = "redis://…"` from configuration alone: the runtime composes SQLite storage with
/// the Redis queue, and jobs enqueued through the client run through it. A bad queue URL
/// names the key `queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_runs_jobs_through_the_redis_queue_from_configuration() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use figment::providers::{Format, Serialized, Toml};
    use figment::Figment;
    use switchyard::Registry;
    use switchyard_core::{ErrorKind, JobState, NewJob};

    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = random_prefix();
    let path = dir.join(format!("{prefix}redisq-config.db"));
    let toml = format!(
        "storage = \"sqlite://{}\"\nqueue = \"{}\"\nprefix = \"{prefix}\"\n",
        path.display(),
        url()
    );
    let config = switchyard::Config::from_figment(
        Figment::from(Serialized::defaults(switchyard::Config::default()))
            .merge(Toml::string(&toml)),
    )
    .unwrap();
    let sy = switchyard::Switchyard::connect(config.clone())
        .await
        .expect("connect from configuration");
    assert_eq!(sy.queue().expect("an external queue").name(), "redis");
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let registry = Registry::new().register_fn("hello", move |_, _| {
        r.fetch_add(1, Ordering::SeqCst);
        async { Ok(None) }
    });
    let running = sy.start(registry).unwrap();
    let n = 50;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("hello", serde_json::json!({ "i": i })))
        .collect();
    sy.client().enqueue_raw(jobs).await.unwrap();
    let client = sy.client();
    switchyard_conformance::wait_for("every job to complete", Duration::from_secs(30), || {
        let client = client.clone();
        async move {
            let c = client.counts().await.unwrap();
            c.iter()
                .any(|q| q.counts.get(&JobState::Completed) == Some(&(n as u64)))
                .then_some(())
        }
    })
    .await;
    running.stop().await;
    assert_eq!(ran.load(Ordering::SeqCst), n);
    sy.queue().unwrap().destroy().await.unwrap();
    sy.storage().destroy().await.unwrap();
    let _ = std::fs::remove_file(&path);

    let mut bad = config;
    bad.queue = "redis://127.0.0.1:6379/not-a-db".into();
    let e = switchyard::connect::connect_queue(&bad).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains("key `queue`") && e.message().contains("redis://"),
        "{e}"
    );
}

/// An unreachable server is `Unavailable` (retryable) and named; a bad prefix is a
/// configuration error naming the key.
#[tokio::test]
async fn unreachable_server_and_bad_prefix_are_clear_errors() {
    use switchyard_core::ErrorKind;

    let e = RedisQueue::connect(RedisConfig::new("redis://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    assert!(e.message().contains("127.0.0.1:1"), "{e}");
    let e = RedisQueue::connect(RedisConfig::new(url()).with_prefix("a b"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("key `prefix`"), "{e}");
}

/// A dispatcher with a backlog of full batches stops at a graceful shutdown between batches,
/// instead of publishing the whole backlog first (which held up the process's exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_stops_between_batches_at_shutdown() {
    use std::time::Duration;
    use switchyard::dispatcher::{self, DispatcherConfig};
    use switchyard::Shutdown;
    use switchyard_core::NewJob;

    let prefix = random_prefix();
    let (storage, path) = sqlite_storage(&prefix, "redisq-dispatch").await;
    let n = 2000;
    storage
        .enqueue(
            (0..n)
                .map(|i| NewJob::new("k", serde_json::json!({ "i": i })).with_queue("q"))
                .collect(),
        )
        .await
        .unwrap();
    let queue = redis_queue(&prefix).await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(dispatcher::run(
        Arc::new(storage),
        queue.clone(),
        DispatcherConfig {
            batch: 1,
            ..DispatcherConfig::default()
        },
        shutdown.clone(),
    ));
    shutdown.graceful();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the dispatcher stops")
        .unwrap();
    let mut published = 0;
    loop {
        let got = queue
            .receive("q", 1000, Duration::ZERO, Duration::from_secs(30))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        published += got.len();
        queue.ack(&got).await.unwrap();
    }
    assert!(
        published < n,
        "the dispatcher published all {n} jobs one batch at a time after shutdown was requested"
    );
    queue.destroy().await.unwrap();
    let _ = std::fs::remove_file(path);
}
