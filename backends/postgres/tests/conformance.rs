//! The conformance suite on PostgreSQL: every case gets its own random table prefix on the test
//! server (`SWITCHYARD_TEST_POSTGRES_URL`, default the loopback server, database `test`).

use std::sync::Arc;

use switchyard_conformance::{random_prefix, Backend};
use switchyard_core::Storage;
use switchyard_postgres::{PostgresConfig, PostgresStorage};

fn url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into())
}

async fn backend() -> Backend {
    let config = PostgresConfig::new(url())
        .with_prefix(random_prefix())
        .with_max_connections(4);
    let storage = PostgresStorage::connect(config)
        .await
        .expect("connect to postgres");
    storage.migrate().await.expect("migrate");
    Backend::storage_only(Arc::new(storage))
}

switchyard_conformance::conformance_suite!(backend);
