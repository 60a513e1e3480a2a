//! The conformance suite on SQLite: one temporary database file per case.

use std::sync::Arc;

use switchyard_conformance::{random_prefix, Backend};
use switchyard_core::Storage;
use switchyard_sqlite::{SqliteConfig, SqliteStorage};

async fn backend() -> Backend {
    let dir = std::env::temp_dir().join("switchyard-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = random_prefix();
    let path = dir.join(format!("{prefix}.db"));
    let config = SqliteConfig::new(format!("sqlite://{}", path.display())).with_prefix(prefix);
    let storage = SqliteStorage::connect(config).await.expect("open sqlite");
    storage.migrate().await.expect("migrate");
    Backend::storage_only(Arc::new(storage))
}

switchyard_conformance::conformance_suite!(backend);
