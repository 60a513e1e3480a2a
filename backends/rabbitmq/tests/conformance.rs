//! The conformance suites with RabbitMQ as the queue: the queue-level cases on RabbitMQ alone,
//! then the end-to-end cases for SQLite, PostgreSQL and Redis storage × RabbitMQ. Needs the
//! broker at `SWITCHYARD_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) and the
//! storage servers of the other adapters' tests. Every case gets its own random prefix, used by
//! both the storage and the broker queues; the broker drops the queues 5 minutes after their
//! last use (`x-expires`).

use std::sync::Arc;
use std::time::Duration;

use switchyard_conformance::fixtures::amqp_url;
use switchyard_core::Queue;
use switchyard_rabbitmq::{RabbitConfig, RabbitQueue};

async fn rabbit(prefix: &str) -> Arc<dyn Queue> {
    // Logs with RUST_LOG=switchyard=debug,switchyard_rabbitmq=debug and --no-capture.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = RabbitConfig::new(amqp_url())
        .with_prefix(prefix)
        .with_queue_expires(Duration::from_secs(300));
    Arc::new(
        RabbitQueue::connect(config)
            .await
            .expect("connect to RabbitMQ (set SWITCHYARD_TEST_AMQP_URL)"),
    )
}

async fn queue() -> Arc<dyn Queue> {
    rabbit(&switchyard_conformance::random_prefix()).await
}

switchyard_conformance::queue_conformance_suite!(queue);
switchyard_conformance::storage_matrix_suite!(rabbit);
