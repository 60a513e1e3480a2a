//! `switchyard::testing`: manual mode (`drain` runs due jobs one by one and returns their
//! outcomes), inline mode (an enqueue runs the job before it returns), `enqueued` and the
//! assert helpers, the test clock for delays and backoff, and contexts for unit tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard::testing::{Harness, TestClock};
use switchyard::{
    EnqueueOptions, ErrorKind, Job, JobContext, JobContextExt, JobError, JobState, Registry,
    StateType,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Greet {
    name: String,
}

impl Job for Greet {
    const KIND: &'static str = "greet";
    type Output = String;
    async fn run(self, _ctx: JobContext) -> Result<String, JobError> {
        Ok(format!("hello, {}", self.name))
    }
}

/// Fails its first `fail` attempts, then succeeds.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    fail: u32,
}

impl Job for Flaky {
    const KIND: &'static str = "flaky";
    type Output = u32;
    async fn run(self, ctx: JobContext) -> Result<u32, JobError> {
        if ctx.attempt <= self.fail {
            return Err(JobError::retryable(format!(
                "attempt {} failed",
                ctx.attempt
            )));
        }
        Ok(ctx.attempt)
    }
}

/// Signs a user up and enqueues a welcome mail, counting sign-ups in its state.
#[derive(Debug, Serialize, Deserialize)]
struct SignUp {
    email: String,
}

#[derive(Default)]
struct Stats {
    sign_ups: AtomicU32,
}

impl Job for SignUp {
    const KIND: &'static str = "sign_up";
    type Output = ();
    fn required_state() -> Vec<StateType> {
        vec![StateType::of::<Arc<Stats>>()]
    }
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        ctx.state::<Arc<Stats>>()?
            .sign_ups
            .fetch_add(1, Ordering::SeqCst);
        ctx.client()?
            .enqueue_with(
                Greet { name: self.email },
                EnqueueOptions::new().queue("mail"),
            )
            .await?;
        Ok(())
    }
}

fn registry(stats: &Arc<Stats>) -> Registry {
    Registry::new()
        .register::<Greet>()
        .register::<Flaky>()
        .register::<SignUp>()
        .with_state(stats.clone())
}

#[tokio::test]
async fn manual_mode_keeps_jobs_until_drain_runs_them_in_order() {
    let stats = Arc::new(Stats::default());
    let h = Harness::new(registry(&stats)).await.unwrap();
    let client = h.client();
    let low = client.enqueue(Greet { name: "low".into() }).await.unwrap();
    let high = client
        .enqueue_with(
            Greet {
                name: "high".into(),
            },
            EnqueueOptions::new().priority(5),
        )
        .await
        .unwrap();

    // Nothing ran yet: both wait, typed.
    assert_eq!(
        h.enqueued::<Greet>().await.unwrap(),
        vec![
            Greet { name: "low".into() },
            Greet {
                name: "high".into()
            }
        ]
    );
    let found = h.assert_enqueued::<Greet>(|g| g.name == "high").await;
    assert_eq!(found.name, "high");
    h.assert_not_enqueued::<Flaky>().await;
    assert_eq!(
        client.get(low).await.unwrap().unwrap().state,
        JobState::Available
    );

    let ran = h.drain().await.unwrap();
    // Claim order: the higher priority first.
    assert_eq!(
        ran.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![high, low]
    );
    assert!(ran.iter().all(|a| a.is_completed() && a.attempt == 1));
    assert_eq!(ran[0].output::<String>().as_deref(), Some("hello, high"));
    assert_eq!(ran[0].kind, "greet");
    assert_eq!(
        client.get(low).await.unwrap().unwrap().result,
        Some(serde_json::json!("hello, low"))
    );
    h.assert_not_enqueued::<Greet>().await;
    assert!(h.drain().await.unwrap().is_empty(), "nothing left");
}

#[tokio::test]
async fn retries_wait_for_the_clock_by_exactly_their_backoff() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    let id = h.client().enqueue(Flaky { fail: 1 }).await.unwrap();
    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].state, JobState::Retrying);
    assert_eq!(ran[0].error.as_ref().unwrap().message, "attempt 1 failed");
    // The retry is due one second later (the default backoff's first step, no jitter).
    let job = h.client().get(id).await.unwrap().unwrap();
    assert_eq!(job.run_at - h.now(), chrono::Duration::seconds(1));
    assert!(h.drain().await.unwrap().is_empty(), "not due yet");
    h.advance(Duration::from_millis(999));
    assert!(h.drain().await.unwrap().is_empty(), "still not due");
    h.advance(Duration::from_millis(1));
    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 1);
    assert_eq!((ran[0].attempt, ran[0].state), (2, JobState::Completed));
    assert_eq!(ran[0].output::<u32>(), Some(2));
}

