//! The conformance suites with RabbitMQ as the queue: the queue-level cases on RabbitMQ alone,
//! then the end-to-end cases for SQLite, PostgreSQL and Redis storage × RabbitMQ. Needs the
//! broker at `SWITCHYARD_TEST_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) and the
//! storage servers of the other adapters' tests. Every case gets its own random prefix, used by
//! both the storage and the broker queues; the broker drops the queues 5 minutes after their
//! last use (`x-expires`).

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::Queue;
use switchyard_rabbitmq::{RabbitConfig, RabbitQueue};

fn amqp_url() -> String {
    std::env::var("SWITCHYARD_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

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

mod sqlite {
    use std::sync::Arc;

    use switchyard_conformance::{random_prefix, Backend};
    use switchyard_core::Storage;
    use switchyard_sqlite::{SqliteConfig, SqliteStorage};

    async fn backend() -> Backend {
        let dir = std::env::temp_dir().join("switchyard-conformance");
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = random_prefix();
        let path = dir.join(format!("{prefix}rabbitmq.db"));
        let config =
            SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix.clone());
        let storage = SqliteStorage::connect(config).await.expect("open sqlite");
        storage.migrate().await.expect("migrate");
        Backend::with_queue(Arc::new(storage), super::rabbit(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}

mod postgres {
    use std::sync::Arc;

    use switchyard_conformance::{random_prefix, Backend};
    use switchyard_core::Storage;
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
        Backend::with_queue(Arc::new(storage), super::rabbit(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}

mod redis {
    use std::sync::Arc;

    use switchyard_conformance::{random_prefix, Backend};
    use switchyard_core::Storage;
    use switchyard_redis::{RedisConfig, RedisStorage};

    async fn backend() -> Backend {
        let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = random_prefix();
        let config = RedisConfig::new(url).with_prefix(prefix.clone());
        let storage = RedisStorage::connect(config)
            .await
            .expect("connect to Redis (set SWITCHYARD_TEST_REDIS_URL)");
        storage.migrate().await.expect("migrate");
        Backend::with_queue(Arc::new(storage), super::rabbit(&prefix).await)
    }

    switchyard_conformance::conformance_suite!(backend);
}
