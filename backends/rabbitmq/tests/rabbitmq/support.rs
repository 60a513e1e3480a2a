//! Helpers shared by the RabbitMQ test themes: the broker URL, queues with a random prefix
//! (and one that settles held deliveries early), a SQLite storage for worker drains, and
//! publishing and receiving messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Queue, QueueMessage, Storage};
use switchyard_rabbitmq::{RabbitConfig, RabbitQueue};
use switchyard_sqlite::{SqliteConfig, SqliteStorage};

/// The test broker's URL (`SWITCHYARD_TEST_AMQP_URL`, default the loopback broker).
fn amqp_url() -> String {
    std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The settings every test queue starts from: the test broker, `prefix`, and broker queues that
/// expire five minutes after their last use (so a failed test leaves nothing for long).
pub fn queue_config(prefix: &str) -> RabbitConfig {
    RabbitConfig::new(amqp_url())
        .with_prefix(prefix)
        .with_queue_expires(Duration::from_secs(300))
}

/// A queue on the test broker under `prefix`, its connection named after the prefix (so
/// `rabbitmqctl` can find it); also sets up test logging once.
pub async fn rabbit(prefix: &str) -> RabbitQueue {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = queue_config(prefix).with_connection_name(format!("switchyard-test {prefix}"));
    RabbitQueue::connect(config)
        .await
        .expect("connect to RabbitMQ")
}

/// A queue that settles deliveries held for half a second early (a "long job" in a test).
pub async fn settling_fast(prefix: &str) -> RabbitQueue {
    let _ = rabbit(prefix).await;
    let config = queue_config(prefix).with_settle_after(Duration::from_millis(500));
    RabbitQueue::connect(config).await.unwrap()
}

/// A migrated SQLite storage under `prefix` in a temp file, for drains through a worker.
pub async fn sqlite(prefix: &str) -> Arc<dyn Storage> {
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{prefix}rabbitmq-drain.db"));
    let config = SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix);
    let storage = SqliteStorage::connect(config).await.expect("open sqlite");
    storage.migrate().await.expect("migrate");
    Arc::new(storage)
}

/// A message for a new job id on `q`, due now.
fn message(q: &str) -> QueueMessage {
    QueueMessage {
        job_id: uuid::Uuid::now_v7(),
        queue: q.to_string(),
        priority: 0,
        delay: Duration::ZERO,
    }
}

/// Receives until `n` deliveries arrived (panics after 20 s).
pub async fn receive_all(queue: &RabbitQueue, q: &str, n: usize) -> Vec<switchyard_core::Delivery> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {} of {n} arrived",
            got.len()
        );
        got.extend(
            queue
                .receive(q, n, Duration::from_secs(1), Duration::from_secs(30))
                .await
                .unwrap(),
        );
    }
    got
}

/// Sets up `q` and publishes `n` messages for new job ids to it in one call; returns them.
pub async fn publish_new(queue: &RabbitQueue, q: &str, n: usize) -> Vec<QueueMessage> {
    queue.setup(&[q.to_string()]).await.unwrap();
    let messages: Vec<QueueMessage> = (0..n).map(|_| message(q)).collect();
    queue.publish(&messages).await.unwrap();
    messages
}

/// Asserts that a receive of up to `max` from `q` gets nothing within two seconds; `what`
/// says what a delivery there would mean.
pub async fn assert_nothing_arrives(queue: &RabbitQueue, q: &str, max: usize, what: &str) {
    let got = queue
        .receive(q, max, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(got.is_empty(), "{what}: {} deliveries: {got:?}", got.len());
}
