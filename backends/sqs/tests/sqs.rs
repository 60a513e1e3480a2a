//! SQS-specific behaviour beyond the shared suites: stale receipts, foreign messages, FIFO
//! queues, naming, errors, the runtime's `queue = "sqs://…"` wiring, and a stopped worker
//! giving back the bundle ids it held. Needs fauxqs at
//! `SWITCHYARD_TEST_SQS_ENDPOINT` (default `http://127.0.0.1:4577`).

use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use switchyard_conformance::random_prefix;
use switchyard_core::{ErrorKind, Queue, QueueMessage};
use switchyard_sqs::{FifoGroup, SqsConfig, SqsQueue};
use uuid::Uuid;

fn endpoint() -> String {
    std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4577".into())
}

fn config() -> SqsConfig {
    SqsConfig::from_url("sqs://")
        .unwrap()
        .with_endpoint_url(Some(endpoint()))
        .with_region(Some("us-east-1".into()))
        .with_prefix(random_prefix())
}

fn message(queue: &str) -> QueueMessage {
    QueueMessage {
        job_id: Uuid::now_v7(),
        queue: queue.to_string(),
        priority: 0,
        delay: Duration::ZERO,
    }
}

async fn receive_some(
    q: &SqsQueue,
    queue: &str,
    lease: Duration,
) -> Vec<switchyard_core::Delivery> {
    for _ in 0..10 {
        let got = q
            .receive(queue, 10, Duration::from_secs(1), lease)
            .await
            .unwrap();
        if !got.is_empty() {
            return got;
        }
    }
    panic!("nothing arrived on {queue}");
}

#[tokio::test]
async fn stale_receipts_are_not_errors() {
    let q = SqsQueue::connect(config()).await.unwrap();
    q.setup(&["s".into()]).await.unwrap();
    q.publish(&[message("s")]).await.unwrap();
    let got = receive_some(&q, "s", Duration::from_secs(30)).await;
    q.ack(&got).await.unwrap();
    // The message is gone: acking, extending or nacking its receipt again is fine.
    q.ack(&got).await.expect("second ack");
    q.extend(&got, Duration::from_secs(30))
        .await
        .expect("extend after ack");
    q.nack(&got[0], Duration::ZERO)
        .await
        .expect("nack after ack");
}

#[tokio::test]
async fn setup_creates_the_named_queue() {
    let c = config();
    let expected = c.queue_name("mail.outbound");
    let q = SqsQueue::connect(c).await.unwrap();
    q.setup(&["mail.outbound".into()]).await.unwrap();
    let url = q
        .client()
        .get_queue_url()
        .queue_name(&expected)
        .send()
        .await
        .expect("the queue exists under its sanitised name")
        .queue_url
        .unwrap();
    assert!(url.ends_with(&expected), "{url}");
    assert_eq!(q.queue_url("mail.outbound").await.unwrap(), url);
}

