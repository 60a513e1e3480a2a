//! The shared conformance suite on Redis. Needs a Redis server at `SWITCHYARD_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`); every case gets its own random key prefix.

use switchyard_conformance::{fixtures, random_prefix, Backend};

async fn backend() -> Backend {
    Backend::storage_only(fixtures::redis(&random_prefix()).await)
}

switchyard_conformance::conformance_suite!(backend);
