//! The conformance suites with SQS as the queue: the queue-level cases on SQS alone, then the
//! end-to-end cases for every pair {SQLite, PostgreSQL, Redis} × SQS. Needs the fauxqs emulator
//! (`scripts/fauxqs/start.sh`) at `SWITCHYARD_TEST_SQS_ENDPOINT` (default
//! `http://127.0.0.1:4577`), plus PostgreSQL and Redis on loopback (`SWITCHYARD_TEST_POSTGRES_URL`,
//! `SWITCHYARD_TEST_REDIS_URL`). Every case gets its own random queue-name and storage prefix.

use std::sync::Arc;
use std::time::Duration;

use switchyard_conformance::fixtures::sqs_endpoint;
use switchyard_conformance::{random_prefix, Backend};
use switchyard_core::{Queue, Storage};
use switchyard_sqs::{SqsConfig, SqsQueue};

async fn sqs(prefix: &str) -> Arc<dyn Queue> {
    let config = SqsConfig::from_url("sqs://")
        .expect("url")
        .with_endpoint_url(Some(sqs_endpoint()))
        .with_region(Some("us-east-1".into()))
        .with_prefix(prefix);
    Arc::new(SqsQueue::connect(config).await.expect("connect to SQS"))
}

async fn queue() -> Arc<dyn Queue> {
    sqs(&random_prefix()).await
}

/// Storage plus SQS with the same random prefix; a 2 s native delay limit so that the
/// delay-past-the-limit case runs quickly.
fn compose(storage: Arc<dyn Storage>, queue: Arc<dyn Queue>) -> Backend {
    Backend {
        max_native_delay: Some(Duration::from_secs(2)),
        ..Backend::with_queue(storage, queue)
    }
}

switchyard_conformance::queue_conformance_suite!(queue);
switchyard_conformance::storage_matrix_suite!(sqs, compose = compose);
