//! PostgreSQL-specific behaviour beyond the shared conformance suite: transactional enqueue,
//! connections killed mid-job (`pg_terminate_backend`) with the listener coming back, table
//! prefixes isolating instances, polling alone with `listen = false`, concurrent migrations.
//!
//! Every test isolates itself with a random table prefix on the test server
//! (`SWITCHYARD_TEST_POSTGRES_URL`, default the loopback server, database `test`), and waits on
//! conditions with deadlines, never on wall-clock speed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use switchyard::{JobContext, Registry};
use switchyard_conformance::harness::{start_worker, Probe, TestWorkerConfig};
use switchyard_conformance::{random_prefix, wait_for, Backend};
use switchyard_core::{ClaimRequest, ErrorKind, JobState, NewJob, Storage};
use switchyard_postgres::{PostgresConfig, PostgresStorage, URL_SCHEMES};

const LONG: Duration = Duration::from_secs(30);

fn url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

async fn storage(prefix: &str, listen: bool) -> PostgresStorage {
    let config = PostgresConfig::new(url())
        .with_prefix(prefix)
        .with_max_connections(4)
        .with_listen(listen);
    let s = PostgresStorage::connect(config).await.expect("connect");
    s.migrate().await.expect("migrate");
    s
}

/// A pool of the test's own, like an application's, outside any storage.
async fn admin_pool() -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&url())
        .await
        .expect("connect admin pool")
}

async fn drop_tables(pool: &PgPool, prefix: &str) {
    for t in [
        "jobs",
        "leaders",
        "schedules",
        "migrations",
        "orders",
        "workflows",
        "workflow_deps",
        "queue_flow",
        "queue_starts",
    ] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}{t}"))
            .execute(pool)
            .await
            .expect("drop table");
    }
}

fn claim_req(queue: &str, limit: usize) -> ClaimRequest {
    ClaimRequest {
        queues: vec![queue.to_string()],
        limit,
        worker_id: "postgres-test".into(),
        lease: Duration::from_secs(30),
    }
}

async fn wait_listening(s: &PostgresStorage) {
    let s = s.clone();
    wait_for("the listener to subscribe", LONG, move || {
        let s = s.clone();
        async move { s.listener_connected().then_some(()) }
    })
    .await;
}

