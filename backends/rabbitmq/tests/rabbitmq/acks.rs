//! Acks: every delivery is acked after a drain, and a delivery held past `settle_after` is
//! settled early by `extend`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchyard::{JobState, NewJob, Registry};
use switchyard_conformance::harness::{start_worker, Probe, TestWorkerConfig};
use switchyard_conformance::{random_prefix, wait_for, Backend};
use switchyard_core::{JobContext, Queue};
use switchyard_rabbitmq::RabbitQueue;

use crate::support::{assert_nothing_arrives, publish_new, rabbit, settling_fast, sqlite};

/// After a drain without failures every delivery has been acked (the worker acks in the
/// background while it records the next completions, and waits for those acks when it
/// stops): once the connection is closed, which returns whatever was left unacked, the queue
/// is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_delivery_is_acked_after_a_drain() {
    let prefix = random_prefix();
    let storage = sqlite(&prefix).await;
    let queue: Arc<RabbitQueue> = Arc::new(rabbit(&prefix).await);
    let backend = Backend::with_queue(storage.clone(), queue.clone());
    let q = "acked".to_string();
    let n = 300;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("acked", json!({ "i": i })).with_queue(&q))
        .collect();
    storage.enqueue(jobs).await.unwrap();
    let probe = Probe::default();
    let p = probe.clone();
    let registry = Registry::new().register_fn("acked", move |_, ctx: JobContext| {
        p.record(ctx.id, ctx.attempt);
        async { Ok(None) }
    });
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 8;
    let worker = start_worker(&backend, registry, cfg).await;
    wait_for("every job to complete", Duration::from_secs(60), || {
        let storage = storage.clone();
        async move {
            let counts = storage.counts().await.unwrap();
            let done = counts
                .iter()
                .filter_map(|c| c.counts.get(&JobState::Completed))
                .sum::<u64>();
            (done == n as u64).then_some(())
        }
    })
    .await;
    worker.stop().await;
    assert_eq!(probe.count(), n, "a job ran twice or never");

    queue.close().await;
    let fresh = rabbit(&prefix).await;
    assert_nothing_arrives(&fresh, &q, 100, "deliveries were never acked").await;
    fresh.delete_queues(&[q]).await.unwrap();
    storage.destroy().await.unwrap();
}

/// A delivery held past `settle_after` (a long job) is acked early by `extend`, so the broker's
/// `consumer_timeout` never closes its channel; the job's later ack is a no-op, and the message
/// does not come back when the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extend_settles_long_held_deliveries_early() {
    let queue = settling_fast(&random_prefix()).await;
    let q = "long".to_string();
    publish_new(&queue, &q, 1).await;
    let d = queue
        .receive(&q, 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    // Too young: still held.
    queue.extend(&d, Duration::from_secs(30)).await.unwrap();
    queue.close().await;
    let back = queue
        .receive(&q, 1, Duration::from_secs(5), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        back.len(),
        1,
        "an unsettled delivery must come back when its connection closes"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    queue.extend(&back, Duration::from_secs(30)).await.unwrap();
    queue.close().await;
    assert_nothing_arrives(&queue, &q, 1, "a delivery settled early came back").await;
    queue
        .ack(&back)
        .await
        .expect("the job's own ack after early settling");
    queue.delete_queues(&[q]).await.unwrap();
}
