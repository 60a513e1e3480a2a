//! The shared conformance suite on Redis. Needs a Redis server at `SWITCHYARD_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`); every case gets its own random key prefix.

use std::sync::Arc;

use switchyard_core::Storage;
use switchyard_redis::{RedisConfig, RedisStorage};

async fn backend() -> switchyard_conformance::Backend {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = RedisConfig::new(url).with_prefix(switchyard_conformance::random_prefix());
    let storage = RedisStorage::connect(config)
        .await
        .expect("connect to Redis (set SWITCHYARD_TEST_REDIS_URL)");
    storage.migrate().await.expect("migrate");
    switchyard_conformance::Backend::storage_only(Arc::new(storage))
}

switchyard_conformance::conformance_suite!(backend);
