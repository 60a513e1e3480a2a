//! The quickstart's jobs under `switchyard::testing`: no files, no waiting — an in-memory
//! SQLite storage and a clock the test moves.

use std::time::Duration;

use example_quickstart::{registry, Flaky, Greet, Greeter};
use switchyard::testing::Harness;
use switchyard::{Job, JobContext, JobState, Registry};

fn greeter() -> Greeter {
    Greeter {
        salutation: "hello".into(),
    }
}

/// A unit test of one body: a context built in one line, with the state it reads.
#[tokio::test]
async fn greet_uses_the_greeter() {
    let ctx = JobContext::for_test().with_state(Greeter {
        salutation: "ahoy".into(),
    });
    let out = Greet { name: "Ada".into() }.run(ctx).await.unwrap();
    assert_eq!(out, "ahoy, Ada");
}

/// Manual mode: the first attempt fails, the retry is due one second later on the test
/// clock, and it enqueues a greeting that the same drain runs.
#[tokio::test]
async fn flaky_retries_after_its_backoff_then_greets_the_customer() {
    let h = Harness::new(registry(greeter())).await.unwrap();
    let id = h.client().enqueue(Flaky { order: 42 }).await.unwrap();
    h.assert_enqueued::<Flaky>(|f| f.order == 42).await;

    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].state, JobState::Retrying);
    assert_eq!(
        ran[0].error.as_ref().unwrap().message,
        "payment API timed out"
    );
    h.assert_not_enqueued::<Greet>().await;

    h.advance(Duration::from_secs(1));
    let ran = h.drain().await.unwrap();
    assert_eq!(ran.len(), 2, "the retry and its follow-up: {ran:?}");
    assert_eq!((ran[0].id, ran[0].attempt), (id, 2));
    assert_eq!(
        ran[0].output::<String>().as_deref(),
        Some("order 42 charged on attempt 2")
    );
    assert_eq!(ran[1].kind, Greet::KIND);
    assert_eq!(
        ran[1].output::<String>().as_deref(),
        Some("hello, customer of order 42")
    );
}

/// Inline mode: the enqueue returns once the job ran.
#[tokio::test]
async fn greet_runs_inline() {
    let h = Harness::inline(registry(greeter())).await.unwrap();
    let client = h.client();
    let id = client
        .enqueue(Greet {
            name: "Grace".into(),
        })
        .await
        .unwrap();
    let job = client.get(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(serde_json::json!("hello, Grace")));
}

/// Forgetting the greeter is caught before any job runs, naming it.
#[tokio::test]
async fn the_registry_needs_the_greeter() {
    let e = Harness::new(Registry::new().register::<Greet>())
        .await
        .unwrap_err();
    assert!(e.message().contains("Greeter"), "{e}");
}