#[tokio::test]
async fn delays_count_from_the_test_clock() {
    let clock = TestClock::new();
    let h = Harness::builder(registry(&Arc::default()))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    // Real time passing does not matter: the clock stands still.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let id = h
        .client()
        .enqueue_with(
            Greet {
                name: "later".into(),
            },
            EnqueueOptions::new().delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let job = h.client().get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    assert_eq!(job.run_at - clock.now(), chrono::Duration::seconds(60));
    h.assert_enqueued::<Greet>(|g| g.name == "later").await;
    assert!(h.drain().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(59));
    assert!(h.drain().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(1));
    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 1);
    assert!(ran[0].is_completed());
}

#[tokio::test]
async fn drain_all_moves_the_clock_through_every_retry() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    let start = h.now();
    h.client().enqueue(Flaky { fail: 3 }).await.unwrap();
    let ran = h.drain_all().await.unwrap();
    let states: Vec<_> = ran.iter().map(|a| (a.attempt, a.state)).collect();
    assert_eq!(
        states,
        vec![
            (1, JobState::Retrying),
            (2, JobState::Retrying),
            (3, JobState::Retrying),
            (4, JobState::Completed)
        ]
    );
    // 1 s + 2 s + 4 s of backoff.
    assert_eq!(h.now() - start, chrono::Duration::seconds(7));
}

#[tokio::test]
async fn a_drain_runs_the_follow_ups_jobs_enqueue_with_their_state() {
    let stats = Arc::new(Stats::default());
    let h = Harness::new(registry(&stats)).await.unwrap();
    h.client()
        .enqueue(SignUp {
            email: "ada@example.com".into(),
        })
        .await
        .unwrap();
    let ran = h.drain().await.unwrap();
    let kinds: Vec<_> = ran
        .iter()
        .map(|a| (a.kind.as_str(), a.queue.as_str(), a.state))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("sign_up", "default", JobState::Completed),
            ("greet", "mail", JobState::Completed)
        ]
    );
    assert_eq!(stats.sign_ups.load(Ordering::SeqCst), 1);
    assert_eq!(
        ran[1].output::<String>().as_deref(),
        Some("hello, ada@example.com")
    );
}

#[tokio::test]
async fn drain_queue_runs_one_queue_only() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    h.client()
        .enqueue(SignUp {
            email: "b@example.com".into(),
        })
        .await
        .unwrap();
    let ran = h.drain_queue("default").await.unwrap();
    assert_eq!(ran.len(), 1);
    // The follow-up waits on `mail`.
    let waiting = h.enqueued_jobs(Greet::KIND).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].queue, "mail");
    assert_eq!(h.drain_queue("mail").await.unwrap().len(), 1);
}