/// Whether `listener` is woken by an enqueue from another instance (which cannot notify
/// `listener`'s in-process hub, so only LISTEN/NOTIFY can). Retries until `deadline`, since a
/// notification sent while the listener is reconnecting is lost by design.
async fn woken_across_instances(listener: &PostgresStorage, other: &PostgresStorage) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < LONG {
        let mut sub = listener.subscribe();
        other
            .enqueue(vec![NewJob::new("ping", json!({})).with_queue("wake-probe")])
            .await
            .expect("enqueue from the other instance");
        if sub.wait(Duration::from_millis(500)).await {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_enqueue_exists_iff_the_transaction_commits() {
    let prefix = random_prefix();
    let s = storage(&prefix, true).await;
    assert!(s.capabilities().transactional_enqueue);
    let app = admin_pool().await;
    sqlx::query(&format!("CREATE TABLE {prefix}orders (id int PRIMARY KEY)"))
        .execute(&app)
        .await
        .unwrap();
    let q = "receipts";

    // Rolled back: the order and the job vanish together.
    let mut tx = app.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {prefix}orders (id) VALUES (1)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let out = s
        .enqueue_in(
            &mut tx,
            vec![NewJob::new("send_receipt", json!({"order": 1})).with_queue(q)],
        )
        .await
        .unwrap();
    let rolled_back = out[0].id();
    assert!(
        s.get(rolled_back).await.unwrap().is_none(),
        "an uncommitted job is invisible to others"
    );
    tx.rollback().await.unwrap();
    assert!(
        s.get(rolled_back).await.unwrap().is_none(),
        "a rolled-back transaction leaves no job"
    );
    assert!(s.claim(&claim_req(q, 10)).await.unwrap().is_empty());
    assert!(s.counts().await.unwrap().is_empty(), "no row at all");

    // Committed: the job appears at commit, and the commit wakes listening workers.
    wait_listening(&s).await;
    let mut sub = s.subscribe();
    let mut tx = app.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {prefix}orders (id) VALUES (2)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let out = s
        .enqueue_in(
            &mut tx,
            vec![NewJob::new("send_receipt", json!({"order": 2})).with_queue(q)],
        )
        .await
        .unwrap();
    let committed = out[0].id();
    assert!(s.get(committed).await.unwrap().is_none());
    tx.commit().await.unwrap();
    assert!(
        sub.wait(LONG).await,
        "the commit's NOTIFY wakes the listener"
    );
    let job = s
        .get(committed)
        .await
        .unwrap()
        .expect("committed job exists");
    assert_eq!(job.state, JobState::Available);
    let claimed = s.claim(&claim_req(q, 10)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, committed);

    // Validation applies inside a transaction too, and fails before touching it.
    let mut tx = app.begin().await.unwrap();
    let err = s
        .enqueue_in(&mut tx, vec![NewJob::new("", json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    tx.rollback().await.unwrap();
    drop(s);
    drop_tables(&app, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_connections_lose_no_job_and_the_listener_comes_back() {
    let prefix = random_prefix();
    let s = storage(&prefix, true).await;
    wait_listening(&s).await;
    assert_eq!(s.listener_connects(), 1);
    let admin = admin_pool().await;
    let b = Backend::storage_only(Arc::new(s.clone()));
    let q = "fragile";
    let probe = Probe::default();
    let p = probe.clone();
    let reg = Registry::new().register_fn("slow", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(None)
        }
    });
    let mut cfg = TestWorkerConfig::new(q);
    cfg.concurrency = 8;
    let worker = start_worker(&b, reg, cfg).await;
    let jobs: Vec<NewJob> = (0..60)
        .map(|i| NewJob::new("slow", json!({ "i": i })).with_queue(q))
        .collect();
    let ids: Vec<_> = s
        .enqueue(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id())
        .collect();

    // Mid-job: some attempts are running when every connection of this instance (pool and
    // listener) is terminated, twice, a little apart.
    let pr = probe.clone();
    wait_for("jobs to be running", LONG, move || {
        let pr = pr.clone();
        async move { (pr.count() >= 8).then_some(()) }
    })
    .await;
    let kill = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name IN ('switchyard {prefix}', 'switchyard-listen {prefix}')"
    );
    let mut killed = 0i64;
    for _ in 0..2 {
        killed += sqlx::query_scalar::<_, i64>(&kill)
            .fetch_one(&admin)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        killed >= 2,
        "terminated the pool's and the listener's connections"
    );

    // Nothing stuck, nothing lost: every job completes (at least once, as promised).
    let st: Arc<dyn Storage> = b.storage.clone();
    wait_for(
        "every job to complete",
        Duration::from_secs(60),
        move || {
            let st = st.clone();
            async move {
                let counts = st.counts().await.ok()?;
                let c = counts.iter().find(|c| c.queue == q)?;
                (c.counts.get(&JobState::Completed).copied() == Some(60)).then_some(())
            }
        },
    )
    .await;
    for id in &ids {
        let job = s.get(*id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Completed, "job {id}");
        assert!(job.lease_token.is_none());
    }
    let per_job = probe.per_job();
    assert_eq!(per_job.len(), 60, "every job ran");
    worker.stop().await;

    // The listener reconnected by itself, and LISTEN/NOTIFY works again across instances.
    wait_listening(&s).await;
    assert!(s.listener_connects() >= 2, "the listener reconnected");
    let other = storage(&prefix, false).await;
    assert!(
        woken_across_instances(&s, &other).await,
        "a NOTIFY from another instance wakes this one after the reconnection"
    );
    drop((s, other, b));
    drop_tables(&admin, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefixes_isolate_instances_in_one_database() {
    let (pa, pb) = (random_prefix(), random_prefix());
    let a = storage(&pa, true).await;
    let b = storage(&pb, true).await;
    assert_ne!(a.channel(), b.channel());
    let q = "shared";
    let in_a: Vec<NewJob> = (0..3)
        .map(|i| {
            NewJob::new("k", json!({ "i": i }))
                .with_queue(q)
                .with_unique_key("same")
        })
        .collect();
    let out_a = a.enqueue(in_a).await.unwrap();
    let out_b = b
        .enqueue(vec![
            NewJob::new("k", json!({}))
                .with_queue(q)
                .with_unique_key("same"),
            NewJob::new("k", json!({})).with_queue(q),
        ])
        .await
        .unwrap();
    // The unique key is per instance: b's first job is not a duplicate of a's.
    assert!(matches!(
        out_b[0],
        switchyard_core::EnqueueOutcome::Inserted(_)
    ));
    assert_eq!(out_a[1].id(), out_a[0].id(), "duplicates within a");
    let claimed_b = b.claim(&claim_req(q, 10)).await.unwrap();
    let ids_b: Vec<_> = out_b.iter().map(|o| o.id()).collect();
    assert_eq!(claimed_b.len(), 2);
    assert!(claimed_b.iter().all(|j| ids_b.contains(&j.id)));
    assert!(a.get(ids_b[0]).await.unwrap().is_none());
    let counts_a = a.counts().await.unwrap();
    assert_eq!(counts_a.len(), 1);
    assert_eq!(counts_a[0].counts.get(&JobState::Available), Some(&1));
    assert!(a
        .try_lead("leader", "x", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(
        b.try_lead("leader", "y", Duration::from_secs(30))
            .await
            .unwrap(),
        "leadership is per instance"
    );
    let admin = admin_pool().await;
    drop((a, b));
    drop_tables(&admin, &pa).await;
    drop_tables(&admin, &pb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listen_false_runs_on_polling_alone() {
    let prefix = random_prefix();
    let s = storage(&prefix, false).await;
    assert!(!s.capabilities().cross_process_wakeups);
    let admin = admin_pool().await;
    let listeners: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("switchyard-listen {prefix}"))
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!(listeners, 0, "no LISTEN connection with listen = false");
    assert!(!s.listener_connected());

    let b = Backend::storage_only(Arc::new(s.clone()));
    let q = "polled";
    let probe = Probe::default();
    let p = probe.clone();
    let reg = Registry::new().register_fn("k", move |_, ctx: JobContext| {
        let p = p.clone();
        async move {
            p.record(ctx.id, ctx.attempt);
            Ok(None)
        }
    });
    let worker = start_worker(&b, reg, TestWorkerConfig::new(q)).await;
    // Enqueued by another instance: only polling can find these.
    let other = storage(&prefix, false).await;
    other
        .enqueue(
            (0..20)
                .map(|i| NewJob::new("k", json!({ "i": i })).with_queue(q))
                .collect(),
        )
        .await
        .unwrap();
    let pr = probe.clone();
    wait_for("every job to run", LONG, move || {
        let pr = pr.clone();
        async move { (pr.per_job().len() == 20).then_some(()) }
    })
    .await;
    worker.stop().await;
    drop((s, other, b));
    drop_tables(&admin, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_safe_to_run_concurrently() {
    let prefix = random_prefix();
    let config = PostgresConfig::new(url())
        .with_prefix(&prefix)
        .with_max_connections(2)
        .with_listen(false);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let s = PostgresStorage::connect(config).await?;
            s.migrate().await?;
            s.migrate().await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("concurrent migrate");
    }
    let admin = admin_pool().await;
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {prefix}migrations ORDER BY version"
    ))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    drop_tables(&admin, &prefix).await;
}

#[tokio::test]
async fn bad_urls_are_config_errors_naming_the_key_and_forms() {
    assert_eq!(URL_SCHEMES, &["postgres", "postgresql"]);
    for bad in [
        "mysql://localhost/db",
        "postgres:/missing-slash",
        "postgres://user:hunter2@[::1/db",
    ] {
        let err = PostgresStorage::connect(PostgresConfig::new(bad))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}: {err}");
        assert!(err.message().contains("key `storage`"), "{err}");
        assert!(err.message().contains("postgres://"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "no password in {err}");
    }
    let err = PostgresStorage::connect(PostgresConfig::new(url()).with_prefix("no-dashes"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("prefix"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_server_is_unavailable() {
    let err = PostgresStorage::connect(
        PostgresConfig::new("postgres://postgres@127.0.0.1:1/test?sslmode=disable")
            .with_acquire_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
}

/// Heartbeats and completions over overlapping jobs, sent in opposite id orders at once (as
/// workers whose claims interleave do under load), never deadlock: every multi-row update
/// locks its rows in id order. Without that, two such statements each hold a row the other
/// waits for, and PostgreSQL aborts one with "deadlock detected" after `deadlock_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeats_and_completions_in_opposite_orders_never_deadlock() {
    use switchyard_core::{Completion, LeaseRef, Outcome};

    let prefix = random_prefix();
    let config = PostgresConfig::new(url())
        .with_prefix(&prefix)
        .with_max_connections(8)
        .with_listen(false);
    let s = PostgresStorage::connect(config).await.expect("connect");
    s.migrate().await.expect("migrate");
    let jobs = 300;
    let mut errors: Vec<String> = Vec::new();
    for round in 0..4 {
        s.enqueue(
            (0..jobs)
                .map(|i| NewJob::new("k", json!({ "round": round, "i": i })))
                .collect(),
        )
        .await
        .unwrap();
        let mut leases: Vec<LeaseRef> = s
            .claim(&claim_req("default", jobs))
            .await
            .unwrap()
            .iter()
            .map(|j| LeaseRef {
                id: j.id,
                token: j.lease_token.unwrap(),
            })
            .collect();
        assert_eq!(leases.len(), jobs, "round {round}");
        leases.sort_by_key(|l| l.id);
        let ascending = leases.clone();
        let descending: Vec<LeaseRef> = leases.iter().rev().copied().collect();
        let done = |ls: &[LeaseRef]| -> Vec<Completion> {
            ls.iter()
                .map(|l| Completion {
                    id: l.id,
                    token: l.token,
                    outcome: Outcome::Succeeded { result: None },
                })
                .collect()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for order in [&ascending, &descending, &ascending, &descending] {
            let (s, order) = (s.clone(), order.clone());
            tasks.spawn(async move {
                let mut errors = Vec::new();
                for _ in 0..6 {
                    if let Err(e) = s.heartbeat(&order, Duration::from_secs(30)).await {
                        errors.push(format!("heartbeat: {e}"));
                    }
                }
                errors
            });
        }
        // Two completers over the same jobs in opposite orders, in batches (one of each pair
        // of completions is stale, as when a rescued job's old attempt reports late).
        for order in [done(&ascending), done(&descending)] {
            let s = s.clone();
            tasks.spawn(async move {
                let mut errors = Vec::new();
                for batch in order.chunks(100) {
                    if let Err(e) = s.complete(batch).await {
                        errors.push(format!("complete: {e}"));
                    }
                }
                errors
            });
        }
        while let Some(r) = tasks.join_next().await {
            errors.extend(r.unwrap());
        }
        let counts = s.counts().await.unwrap();
        let completed: u64 = counts
            .iter()
            .filter_map(|c| c.counts.get(&JobState::Completed))
            .sum();
        if errors.is_empty() {
            assert_eq!(completed, (jobs * (round + 1)) as u64, "round {round}");
        }
    }
    assert!(
        errors.is_empty(),
        "{} statements failed: {errors:#?}",
        errors.len()
    );
    let pool = admin_pool().await;
    drop_tables(&pool, &prefix).await;
}
