//! The conformance suites with SQS as the queue: the queue-level cases on SQS alone, then the
//! end-to-end cases for every pair {SQLite, PostgreSQL, Redis} × SQS. Needs the fauxqs emulator
//! (`scripts/fauxqs/start.sh`) at `SWITCHYARD_TEST_SQS_ENDPOINT` (default
//! `http://127.0.0.1:4577`), plus PostgreSQL and Redis on loopback (`SWITCHYARD_TEST_POSTGRES_URL`,
//! `SWITCHYARD_TEST_REDIS_URL`). Every case gets its own random queue-name and storage prefix.

use std::sync::Arc;
use std::time::Duration;

use switchyard_conformance::{random_prefix, Backend};
use switchyard_core::{Queue, Storage};
use switchyard_sqs::{SqsConfig, SqsQueue};

fn endpoint() -> String {
    std::env::var("SWITCHYARD_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4577".into())
}

async fn sqs(prefix: &str) -> Arc<dyn Queue> {
    let config = SqsConfig::from_url("sqs://")
        .expect("url")
        .with_endpoint_url(Some(endpoint()))
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

mod sqlite {
    use super::*;
    use switchyard_sqlite::{SqliteConfig, SqliteStorage};

    async fn backend() -> Backend {
        let dir = std::env::temp_dir().join("switchyard-conformance");
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = random_prefix();
        let path = dir.join(format!("sqs-{prefix}.db"));
        let config =
            SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix.clone());
        let storage = SqliteStorage::connect(config).await.expect("open sqlite");
        storage.migrate().await.expect("migrate");
        compose(Arc::new(storage), sqs(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}

mod postgres {
    use super::*;
    use switchyard_postgres::{PostgresConfig, PostgresStorage};

    async fn backend() -> Backend {
        let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
        let prefix = random_prefix();
        let config = PostgresConfig::new(url)
            .with_prefix(prefix.clone())
            .with_max_connections(4);
        let storage = PostgresStorage::connect(config)
            .await
            .expect("connect to postgres");
        storage.migrate().await.expect("migrate");
        compose(Arc::new(storage), sqs(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}

mod redis {
    use super::*;
    use switchyard_redis::{RedisConfig, RedisStorage};

    async fn backend() -> Backend {
        let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = random_prefix();
        let storage = RedisStorage::connect(RedisConfig::new(url).with_prefix(prefix.clone()))
            .await
            .expect("connect to Redis");
        storage.migrate().await.expect("migrate");
        compose(Arc::new(storage), sqs(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}