#[tokio::test]
async fn inline_mode_runs_jobs_before_enqueue_returns() {
    let stats = Arc::new(Stats::default());
    let h = Harness::inline(registry(&stats)).await.unwrap();
    let client = h.client();
    let id = client.enqueue(Greet { name: "now".into() }).await.unwrap();
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(serde_json::json!("hello, now")));

    // A job's follow-up runs inline too.
    client
        .enqueue(SignUp {
            email: "c@example.com".into(),
        })
        .await
        .unwrap();
    assert_eq!(stats.sign_ups.load(Ordering::SeqCst), 1);
    h.assert_not_enqueued::<Greet>().await;

    // A failed attempt is visible at once; its retry waits for the clock and a drain.
    let flaky = client.enqueue(Flaky { fail: 1 }).await.unwrap();
    assert_eq!(
        client.get(flaky).await.unwrap().unwrap().state,
        JobState::Retrying
    );
    h.advance(Duration::from_secs(1));
    let ran = h.drain().await.unwrap();
    assert_eq!((ran[0].id, ran[0].state), (flaky, JobState::Completed));

    // A delayed job is not due: it waits.
    let later = client
        .enqueue_with(
            Greet {
                name: "later".into(),
            },
            EnqueueOptions::new().delay(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(
        client.get(later).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
}

#[tokio::test]
async fn a_harness_refuses_a_registry_without_a_needed_state() {
    let e = Harness::new(Registry::new().register::<SignUp>())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains(std::any::type_name::<Arc<Stats>>()),
        "{e}"
    );
}

#[tokio::test]
async fn perform_and_contexts_run_a_body_directly() {
    let stats = Arc::new(Stats::default());
    let h = Harness::new(registry(&stats)).await.unwrap();
    assert_eq!(
        h.perform(Greet { name: "x".into() }).await.unwrap(),
        "hello, x"
    );
    // perform stores nothing, but the body's follow-ups go to the harness.
    h.perform(SignUp {
        email: "d@example.com".into(),
    })
    .await
    .unwrap();
    assert_eq!(stats.sign_ups.load(Ordering::SeqCst), 1);
    h.assert_enqueued::<Greet>(|g| g.name == "d@example.com")
        .await;
    // A context for a unit test in one line.
    let out = Flaky { fail: 1 }
        .run(JobContext::for_test().with_attempt(2))
        .await;
    assert_eq!(out.unwrap(), 2);
    let out = Flaky { fail: 1 }.run(h.context()).await;
    assert!(out.unwrap_err().is_retryable());
}

#[tokio::test]
#[should_panic(expected = "the waiting ones are: {\"name\":\"ada\"}")]
async fn assert_enqueued_shows_what_is_waiting() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    h.client()
        .enqueue(Greet { name: "ada".into() })
        .await
        .unwrap();
    h.assert_enqueued::<Greet>(|g| g.name == "grace").await;
}

#[tokio::test]
#[should_panic(expected = "none is waiting; waiting kinds: flaky")]
async fn assert_enqueued_names_the_waiting_kinds() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    h.client().enqueue(Flaky { fail: 0 }).await.unwrap();
    h.assert_enqueued::<Greet>(|_| true).await;
}

/// A real worker on the same test clock as its storage: its retry times count from the
/// clock, and a retry runs once the clock passes it.
#[tokio::test]
async fn a_worker_on_a_test_clock_retries_by_that_clock() {
    use switchyard::sqlite::{SqliteConfig, SqliteStorage};
    use switchyard::{Backoff, Client, Storage, Worker};

    let clock = TestClock::new();
    let sqlite =
        SqliteStorage::connect(SqliteConfig::new("sqlite::memory:").with_clock(clock.shared()))
            .await
            .unwrap();
    sqlite.migrate().await.unwrap();
    let storage: Arc<dyn Storage> = Arc::new(sqlite);
    let handle = Worker::new(storage.clone(), registry(&Arc::default()))
        .clock(clock.shared())
        .backoff(Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            jitter: 0.0,
        })
        .poll_interval(Duration::from_millis(20))
        .try_start()
        .unwrap();
    let id = Client::new(storage.clone())
        .enqueue(Flaky { fail: 1 })
        .await
        .unwrap();
    let wait_for = |state: JobState| {
        let storage = storage.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let j = storage.get(id).await.unwrap().unwrap();
                if j.state == state {
                    return j;
                }
                assert!(std::time::Instant::now() < deadline, "still {}", j.state);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let job = wait_for(JobState::Retrying).await;
    assert_eq!(job.run_at - clock.now(), chrono::Duration::seconds(10));
    assert_eq!(
        job.errors[0].at,
        clock.now(),
        "the error is stamped by the clock"
    );
    clock.advance(Duration::from_secs(10));
    let job = wait_for(JobState::Completed).await;
    assert_eq!(job.attempt, 2);
    handle.stop().await;
}

/// A job the registry cannot run fails in a drain as it would on a worker, saying why.
#[tokio::test]
async fn a_drain_fails_unknown_kinds_and_bad_payloads_as_a_worker_does() {
    let h = Harness::new(registry(&Arc::default())).await.unwrap();
    h.client()
        .enqueue_raw(vec![
            switchyard::NewJob::new("nope", serde_json::json!({})),
            switchyard::NewJob::new(Greet::KIND, serde_json::json!({"name": 7})),
        ])
        .await
        .unwrap();
    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 2);
    assert!(ran.iter().all(|a| a.state == JobState::Failed));
    let unknown = ran[0].error.as_ref().unwrap();
    assert_eq!(unknown.kind, "unknown_kind");
    assert!(
        unknown.message.contains("flaky, greet, sign_up"),
        "{}",
        unknown.message
    );
    assert_eq!(ran[1].error.as_ref().unwrap().kind, "decode");
}
