//! Transactional enqueue on the `Client` (a typed job written inside the user's own sqlx
//! transaction exists if and only if it commits) and waiting for a job's outcome (`wait`,
//! `result`), on a `Switchyard` built from a config URL: PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`,
//! default the loopback server), SQLite files in a temporary directory, and Redis
//! (`SWITCHYARD_TEST_REDIS_URL`) for the storage that cannot join a transaction.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard::sqlx::{self, Connection};
use switchyard::{
    Config, EnqueueOptions, ErrorKind, Job, JobContext, JobError, JobId, JobState, NewJob,
    Registry, Switchyard,
};

/// The test's job: its output names the order, so a decoded result proves which job ran.
#[derive(Serialize, Deserialize)]
struct Receipt {
    order: i64,
}

impl Job for Receipt {
    const KIND: &'static str = "receipt";
    type Output = String;
    async fn run(self, _ctx: JobContext) -> Result<String, JobError> {
        Ok(format!("receipt for order {}", self.order))
    }
}

/// The same kind with another output type: its result does not decode.
#[derive(Serialize, Deserialize)]
struct ReceiptAsNumber {
    order: i64,
}

impl Job for ReceiptAsNumber {
    const KIND: &'static str = "receipt";
    type Output = u64;
    async fn run(self, _ctx: JobContext) -> Result<u64, JobError> {
        Ok(self.order as u64)
    }
}

/// A job that fails for good at its first attempt.
#[derive(Serialize, Deserialize)]
struct Refuse;

impl Job for Refuse {
    const KIND: &'static str = "refuse";
    type Output = ();
    async fn run(self, _ctx: JobContext) -> Result<(), JobError> {
        Err(JobError::permanent("refused on purpose"))
    }
}

fn registry() -> Registry {
    Registry::new().register::<Receipt>().register::<Refuse>()
}

/// A random prefix such as `t3kq9z0a_`, so each case has its own tables and keys.
fn random_prefix() -> String {
    let mut s = String::from("t");
    for _ in 0..8 {
        s.push(fastrand::alphanumeric().to_ascii_lowercase());
    }
    s.push('_');
    s
}

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A config whose workers poll only every 30 s: a job that runs within the tests' 10 s waits
/// was found through a wake-up, not a poll.
fn config(storage: String, prefix: &str) -> Config {
    let mut c = Config {
        storage,
        prefix: prefix.to_string(),
        ..Config::default()
    };
    c.worker.poll_interval_ms = 30_000;
    c.dispatcher.poll_interval_ms = 30_000;
    c
}

