//! Application state in jobs: a job reads state registered with `Registry::with_state`, a
//! worker whose registry lacks a state a job lists in `required_state` refuses to start naming
//! the type, and a job enqueues follow-up jobs through `ctx.client()` — on a real SQLite
//! storage and real workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard::sqlite::{SqliteConfig, SqliteStorage};
use switchyard::{
    Config, ErrorKind, Job, JobContext, JobContextExt, JobError, JobFilter, JobRecord, JobState,
    Registry, StateType, Storage, Switchyard, Worker,
};

/// What the application hands its jobs: a counter standing in for a pool or an HTTP client.
struct Payments {
    charged: AtomicUsize,
    currency: &'static str,
}

#[derive(Serialize, Deserialize)]
struct Charge {
    order: u32,
    cents: u64,
}

impl Job for Charge {
    const KIND: &'static str = "charge";
    type Output = String;
    fn required_state() -> Vec<StateType> {
        vec![StateType::of::<Payments>()]
    }
    async fn run(self, ctx: JobContext) -> Result<String, JobError> {
        let payments = ctx.state::<Payments>()?;
        payments.charged.fetch_add(1, Ordering::SeqCst);
        // A follow-up job, through the worker's own client.
        ctx.client()?
            .enqueue(SendReceipt { order: self.order })
            .await?;
        Ok(format!(
            "charged {} {} for order {}",
            self.cents, payments.currency, self.order
        ))
    }
}

#[derive(Serialize, Deserialize)]
struct SendReceipt {
    order: u32,
}

impl Job for SendReceipt {
    const KIND: &'static str = "send_receipt";
    type Output = String;
    async fn run(self, _ctx: JobContext) -> Result<String, JobError> {
        Ok(format!("receipt for order {}", self.order))
    }
}

/// Reads a state it never declared: nothing stops the worker, and the job fails saying why.
#[derive(Serialize, Deserialize)]
struct Undeclared;

impl Job for Undeclared {
    const KIND: &'static str = "undeclared";
    type Output = ();
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        ctx.state::<Payments>()?;
        Ok(())
    }
}

fn payments() -> Payments {
    Payments {
        charged: AtomicUsize::new(0),
        currency: "EUR",
    }
}

async fn connect(dir: &tempfile::TempDir) -> Switchyard {
    let mut c = Config {
        storage: format!("sqlite://{}/state.db", dir.path().display()),
        ..Config::default()
    };
    c.worker.poll_interval_ms = 50;
    Switchyard::connect(c).await.unwrap()
}

/// Waits until `id` is finished, or fails after 20 s.
async fn finished(storage: &dyn Storage, id: switchyard::JobId) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = storage.get(id).await.unwrap().expect("job exists");
        if j.state.is_finished() {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} still {}", j.state);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a job of `kind` exists and is finished.