#[tokio::test]
async fn foreign_messages_are_deleted_not_delivered() {
    let q = SqsQueue::connect(config()).await.unwrap();
    let url = q.queue_url("f").await.unwrap();
    q.client()
        .send_message()
        .queue_url(&url)
        .message_body("not a switchyard message")
        .send()
        .await
        .unwrap();
    let ours = message("f");
    q.publish(std::slice::from_ref(&ours)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(
            q.receive("f", 10, Duration::from_secs(1), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|d| d.job_id == ours.job_id), "{seen:?}");
    let left = q
        .client()
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    let attrs = left.attributes.unwrap_or_default();
    let total: u64 = attrs.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum();
    assert_eq!(total, 1, "only our message is left: {attrs:?}");
}

#[tokio::test]
async fn fifo_queues_round_trip_without_native_delay() {
    for group in [FifoGroup::Queue, FifoGroup::Job] {
        let c = config().with_fifo(true).with_fifo_group(group);
        assert!(c.queue_name("f").ends_with(".fifo"));
        let q = SqsQueue::connect(c).await.unwrap();
        assert_eq!(q.capabilities().max_native_delay, None);
        q.setup(&["f".into()]).await.unwrap();
        let sent: Vec<QueueMessage> = (0..12).map(|_| message("f")).collect();
        q.publish(&sent).await.unwrap();
        // The same job published again (a retry) is not swallowed by deduplication.
        q.publish(&sent[..1]).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..30 {
            let batch = q
                .receive("f", 10, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .unwrap();
            if !batch.is_empty() {
                q.ack(&batch).await.unwrap();
            }
            got.extend(batch);
            if got.len() >= 13 {
                break;
            }
        }
        assert_eq!(got.len(), 13, "{group:?}");
        let ids: Vec<_> = got.iter().map(|d| d.job_id).collect();
        for m in &sent {
            assert!(ids.contains(&m.job_id));
        }
        // Twelve jobs of one group travel two per message; grouped by job, one per message.
        let bundled = got[..12].iter().all(|d| {
            switchyard_core::bundle::split_receipt(&d.receipt)
                .1
                .is_some()
        });
        assert_eq!(bundled, group == FifoGroup::Queue, "{group:?}");
        if group == FifoGroup::Queue {
            // One group per queue: delivered in publish order, bundles included.
            assert_eq!(
                &ids[..12],
                &sent.iter().map(|m| m.job_id).collect::<Vec<_>>()[..]
            );
        }
    }
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let c = SqsConfig::from_url("sqs://127.0.0.1:1")
        .unwrap()
        .with_prefix("x_");
    let q = SqsQueue::connect(c).await.unwrap();
    let e = q.setup(&["default".into()]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn runtime_connects_from_configuration() {
    let toml = format!(
        "queue = \"sqs://\"\nprefix = \"{}\"\n[sqs]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        random_prefix(),
        endpoint()
    );
    let config = switchyard::Config::from_figment(
        Figment::from(Serialized::defaults(switchyard::Config::default()))
            .merge(Toml::string(&toml)),
    )
    .unwrap();
    let q = switchyard::connect::connect_queue(&config)
        .await
        .unwrap()
        .expect("an external queue");
    assert_eq!(q.name(), "sqs");
    q.setup(&["default".into()]).await.unwrap();

    let mut bad = config.clone();
    bad.queue = "sqs://eu-west-1?colour=blue".into();
    let e = switchyard::connect::connect_queue(&bad).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains("key `queue`") && e.message().contains("colour"),
        "{e}"
    );
}

/// A worker that stops gives back the ids it received in bundles but had not started
/// (`Queue::release`): another process, on its own connection, runs them at once, instead of
/// waiting out the stopped worker's long visibility timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_worker_gives_back_the_bundle_ids_it_held() {
    use std::sync::Arc;
    use switchyard::{JobState, NewJob, Registry};
    use switchyard_conformance::harness::{start_worker, Probe, TestWorkerConfig};
    use switchyard_conformance::{wait_for, Backend};
    use switchyard_core::{JobContext, Storage};
    use switchyard_sqlite::{SqliteConfig, SqliteStorage};

    let prefix = random_prefix();
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{prefix}sqs-release.db"));
    let storage = SqliteStorage::connect(
        SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(&prefix),
    )
    .await
    .unwrap();
    storage.migrate().await.unwrap();
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let sqs_config = config().with_prefix(&prefix);
    let first: Arc<dyn Queue> = Arc::new(SqsQueue::connect(sqs_config.clone()).await.unwrap());
    let second: Arc<dyn Queue> = Arc::new(SqsQueue::connect(sqs_config).await.unwrap());
    let q = "release".to_string();
    let n = 100;
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| NewJob::new("slow", serde_json::json!({ "i": i })).with_queue(&q))
        .collect();
    storage.enqueue(jobs).await.unwrap();
    let probe = Probe::default();
    let registry = |probe: Probe| {
        Registry::new().register_fn("slow", move |_, ctx: JobContext| {
            probe.record(ctx.id, ctx.attempt);
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(None)
            }
        })
    };
    let completed = |storage: Arc<dyn Storage>| async move {
        let counts = storage.counts().await.unwrap();
        counts
            .iter()
            .filter_map(|c| c.counts.get(&JobState::Completed))
            .sum::<u64>()
    };
    // The first worker holds its deliveries for a minute (its lease), so without a release
    // its surplus would only come back after that.
    let mut cfg = TestWorkerConfig::new(&q);
    cfg.concurrency = 2;
    cfg.lease = Duration::from_secs(60);
    cfg.heartbeat = Duration::from_secs(10);
    cfg.rescuer = false;
    let worker = start_worker(
        &Backend::with_queue(storage.clone(), first.clone()),
        registry(probe.clone()),
        cfg.clone(),
    )
    .await;
    wait_for("a few jobs to complete", Duration::from_secs(20), || {
        let storage = storage.clone();
        async move { (completed(storage).await >= 4).then_some(()) }
    })
    .await;
    worker.stop().await;
    assert!(
        completed(storage.clone()).await < n as u64,
        "the first worker must stop with jobs left"
    );
    cfg.concurrency = 16;
    let worker = start_worker(
        &Backend::with_queue(storage.clone(), second.clone()),
        registry(probe.clone()),
        cfg,
    )
    .await;
    wait_for(
        "every job to complete on the second worker",
        Duration::from_secs(30),
        || {
            let storage = storage.clone();
            async move { (completed(storage).await == n as u64).then_some(()) }
        },
    )
    .await;
    worker.stop().await;
    assert_eq!(probe.count(), n, "a job ran twice or never");
    let _ = first.destroy().await;
    let _ = second.destroy().await;
    storage.destroy().await.unwrap();
}

/// An SQS queue deleted behind the handle's back (by an operator, or `destroy` from another
/// handle) is created again: the handle forgets the URL it cached when SQS says the queue does
/// not exist, so publishing and receiving recover instead of failing with `NotFound` for ever.
#[tokio::test]
async fn a_deleted_queue_is_created_again() {
    let q = SqsQueue::connect(config()).await.unwrap();
    q.publish(&[message("d")]).await.unwrap();
    let got = receive_some(&q, "d", Duration::from_secs(30)).await;
    q.ack(&got).await.unwrap();
    let url = q.queue_url("d").await.unwrap();
    q.client()
        .delete_queue()
        .queue_url(&url)
        .send()
        .await
        .unwrap();

    let m = message("d");
    let mut published = false;
    for _ in 0..5 {
        match q.publish(std::slice::from_ref(&m)).await {
            Ok(()) => {
                published = true;
                break;
            }
            Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "{e}"),
        }
    }
    assert!(
        published,
        "publishing never recovered from the deleted queue"
    );
    let got = receive_some(&q, "d", Duration::from_secs(30)).await;
    assert_eq!(got[0].job_id, m.job_id);
    q.ack(&got).await.unwrap();
    q.destroy().await.unwrap();
}