/// Connects (and migrates) from `c`; for PostgreSQL, also waits until the wake-up listener is
/// subscribed, so a `NOTIFY` at commit is not missed.
async fn connect(c: Config) -> Switchyard {
    let sy = Switchyard::connect(c).await.expect("connect from config");
    if let Some(pg) = sy
        .storage()
        .as_any()
        .and_then(|a| a.downcast_ref::<switchyard::postgres::PostgresStorage>())
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pg.listener_connected() {
            assert!(
                Instant::now() < deadline,
                "the LISTEN task did not subscribe in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sy
}

const WAIT: Duration = Duration::from_secs(10);

// ---- PostgreSQL ----

async fn postgres(prefix: &str) -> Switchyard {
    let mut c = config(postgres_url(), prefix);
    c.postgres.max_connections = 4;
    connect(c).await
}

async fn drop_postgres(sy: &Switchyard, prefix: &str) {
    let pool = sy.client().postgres_pool().unwrap();
    sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}orders"))
        .execute(&pool)
        .await
        .unwrap();
    sy.storage().destroy().await.unwrap();
}

#[tokio::test]
async fn postgres_commit_makes_the_job_exist_and_run_and_rollback_leaves_nothing() {
    let prefix = random_prefix();
    let sy = postgres(&prefix).await;
    let client = sy.client();
    let pool = client
        .postgres_pool()
        .expect("a postgres storage has a pool");
    sqlx::query(&format!(
        "CREATE TABLE {prefix}orders (id bigint PRIMARY KEY)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let running = sy.start(registry()).expect("the registry needs no state");

    // Rollback: neither the order nor the job exists afterwards.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {prefix}orders (id) VALUES (1)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = client
        .enqueue_tx(&mut tx, Receipt { order: 1 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(client.get(rolled_back).await.unwrap(), None);

    // Commit: invisible to others until the commit, then it runs (woken by the NOTIFY that
    // PostgreSQL delivers at commit; the workers' poll is 30 s away).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("INSERT INTO {prefix}orders (id) VALUES (2)"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = client
        .enqueue_tx(&mut tx, Receipt { order: 2 })
        .await
        .unwrap();
    assert_eq!(
        client.get(id).await.unwrap(),
        None,
        "an uncommitted job is visible outside its transaction"
    );
    tx.commit().await.unwrap();
    let done = client.wait(id, WAIT).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        client.result::<Receipt>(id).await.unwrap(),
        "receipt for order 2"
    );
    assert_eq!(
        client.get(rolled_back).await.unwrap(),
        None,
        "the rolled-back job appeared"
    );
    running.stop().await;
    drop_postgres(&sy, &prefix).await;
}

#[tokio::test]
async fn postgres_enqueue_tx_on_the_applications_own_pool_with_unique_keys_and_many() {
    let prefix = random_prefix();
    let sy = postgres(&prefix).await;
    let client = sy.client();
    // The application's own pool on the same database.
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let opts = EnqueueOptions::new().unique_key("order-7").queue("default");
    let first = client
        .enqueue_tx_with(&mut tx, Receipt { order: 7 }, opts.clone())
        .await
        .unwrap();
    let again = client
        .enqueue_tx_with(&mut tx, Receipt { order: 7 }, opts.clone())
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "the unique key is held inside the transaction"
    );
    let many = client
        .enqueue_many_tx(
            &mut tx,
            (10..13).map(|order| Receipt { order }),
            EnqueueOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(many.len(), 3);
    // Validation as in `enqueue`: the error names the problem, and the caller rolls back.
    let err = client
        .enqueue_raw_tx(&mut tx, vec![NewJob::new("", serde_json::json!({}))])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    tx.commit().await.unwrap();

    for id in many.iter().chain([&first]) {
        let job = client
            .get(*id)
            .await
            .unwrap()
            .expect("committed job exists");
        assert_eq!(job.state, JobState::Available);
    }
    // After the commit the key is still held by the live job.
    let outside = client
        .enqueue_with(Receipt { order: 7 }, opts)
        .await
        .unwrap();
    assert_eq!(outside, first);
    // A plain connection (autocommit) is accepted too.
    let mut conn = pool.acquire().await.unwrap();
    let plain = client
        .enqueue_tx(&mut *conn, Receipt { order: 20 })
        .await
        .unwrap();
    assert!(client.get(plain).await.unwrap().is_some());
    drop(conn);
    pool.close().await;
    drop_postgres(&sy, &prefix).await;
}

/// With an external queue the committed job goes out through the outbox: the dispatcher,
/// woken by the commit's NOTIFY, publishes it to the Redis queue and a worker runs it.
#[tokio::test]
async fn postgres_with_an_external_queue_delivers_a_committed_job() {
    let prefix = random_prefix();
    let mut c = config(postgres_url(), &prefix);
    c.queue = redis_url();
    c.postgres.max_connections = 4;
    let sy = connect(c).await;
    assert!(sy.queue().is_some());
    let client = sy.client();
    let running = sy.start(registry()).expect("the registry needs no state");
    let pool = client.postgres_pool().unwrap();

    let mut tx = pool.begin().await.unwrap();
    let rolled_back = client
        .enqueue_tx(&mut tx, Receipt { order: 30 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let id = client
        .enqueue_tx(&mut tx, Receipt { order: 31 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let out = client.wait_result::<Receipt>(id, WAIT).await.unwrap();
    assert_eq!(out, "receipt for order 31");
    assert_eq!(client.get(rolled_back).await.unwrap(), None);
    running.stop().await;
    drop_postgres(&sy, &prefix).await;
}

// ---- SQLite ----

async fn sqlite(dir: &tempfile::TempDir, prefix: &str) -> (Switchyard, String) {
    let url = format!("sqlite://{}/tx.db", dir.path().display());
    (connect(config(url.clone(), prefix)).await, url)
}

#[tokio::test]
async fn sqlite_commit_makes_the_job_exist_and_run_and_rollback_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = random_prefix();
    let (sy, _) = sqlite(&dir, &prefix).await;
    let client = sy.client();
    let pool = client.sqlite_pool().expect("a sqlite storage has a pool");
    assert!(sy.storage().capabilities().transactional_enqueue);
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let running = sy.start(registry()).expect("the registry needs no state");

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = client
        .enqueue_tx(&mut tx, Receipt { order: 1 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(client.get(rolled_back).await.unwrap(), None);

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let id = client
        .enqueue_tx(&mut tx, Receipt { order: 2 })
        .await
        .unwrap();
    // Readers see the last commit only.
    assert_eq!(client.get(id).await.unwrap(), None);
    tx.commit().await.unwrap();
    // Woken at the insert, the workers' claim waited for the commit (their poll is 30 s away).
    let done = client.wait(id, WAIT).await.unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        client.result::<Receipt>(id).await.unwrap(),
        "receipt for order 2"
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 1, "only the committed order is kept");
    assert_eq!(client.get(rolled_back).await.unwrap(), None);
    running.stop().await;
}

#[tokio::test]
async fn sqlite_enqueue_tx_on_the_applications_own_pool() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = random_prefix();
    let (sy, url) = sqlite(&dir, &prefix).await;
    let client = sy.client();
    let running = sy.start(registry()).expect("the registry needs no state");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();

    // `BEGIN IMMEDIATE` takes the write lock up front, as the docs advise for a second
    // connection.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let opts = EnqueueOptions::new().unique_key("order-5");
    let id = client
        .enqueue_tx_with(&mut tx, Receipt { order: 5 }, opts.clone())
        .await
        .unwrap();
    let again = client
        .enqueue_tx_with(&mut tx, Receipt { order: 5 }, opts)
        .await
        .unwrap();
    assert_eq!(id, again, "the unique key is held inside the transaction");
    tx.commit().await.unwrap();
    assert_eq!(
        client.wait_result::<Receipt>(id, WAIT).await.unwrap(),
        "receipt for order 5"
    );

    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let gone = client
        .enqueue_tx(&mut tx, Receipt { order: 6 })
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(client.get(gone).await.unwrap(), None);
    running.stop().await;
    pool.close().await;
}

/// A deferred transaction on a second connection that read before the enqueue cannot upgrade
/// to a write once the storage wrote; the error says how to open the transaction instead.
#[tokio::test]
async fn sqlite_a_deferred_transaction_that_read_first_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = random_prefix();
    let (sy, url) = sqlite(&dir, &prefix).await;
    let client = sy.client();
    client.enqueue(Receipt { order: 1 }).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let _: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {prefix}jobs"))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    // Another connection (the storage's writer) commits after this snapshot began.
    client.enqueue(Receipt { order: 2 }).await.unwrap();
    let err = client
        .enqueue_tx(&mut tx, Receipt { order: 3 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("BEGIN IMMEDIATE"), "{err}");
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn a_transaction_of_the_other_sql_backend_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (sy, _) = sqlite(&dir, &random_prefix()).await;
    let client = sy.client();
    let pg = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let mut tx = pg.begin().await.unwrap();
    let err = client
        .enqueue_tx(&mut tx, Receipt { order: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("postgres connection") && msg.contains("`sqlite`"),
        "{msg}"
    );
    assert!(msg.contains("sqlite_pool"), "{msg}");
    let err = client.postgres_pool().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("`sqlite`"), "{err}");
}

// ---- Redis: no transaction to join ----

#[tokio::test]
async fn redis_storage_refuses_transactional_enqueue_naming_itself() {
    let prefix = random_prefix();
    let sy = connect(config(redis_url(), &prefix)).await;
    let client = sy.client();
    assert!(!sy.storage().capabilities().transactional_enqueue);
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let err = client
        .enqueue_tx(&mut tx, Receipt { order: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`redis` storage"), "{msg}");
    assert!(
        msg.contains("postgres") && msg.contains("sqlite"),
        "names what supports it: {msg}"
    );
    for err in [
        client.postgres_pool().unwrap_err(),
        client.sqlite_pool().unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("`redis`"), "{err}");
    }
    sy.storage().destroy().await.unwrap();
}

// ---- wait and result ----

#[tokio::test]
async fn wait_times_out_naming_the_job_and_its_state_and_result_is_not_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (sy, _) = sqlite(&dir, &random_prefix()).await;
    let client = sy.client();
    let id = client.enqueue(Receipt { order: 1 }).await.unwrap();

    let started = Instant::now();
    let err = client
        .wait(id, Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&id.to_string()) && msg.contains("`available`"),
        "{msg}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let err = client.result::<Receipt>(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFinished, "{err}");
    assert!(err.to_string().contains("`available`"), "{err}");
    // Asking with another job type names both kinds.
    let err = client.result::<Refuse>(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains("`receipt`") && err.to_string().contains("`refuse`"),
        "{err}"
    );
    // No such job.
    let missing = JobId::now_v7();
    for err in [
        client.wait(missing, WAIT).await.unwrap_err(),
        client.result::<Receipt>(missing).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&missing.to_string()), "{err}");
    }
}

/// A read that does not come back (here: the in-memory database's one connection is held by
/// an open transaction) does not stretch `wait` past its timeout.
#[tokio::test]
async fn wait_is_bounded_by_its_timeout_when_the_storage_does_not_answer() {
    let sy = connect(config("sqlite::memory:".into(), &random_prefix())).await;
    let client = sy.client();
    let id = client.enqueue(Receipt { order: 1 }).await.unwrap();
    let pool = client.sqlite_pool().unwrap();
    let tx = pool.begin().await.unwrap();
    let started = Instant::now();
    let err = client
        .wait(id, Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.to_string().contains(&id.to_string()) && err.to_string().contains("did not answer"),
        "{err}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    tx.rollback().await.unwrap();
    assert_eq!(
        client.get(id).await.unwrap().map(|j| j.state),
        Some(JobState::Available)
    );
}

#[tokio::test]
async fn wait_returns_finished_jobs_and_result_decodes_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (sy, _) = sqlite(&dir, &random_prefix()).await;
    let client = sy.client();
    let ok = client.enqueue(Receipt { order: 9 }).await.unwrap();
    let bad = client
        .enqueue_with(Refuse, EnqueueOptions::new().max_attempts(3))
        .await
        .unwrap();
    let running = sy.start(registry()).expect("the registry needs no state");

    let job = client.wait(ok, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(
        client.result::<Receipt>(ok).await.unwrap(),
        "receipt for order 9"
    );
    // The stored result does not decode into another output type: the error names both.
    let err = client.result::<ReceiptAsNumber>(ok).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("`receipt`") && err.to_string().contains("u64"),
        "{err}"
    );

    let job = client.wait(bad, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let err = client.result::<Refuse>(bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::JobFailed, "{err}");
    assert!(
        err.to_string().contains("`failed`") && err.to_string().contains("refused on purpose"),
        "{err}"
    );
    let err = client.wait_result::<Refuse>(bad, WAIT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::JobFailed, "{err}");
    running.stop().await;
}

/// The client's futures are `Send`, so they run in spawned tasks and web handlers (checked by
/// compiling this function).
#[allow(dead_code)]
fn the_futures_are_send(
    client: &switchyard::Client,
    pg: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    lite: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
) {
    fn send<T: Send>(_: T) {}
    send(client.enqueue_tx(pg, Receipt { order: 1 }));
    send(client.enqueue_tx_with(lite, Receipt { order: 1 }, EnqueueOptions::new()));
    send(client.enqueue_many_tx(pg, [Receipt { order: 1 }], EnqueueOptions::new()));
    send(client.enqueue_raw_tx(lite, Vec::new()));
    send(client.wait(JobId::nil(), Duration::ZERO));
    send(client.result::<Receipt>(JobId::nil()));
    send(client.wait_result::<Receipt>(JobId::nil(), Duration::ZERO));
}