async fn finished_of_kind(storage: &dyn Storage, kind: &str) -> JobRecord {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = storage
            .list(&JobFilter {
                kind: Some(kind.to_string()),
                ..JobFilter::default()
            })
            .await
            .unwrap();
        if let Some(j) = jobs.into_iter().find(|j| j.state.is_finished()) {
            return j;
        }
        assert!(Instant::now() < deadline, "no finished `{kind}` job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_missing_state_is_a_startup_error_naming_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let sy = connect(&dir).await;
    let id = sy
        .client()
        .enqueue(Charge {
            order: 1,
            cents: 100,
        })
        .await
        .unwrap();
    let registry = Registry::new()
        .register::<Charge>()
        .register::<SendReceipt>();

    let e = sy.start(registry.clone()).expect_err("start refuses");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let name = std::any::type_name::<Payments>();
    assert!(e.message().contains(name), "names the type {name}: {e}");
    assert!(e.message().contains("`charge`"), "names the job kind: {e}");
    assert!(
        e.message().contains("with_state"),
        "says how to fix it: {e}"
    );

    let e = sy
        .run_until(registry.clone(), async {})
        .await
        .expect_err("run_until refuses");
    assert!(e.message().contains(name), "{e}");

    let e = Worker::new(sy.storage().clone(), registry.clone())
        .try_start()
        .expect_err("try_start refuses");
    assert!(e.message().contains(name), "{e}");

    // Nothing ran: the job still waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = sy.client().get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Available);

    // With the state the same registry starts, and the job runs.
    let running = sy.start(registry.with_state(payments())).unwrap();
    assert_eq!(
        finished(sy.storage().as_ref(), id).await.state,
        JobState::Completed
    );
    running.stop().await;
}

#[tokio::test]
async fn a_job_reads_state_and_enqueues_a_follow_up_through_ctx_client() {
    let dir = tempfile::tempdir().unwrap();
    let sy = connect(&dir).await;
    let state = Arc::new(payments());
    let registry = Registry::new()
        .register::<Charge>()
        .register::<SendReceipt>()
        .with_shared_state(state.clone());
    let running = sy.start(registry).unwrap();
    let id = sy
        .client()
        .enqueue(Charge {
            order: 7,
            cents: 2500,
        })
        .await
        .unwrap();
    let charge = finished(sy.storage().as_ref(), id).await;
    assert_eq!(charge.state, JobState::Completed, "{:?}", charge.errors);
    assert_eq!(
        charge.result,
        Some(serde_json::json!("charged 2500 EUR for order 7"))
    );
    assert_eq!(state.charged.load(Ordering::SeqCst), 1);
    let receipt = finished_of_kind(sy.storage().as_ref(), SendReceipt::KIND).await;
    assert_eq!(receipt.state, JobState::Completed);
    assert_eq!(
        receipt.result,
        Some(serde_json::json!("receipt for order 7"))
    );
    running.stop().await;
}

/// A bare `Worker` (no `Switchyard`) gives jobs its storage's client too.
#[tokio::test]
async fn a_bare_worker_gives_jobs_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::connect(SqliteConfig::new(format!(
        "sqlite://{}/worker.db",
        dir.path().display()
    )))
    .await
    .unwrap();
    storage.migrate().await.unwrap();
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let registry = Registry::new()
        .register::<Charge>()
        .register::<SendReceipt>()
        .with_state(payments());
    let handle = Worker::new(storage.clone(), registry)
        .poll_interval(Duration::from_millis(50))
        .try_start()
        .unwrap();
    let id = switchyard::Client::new(storage.clone())
        .enqueue(Charge { order: 9, cents: 1 })
        .await
        .unwrap();
    assert_eq!(
        finished(storage.as_ref(), id).await.state,
        JobState::Completed
    );
    let receipt = finished_of_kind(storage.as_ref(), SendReceipt::KIND).await;
    assert_eq!(
        receipt.result,
        Some(serde_json::json!("receipt for order 9"))
    );
    handle.stop().await;
}

/// A state read without being declared, and never registered: the job fails at once (not
/// retried, no panic) with an error naming the type.
#[tokio::test]
async fn an_undeclared_missing_state_fails_the_job_naming_the_type() {
    let dir = tempfile::tempdir().unwrap();
    let sy = connect(&dir).await;
    let running = sy.start(Registry::new().register::<Undeclared>()).unwrap();
    let id = sy.client().enqueue(Undeclared).await.unwrap();
    let job = finished(sy.storage().as_ref(), id).await;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.attempt, 1, "not retried");
    let e = &job.errors[0];
    assert_eq!(e.kind, "error");
    assert!(
        e.message.contains(std::any::type_name::<Payments>()),
        "{}",
        e.message
    );
    assert!(e.message.contains("required_state"), "{}", e.message);
    running.stop().await;
}

/// `JobContext::for_test()` runs a job body in a unit test in one line, state included.
#[tokio::test]
async fn a_job_body_runs_on_a_context_built_for_a_test() {
    let out = Charge { order: 3, cents: 5 }
        .run(JobContext::for_test().with_state(payments()))
        .await;
    // No client in a hand-built context: the follow-up enqueue says so.
    let e = out.unwrap_err();
    assert!(e.message().contains("no Client"), "{e}");
}
